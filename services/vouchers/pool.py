"""The ledger's own small asyncpg pool, as the service's login (`vouchers_app`).

The redemption path calls its SQL functions through it (one round trip, no ORM: the design
measurements in docs/benchmarks.md show how little room that path has); the sealer, the
projector, verification and the invariants open their connections with its address and role.
"""

from __future__ import annotations

import asyncpg

from shared.db import no_session_reset
from shared.dbconnect import connect_options, libpq_url


class LedgerPool:
    """Started and closed with the app (`app.state.ledger_pool`)."""

    def __init__(self, dsn: str, role: str, size: int) -> None:
        self.dsn = libpq_url(dsn)
        self.role = role
        self.size = size
        self.pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self.size,
            command_timeout=10,
            reset=no_session_reset,  # its callers run one statement each: nothing to undo
            **connect_options(self.dsn, "vouchers-hotpath", role=self.role),
        )

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    @property
    def ready(self) -> asyncpg.Pool:
        """The started pool (a route runs only between the app's start and stop)."""
        assert self.pool is not None
        return self.pool
