"""The projector: the ledger's read side, small projections for the aggregates API, kept off the redemption path.

The design measurements (docs/benchmarks.md) leave the redemption path no room, and a counter row updated by
every redemption would serialise them all. So, like the hash-chain sealer (`chain/sealer.py`), a
**projector** in each vouchers process (one at a time across processes: a transaction-level
advisory lock) folds committed entries into the `agg_*` tables, in (transaction id, entry id)
order and only below `pg_snapshot_xmin(pg_current_snapshot())`: every transaction below that
watermark has ended, and every later one gets a larger id, so nothing can appear behind the
cursor once it has passed. Each batch is **one statement**: it computes the batch's facts,
upserts every projection with grouped `INSERT … ON CONFLICT DO UPDATE`, and advances the
cursor (`projection_cursor`), so a batch counts once or not at all, whatever crashes when.

**Lag.** A projection is as fresh as its cursor: every answer carries `as_of` (the last entry
projected, when, and how many committed entries lie beyond it). The projector runs every
`VOUCHERS_PROJECTOR_INTERVAL_SECONDS` (0.5 s); a write transaction left open anywhere on the
PostgreSQL server holds it back (lag, never a wrong figure), as it holds the sealer back.

**What an entry counts as** (`FLOWS`; `year` and `month` of the entry's time in Shenzhen):

    issue    budget → voucher          issued +
    redeem   voucher → vendor          redeemed +                 (vendor, a redemption)
    hold     voucher → hold            held +
    capture  hold → vendor             held −, redeemed +         (vendor, a redemption)
    release  hold → voucher            held −                     (released or expired hold)
    void     voucher → budget          voided +
    expire   voucher → budget          expired +
    grant    budget → grants paid      granted +
    reversal grants paid → budget      reversed +                 (a mistaken grant, undone)
    settle   vendor → settled          settled +, split by measure through its batch's redemptions

The measure is the voucher's kind, or for grants the budget account's (`M6:2026`). Budget use
is counted on the budget account (its measure and year), not the event's year: voiding in 2027
a voucher issued in 2026 gives the amount back to the 2026 budget. M1 facts carry the voucher's
revenue class and the split of its compute base (district, domestic, other), recorded at
issuance from the decision's trace; amounts are apportioned by that split, rounded down, the
remainder to "other"; vouchers issued before that was recorded count as "unknown".

**Reconciliation** recomputes every projection from the ledger up to the cursor (the same
facts, summed in one plain SQL statement, in the same snapshot as the projection rows it
compares with) and lists each difference. A background job runs it every
`VOUCHERS_RECONCILIATION_INTERVAL_SECONDS` and logs what it finds; `GET
/v1/aggregates/reconciliation` shows the last result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from fastapi import FastAPI

from shared.db import Connection
from shared.periodic import BelowWatermark, OnOwnConnection, start_jobs, stop_jobs

from ..chain.repository import XMIN_SQL
from ..pool import LedgerPool
from ..settings import VouchersSettings
from .repository import (
    BATCH_SETTINGS,
    CURSOR_SQL,
    LOCK_SQL,
    MAX_DIFFERENCES,
    PROJECT_LOCK_KEY,
    PROJECT_SQL,
    REBUILD_SQL,
    RECONCILE_SETTINGS,
    RECONCILE_SQL,
    TRY_LOCK_SQL,
)

logger = logging.getLogger("services.vouchers.projections")  # the name the logs have always carried


class CursorMoved(RuntimeError):
    """The cursor is not where this batch started (someone rebuilt the projections meanwhile)."""


@dataclass(frozen=True)
class ProjectRun:
    projected: int
    batches: int
    #: every committed entry of a transaction below this id is projected (None: not drained)
    watermark: int | None


async def project_batch(connection: Connection, watermark: int, batch_size: int) -> int:
    """Project the next batch below `watermark` in the caller's transaction; returns its size."""
    cursor = await connection.fetchrow(CURSOR_SQL)
    assert cursor is not None, "vouchers.projection_cursor has its one row from the migration on"
    await connection.execute(BATCH_SETTINGS)
    row = await connection.fetchrow(PROJECT_SQL, watermark, int(cursor["txid"]), int(cursor["entry_id"]), batch_size)
    assert row is not None, "the batch statement answers one row (its counts), even for no entries"
    count = int(row["batch"])
    if count and row["entries"] is None:
        raise CursorMoved("the projection cursor moved during the batch")
    return count


async def project_run(
    connection: Connection, *, batch_size: int = 20_000, wait: bool = True, max_batches: int | None = None
) -> ProjectRun:
    """Project every committed entry below the watermark, one short transaction per batch.

    `wait=False` gives up at once if another projector holds the lock; `max_batches` stops early.
    """
    projected = batches = 0
    while max_batches is None or batches < max_batches:
        async with connection.transaction(isolation="read_committed"):
            if wait:
                await connection.execute(LOCK_SQL, PROJECT_LOCK_KEY)
            elif not await connection.fetchval(TRY_LOCK_SQL, PROJECT_LOCK_KEY):
                return ProjectRun(projected, batches, None)
            # read after taking the lock: each statement sees what the previous projector committed
            watermark = int(await connection.fetchval(XMIN_SQL))
            count = await project_batch(connection, watermark, batch_size)
        if count:
            projected += count
            batches += 1
        if count < batch_size:
            return ProjectRun(projected, batches, watermark)
    return ProjectRun(projected, batches, None)


@dataclass(frozen=True)
class Difference:
    projection: str
    key: str
    projected_fen: int | None
    ledger_fen: int | None


@dataclass
class Reconciliation:
    ok: bool
    checked_through_entry_id: int
    differences: list[Difference]
    checked_at: datetime
    seconds: float
    differences_total: int = 0


async def reconcile(connection: Connection) -> Reconciliation:
    """Recompute every projection from the ledger up to the cursor and list where they differ."""
    started = time.perf_counter()
    async with connection.transaction(readonly=True):
        await connection.execute(RECONCILE_SETTINGS)  # one scan, hashed in memory
        rows = await connection.fetch(RECONCILE_SQL)
    found = [
        Difference(
            str(row["projection"]),
            str(row["key"]),
            None if row["projected"] is None else int(row["projected"]),
            None if row["ledger"] is None else int(row["ledger"]),
        )
        for row in rows
        if row["projection"] is not None
    ]
    checked = int(rows[0]["checked_through"]) if rows else -1
    return Reconciliation(
        ok=not found,
        checked_through_entry_id=max(checked, 0),
        differences=found[:MAX_DIFFERENCES],
        checked_at=datetime.now(UTC),
        seconds=time.perf_counter() - started,
        differences_total=len(found),
    )


async def reset(connection: Connection) -> None:
    """Empty the projections and rewind the cursor (the projector then rebuilds them from the ledger)."""
    async with connection.transaction():
        await connection.execute(LOCK_SQL, PROJECT_LOCK_KEY)
        for statement in REBUILD_SQL:
            await connection.execute(statement)


# --- background tasks -----------------------------------------------------------------------------


class Projector(BelowWatermark):
    """Folds new entries into the projections every `interval` seconds (0: never)."""

    name = "vouchers-projector"
    log = logger
    watermark_sql = XMIN_SQL

    def __init__(
        self, dsn: str, role: str, interval: float, *, batch_size: int = 20_000, statement_timeout_ms: int = 30_000
    ) -> None:
        super().__init__(dsn, role, interval, statement_timeout_ms=statement_timeout_ms)
        self.batch_size = batch_size

    async def run(self, connection: asyncpg.Connection) -> tuple[int, int | None]:
        run = await project_run(connection, batch_size=self.batch_size, wait=False)
        return run.projected, run.watermark


class Reconciler(OnOwnConnection):
    """Checks the projections against the ledger every `interval` seconds and logs the differences."""

    name = "vouchers-reconciliation"
    log = logger
    delay_first = True  # not at start-up: the first check comes after one interval

    def __init__(self, dsn: str, role: str, interval: float, *, statement_timeout_ms: int = 600_000) -> None:
        super().__init__(dsn, role, interval, statement_timeout_ms=statement_timeout_ms)
        self.last: Reconciliation | None = None
        self._lock = asyncio.Lock()

    async def check(self, connection: Connection) -> Reconciliation:
        async with self._lock:
            result = await reconcile(connection)
            self.last = result
        if result.ok:
            logger.info(
                "projections reconciled through entry %s in %.1f s: no difference",
                result.checked_through_entry_id,
                result.seconds,
            )
        else:
            logger.warning(
                "projections differ from the ledger through entry %s: %d differences, first %s",
                result.checked_through_entry_id,
                result.differences_total,
                [vars(d) for d in result.differences[:5]],
            )
        return result

    async def step(self, connection: asyncpg.Connection) -> None:
        await self.check(connection)


async def start_read_side(app: FastAPI) -> None:
    """Startup hook: the projector and the reconciliation job, each on its own connection."""
    settings: VouchersSettings = app.state.settings
    ledger_pool: LedgerPool = app.state.ledger_pool
    projector = Projector(
        ledger_pool.dsn,
        ledger_pool.role,
        float(settings.projector_interval_seconds),
        batch_size=settings.projector_batch_size,
        statement_timeout_ms=max(settings.db_statement_timeout_ms, 120_000),
    )
    reconciler = Reconciler(
        ledger_pool.dsn,
        ledger_pool.role,
        float(settings.reconciliation_interval_seconds),
        statement_timeout_ms=max(settings.db_statement_timeout_ms, 600_000),
    )
    await start_jobs(app, projector=projector, reconciler=reconciler)


async def stop_read_side(app: FastAPI) -> None:
    await stop_jobs(app, "reconciler", "projector")
