"""Rate limits per client and route class, shared by a service's processes through PostgreSQL.

Every authenticated request is counted against its client's bucket for its **route class**
(`route_class` in shared/auth.py): vendor writes, vendor reads, applicants, the platform
(imports, exports, the change feed), the bureau (officers, approvers, administrators,
auditors, dashboards: generous) and the services' own peer calls (not limited: their volume
is bounded by the limits on the requests that cause them). Over the rate → 429 with
`Retry-After`. Each class also bounds the requests one client may have **in flight** in one
process: the 17th concurrent request of a vendor is refused at once (429) instead of waiting
for a database connection that an officer needs.

**Shared across processes, off the request path.** A request never waits for the database
here: it takes a token from a local bucket (a dictionary lookup and a few float operations).
Every `RATE_LIMIT_SYNC_SECONDS` (0.2 s) a task of the process reports what it took per
bucket since the last report, in **one statement** upserting `<schema>.rate_limits` (an
UNLOGGED table: one row per client and class holding the *global* bucket, refilled by the
database's clock at the class's rate), and sets its local buckets to the global level the
statement returns. So N processes share one bucket per client and class.

The approximation: what other processes took since their last report is unseen for up to
one interval, so the admitted rate can exceed the limit by at most (N − 1) × the local rate
over one interval, and a client new to a process gets that process's full burst until the
first report (≤ one interval); the global bucket may go into debt (down to −burst), which
the next reports pay back, so over a few seconds the total converges to `rate × t + burst`.
If the database is away, each process keeps limiting alone (N × the limit), as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.dbconnect import connect_options, libpq_url

logger = logging.getLogger("shared.ratelimit")

# route classes
VENDOR_WRITE = "vendor_write"
VENDOR_READ = "vendor_read"
APPLICANT_CLASS = "applicant"
PLATFORM_CLASS = "platform"
BUREAU_CLASS = "bureau"
SERVICE_CLASS = "service"
ROUTE_CLASSES = (VENDOR_WRITE, VENDOR_READ, APPLICANT_CLASS, PLATFORM_CLASS, BUREAU_CLASS, SERVICE_CLASS)

#: a bucket used within this long is reported at every sync even without new requests (so
#: the process learns what the other processes took); idle full buckets are forgotten later
ACTIVE_SECONDS = 5.0
FORGET_SECONDS = 120.0
BUCKET_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class Limit:
    """One class's limit per client: a token bucket (`rate` per second, `burst`) and an in-flight bound."""

    rate: float  # 0: no rate limit
    burst: float
    max_in_flight: int = 0  # 0: unbounded


class _Bucket:
    __slots__ = ("at", "pending", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at
        self.pending = 0  # taken here since the last report


class InFlightSlot:
    """Put in the ASGI scope by `InFlightMiddleware`; `authorize` fills it, the middleware frees it."""

    __slots__ = ("key", "limiter")

    def __init__(self) -> None:
        self.limiter: RateLimiter | None = None
        self.key: tuple[str, str] | None = None


SLOT_KEY = "longgang.in_flight"


class RateLimiter:
    """Token buckets per (client, route class) and in-flight counts; shared through PostgreSQL when started.

    `RateLimiter(rate, burst)` alone limits vendor writes only (as before issue #12); `classes`
    gives every class its `Limit`.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        classes: Mapping[str, Limit] | None = None,
    ) -> None:
        self.rate = rate_per_second
        self.burst = float(burst)
        self.clock = clock
        self.limits: dict[str, Limit] = {VENDOR_WRITE: Limit(rate_per_second, float(burst))}
        self.limits.update(classes or {})
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._in_flight: dict[tuple[str, str], int] = {}
        self._task: asyncio.Task[None] | None = None
        self._connection: asyncpg.Connection | None = None
        self._dsn = self._schema = self._sql = ""
        self._role: str | None = None
        self._interval = 0.0
        self.synced_at = 0.0  # monotonic time of the last successful report (0: never)

    # --- per request (no I/O) ---------------------------------------------------------------

    def acquire(self, client: str, route_class: str = VENDOR_WRITE) -> float:
        """0 if the request may go ahead, else the seconds until it could."""
        limit = self.limits.get(route_class)
        if limit is None or limit.rate <= 0:
            return 0.0
        now = self.clock()
        key = (client, route_class)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= BUCKET_LIMIT:  # clients come from verified tokens: only a bound on memory
                self._buckets.clear()
            bucket = self._buckets[key] = _Bucket(limit.burst, now)
        else:
            bucket.tokens = min(limit.burst, bucket.tokens + (now - bucket.at) * limit.rate)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.pending += 1
            return 0.0
        return (1.0 - bucket.tokens) / limit.rate

    def enter(self, client: str, route_class: str) -> bool | None:
        """Count one more request in flight: None if the class has no bound, False if it is reached."""
        limit = self.limits.get(route_class)
        if limit is None or limit.max_in_flight <= 0:
            return None
        key = (client, route_class)
        count = self._in_flight.get(key, 0)
        if count >= limit.max_in_flight:
            return False
        self._in_flight[key] = count + 1
        return True

    def leave(self, key: tuple[str, str]) -> None:
        count = self._in_flight.get(key, 0) - 1
        if count > 0:
            self._in_flight[key] = count
        else:
            self._in_flight.pop(key, None)

    def in_flight(self, client: str, route_class: str) -> int:
        return self._in_flight.get((client, route_class), 0)

    # --- sharing through PostgreSQL --------------------------------------------------------------

    async def start(self, dsn: str, schema: str, *, role: str | None, interval: float) -> None:
        """Report and learn every `interval` seconds through `<schema>.rate_limits` (0: this process alone)."""
        if interval <= 0 or self._task is not None:
            return
        self._dsn = libpq_url(dsn)
        self._role = role
        self._schema = schema
        self._interval = interval
        self._sql = sync_sql(schema)
        self._task = asyncio.create_task(self._loop(), name=f"rate-limits-{schema}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    async def _connect(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            options = connect_options(self._dsn, f"{self._schema}-rate-limits", role=self._role)
            self._connection = await asyncpg.connect(self._dsn, timeout=5, command_timeout=5, **options)
        return self._connection

    async def _loop(self) -> None:
        failing = False
        cleaned = 0.0
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sync()
                if self.clock() - cleaned > 60:
                    cleaned = self.clock()
                    await (await self._connect()).execute(cleanup_sql(self._schema))
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: limit per process until it is back
                if not failing:
                    logger.warning("rate limits not shared (per process until the database answers): %s", exc)
                failing = True
                if self._connection is not None:
                    with contextlib.suppress(Exception):
                        self._connection.terminate()
                    self._connection = None

    async def sync(self) -> int:
        """One report: what this process took per active bucket; local buckets take the global level."""
        now = self.clock()
        reported: list[tuple[tuple[str, str], _Bucket, int]] = []
        for key, bucket in list(self._buckets.items()):
            limit = self.limits.get(key[1])
            if limit is None or limit.rate <= 0:
                continue
            if bucket.pending or now - bucket.at < ACTIVE_SECONDS:
                reported.append((key, bucket, bucket.pending))
            elif now - bucket.at > FORGET_SECONDS:
                del self._buckets[key]
        if not reported:
            return 0
        reported.sort(key=lambda item: item[0])  # one lock order for every process
        for _, bucket, taken in reported:
            bucket.pending -= taken
        try:
            connection = await self._connect()
            rows = await connection.fetch(
                self._sql,
                [key[0] for key, _, _ in reported],
                [key[1] for key, _, _ in reported],
                [taken for _, _, taken in reported],
                [self.limits[key[1]].rate for key, _, _ in reported],
                [self.limits[key[1]].burst for key, _, _ in reported],
            )
        except BaseException:
            for _, bucket, taken in reported:  # reported next time
                bucket.pending += taken
            raise
        after = self.clock()
        for row in rows:
            key = (row["client"], row["route_class"])
            local = self._buckets.get(key)
            limit = self.limits.get(key[1])
            if local is None or limit is None:
                continue
            # the global level, less what this process took while the statement ran (reported next time)
            local.tokens = min(limit.burst, float(row["tokens"])) - local.pending
            local.at = after
        self.synced_at = after
        return len(rows)


def sync_sql(schema: str) -> str:
    """The one statement of a report: add each bucket's takings, refill by the database's clock, answer the level."""
    return f"""
        INSERT INTO "{schema}".rate_limits AS r (client, route_class, tokens, rate, burst, consumed, at)
        SELECT c, k, b - d, rt, b, d, clock_timestamp()
        FROM unnest($1::text[], $2::text[], $3::bigint[], $4::float8[], $5::float8[]) AS u(c, k, d, rt, b)
        ORDER BY c, k
        ON CONFLICT (client, route_class) DO UPDATE SET
            tokens = greatest(
                -excluded.burst,
                least(excluded.burst, r.tokens + greatest(0, extract(epoch FROM excluded.at - r.at)) * excluded.rate)
                - excluded.consumed
            ),
            consumed = r.consumed + excluded.consumed,
            rate = excluded.rate,
            burst = excluded.burst,
            at = excluded.at
        RETURNING client, route_class, tokens
    """


def cleanup_sql(schema: str) -> str:
    return f"""DELETE FROM "{schema}".rate_limits WHERE at < clock_timestamp() - interval '1 hour'"""


def rate_limit_tables_sql(schema: str, grant_to: str | None = None) -> list[str]:
    """`<schema>.rate_limits`: UNLOGGED (a crash empties it: every client starts with a full bucket)."""
    s = f'"{schema}"'
    statements = [
        f"""
        CREATE UNLOGGED TABLE {s}.rate_limits (
            client text NOT NULL,
            route_class text NOT NULL,
            tokens float8 NOT NULL,
            rate float8 NOT NULL,
            burst float8 NOT NULL,
            consumed bigint NOT NULL,
            at timestamptz NOT NULL,
            PRIMARY KEY (client, route_class)
        )
        """
    ]
    if grant_to:
        statements.append(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.rate_limits TO {grant_to}")
    return statements


def drop_rate_limit_tables_sql(schema: str) -> list[str]:
    return [f'DROP TABLE "{schema}".rate_limits']


def limiter_from_settings(settings: Any) -> RateLimiter:
    """The classes' limits from a service's settings (`<PREFIX>RATE_LIMIT_*`)."""
    in_flight = settings.rate_limit_max_in_flight
    classes = {
        VENDOR_WRITE: Limit(
            settings.rate_limit_per_second, float(settings.rate_limit_burst), settings.rate_limit_write_max_in_flight
        ),
        VENDOR_READ: Limit(settings.rate_limit_read_per_second, float(settings.rate_limit_read_burst), in_flight),
        APPLICANT_CLASS: Limit(
            settings.rate_limit_applicant_per_second, float(settings.rate_limit_applicant_burst), in_flight
        ),
        PLATFORM_CLASS: Limit(
            settings.rate_limit_platform_per_second, float(settings.rate_limit_platform_burst), in_flight
        ),
        BUREAU_CLASS: Limit(
            settings.rate_limit_bureau_per_second,
            float(settings.rate_limit_bureau_burst),
            settings.rate_limit_bureau_max_in_flight,
        ),
        SERVICE_CLASS: Limit(0.0, 1.0, 0),
    }
    return RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst, classes=classes)


class InFlightMiddleware:
    """Frees the in-flight slot `authorize` took, when the response is over (streamed exports too)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        slot = scope[SLOT_KEY] = InFlightSlot()
        try:
            await self.app(scope, receive, send)
        finally:
            if slot.limiter is not None and slot.key is not None:
                slot.limiter.leave(slot.key)
