"""The ledger's own small asyncpg pool, as the service's login (`vouchers_app`).

The redemption path calls its SQL functions through it (one round trip, no ORM: the design
measurements in docs/benchmarks.md show how little room that path has); the sealer, the
projector, verification and the invariants open their connections with its address and role.
A connection is lent within `<PREFIX>DB_POOL_TIMEOUT_SECONDS`, as the service's other pools lend
theirs; none free by then is 503 `service_busy` (overload, not a bug), never a wait without end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from shared.db import lend, no_session_reset
from shared.dbconnect import connect_options, libpq_url


class Lending:
    """The started pool's connections, each lent within `timeout` seconds (`shared.db.lend`: 503 `service_busy`
    otherwise, as every pool of the services). Only the wait for a connection is bounded here: a statement's own
    time is the pool's `command_timeout`, and a statement that overruns it is not this error."""

    __slots__ = ("pool", "timeout")

    def __init__(self, pool: asyncpg.Pool, timeout: float) -> None:
        self.pool = pool
        self.timeout = timeout

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[PoolConnectionProxy]:
        """One connection for as long as the block runs."""
        connection = await lend(self.pool, self.timeout)
        try:
            yield connection
        finally:
            await self.pool.release(connection)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as connection:
            return await connection.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as connection:
            return await connection.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as connection:
            return await connection.fetchval(query, *args)


class LedgerPool:
    """Started and closed with the app (`app.state.ledger_pool`)."""

    def __init__(self, dsn: str, role: str, size: int, timeout: float = 10.0) -> None:
        self.dsn = libpq_url(dsn)
        self.role = role
        self.size = size
        self.timeout = timeout
        self.pool: asyncpg.Pool | None = None
        self._lending: Lending | None = None

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self.size,
            command_timeout=10,
            reset=no_session_reset,  # its callers run one statement each: nothing to undo
            **connect_options(self.dsn, "vouchers-hotpath", role=self.role),
        )
        self._lending = Lending(self.pool, self.timeout)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    @property
    def ready(self) -> Lending:
        """The started pool, lending within the timeout (a route runs only between the app's start and stop)."""
        assert self._lending is not None
        return self._lending
