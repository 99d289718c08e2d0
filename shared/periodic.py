"""A process's periodic background work: one loop for every job (issue #14).

`Periodic` calls `round()` every `interval` seconds in a task of its own (0: never), keeps going
after any failure and stops when cancelled; `wake()` ends the pause at once (work has come), a
round that returns True is followed by the next at once (more is waiting), `delay_first` waits
one pause before the first round, and with `drain_seconds` set `stop()` lets the round in
progress finish (woken, a pausing loop runs one more round) instead of cancelling it.
Its jobs: the vouchers' sealer, projector and reconcilers, the webhook dispatcher
(shared/feed/dispatcher.py) and the audit writer (shared/audit.py).

`OnOwnConnection` is a `Periodic` whose rounds run on a connection of its own as the service's
login (the sealer, the projector, the projections' reconciliation): reopened after a failure,
which is logged once per kind (`last_error`), the pause growing with consecutive failures (× 2
each, up to `max_backoff_seconds`). `BelowWatermark` is one whose rounds do every committed row
below the watermark (the sealer, the projector), skipped cheaply while the watermark stands still.

With tracing on (shared/tracing.py), `start_jobs` gives each job its app's tracer: an `OnOwnConnection`
round is a span (named after the job), a `BelowWatermark` one only when the watermark has moved (a
span per run that does work: `vouchers-sealer run`, `vouchers-projector run`), and the statements it
sends are its children. Off, a round costs one `is None` more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import asyncpg
from fastapi import FastAPI
from opentelemetry.trace import Tracer

from shared.dbconnect import connect_options, timeouts
from shared.tracing import span, tracer

logger = logging.getLogger("shared.periodic")


async def connect(dsn: str, role: str, application_name: str, statement_timeout_ms: int = 30_000) -> asyncpg.Connection:
    """A connection of its own, as the service's login (like the hot path's pool); `role` switches only if set.

    Behind PgBouncer the timeouts are the login's defaults (shared/dbconnect.py)."""
    options = connect_options(dsn, application_name, role=role, settings=timeouts(statement_timeout_ms))
    connection: asyncpg.Connection = await asyncpg.connect(dsn, **options)
    return connection


async def close_connection(connection: asyncpg.Connection) -> None:
    """Close politely; if that fails or takes too long, drop the socket (the server rolls back)."""
    try:
        await asyncio.wait_for(connection.close(), timeout=5)
    except asyncio.CancelledError:
        connection.terminate()
        raise
    except Exception:
        connection.terminate()


async def start_jobs(app: FastAPI, **jobs: Periodic) -> None:
    """A start-up hook's end: each job kept as `app.state.<name>` (where `stop_jobs` finds it), then started;
    each traces with the app's tracer (None: tracing off)."""
    for name, job in jobs.items():
        setattr(app.state, name, job)
        job.tracer = tracer(app, "shared.periodic")
    for job in jobs.values():
        await job.start()


async def stop_jobs(app: FastAPI, *names: str) -> None:
    """A shutdown hook: the jobs kept as `app.state.<name>` stopped, in this order (absent ones skipped)."""
    for name in names:
        job: Periodic | None = getattr(app.state, name, None)
        if job is not None:
            await job.stop()


#: how long `Periodic.stop` waits on a cancelled loop before cancelling it again (a cancellation can be lost)
RECANCEL_SECONDS = 0.5


class Periodic:
    """`round()` every `interval` seconds in a background task named `name` (0: never)."""

    name = "periodic"
    #: the first round comes after one pause (which `wake()` ends), not at start
    delay_first = False
    #: `stop()` lets the loop finish its round (waking it if it pauses: one more round), then ends
    #: it; after this many seconds it is cancelled. None: `stop()` cancels the loop wherever it is
    drain_seconds: float | None = None
    #: each round is a span (when `tracer` is set: tracing on)
    traced_rounds = False

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.tracer: Tracer | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    async def start(self) -> None:
        if self.enabled and self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        """Ends the loop. A cancellation can be lost (Python 3.11's `asyncio.wait_for`, here and in asyncpg, returns
        the inner result when both arrive together): the loop then ends at its next check of `_stopping`, and is
        cancelled again every RECANCEL_SECONDS until it has. Awaiting it once after one cancel hung a test run's
        shutdown for good, the dispatcher polling on."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        if self.drain_seconds is not None:
            self._wake.set()
            with contextlib.suppress(TimeoutError):  # else it hangs: cancelled below
                await asyncio.wait_for(asyncio.shield(task), self.drain_seconds)
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=RECANCEL_SECONDS)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def wake(self) -> None:
        """End the pause now: the next round comes at once (after the one in progress, if any)."""
        self._wake.set()

    async def round(self) -> bool | None:
        """One round; True: more is waiting (the next round comes at once)."""
        raise NotImplementedError

    def succeeded(self) -> None:
        return None

    def failed(self, exc: Exception) -> None:
        logger.error("%s failed", self.name, exc_info=exc)

    def pause(self, failures: int) -> float:
        """Seconds until the next round, after `failures` consecutive failed rounds."""
        return self.interval

    async def finish(self) -> None:
        """When the task ends (stopped)."""
        return None

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _loop(self) -> None:
        failures = 0
        try:
            if self.delay_first:
                await self._pause(self.pause(failures))
            while True:
                more = False
                try:
                    with span(self.tracer if self.traced_rounds else None, self.name):
                        more = bool(await self.round())
                    failures = 0
                    self.succeeded()
                except Exception as exc:  # keep going after any failure
                    failures += 1
                    self.failed(exc)
                if self._stopping:
                    return
                if not more:
                    await self._pause(self.pause(failures))
        finally:
            await self.finish()


class OnOwnConnection(Periodic):
    """`step(connection)` every `interval` seconds on a connection of its own (named `name`)."""

    #: the longest pause after consecutive failures
    max_backoff_seconds = 60.0
    traced_rounds = True
    #: what a failure's log line calls it (default: `name`), and the logger it is written to
    label: str | None = None
    log = logger

    def __init__(self, dsn: str, role: str, interval: float, *, statement_timeout_ms: int = 30_000) -> None:
        super().__init__(interval)
        self.dsn = dsn
        self.role = role
        self.statement_timeout_ms = statement_timeout_ms
        self.last_error: str | None = None
        self._connection: asyncpg.Connection | None = None

    async def step(self, connection: asyncpg.Connection) -> None:
        raise NotImplementedError

    async def round(self) -> None:
        if self._connection is None or self._connection.is_closed():
            self._connection = await connect(self.dsn, self.role, self.name, self.statement_timeout_ms)
        await self.step(self._connection)

    def succeeded(self) -> None:
        self.last_error = None

    def failed(self, exc: Exception) -> None:
        """Said once per kind of failure; the connection is dropped (the next round opens another)."""
        message = f"{type(exc).__name__}: {exc}"
        if message != self.last_error:
            self.log.error("%s failed: %s", self.label or self.name, message, exc_info=exc)
        self.last_error = message
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None

    def pause(self, failures: int) -> float:
        return min(self.interval * 2 ** min(failures, 6), self.max_backoff_seconds) if failures else self.interval

    async def finish(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await close_connection(connection)


class BelowWatermark(OnOwnConnection):
    """Each round does every committed row below the watermark (`run`), unless it has not moved.

    A transaction id below `pg_snapshot_xmin` has ended and every later one gets a larger id:
    while the watermark stands where the last drained run left it, nothing new can be there.
    """

    #: a statement whose single value is the watermark (`pg_snapshot_xmin` as a bigint)
    watermark_sql: str
    #: a span per run that does work (`run_once`), not per round: most rounds find the watermark unmoved
    traced_rounds = False

    def __init__(self, dsn: str, role: str, interval: float, *, statement_timeout_ms: int = 30_000) -> None:
        super().__init__(dsn, role, interval, statement_timeout_ms=statement_timeout_ms)
        # what it has done in this process: runs, rows done by all of them and by the last one, when
        self.runs = 0
        self.done_total = 0
        self.done_last = 0
        self.last_run_at: datetime | None = None
        #: every committed row of a transaction below this id is done (None: not drained yet)
        self.watermark: int | None = None

    async def run(self, connection: asyncpg.Connection) -> tuple[int, int | None]:
        """Do the rows below the watermark, not waiting for another process's lock: how many, and the
        watermark it drained to (None: not drained, e.g. another process holds the lock)."""
        raise NotImplementedError

    async def run_once(self, connection: asyncpg.Connection) -> int:
        """One round; skipped cheaply when the watermark has not moved since everything was done."""
        xmin = int(await connection.fetchval(self.watermark_sql))
        if self.watermark is not None and xmin == self.watermark:
            return 0  # no transaction below it can have committed since: nothing new to do
        with span(self.tracer, f"{self.name} run", {"watermark.from": self.watermark or 0}) as current:
            done, watermark = await self.run(connection)
            if current is not None:
                current.set_attribute("rows", done)
                current.set_attribute("watermark.to", watermark or 0)
        self.runs += 1
        self.done_last = done
        self.done_total += done
        self.last_run_at = datetime.now(UTC)
        if watermark is not None:
            self.watermark = watermark
        return done

    async def step(self, connection: asyncpg.Connection) -> None:
        await self.run_once(connection)
