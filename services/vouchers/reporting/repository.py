"""All the read side's SQL: the projector's statements, the reconciliation's, and the aggregates' reads.

The projections and the facts they are folded from are described in `projector.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.db import Connection

PROJECT_LOCK_KEY = 0x4C47_5052_4F4A_0001  # "LGPROJ", 1: one projector at a time, across processes
LOCK_SQL = "SELECT pg_advisory_xact_lock($1)"
TRY_LOCK_SQL = "SELECT pg_try_advisory_xact_lock($1)"

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


async def as_of(connection: Connection) -> AsOf:
    """Where the projections stand: the last entry projected and how many entries lie beyond it.

    `lag_entries` counts the committed entries after the cursor in (txid, id) order, exactly up
    to 10,000; beyond that it is estimated from entry ids (an exact count would cost a scan).
    """
    cursor = await connection.fetchrow(CURSOR_SQL)
    assert cursor is not None, "vouchers.projection_cursor has its one row from the migration on"
    txid, entry_id = int(cursor["txid"]), int(cursor["entry_id"])
    lag = int(await connection.fetchval(LAG_SQL, txid, entry_id))
    if lag > LAG_EXACT_UP_TO:
        newest = await connection.fetchval("SELECT max(id) FROM vouchers.entries")
        lag = max(lag, int(newest or 0) - max(entry_id, 0))
    return AsOf(max(entry_id, 0), cursor["projected_at"], lag, int(cursor["entries"]), txid)


# --- reconciliation -------------------------------------------------------------------------------

MAX_DIFFERENCES = 1_000
RECONCILE_WORK_MEM = "128MB"
RECONCILE_SETTINGS = f"SET LOCAL work_mem = '{RECONCILE_WORK_MEM}'"  # one scan, hashed in memory


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

REBUILD_SQL = [
    *(f"DELETE FROM vouchers.{p.table}" for p in PROJECTIONS),
    "UPDATE vouchers.projection_cursor SET txid = -1, entry_id = -1, entries = 0, projected_at = clock_timestamp()",
]


# --- the aggregates' reads --------------------------------------------------------------------------

SUMMARY_SQL = """
    SELECT measure, year = $1 AS this_year, flow, sum(amount_fen)::bigint AS fen
    FROM vouchers.agg_flows WHERE year <= $1 GROUP BY measure, year = $1, flow
"""
MONTHLY_SQL = (
    "SELECT month, flow, sum(amount_fen)::bigint AS fen FROM vouchers.agg_flows "
    "WHERE year = $1 AND ($2::text IS NULL OR measure = $2) GROUP BY month, flow"
)
REVENUE_CLASSES_SQL = (
    "SELECT revenue_class, issued_fen, redeemed_fen, vouchers FROM vouchers.agg_m1_classes WHERE year = $1 "
    "ORDER BY revenue_class = 'unknown', revenue_class"
)
SHARES_SQL = "SELECT share, issued_fen, redeemed_fen FROM vouchers.agg_m1_shares WHERE year = $1"
VENDORS_SQL = (
    "SELECT vendor, sum(redeemed_fen)::bigint AS redeemed_fen, sum(settled_fen)::bigint AS settled_fen, "
    "sum(redemptions)::bigint AS redemptions FROM vouchers.agg_vendors "
    "WHERE year = $1 AND ($2::text IS NULL OR measure = $2) GROUP BY vendor "
    "ORDER BY redeemed_fen DESC, vendor LIMIT $3"
)
BUDGET_USED_SQL = (
    "SELECT measure, (issued_fen + granted_fen - returned_fen - reversed_fen)::bigint AS used_fen "
    "FROM vouchers.agg_budget WHERE year = $1"
)
#: the budget ceiling rows of the year (A2, services/vouchers/budgets/service.py)
BUDGET_ROWS_SQL = (
    "SELECT kind, used_fen FROM vouchers.allowances WHERE holder = 'programme' AND year = $1 AND kind LIKE 'budget.%'"
)

#: what approvals reserved and issuance has not consumed yet (A2, services/vouchers/budgets/endpoints.py)
RESERVED_SQL = (
    "SELECT measure, sum(amount_fen)::bigint AS reserved_fen FROM vouchers.budget_reservations "
    "WHERE year = $1 AND state = 'reserved' GROUP BY measure"
)
#: one pass over the year's M3 claim ceilings (a partial index on year finds them); `$4` the bucket width
HEADROOM_SQL = """
    SELECT least((limit_fen - used_fen) / $2::bigint, $3::int - 1) AS bucket, count(*) AS enterprises,
           count(*) FILTER (WHERE used_fen >= limit_fen) AS at_ceiling, max(limit_fen) AS top
    FROM vouchers.allowances WHERE kind = 'M3.claims' AND year = $1
    GROUP BY 1
"""
CEILING_SQL = "SELECT limit_fen FROM vouchers.allowances WHERE kind = 'M3.claims' AND year = $1 LIMIT 1"
NEWEST_ENTRY_SQL = "SELECT coalesce(max(id), 0) FROM vouchers.entries"
TOP_ENTERPRISES_SQL = (
    "SELECT holder AS credit_code, issued_fen, redeemed_fen, granted_fen FROM vouchers.agg_holders "
    "WHERE year = $1 AND (awarded_fen <> 0 OR redeemed_fen <> 0) ORDER BY awarded_fen DESC, holder LIMIT $2"
)
