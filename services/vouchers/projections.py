"""The ledger's read side: small projections for the aggregates API, kept off the redemption path.

The design measurements (docs/benchmarks.md) leave the redemption path no room, and a counter row updated by
every redemption would serialise them all. So, like the hash-chain sealer (`chain.py`), a
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
from typing import Any

from fastapi import FastAPI

from shared.periodic import OnOwnConnection

from .chain import XMIN_SQL
from .hotpath import HotPath
from .settings import VouchersSettings

logger = logging.getLogger("services.vouchers.projections")

PROJECT_LOCK_KEY = 0x4C47_5052_4F4A_0001  # "LGPROJ", 1: one projector at a time, across processes

#: entry kind → (flow, sign): what each kind of entry adds to which flow (settle: see SETTLED)
FLOWS: tuple[tuple[str, str, int], ...] = (
    ("issue", "issued", 1),
    ("redeem", "redeemed", 1),
    ("hold", "held", 1),
    ("capture", "held", -1),
    ("capture", "redeemed", 1),
    ("release", "held", -1),
    ("void", "voided", 1),
    ("expire", "expired", 1),
    ("grant", "granted", 1),
    ("reversal", "reversed", 1),
)
ENTRY_KINDS = (*sorted({kind for kind, _, _ in FLOWS}), "settle")
_FLOW_VALUES = ", ".join(f"('{kind}', '{flow}', {sign})" for kind, flow, sign in FLOWS)
_BUDGET_REF = "CASE WHEN e.from_kind = 'budget' THEN e.from_ref WHEN e.to_kind = 'budget' THEN e.to_ref END"


def facts_sql(entries: str) -> str:
    """CTEs ending in `facts`: one row per (entry, flow) (settle: per measure) of `entries` (a FROM item `e`)."""
    return f"""
    e AS (
        SELECT e.id, e.txid, e.kind, e.amount_fen, e.voucher_id,
               e.created_at AT TIME ZONE 'Asia/Shanghai' AS local_at,
               fa.kind AS from_kind, fa.ref AS from_ref, ta.kind AS to_kind, ta.ref AS to_ref
        FROM {entries}
        JOIN vouchers.accounts fa ON fa.id = e.from_account_id
        JOIN vouchers.accounts ta ON ta.id = e.to_account_id
    ),
    moves AS (
        SELECT e.id AS entry_id,
               coalesce(v.kind, split_part({_BUDGET_REF}, ':', 1)) AS measure,
               extract(year FROM e.local_at)::smallint AS year,
               extract(month FROM e.local_at)::smallint AS month,
               f.flow, f.sign * e.amount_fen AS amount_fen,
               CASE WHEN f.flow = 'redeemed' AND e.to_kind = 'vendor_receivable' THEN e.to_ref END AS vendor,
               CASE WHEN v.id IS NOT NULL THEN v.holder
                    WHEN e.to_kind = 'grant_paid' THEN e.to_ref
                    WHEN e.from_kind = 'grant_paid' THEN e.from_ref END AS holder,
               CASE WHEN v.kind = 'M1' THEN coalesce(v.revenue_class, 'unknown') END AS revenue_class,
               CASE WHEN v.kind = 'M1' AND v.compute_base_fen > 0 THEN v.compute_base_fen END AS base,
               v.compute_district_fen AS district, v.compute_domestic_fen AS domestic,
               {_BUDGET_REF} AS budget_ref
        FROM e
        JOIN (VALUES {_FLOW_VALUES}) AS f(kind, flow, sign) ON f.kind = e.kind
        LEFT JOIN vouchers.vouchers v ON v.id = e.voucher_id
    ),
    settled AS (
        SELECT e.id AS entry_id, coalesce(rv.kind, 'unknown') AS measure,
               extract(year FROM e.local_at)::smallint AS year, extract(month FROM e.local_at)::smallint AS month,
               'settled'::text AS flow, coalesce(sum(r.amount_fen), max(e.amount_fen))::bigint AS amount_fen,
               e.from_ref AS vendor
        FROM e
        LEFT JOIN vouchers.settlement_batches b ON b.entry_id = e.id
        LEFT JOIN vouchers.redemptions r ON r.settlement_batch_id = b.id
        LEFT JOIN vouchers.vouchers rv ON rv.id = r.voucher_id
        WHERE e.kind = 'settle'
        GROUP BY e.id, rv.kind, e.local_at, e.from_ref
    ),
    facts AS (
        SELECT entry_id, measure, year, month, flow, amount_fen, vendor, holder, revenue_class, budget_ref,
               floor(amount_fen::numeric * district / base)::bigint AS district_fen,
               floor(amount_fen::numeric * domestic / base)::bigint AS domestic_fen,
               amount_fen - floor(amount_fen::numeric * district / base)::bigint
                          - floor(amount_fen::numeric * domestic / base)::bigint AS other_fen,
               CASE WHEN measure = 'M1' AND base IS NULL THEN amount_fen END AS unknown_fen
        FROM moves
        UNION ALL
        SELECT entry_id, measure, year, month, flow, amount_fen, vendor, NULL, NULL, NULL, NULL, NULL, NULL, NULL
        FROM settled
    )"""


def _sum(flow: str | tuple[str, ...], column: str = "amount_fen") -> str:
    flows = (flow,) if isinstance(flow, str) else flow
    condition = " OR ".join(f"flow = '{f}'" for f in flows)
    return f"coalesce(sum({column}) FILTER (WHERE {condition}), 0)::bigint"


def _count(flow: str) -> str:
    return f"count(*) FILTER (WHERE flow = '{flow}')::bigint"


@dataclass(frozen=True)
class Projection:
    """One projection table: its key, its value columns and how the facts add up into them."""

    table: str
    keys: tuple[str, ...]
    values: tuple[str, ...]
    select: str  # SELECT <keys>, <values> FROM facts … GROUP BY <keys>

    @property
    def upsert(self) -> str:
        columns = ", ".join((*self.keys, *self.values))
        updates = ", ".join(f"{v} = t.{v} + EXCLUDED.{v}" for v in self.values)
        return (
            f"INSERT INTO vouchers.{self.table} AS t ({columns}) {self.select} "
            f"ON CONFLICT ({', '.join(self.keys)}) DO UPDATE SET {updates}"
        )


PROJECTIONS: tuple[Projection, ...] = (
    Projection(
        "agg_flows",
        ("year", "measure", "month", "flow"),
        ("amount_fen", "entries"),
        "SELECT year, measure, month, flow, sum(amount_fen)::bigint, count(*)::bigint FROM facts GROUP BY 1, 2, 3, 4",
    ),
    Projection(
        "agg_vendors",
        ("year", "measure", "vendor"),
        ("redeemed_fen", "settled_fen", "redemptions"),
        f"SELECT year, measure, vendor, {_sum('redeemed')}, {_sum('settled')}, {_count('redeemed')} "
        "FROM facts WHERE flow IN ('redeemed', 'settled') AND vendor IS NOT NULL GROUP BY 1, 2, 3",
    ),
    Projection(
        "agg_m1_classes",
        ("year", "revenue_class"),
        ("issued_fen", "redeemed_fen", "vouchers"),
        f"SELECT year, revenue_class, {_sum('issued')}, {_sum('redeemed')}, {_count('issued')} "
        "FROM facts WHERE revenue_class IS NOT NULL AND flow IN ('issued', 'redeemed') GROUP BY 1, 2",
    ),
    Projection(
        "agg_m1_shares",
        ("year", "share"),
        ("issued_fen", "redeemed_fen"),
        f"SELECT year, share, {_sum('issued', 'fen')}, {_sum('redeemed', 'fen')} FROM facts "
        "CROSS JOIN LATERAL (VALUES ('district', district_fen), ('domestic', domestic_fen), ('other', other_fen), "
        "('unknown', unknown_fen)) AS s(share, fen) "
        "WHERE measure = 'M1' AND flow IN ('issued', 'redeemed') AND fen IS NOT NULL GROUP BY 1, 2",
    ),
    Projection(
        "agg_budget",
        ("year", "measure"),
        ("issued_fen", "granted_fen", "returned_fen", "reversed_fen"),
        "SELECT split_part(budget_ref, ':', 2)::smallint, split_part(budget_ref, ':', 1), "
        f"{_sum('issued')}, {_sum('granted')}, {_sum(('voided', 'expired'))}, {_sum('reversed')} "
        "FROM facts WHERE budget_ref IS NOT NULL GROUP BY 1, 2",
    ),
    Projection(
        "agg_holders",
        ("year", "holder"),
        ("issued_fen", "redeemed_fen", "granted_fen"),
        f"SELECT year, holder, {_sum('issued')}, {_sum('redeemed')}, {_sum('granted')} - {_sum('reversed')} "
        "FROM facts WHERE holder IS NOT NULL AND flow IN ('issued', 'redeemed', 'granted', 'reversed') GROUP BY 1, 2",
    ),
)

CURSOR_SQL = "SELECT txid, entry_id, entries, projected_at FROM vouchers.projection_cursor WHERE id = 1"
#: the next batch: the first $4 entries after the cursor ($2, $3) of transactions below the watermark ($1)
BATCH = """(
        SELECT id, txid, kind, amount_fen, voucher_id, created_at, from_account_id, to_account_id
        FROM vouchers.entries
        WHERE txid < $1 AND (txid, id) > ($2::bigint, $3::bigint)
        ORDER BY txid, id LIMIT $4
    ) e"""
#: one statement: the batch's facts, every projection, and the cursor moved to the batch's last entry
PROJECT_SQL = (
    "WITH "
    + facts_sql(BATCH)
    + "".join(f",\n    p_{p.table} AS ({p.upsert} RETURNING 1)" for p in PROJECTIONS)
    + """,
    last AS (SELECT txid, id FROM e ORDER BY txid DESC, id DESC LIMIT 1),
    moved AS (
        UPDATE vouchers.projection_cursor c
           SET txid = last.txid, entry_id = last.id, entries = c.entries + (SELECT count(*) FROM e),
               projected_at = clock_timestamp()
          FROM last
         WHERE c.id = 1 AND c.txid = $2 AND c.entry_id = $3
        RETURNING c.entries)
    SELECT (SELECT count(*) FROM e) AS batch, (SELECT entries FROM moved) AS entries"""
)
#: a batch is small: index lookups of its accounts and vouchers beat hashing whole tables, which the
#: planner (estimating a range of (txid, id) badly) would otherwise choose
BATCH_SETTINGS = (
    "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL work_mem = '64MB'; "
    "SET LOCAL plan_cache_mode = force_custom_plan"
)


class CursorMoved(RuntimeError):
    """The cursor is not where this batch started (someone rebuilt the projections meanwhile)."""


@dataclass(frozen=True)
class ProjectRun:
    projected: int
    batches: int
    #: every committed entry of a transaction below this id is projected (None: not drained)
    watermark: int | None


async def project_batch(connection: Any, watermark: int, batch_size: int) -> int:
    """Project the next batch below `watermark` in the caller's transaction; returns its size."""
    cursor = await connection.fetchrow(CURSOR_SQL)
    await connection.execute(BATCH_SETTINGS)
    row = await connection.fetchrow(PROJECT_SQL, watermark, int(cursor["txid"]), int(cursor["entry_id"]), batch_size)
    count = int(row["batch"])
    if count and row["entries"] is None:
        raise CursorMoved("the projection cursor moved during the batch")
    return count


async def project_run(
    connection: Any, *, batch_size: int = 20_000, wait: bool = True, max_batches: int | None = None
) -> ProjectRun:
    """Project every committed entry below the watermark, one short transaction per batch.

    `wait=False` gives up at once if another projector holds the lock; `max_batches` stops early.
    """
    projected = batches = 0
    while max_batches is None or batches < max_batches:
        async with connection.transaction(isolation="read_committed"):
            if wait:
                await connection.execute("SELECT pg_advisory_xact_lock($1)", PROJECT_LOCK_KEY)
            elif not await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", PROJECT_LOCK_KEY):
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


# --- freshness ------------------------------------------------------------------------------------

LAG_EXACT_UP_TO = 10_000
LAG_SQL = f"""
    SELECT count(*) FROM (
        SELECT 1 FROM vouchers.entries WHERE (txid, id) > ($1, $2) LIMIT {LAG_EXACT_UP_TO + 1}
    ) behind
"""


@dataclass(frozen=True)
class AsOf:
    entry_id: int
    projected_at: datetime
    lag_entries: int
    entries: int
    txid: int


async def as_of(connection: Any) -> AsOf:
    """Where the projections stand: the last entry projected and how many entries lie beyond it.

    `lag_entries` counts the committed entries after the cursor in (txid, id) order, exactly up
    to 10,000; beyond that it is estimated from entry ids (an exact count would cost a scan).
    """
    cursor = await connection.fetchrow(CURSOR_SQL)
    txid, entry_id = int(cursor["txid"]), int(cursor["entry_id"])
    lag = int(await connection.fetchval(LAG_SQL, txid, entry_id))
    if lag > LAG_EXACT_UP_TO:
        newest = await connection.fetchval("SELECT max(id) FROM vouchers.entries")
        lag = max(lag, int(newest or 0) - max(entry_id, 0))
    return AsOf(max(entry_id, 0), cursor["projected_at"], lag, int(cursor["entries"]), txid)


# --- reconciliation -------------------------------------------------------------------------------

MAX_DIFFERENCES = 1_000
RECONCILE_WORK_MEM = "128MB"


def _comparison(p: Projection) -> str:
    key = "concat_ws('/', " + ", ".join(f"{k}::text" for k in p.keys) + ")"
    pairs = ", ".join(f"('{p.table}.{v}', p.{v}, x.{v})" for v in p.values)
    return (
        f"SELECT {key} AS key, c.projection, c.projected, c.ledger "
        f"FROM vouchers.{p.table} p FULL JOIN x_{p.table} x USING ({', '.join(p.keys)}) "
        f"CROSS JOIN LATERAL (VALUES {pairs}) AS c(projection, projected, ledger) "
        "WHERE coalesce(c.projected, 0) <> coalesce(c.ledger, 0)"
    )


_KNOWN_KINDS = ", ".join(f"'{kind}'" for kind in ENTRY_KINDS)
#: one statement, one snapshot: the cursor, the projections, and the ledger up to the cursor
RECONCILE_SQL = (
    "WITH cur AS (SELECT txid, entry_id, entries FROM vouchers.projection_cursor WHERE id = 1), "
    + facts_sql("(SELECT * FROM vouchers.entries WHERE (txid, id) <= (SELECT txid, entry_id FROM cur)) e")
    + "".join(f",\n    x_{p.table} ({', '.join((*p.keys, *p.values))}) AS ({p.select})" for p in PROJECTIONS)
    + ",\n    differences AS (\n        "
    + "\n        UNION ALL ".join(_comparison(p) for p in PROJECTIONS)
    + f"""
        UNION ALL
        SELECT 'cursor', 'projection_cursor.entries', cur.entries, counted.entries
        FROM cur, LATERAL (SELECT count(*) AS entries FROM vouchers.entries e
                           WHERE (e.txid, e.id) <= (cur.txid, cur.entry_id)) counted
        WHERE cur.entries <> counted.entries
        UNION ALL
        SELECT e.kind, 'entries.unprojected_kind', NULL::bigint, sum(e.amount_fen)::bigint
        FROM vouchers.entries e, cur
        WHERE (e.txid, e.id) <= (cur.txid, cur.entry_id) AND e.kind NOT IN ({_KNOWN_KINDS})
        GROUP BY e.kind)
    SELECT (SELECT entry_id FROM cur) AS checked_through, d.projection, d.key, d.projected, d.ledger
    FROM (SELECT 1) one LEFT JOIN differences d ON true
    ORDER BY d.projection, d.key
    """
)


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


async def reconcile(connection: Any) -> Reconciliation:
    """Recompute every projection from the ledger up to the cursor and list where they differ."""
    started = time.perf_counter()
    async with connection.transaction(readonly=True):
        await connection.execute(f"SET LOCAL work_mem = '{RECONCILE_WORK_MEM}'")  # one scan, hashed in memory
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


REBUILD_SQL = [
    *(f"DELETE FROM vouchers.{p.table}" for p in PROJECTIONS),
    "UPDATE vouchers.projection_cursor SET txid = -1, entry_id = -1, entries = 0, projected_at = clock_timestamp()",
]


async def reset(connection: Any) -> None:
    """Empty the projections and rewind the cursor (the projector then rebuilds them from the ledger)."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", PROJECT_LOCK_KEY)
        for statement in REBUILD_SQL:
            await connection.execute(statement)


# --- background tasks -----------------------------------------------------------------------------


@dataclass
class ProjectorStats:
    runs: int = 0
    projected_total: int = 0
    last_projected: int = 0
    last_run_at: datetime | None = None
    watermark: int | None = None


class Projector(OnOwnConnection):
    """Folds new entries into the projections every `interval` seconds (0: never)."""

    name = "vouchers-projector"
    log = logger

    def __init__(
        self, dsn: str, role: str, interval: float, *, batch_size: int = 20_000, statement_timeout_ms: int = 30_000
    ) -> None:
        super().__init__(dsn, role, interval, statement_timeout_ms=statement_timeout_ms)
        self.batch_size = batch_size
        self.stats = ProjectorStats()

    async def run_once(self, connection: Any) -> int:
        """One round; skipped cheaply when the watermark has not moved since everything was projected."""
        xmin = int(await connection.fetchval(XMIN_SQL))
        if self.stats.watermark is not None and xmin == self.stats.watermark:
            return 0  # no transaction below it can have committed since: nothing new to project
        run = await project_run(connection, batch_size=self.batch_size, wait=False)
        self.stats.runs += 1
        self.stats.last_projected = run.projected
        self.stats.projected_total += run.projected
        self.stats.last_run_at = datetime.now(UTC)
        if run.watermark is not None:
            self.stats.watermark = run.watermark
        return run.projected

    async def step(self, connection: Any) -> None:
        await self.run_once(connection)


class Reconciler(OnOwnConnection):
    """Checks the projections against the ledger every `interval` seconds and logs the differences."""

    name = "vouchers-reconciliation"
    log = logger

    def __init__(self, dsn: str, role: str, interval: float, *, statement_timeout_ms: int = 600_000) -> None:
        super().__init__(dsn, role, interval, statement_timeout_ms=statement_timeout_ms)
        self.last: Reconciliation | None = None
        self._lock = asyncio.Lock()

    async def first_wait(self) -> None:
        await asyncio.sleep(self.interval)  # not at start-up: the first check comes after one interval

    async def check(self, connection: Any) -> Reconciliation:
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

    async def step(self, connection: Any) -> None:
        await self.check(connection)


async def start_read_side(app: FastAPI) -> None:
    """Startup hook: the projector and the reconciliation job, each on its own connection."""
    settings: VouchersSettings = app.state.settings
    hotpath: HotPath = app.state.hotpath
    projector = Projector(
        hotpath.dsn,
        hotpath.role,
        float(settings.projector_interval_seconds),
        batch_size=settings.projector_batch_size,
        statement_timeout_ms=max(settings.db_statement_timeout_ms, 120_000),
    )
    reconciler = Reconciler(
        hotpath.dsn,
        hotpath.role,
        float(settings.reconciliation_interval_seconds),
        statement_timeout_ms=max(settings.db_statement_timeout_ms, 600_000),
    )
    app.state.projector = projector
    app.state.reconciler = reconciler
    projector.start()
    reconciler.start()


async def stop_read_side(app: FastAPI) -> None:
    for name in ("reconciler", "projector"):
        task: OnOwnConnection | None = getattr(app.state, name, None)
        if task is not None:
            await task.stop()
