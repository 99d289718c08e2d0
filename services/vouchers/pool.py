"""The ledger's own small asyncpg pool, as the service's login (`vouchers_app`).

The redemption path calls its SQL functions through it (one round trip, no ORM: the design
measurements in docs/benchmarks.md show how little room that path has); the sealer, the
projector, verification and the invariants open their connections with its address and role.
"""

from __future__ import annotations

import asyncpg

from shared.dbconnect import connect_options


async def _no_session_reset(connection: asyncpg.Connection) -> None:
    """What a connection goes back to the pool with: asyncpg's own reset still rolls back a transaction left
    open and drops listeners; the reset *query* (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`)
    is not sent. It is one more round trip per call (on the redemption path: per redemption, a fifth of the
    process's CPU, docs/benchmarks.md), and this pool's callers leave nothing for it to undo: each runs one
    statement (`fetchrow`/`fetch`/`fetchval`) of a ledger function or a read, whose locks are transaction-level
    (`pg_advisory_xact_lock`), with no SET, LISTEN or cursor; the session's settings are the login's (startup
    parameters), which RESET ALL would restore anyway. A caller that needs session state acquires its own
    connection (`chain.service.ledger_connection`), never this pool's."""


class LedgerPool:
    """Started and closed with the app (`app.state.ledger_pool`)."""

    def __init__(self, dsn: str, role: str, size: int) -> None:
        self.dsn = dsn.replace("postgresql+asyncpg://", "postgresql://")
        self.role = role
        self.size = size
        self.pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self.size,
            command_timeout=10,
            reset=_no_session_reset,
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
