"""A process's periodic background work: one loop (the vouchers sealer, projector and reconcilers use it).

`Periodic` calls `round()` every `interval` seconds in a task of its own (0: never), keeps going
after any failure and stops when cancelled. `OnOwnConnection` is a `Periodic` whose rounds run
on a connection of its own as the service's login (the sealer, the projector, the projections'
reconciliation): reopened after a failure, which is logged once per kind (`last_error`), the
pause growing with consecutive failures (× 2 each, up to `max_backoff_seconds`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

logger = logging.getLogger("shared.periodic")


async def connect(dsn: str, role: str, application_name: str, statement_timeout_ms: int = 30_000) -> Any:
    """A connection of its own, as the service's login (like the hot path's pool); `role` switches only if set."""
    server_settings = {
        "application_name": application_name,
        "statement_timeout": str(statement_timeout_ms),
        "idle_in_transaction_session_timeout": str(statement_timeout_ms * 2),
    }
    if role:
        server_settings["role"] = role
    return await asyncpg.connect(dsn, server_settings=server_settings)


async def close_connection(connection: Any) -> None:
    """Close politely; if that fails or takes too long, drop the socket (the server rolls back)."""
    try:
        await asyncio.wait_for(connection.close(), timeout=5)
    except asyncio.CancelledError:
        connection.terminate()
        raise
    except Exception:
        connection.terminate()


class Periodic:
    """`round()` every `interval` seconds in a background task named `name` (0: never)."""

    name = "periodic"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def round(self) -> None:
        raise NotImplementedError

    async def first_wait(self) -> None:
        """Before the first round (default: none)."""
        return None

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

    async def _loop(self) -> None:
        failures = 0
        await self.first_wait()
        try:
            while True:
                try:
                    await self.round()
                    failures = 0
                    self.succeeded()
                except Exception as exc:  # keep going after any failure
                    failures += 1
                    self.failed(exc)
                await asyncio.sleep(self.pause(failures))
        finally:
            await self.finish()


class OnOwnConnection(Periodic):
    """`step(connection)` every `interval` seconds on a connection of its own (named `name`)."""

    #: the longest pause after consecutive failures
    max_backoff_seconds = 60.0
    #: what a failure's log line calls it (default: `name`), and the logger it is written to
    label: str | None = None
    log = logger

    def __init__(self, dsn: str, role: str, interval: float, *, statement_timeout_ms: int = 30_000) -> None:
        super().__init__(interval)
        self.dsn = dsn
        self.role = role
        self.statement_timeout_ms = statement_timeout_ms
        self.last_error: str | None = None
        self._connection: Any = None

    async def step(self, connection: Any) -> None:
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
