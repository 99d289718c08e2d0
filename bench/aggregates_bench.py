"""Aggregates benchmark: the dashboard's read side on 10,000,000 ledger entries and 100,000 applications.

    .venv/bin/python -m bench.aggregates_bench [--entries 10000000] [--applications 100000] [--requests 300]
    make bench-aggregates

One run, on this machine, all on 127.0.0.1:

1. a fresh database `bench_aggregates_<pid>` on DATABASE_URL's server, or on the embedded
   PostgreSQL 18 when DATABASE_URL is unset; migrated; dropped at the end, even on failure;
2. the ledger, built by SQL as the table owner (`INSERT … SELECT generate_series`, triggers
   bypassed with `session_replication_role = replica` for the speed of the load, every row
   valid as the service writes it): budget, voucher, hold, vendor and grant accounts;
   M1 and M3 vouchers issued from October 2024 to last month, each redeemed in several
   dozen captured redemptions (one in ten as hold + capture) by compute vendors (M1) or its
   model vendor (M3), some with a hold still open or released, some voided, those of 2024
   expired in January 2026; vendors' redemptions settled in monthly batches up to about six
   weeks ago; grants of the other measures, one in a hundred reversed; the M3 ceilings
   (claims and redemptions per enterprise and year) as the service keeps them. Then the
   ledger's invariants are checked (`services.vouchers.invariants`), and VACUUM ANALYZE;
3. 100,000 applications with their automatic decisions in the eligibility tables (by SQL:
   the eligibility triggers keep its `application_counts` projection), 5% still waiting;
4. the registry, eligibility and vouchers services as real uvicorn processes (the vouchers
   hash-chain sealer off: it is not what is measured); the vouchers projector starts from
   an empty projection and the bench times how long it takes to catch up with the ledger;
5. for each aggregate endpoint, `--requests` GET requests one after another over HTTP with a
   dashboard client's token (with `dashboard:detail` for top-enterprises), after a warm-up,
   years 2025 and 2026 in turn: client-side p50 / p95;
6. the baseline: the same figures computed by a plain scan of the ledger (the projector's
   own per-entry facts over every entry, grouped as the endpoint groups them; the
   applications' by a scan of the eligibility tables), `--baseline-runs` times each, in the
   same run; and the answers compared with the API's (they must agree);
7. a reconciliation of the projections against the whole ledger (timed; no difference allowed).

It ends with a Markdown block to paste into docs/benchmarks.md. Exit status 1 if an
invariant is broken, an answer is not 200, an API answer differs from its scan, or the
reconciliation finds a difference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import httpx

from bench.common import (
    HOST,
    bench_auth,
    bench_headers,
    bounded,
    credit_codes,
    drop_database,
    free_port,
    fresh_database,
    keep_local,
    machine,
    percentile,
    postgres_server,
    say,
    signals_ignored,
)
from devtools import devdb
from devtools.devrun import Stack, start_service, stop_services, wait_ready
from shared.auth import DASHBOARD, DASHBOARD_DETAIL
from shared.migrations import upgrade_all

SHENZHEN = ZoneInfo("Asia/Shanghai")
TARGET_P95_MS = 50.0
GRANT_MEASURES = ("M2", "M4", "M5", "M6", "M7", "M8", "M9", "M10", "M11", "M12", "M13")
CHUNK = 1_000_000  # redemptions per INSERT (one transaction each)
SCAN_WORK_MEM = "256MB"  # the plain scans' session: hashing and sorting millions of rows in memory


# --- the ledger, by SQL ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """How the ledger is made up; `per_voucher` redemptions is chosen to reach `entries`."""

    entries: int
    vouchers: int
    holders: int
    compute_vendors: int
    model_vendors: int
    grants: int

    @property
    def per_voucher(self) -> int:
        v = self.vouchers
        # issue, pending holds (1 in 25), released holds (2 entries, 1 in 25), voided (1 in 40) or expired
        # (~12%), grants (+1% reversed), monthly settlements (~25 months per vendor): the rest are redemptions,
        # one in ten of them two entries (hold + capture)
        fixed = v + v // 25 + 2 * (v // 25) + v // 40 + v * 12 // 100 + self.grants + self.grants // 100
        fixed += (self.compute_vendors + self.model_vendors) * 25
        per_redemption = v + v // 10
        return max(1, -(-(self.entries - fixed) // per_redemption))

    @property
    def redemptions(self) -> int:
        return self.per_voucher * self.vouchers


SETUP_SQL = """
SET session_replication_role = replica;  -- the load writes what the service would; triggers off for speed
SET synchronous_commit = off;
CREATE TEMP TABLE bnow AS
    SELECT date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai' AS t;
CREATE TEMP TABLE bh (n int PRIMARY KEY, code text NOT NULL);
CREATE TEMP TABLE bvn (n int PRIMARY KEY, code text NOT NULL, kind text NOT NULL);
"""

#: every voucher's facts, from its number v (the permutations spread issue dates, holders and vendors)
VOUCHERS_SQL = """
CREATE TEMP TABLE bv AS
WITH base AS (
    SELECT v,
           CASE WHEN v % 2 = 1 THEN 'M1' ELSE 'M3' END AS kind,
           1 + (v::bigint * 7919) % {holders} AS h,
           timestamptz '2024-10-01 00:00+08'
             + ((v::bigint * 104729) % {vouchers})::float8 / {vouchers} * ({now} - interval '20 days'
               - timestamptz '2024-10-01 00:00+08') AS t_issue,
           (1000 + (v::bigint * 37) % 9000) * 100 AS r_amt,
           (1000 + (v::bigint * 13) % 100000) * 100 AS extra
    FROM generate_series(1, {vouchers}) AS v
), dated AS (
    SELECT b.*, extract(year FROM b.t_issue AT TIME ZONE 'Asia/Shanghai')::int AS year FROM base b
), states AS (
    SELECT d.*,
           make_date(d.year + 1, 12, 31) < ({now} AT TIME ZONE 'Asia/Shanghai')::date AS expired,
           make_date(d.year + 1, 12, 31) >= ({now} AT TIME ZONE 'Asia/Shanghai')::date AND d.v % 40 = 0 AS voided
    FROM dated d
)
SELECT s.*,
       NOT s.expired AND NOT s.voided AND s.v % 25 = 3 AS pending,
       s.v % 25 = 4 AS released,
       s.v % 10 = 1 AS pairs,
       CASE WHEN s.expired THEN make_timestamptz(s.year + 1, 12, 31, 20, 0, 0, 'Asia/Shanghai')
            WHEN s.voided THEN least(s.t_issue + interval '120 days', {now} - interval '1 day')
            ELSE {now} - interval '1 day' END AS t_end,
       CASE WHEN s.kind = 'M3' THEN {compute_vendors} + 1 + (s.v / 2) % {model_vendors} END AS mv
FROM states s;
CREATE UNIQUE INDEX ON bv (v);
ANALYZE bv;
"""

ACCOUNTS_SQL = """
INSERT INTO vouchers.accounts (id, kind, ref, created_at) OVERRIDING SYSTEM VALUE
SELECT 100 + m * 10 + (y - 2020), 'budget', 'M' || m || ':' || y, timestamptz '2024-10-01 00:00+08'
FROM generate_series(1, 13) m, generate_series(2024, 2027) y;
INSERT INTO vouchers.accounts (id, kind, ref, created_at) OVERRIDING SYSTEM VALUE
SELECT 1000 + n, 'vendor_receivable', code, timestamptz '2024-10-01 00:00+08' FROM bvn;
INSERT INTO vouchers.accounts (id, kind, ref, created_at) OVERRIDING SYSTEM VALUE
SELECT 5000 + n, 'settled', code, timestamptz '2024-10-01 00:00+08' FROM bvn;
INSERT INTO vouchers.accounts (id, kind, ref, created_at) OVERRIDING SYSTEM VALUE
SELECT 10000 + n, 'grant_paid', code, timestamptz '2024-10-01 00:00+08' FROM bh;
INSERT INTO vouchers.accounts (id, kind, ref, created_at) OVERRIDING SYSTEM VALUE
SELECT 1000000 + v, 'voucher', kind || '-BENCH-' || lpad(v::text, 9, '0'), t_issue FROM bv;
INSERT INTO vouchers.accounts (id, kind, ref, created_at) OVERRIDING SYSTEM VALUE
SELECT 2000000 + v, 'hold', kind || '-BENCH-' || lpad(v::text, 9, '0'), t_issue FROM bv;
"""

VOUCHER_ROWS_SQL = """
INSERT INTO vouchers.vouchers (
    id, code, kind, holder, vendor, contract_key, decision_id, year, amount_fen, available_fen, held_fen,
    redeemed_fen, returned_fen, valid_until, voided_at, expired_at, account_id, hold_account_id, budget_account_id,
    parameters_digest, issued_by, issued_at, revenue_class, compute_base_fen, compute_district_fen,
    compute_domestic_fen) OVERRIDING SYSTEM VALUE
SELECT bv.v, bv.kind || '-BENCH-' || lpad(bv.v::text, 9, '0'), bv.kind, bh.code, mvn.code,
       CASE WHEN bv.kind = 'M3' THEN mvn.code || ':HT-B' || bv.v END,
       md5('voucher ' || bv.v)::uuid, bv.year, a.amount,
       CASE WHEN bv.expired OR bv.voided THEN 0 ELSE bv.extra - a.pending END, a.pending,
       {per_voucher} * bv.r_amt, CASE WHEN bv.expired OR bv.voided THEN bv.extra ELSE 0 END,
       make_date(bv.year + 1, 12, 31),
       CASE WHEN bv.voided THEN bv.t_end + interval '1 hour' END,
       CASE WHEN bv.expired THEN make_timestamptz(bv.year + 2, 1, 2, 10, 0, 0, 'Asia/Shanghai') END,
       1000000 + bv.v, 2000000 + bv.v, 100 + substr(bv.kind, 2)::int * 10 + (bv.year - 2020), 'bench',
       'officer-bench', bv.t_issue,
       CASE WHEN bv.kind = 'M1' AND bv.v % 20 <> 5 THEN 'C' || (1 + bv.h % 5) END,
       CASE WHEN bv.kind = 'M1' AND bv.v % 20 <> 5 THEN a.amount * 3 END,
       CASE WHEN bv.kind = 'M1' AND bv.v % 20 <> 5 THEN a.amount * 3 * ((bv.v * 3) % 5) / 10 END,
       CASE WHEN bv.kind = 'M1' AND bv.v % 20 <> 5 THEN a.amount * 3 * ((bv.v * 7) % 4) / 10 END
FROM bv
JOIN bh ON bh.n = bv.h
LEFT JOIN bvn mvn ON mvn.n = bv.mv
CROSS JOIN LATERAL (SELECT {per_voucher} * bv.r_amt + bv.extra AS amount,
                           CASE WHEN bv.pending THEN 50000 ELSE 0 END AS pending) a;
INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, voucher_id, decision_id,
                              contract_ref, actor, parameters_digest, request_id, created_at)
SELECT 'issue', v.budget_account_id, v.account_id, v.amount_fen, v.id, v.decision_id, v.contract_key,
       'officer-bench', 'bench', 'bench-issue', v.issued_at
FROM vouchers.vouchers v ORDER BY v.id;
"""

#: redemptions k in [lo, hi): voucher v = 1 + (k - 1) % V, its j-th redemption, j = (k - 1) / V
REDEMPTIONS_SQL = """
WITH r AS (
    SELECT k, bv.v, bv.pairs, bv.r_amt, bv.kind,
           bv.t_issue + (((k - 1) / {vouchers}) + 1)::float8 / ({per_voucher} + 1) * (bv.t_end - bv.t_issue) AS t,
           coalesce(bv.mv, 1 + (bv.v * 31 + ((k - 1) / {vouchers}) * 17) % {compute_vendors}) AS vn
    FROM generate_series($1::bigint, $2::bigint - 1) AS k
    JOIN bv ON bv.v = 1 + (k - 1) % {vouchers}
), rows AS (
    INSERT INTO vouchers.redemptions (id, voucher_id, vendor, amount_fen, invoice_number, status, year,
                                      hold_expires_at, settlement_batch_id, created_at, updated_at)
    OVERRIDING SYSTEM VALUE
    SELECT r.k, r.v, vn.code, r.r_amt, 'BENCH-' || r.k, 'captured',
           extract(year FROM r.t AT TIME ZONE 'Asia/Shanghai')::int,
           CASE WHEN r.pairs THEN r.t + interval '10 minutes' END,
           CASE WHEN r.t < {now} - interval '40 days' THEN r.vn * 100
                + (extract(year FROM r.t AT TIME ZONE 'Asia/Shanghai')::int - 2024) * 12
                + extract(month FROM r.t AT TIME ZONE 'Asia/Shanghai')::int - 10 END,
           r.t, r.t
    FROM r JOIN bvn vn ON vn.n = r.vn
    RETURNING 1
)
INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, voucher_id, redemption_id, actor,
                              request_id, created_at)
SELECT s.kind, s.from_id, s.to_id, r.r_amt, r.v, r.k, vn.code, 'bench-redeem', s.at
FROM r JOIN bvn vn ON vn.n = r.vn
CROSS JOIN LATERAL (
    SELECT 1 AS step, 'hold' AS kind, 1000000 + r.v AS from_id, 2000000 + r.v AS to_id,
           r.t - interval '5 minutes' AS at WHERE r.pairs
    UNION ALL
    SELECT 2, CASE WHEN r.pairs THEN 'capture' ELSE 'redeem' END,
           CASE WHEN r.pairs THEN 2000000 + r.v ELSE 1000000 + r.v END, 1000 + r.vn, r.t
) s
ORDER BY r.k, s.step;
"""

#: holds still open (1 in 25 active vouchers) and released ones (1 in 25): 500 yuan each
HOLDS_SQL = """
CREATE TEMP TABLE bhold AS
SELECT bv.v, {redemptions} + bv.v AS id, 'held' AS status, {now} - interval '2 hours' AS t, bv.mv, bv.kind
FROM bv WHERE bv.pending
UNION ALL
SELECT bv.v, {redemptions} + {vouchers} + bv.v, 'released', bv.t_issue + interval '1 hour', bv.mv, bv.kind
FROM bv WHERE bv.released;
INSERT INTO vouchers.redemptions (id, voucher_id, vendor, amount_fen, invoice_number, status, year, hold_expires_at,
                                  created_at, updated_at) OVERRIDING SYSTEM VALUE
SELECT h.id, h.v, vn.code, 50000, 'BENCH-H' || h.id, h.status, extract(year FROM h.t AT TIME ZONE 'Asia/Shanghai')::int,
       CASE WHEN h.status = 'held' THEN {now} + interval '30 days' ELSE h.t + interval '15 minutes' END,
       h.t, CASE WHEN h.status = 'held' THEN h.t ELSE h.t + interval '10 minutes' END
FROM bhold h JOIN bvn vn ON vn.n = coalesce(h.mv, 1 + h.v % {compute_vendors});
INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, voucher_id, redemption_id, actor,
                              request_id, memo, created_at)
SELECT s.kind, s.from_id, s.to_id, 50000, h.v, h.id, vn.code, 'bench-hold', s.memo, s.at
FROM bhold h JOIN bvn vn ON vn.n = coalesce(h.mv, 1 + h.v % {compute_vendors})
CROSS JOIN LATERAL (
    SELECT 1 AS step, 'hold' AS kind, 1000000 + h.v AS from_id, 2000000 + h.v AS to_id, NULL AS memo, h.t AS at
    UNION ALL
    SELECT 2, 'release', 2000000 + h.v, 1000000 + h.v, 'released', h.t + interval '10 minutes'
    WHERE h.status = 'released'
) s
ORDER BY h.id, s.step;
"""

RETURNS_SQL = """
INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, voucher_id, decision_id, actor,
                              request_id, memo, created_at)
SELECT CASE WHEN v.voided_at IS NOT NULL THEN 'void' ELSE 'expire' END, v.account_id, v.budget_account_id,
       v.returned_fen, v.id, v.decision_id, CASE WHEN v.voided_at IS NOT NULL THEN 'officer-bench' END,
       'bench-return', CASE WHEN v.voided_at IS NOT NULL THEN '申请撤回' ELSE 'expired after ' || v.valid_until END,
       coalesce(v.voided_at, v.expired_at)
FROM vouchers.vouchers v WHERE v.returned_fen > 0 ORDER BY v.id;
"""

SETTLEMENT_SQL = """
CREATE TEMP TABLE bb AS
SELECT settlement_batch_id AS id, vendor, sum(amount_fen)::bigint AS total, count(*)::int AS n,
       make_timestamptz((2024 + (9 + settlement_batch_id % 100) / 12)::int,
                        (1 + (9 + settlement_batch_id % 100) % 12)::int, 1, 10, 0, 0, 'Asia/Shanghai')
         + interval '1 month 5 days' AS closed_at
FROM vouchers.redemptions WHERE settlement_batch_id IS NOT NULL GROUP BY 1, 2;
WITH e AS (
    INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, actor, request_id, memo,
                                  created_at)
    SELECT 'settle', 1000 + bb.id / 100, 5000 + bb.id / 100, bb.total, 'officer-bench-2', 'bench-settle',
           'settlement batch ' || bb.id || ': ' || bb.n || ' redemptions', bb.closed_at
    FROM bb ORDER BY bb.closed_at, bb.id
    RETURNING id, memo
)
INSERT INTO vouchers.settlement_batches (id, vendor, status, total_fen, redemption_count, created_by, created_at,
                                         closed_by, closed_at, entry_id) OVERRIDING SYSTEM VALUE
SELECT bb.id, bb.vendor, 'closed', bb.total, bb.n, 'officer-bench', bb.closed_at - interval '1 day',
       'officer-bench-2', bb.closed_at, e.id
FROM bb JOIN e ON e.memo = 'settlement batch ' || bb.id || ': ' || bb.n || ' redemptions';
"""

GRANTS_SQL = """
CREATE TEMP TABLE bg AS
SELECT g, (ARRAY{measures})[1 + g % {measure_count}] AS measure, 1 + (g::bigint * 104729) % {holders} AS h,
       timestamptz '2024-10-01 00:00+08'
         + ((g::bigint * 7919) % {grants})::float8 / {grants} * ({now} - interval '2 days'
           - timestamptz '2024-10-01 00:00+08') AS t,
       (10000 + (g::bigint * 97) % 490000) * 100 AS amount
FROM generate_series(1, {grants}) AS g;
WITH e AS (
    INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, decision_id, actor,
                                  parameters_digest, request_id, created_at)
    SELECT 'grant', 100 + substr(bg.measure, 2)::int * 10
           + (extract(year FROM bg.t AT TIME ZONE 'Asia/Shanghai')::int - 2020), 10000 + bg.h, bg.amount,
           md5('grant ' || bg.g)::uuid, 'officer-bench', 'bench',
           'bench-grant', bg.t
    FROM bg ORDER BY bg.g
    RETURNING id, decision_id
)
INSERT INTO vouchers.grants (id, decision_id, measure, holder, year, amount_fen, entry_id, issued_by, issued_at)
OVERRIDING SYSTEM VALUE
SELECT bg.g, e.decision_id, bg.measure, bh.code, extract(year FROM bg.t AT TIME ZONE 'Asia/Shanghai')::int,
       bg.amount, e.id, 'officer-bench', bg.t
FROM bg JOIN e ON e.decision_id = md5('grant ' || bg.g)::uuid JOIN bh ON bh.n = bg.h;
INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, decision_id, actor,
                              reverses_entry_id, request_id, memo, created_at)
SELECT 'reversal', e.to_account_id, e.from_account_id, e.amount_fen, e.decision_id, 'approver-bench', e.id,
       'bench-reversal', '重复拨付', least(e.created_at + interval '1 day', {now} - interval '1 hour')
FROM vouchers.grants g JOIN vouchers.entries e ON e.id = g.entry_id WHERE g.id % 100 = 0 ORDER BY g.id;
"""

ALLOWANCES_SQL = """
INSERT INTO vouchers.allowances (holder, year, kind, limit_fen, used_fen, clause, parameter)
SELECT holder, year, 'M3.claims', 500000000, sum(amount_fen), 'M3', 'M3.annual_claim_ceiling_fen'
FROM vouchers.vouchers WHERE kind = 'M3' GROUP BY holder, year;
WITH years AS (
    SELECT DISTINCT holder, year + n AS year FROM vouchers.vouchers, generate_series(0, 1) n WHERE kind = 'M3'
), used AS (
    SELECT v.holder, r.year, sum(r.amount_fen) AS used
    FROM vouchers.redemptions r JOIN vouchers.vouchers v ON v.id = r.voucher_id
    WHERE v.kind = 'M3' AND r.status IN ('captured', 'held')
    GROUP BY v.holder, r.year
)
INSERT INTO vouchers.allowances (holder, year, kind, limit_fen, used_fen, clause, parameter)
SELECT y.holder, y.year, 'M3.redemptions', 500000000, coalesce(u.used, 0), 'M3', 'M3.annual_redemption_ceiling_fen'
FROM years y LEFT JOIN used u ON u.holder = y.holder AND u.year = y.year;
"""

IDENTITIES = ("accounts", "vouchers", "redemptions", "settlement_batches", "grants")
#: secondary indexes the bulk load drops and builds again afterwards (sorted builds beat millions of random inserts)
REBUILT_INDEXES = (
    "ix_entries_from_account",
    "ix_entries_to_account",
    "ix_entries_voucher",
    "ix_entries_txid_id",
    "ix_redemptions_voucher_id",
    "ix_redemptions_vendor",
    "ix_redemptions_settlement_batch",
)


def _sql(template: str, shape: Shape, now: str) -> str:
    return template.format(
        holders=shape.holders,
        vouchers=shape.vouchers,
        compute_vendors=shape.compute_vendors,
        model_vendors=shape.model_vendors,
        grants=shape.grants,
        per_voucher=shape.per_voucher,
        redemptions=shape.redemptions,
        now=now,
        measures="[" + ", ".join(f"'{m}'" for m in GRANT_MEASURES) + "]",
        measure_count=len(GRANT_MEASURES),
    )


async def build_ledger(dsn: str, shape: Shape, seed: int) -> dict[str, float]:
    """Write the ledger (see the module doc); returns the seconds each step took."""
    import asyncpg

    rng = random.Random(seed)
    codes = credit_codes(rng, shape.holders + shape.compute_vendors + shape.model_vendors)
    vendors = codes[shape.holders :]
    connection = await asyncpg.connect(dsn, timeout=30, command_timeout=None)
    timings: dict[str, float] = {}
    # every timestamp relative to the start of today in Shenzhen (the data never lies in the future)
    now = "(SELECT t FROM bnow)"

    async def step(label: str, sql: str, *args: Any) -> None:
        started = time.perf_counter()
        async with connection.transaction():
            if args:
                await connection.execute(sql, *args)
            else:
                await connection.execute(sql)
        timings[label] = timings.get(label, 0.0) + time.perf_counter() - started

    try:
        await connection.execute(SETUP_SQL)
        await connection.copy_records_to_table("bh", records=list(enumerate(codes[: shape.holders], 1)))
        await connection.copy_records_to_table(
            "bvn",
            records=[
                (n, code, "compute" if n <= shape.compute_vendors else "model") for n, code in enumerate(vendors, 1)
            ],
        )
        say(
            f"  {shape.vouchers:,} vouchers × {shape.per_voucher} redemptions, {shape.holders:,} enterprises, "
            f"{shape.compute_vendors + shape.model_vendors:,} vendors, {shape.grants:,} grants"
        )
        definitions = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'vouchers' AND indexname = ANY($1)",
            list(REBUILT_INDEXES),
        )
        for row in definitions:
            await connection.execute(f"DROP INDEX vouchers.{row['indexname']}")
        await step("vouchers", _sql(VOUCHERS_SQL, shape, now))
        await step("accounts", _sql(ACCOUNTS_SQL, shape, now))
        # each voucher's issue entry is written by the same statement; the commit-time check of
        # vouchers 0013 would look each one up without the index dropped above (owner only)
        await connection.execute("ALTER TABLE vouchers.vouchers DISABLE TRIGGER voucher_matches_issue_entry")
        try:
            await step("vouchers", _sql(VOUCHER_ROWS_SQL, shape, now))
        finally:
            await connection.execute("ALTER TABLE vouchers.vouchers ENABLE TRIGGER voucher_matches_issue_entry")
        total = shape.redemptions
        started = time.perf_counter()
        for low in range(1, total + 1, CHUNK):
            high = min(low + CHUNK, total + 1)
            await step("redemptions", _sql(REDEMPTIONS_SQL, shape, now), low, high)
            done = high - 1
            say(f"  {done:>10,} of {total:,} redemptions ({done / (time.perf_counter() - started):,.0f}/s)")
        await step("holds", _sql(HOLDS_SQL, shape, now))
        await step("voids and expiries", _sql(RETURNS_SQL, shape, now))
        await step("settlement", _sql(SETTLEMENT_SQL, shape, now))
        await step("grants", _sql(GRANTS_SQL, shape, now))
        await connection.execute("SET maintenance_work_mem = '512MB'")
        for row in definitions:
            await step("indexes", row["indexdef"])
        await step("ceilings", _sql(ALLOWANCES_SQL, shape, now))
        for table in IDENTITIES:
            await connection.execute(
                f"SELECT setval(pg_get_serial_sequence('vouchers.{table}', 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM vouchers.{table}))"
            )
    finally:
        await connection.close()
    return timings


# --- applications, by SQL ----------------------------------------------------------------------------

APPLICATIONS_SQL = """
CREATE TEMP TABLE ba AS
SELECT n, md5('application ' || n)::uuid AS id, md5('decision ' || n)::uuid AS decision,
       'M' || (1 + n % 13) AS measure, holders[1 + (n::bigint * 7919) % cardinality(holders)] AS applicant,
       timestamptz '2025-01-01 09:00+08'
         + ((n::bigint * 104729) % $2)::float8 / $2 * (now() - interval '1 hour' - timestamptz '2025-01-01 09:00+08')
         AS submitted_at,
       CASE WHEN n % 100 < 15 THEN 'ineligible' WHEN n % 100 < 20 THEN 'in_review' WHEN n % 100 < 22 THEN 'reviewed'
            WHEN n % 100 < 30 THEN 'rejected' ELSE 'approved' END AS status
FROM generate_series(1, $2) AS n, (SELECT $1::text[] AS holders) h;
INSERT INTO eligibility.applications (id, measure, applicant, as_of, benefit_year, evidence, submitted_by,
                                      submitted_at, status, priority, current_decision_id)
SELECT id, measure, applicant, (submitted_at AT TIME ZONE 'Asia/Shanghai')::date,
       extract(year FROM submitted_at AT TIME ZONE 'Asia/Shanghai')::int, jsonb_build_object('measure', measure),
       'bench-applicant', submitted_at, status, n % 3, decision
FROM ba ORDER BY submitted_at;
INSERT INTO eligibility.decisions (id, application_id, kind, outcome, amount_fen, failures, review_reasons, components,
                                   trace, facts, policy_version, parameters_digest, engine_version, decided_at)
SELECT decision, id, 'automatic',
       CASE WHEN status = 'ineligible' THEN 'ineligible' WHEN n % 10 = 7 THEN 'needs_review' ELSE 'eligible' END,
       CASE WHEN status = 'ineligible' THEN NULL ELSE (10000 + n % 400000) * 100 END,
       '[]', '[]', '{}', '[]', '{}', 'bench', 'bench', 'bench', submitted_at
FROM ba ORDER BY submitted_at;
"""


async def load_applications(dsn: str, count: int, holders: list[str]) -> float:
    import asyncpg

    connection = await asyncpg.connect(dsn, timeout=30, command_timeout=None)
    started = time.perf_counter()
    try:
        async with connection.transaction():
            for statement in [s for s in APPLICATIONS_SQL.split(";\n") if s.strip()]:
                if "$1" in statement or "$2" in statement:
                    await connection.execute(statement, holders, count)
                else:
                    await connection.execute(statement)
    finally:
        await connection.close()
    return time.perf_counter() - started


async def holder_codes(dsn: str) -> list[str]:
    import asyncpg

    connection = await asyncpg.connect(dsn, timeout=30)
    try:
        return [row[0] for row in await connection.fetch("SELECT ref FROM vouchers.accounts WHERE kind = 'grant_paid'")]
    finally:
        await connection.close()


async def maintenance(dsn: str) -> float:
    import asyncpg

    started = time.perf_counter()
    connection = await asyncpg.connect(dsn, timeout=30, command_timeout=None)
    try:
        await connection.execute("VACUUM (ANALYZE) vouchers.entries, vouchers.redemptions, vouchers.vouchers")
        await connection.execute("ANALYZE")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()
    return time.perf_counter() - started


async def scalar(dsn: str, sql: str, *args: Any) -> Any:
    import asyncpg

    connection = await asyncpg.connect(dsn, timeout=30, command_timeout=None)
    try:
        return await connection.fetchval(sql, *args)
    finally:
        await connection.close()


# --- measuring --------------------------------------------------------------------------------------


@dataclass
class Endpoint:
    name: str
    path: str
    params: list[dict[str, Any]]  # taken in turn
    detail: bool = False  # needs dashboard:detail
    api_ms: list[float] = field(default_factory=list)
    scan_ms: list[float] = field(default_factory=list)
    failures: int = 0

    def p(self, values: list[float], q: float) -> float:
        return percentile(values, q)


def endpoints() -> list[Endpoint]:
    years = [{"year": 2025}, {"year": 2026}]
    return [
        Endpoint("summary", "/v1/aggregates/summary", years),
        Endpoint(
            "monthly",
            "/v1/aggregates/monthly",
            [{"year": 2026}, {"year": 2025, "measure": "M1"}, {"year": 2026, "measure": "M3"}, {"year": 2025}],
        ),
        Endpoint("revenue-classes", "/v1/aggregates/revenue-classes", years),
        Endpoint("compute-share", "/v1/aggregates/compute-share", years),
        Endpoint(
            "vendors",
            "/v1/aggregates/vendors",
            [{"year": 2026, "limit": 20}, {"year": 2025, "limit": 20, "measure": "M1"}],
        ),
        Endpoint("budget", "/v1/aggregates/budget", years),
        Endpoint("ceiling-headroom", "/v1/aggregates/ceiling-headroom", years),
        Endpoint("top-enterprises", "/v1/aggregates/top-enterprises", [{**y, "limit": 10} for y in years], True),
        Endpoint("applications (eligibility)", "/v1/aggregates/applications", years),
        Endpoint("review-queue (eligibility)", "/v1/aggregates/review-queue", [{}]),
    ]


async def measure_api(
    base_url: str, headers: dict[str, str], detail: dict[str, str], targets: list[Endpoint], requests: int, warmup: int
) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for target in targets:
            auth = detail if target.detail else headers
            for n in range(warmup + requests):
                params = target.params[n % len(target.params)]
                started = time.perf_counter()
                response = await client.get(target.path, params=params, headers=auth)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    target.failures += 1
                    if target.failures == 1:
                        say(f"  ! {target.name}: {response.status_code} {response.text[:200]}")
                if n >= warmup:
                    target.api_ms.append(elapsed)
            say(
                f"  {target.name:<28} p50 {percentile(target.api_ms, 50):7.2f} ms   "
                f"p95 {percentile(target.api_ms, 95):7.2f} ms   ({requests} requests)"
            )


# the plain scans: the projector's per-entry facts over the whole ledger, grouped as each endpoint groups


def scan_queries() -> dict[str, tuple[str, list[Any]]]:
    from services.vouchers.reporting.repository import facts_sql

    facts = "WITH " + facts_sql("vouchers.entries e")
    y = 2026
    return {
        "summary": (
            facts + " SELECT measure, year = $1 AS this_year, flow, sum(amount_fen)::bigint AS fen FROM facts "
            "WHERE year <= $1 GROUP BY 1, 2, 3",
            [y],
        ),
        "monthly": (
            facts + " SELECT month, flow, sum(amount_fen)::bigint FROM facts WHERE year = $1 GROUP BY 1, 2",
            [y],
        ),
        "revenue-classes": (
            facts + " SELECT revenue_class, sum(amount_fen) FILTER (WHERE flow = 'issued')::bigint AS issued, "
            "sum(amount_fen) FILTER (WHERE flow = 'redeemed')::bigint AS redeemed, "
            "count(*) FILTER (WHERE flow = 'issued') AS vouchers FROM facts "
            "WHERE year = $1 AND revenue_class IS NOT NULL "
            "AND flow IN ('issued', 'redeemed') GROUP BY 1 ORDER BY 1",
            [y],
        ),
        "compute-share": (
            facts + " SELECT share, sum(fen) FILTER (WHERE flow = 'issued')::bigint AS issued, "
            "sum(fen) FILTER (WHERE flow = 'redeemed')::bigint AS redeemed FROM facts CROSS JOIN LATERAL (VALUES "
            "('district', district_fen), ('domestic', domestic_fen), ('other', other_fen), ('unknown', unknown_fen)) "
            "s(share, fen) WHERE measure = 'M1' AND year = $1 AND flow IN ('issued', 'redeemed') AND fen IS NOT NULL "
            "GROUP BY 1",
            [y],
        ),
        "vendors": (
            facts
            + " SELECT vendor, coalesce(sum(amount_fen) FILTER (WHERE flow = 'redeemed'), 0)::bigint AS redeemed, "
            "coalesce(sum(amount_fen) FILTER (WHERE flow = 'settled'), 0)::bigint AS settled, "
            "count(*) FILTER (WHERE flow = 'redeemed') AS redemptions FROM facts WHERE year = $1 "
            "AND flow IN ('redeemed', 'settled') AND vendor IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20",
            [y],
        ),
        "budget": (
            facts + " SELECT split_part(budget_ref, ':', 1) AS measure, sum(CASE WHEN flow IN ('issued', 'granted') "
            "THEN amount_fen ELSE -amount_fen END)::bigint AS used FROM facts "
            "WHERE budget_ref LIKE '%:' || $1 GROUP BY 1",
            [str(y)],
        ),
        # the ceiling from the ledger: each enterprise's M3 claims of the year, bucketed like the endpoint
        "ceiling-headroom": (
            facts + " , claims AS (SELECT holder, sum(amount_fen) AS claimed FROM facts WHERE measure = 'M3' "
            "AND flow = 'issued' AND year = $1 GROUP BY holder) SELECT least((500000000 - claimed) / 50000000, 9) "
            "AS bucket, count(*) FROM claims GROUP BY 1",
            [y],
        ),
        "top-enterprises": (
            facts + " SELECT holder, sum(amount_fen) FILTER (WHERE flow = 'issued') AS issued, "
            "coalesce(sum(amount_fen) FILTER (WHERE flow = 'granted'), 0) - coalesce(sum(amount_fen) FILTER "
            "(WHERE flow = 'reversed'), 0) AS granted FROM facts WHERE year = $1 AND holder IS NOT NULL "
            "GROUP BY 1 ORDER BY coalesce(sum(amount_fen) FILTER (WHERE flow IN ('issued', 'granted')), 0) "
            "- coalesce(sum(amount_fen) FILTER (WHERE flow = 'reversed'), 0) DESC, 1 LIMIT 10",
            [y],
        ),
        "applications (eligibility)": (
            "SELECT a.measure, a.status, d.outcome, count(*) FROM eligibility.applications a "
            "JOIN eligibility.decisions d ON d.application_id = a.id AND d.kind = 'automatic' "
            "WHERE extract(year FROM a.submitted_at AT TIME ZONE 'Asia/Shanghai') = $1 GROUP BY 1, 2, 3",
            [y],
        ),
        "review-queue (eligibility)": (
            "SELECT measure, count(*), min(submitted_at), percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP "
            "(ORDER BY extract(epoch FROM now() - submitted_at)) FROM eligibility.applications "
            "WHERE status || '' IN ('in_review', 'reviewed') GROUP BY 1",
            [],
        ),
    }


async def measure_scans(dsn: str, targets: list[Endpoint], runs: int) -> dict[str, list[Any]]:
    import asyncpg

    queries = scan_queries()
    answers: dict[str, list[Any]] = {}
    connection = await asyncpg.connect(dsn, timeout=30, command_timeout=None)
    try:
        await connection.execute(f"SET work_mem = '{SCAN_WORK_MEM}'")
        for target in targets:
            sql, args = queries[target.name]
            for _ in range(runs):
                started = time.perf_counter()
                rows = await connection.fetch(sql, *args)
                target.scan_ms.append((time.perf_counter() - started) * 1000)
            answers[target.name] = rows
            say(
                f"  {target.name:<28} p50 {percentile(target.scan_ms, 50):9.1f} ms   "
                f"p95 {percentile(target.scan_ms, 95):9.1f} ms   ({runs} scans)"
            )
    finally:
        await connection.close()
    return answers


def compare(api: dict[str, Any], scans: dict[str, list[Any]]) -> list[str]:
    """The API's answers for 2026 against the scans' (they must be the same figures)."""
    problems: list[str] = []
    flows: dict[str, dict[str, int]] = {}
    for row in scans["summary"]:
        if row["this_year"]:
            flows.setdefault(row["measure"], {})[row["flow"]] = int(row["fen"])
    for line in api["summary"]["by_measure"]:
        got = flows.get(line["measure"], {})
        for name in ("issued", "redeemed", "settled", "expired", "voided"):
            if line[f"{name}_fen"] != got.get(name, 0):
                problems.append(
                    f"summary {line['measure']} {name}: API {line[f'{name}_fen']} ≠ scan {got.get(name, 0)}"
                )
        granted = got.get("granted", 0) - got.get("reversed", 0)
        if line["granted_fen"] != granted:
            problems.append(f"summary {line['measure']} granted: API {line['granted_fen']} ≠ scan {granted}")
    want_vendors = [
        (r["vendor"], int(r["redeemed"]), int(r["settled"]), int(r["redemptions"])) for r in scans["vendors"]
    ]
    got_vendors = [
        (v["vendor"], v["redeemed_fen"], v["settled_fen"], v["redemptions"]) for v in api["vendors"]["vendors"]
    ]
    if got_vendors != want_vendors:
        problems.append("vendors: the ranking differs from the scan's")
    used = {r["measure"]: int(r["used"]) for r in scans["budget"]}
    for line in api["budget"]["measures"]:
        if line["used_fen"] != used.get(line["measure"], 0):
            problems.append(f"budget {line['measure']}: API {line['used_fen']} ≠ scan {used.get(line['measure'], 0)}")
    classes = {
        r["revenue_class"]: (int(r["issued"] or 0), int(r["redeemed"] or 0), int(r["vouchers"]))
        for r in scans["revenue-classes"]
    }
    got_classes = {
        c["revenue_class"]: (c["issued_fen"], c["redeemed_fen"], c["vouchers"])
        for c in api["revenue-classes"]["classes"]
    }
    if classes != got_classes:
        problems.append(f"revenue classes: API {got_classes} ≠ scan {classes}")
    top = [(r["holder"], int(r["issued"] or 0), int(r["granted"] or 0)) for r in scans["top-enterprises"]]
    got_top = [(e["credit_code"], e["issued_fen"], e["granted_fen"]) for e in api["top-enterprises"]["enterprises"]]
    if top != got_top:
        problems.append("top enterprises: the list differs from the scan's")
    return problems


async def api_answers(base_url: str, headers: dict[str, str], detail: dict[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        answers = {}
        for name, path, auth, params in (
            ("summary", "/v1/aggregates/summary", headers, {"year": 2026}),
            ("vendors", "/v1/aggregates/vendors", headers, {"year": 2026, "limit": 20}),
            ("budget", "/v1/aggregates/budget", headers, {"year": 2026}),
            ("revenue-classes", "/v1/aggregates/revenue-classes", headers, {"year": 2026}),
            ("top-enterprises", "/v1/aggregates/top-enterprises", detail, {"year": 2026, "limit": 10}),
        ):
            response = await client.get(path, params=params, headers=auth)
            response.raise_for_status()
            answers[name] = response.json()
        return answers


async def wait_projected(dsn: str, target_entries: int, patience: float) -> tuple[float, int]:
    """Seconds until the projection cursor has counted every entry (polled in the database)."""
    import asyncpg

    started = time.monotonic()
    connection = await asyncpg.connect(dsn, timeout=30)
    last = 0
    try:
        while time.monotonic() - started < patience:
            projected = int(await connection.fetchval("SELECT entries FROM vouchers.projection_cursor"))
            if projected >= target_entries:
                return time.monotonic() - started, projected
            if projected // 1_000_000 != last // 1_000_000 and projected > 0:
                say(f"  {projected:>10,} entries projected ({projected / (time.monotonic() - started):,.0f}/s)")
            last = projected
            await asyncio.sleep(0.5)
    finally:
        await connection.close()
    raise TimeoutError(f"the projector did not catch up in {patience:.0f} s ({last:,} of {target_entries:,})")


# --- report -----------------------------------------------------------------------------------------


@dataclass
class Results:
    shape: Shape | None = None
    entries: int = 0
    applications: int = 0
    build: dict[str, float] = field(default_factory=dict)
    applications_seconds: float = 0.0
    invariants_seconds: float = 0.0
    violations: int = 0
    maintenance_seconds: float = 0.0
    ledger_bytes: int = 0
    projector_seconds: float = 0.0
    reconciliation: dict[str, Any] = field(default_factory=dict)
    targets: list[Endpoint] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    server: str = ""
    settings: str = ""


def code_version() -> str:
    from bench.ledger_bench import code_version as measured

    return measured()


def versions() -> str:
    from bench.ledger_bench import versions as found

    return found()


def ratio(value: float) -> str:
    return f"{value:,.0f}×" if value >= 10 else f"{value:.2f}×"


def markdown(args: argparse.Namespace, argv: list[str], results: Results, where: str) -> str:
    facts = machine()
    shape = results.shape
    assert shape is not None
    lines = [
        f"Command: `.venv/bin/python -m bench.aggregates_bench{' ' + ' '.join(argv) if argv else ''}` "
        f"(what `make bench-aggregates` runs) — run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| | |",
        "|---|---|",
        f"| machine | {facts['nproc']} cores (nproc), {facts['cpu']}, {facts['memory']} RAM, {facts['os']} |",
        f"| Python | {facts['python']}; {versions()} |",
        f"| code | {code_version()} |",
        f"| PostgreSQL | {results.server} ({where}); {results.settings} |",
        f"| ledger | {results.entries:,} entries ({results.ledger_bytes / 2**30:.1f} GiB with indexes): "
        f"{shape.vouchers:,} vouchers × {shape.per_voucher} redemptions, {shape.holders:,} enterprises, "
        f"{shape.compute_vendors + shape.model_vendors:,} vendors, {shape.grants:,} grants; built by SQL in "
        f"{sum(results.build.values()):.0f} s; invariants checked in {results.invariants_seconds:.0f} s: "
        f"{results.violations} violations |",
        f"| applications | {results.applications:,} with their automatic decisions, by SQL in "
        f"{results.applications_seconds:.1f} s |",
        f"| projector | caught up with {results.entries:,} entries **{results.projector_seconds:.0f} s** after the "
        "vouchers process started "
        f"({results.entries / max(results.projector_seconds, 1e-9):,.0f} entries/s), from an empty projection |",
        f"| reconciliation | the whole ledger against the projections in "
        f"{results.reconciliation.get('seconds', float('nan')):.1f} s: "
        f"{results.reconciliation.get('differences_total', '?')} differences |",
        "",
        "| endpoint | API p50 | API p95 | plain scan p50 | plain scan p95 | scan ÷ API (p95) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in results.targets:
        api95 = percentile(t.api_ms, 95)
        scan95 = percentile(t.scan_ms, 95)
        mark = "" if api95 < TARGET_P95_MS else " ✗"
        lines.append(
            f"| `{t.path}` | {percentile(t.api_ms, 50):.1f} ms | **{api95:.1f} ms**{mark} | "
            f"{percentile(t.scan_ms, 50):,.0f} ms | {scan95:,.0f} ms | {ratio(scan95 / api95)} |"
        )
    worst = max(results.targets, key=lambda t: percentile(t.api_ms, 95))
    lines += [
        "",
        f"{args.requests} requests per endpoint, one at a time, after {args.warmup} not counted; years 2025 and "
        f"2026 in turn; {args.baseline_runs} scan{'s' if args.baseline_runs > 1 else ''} each (session "
        f"work_mem {SCAN_WORK_MEM}). Target: every aggregate's p95 under "
        f"{TARGET_P95_MS:.0f} ms — {'met' if percentile(worst.api_ms, 95) < TARGET_P95_MS else 'NOT met'} "
        f"(slowest: {worst.name}, {percentile(worst.api_ms, 95):.1f} ms).",
    ]
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.aggregates_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--entries", type=bounded(10_000, 50_000_000), default=10_000_000, help="ledger entries")
    parser.add_argument("--applications", type=bounded(100, 1_000_000), default=100_000)
    parser.add_argument("--vouchers", type=bounded(100, 2_000_000), default=200_000)
    parser.add_argument("--enterprises", type=bounded(10, 900_000), default=49_999)
    parser.add_argument("--compute-vendors", type=bounded(1, 3_000), default=800)
    parser.add_argument("--model-vendors", type=bounded(1, 900), default=200)
    parser.add_argument("--grants", type=bounded(1, 2_000_000), default=150_000)
    parser.add_argument("--requests", type=bounded(10, 100_000), default=300, help="per endpoint (default 300)")
    parser.add_argument("--warmup", type=bounded(0, 1000), default=20, help="per endpoint, not counted")
    parser.add_argument("--baseline-runs", type=bounded(1, 20), default=1, help="plain scans per endpoint (default 1)")
    parser.add_argument("--skip-invariants", action="store_true", help="do not check the ledger's invariants")
    parser.add_argument("--projector-timeout", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the database at the end")
    args = parser.parse_args(argv)
    if args.compute_vendors + args.model_vendors > 3_999:
        parser.error("at most 3,999 vendors")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = keep_local(os.environ.get(name, ""))
    database = f"bench_aggregates_{os.getpid()}"
    server_url: str | None = None
    started_server: devdb.EmbeddedPostgres | None = None
    created = False
    processes: dict[str, subprocess.Popen[bytes]] = {}
    log_dir = Path(tempfile.mkdtemp(prefix="bench_aggregates_"))
    auth_dir = Path(tempfile.mkdtemp(prefix="bench_aggregates_auth_"))
    log_files: dict[str, IO[bytes]] = {}
    results = Results(targets=endpoints())
    ok = False
    begun = time.monotonic()
    try:
        server_url, started_server, where = postgres_server()
        dsn = asyncio.run(fresh_database(server_url, database))
        created = True
        say(f"database {database}: migrating")
        upgrade_all(dsn)
        results.server = str(asyncio.run(scalar(dsn, "SELECT version()"))).split(",")[0]
        results.settings = ", ".join(
            f"{name} {asyncio.run(scalar(dsn, f'SHOW {name}'))}" for name in ("shared_buffers", "work_mem")
        )
        shape = Shape(
            args.entries, args.vouchers, args.enterprises, args.compute_vendors, args.model_vendors, args.grants
        )
        results.shape = shape
        say(f"building the ledger by SQL (about {args.entries:,} entries)")
        results.build = asyncio.run(build_ledger(dsn, shape, args.seed))
        results.entries = int(asyncio.run(scalar(dsn, "SELECT count(*) FROM vouchers.entries")))
        say(
            f"  {results.entries:,} entries in {sum(results.build.values()):.0f} s ("
            + ", ".join(f"{k} {v:.0f} s" for k, v in results.build.items())
            + ")"
        )
        say(f"loading {args.applications:,} applications into the eligibility tables")
        holders = asyncio.run(holder_codes(dsn))
        results.applications_seconds = asyncio.run(load_applications(dsn, args.applications, holders))
        results.applications = int(asyncio.run(scalar(dsn, "SELECT count(*) FROM eligibility.applications")))
        say(f"  {results.applications:,} in {results.applications_seconds:.1f} s")
        if not args.skip_invariants:
            from services.vouchers.invariants import check_database

            say("checking the ledger's invariants")
            started = time.perf_counter()
            violations = asyncio.run(check_database(dsn))
            results.invariants_seconds = time.perf_counter() - started
            results.violations = len(violations)
            say(f"  {len(violations)} violations ({results.invariants_seconds:.0f} s)")
            for violation in violations[:10]:
                say(f"  ! {violation}")
            results.problems += [f"invariant {v}" for v in violations[:10]]
        say("VACUUM ANALYZE, CHECKPOINT")
        results.maintenance_seconds = asyncio.run(maintenance(dsn))
        results.ledger_bytes = int(asyncio.run(scalar(dsn, "SELECT pg_total_relation_size('vouchers.entries')")))

        ports = {s: free_port() for s in ("registry", "eligibility", "vouchers")}
        stack = Stack(dsn, HOST, ports)
        bench_auth(dsn, stack.url("registry"), auth_dir)
        env = {"VOUCHERS_SEALER_INTERVAL_SECONDS": "0", "VOUCHERS_RECONCILIATION_INTERVAL_SECONDS": "0"}
        for service in ("registry", "eligibility"):
            log_files[service] = (log_dir / f"{service}.log").open("wb")
            processes[service] = start_service(stack, service, log=log_files[service], extra_env=env)
        wait_ready(stack, processes, timeout=60)
        # the projector starts with the vouchers process: timed from its start to the last entry projected
        started = time.monotonic()
        log_files["vouchers"] = (log_dir / "vouchers.log").open("wb")
        processes["vouchers"] = start_service(stack, "vouchers", log=log_files["vouchers"], extra_env=env)
        wait_ready(stack, processes, timeout=60)
        say(f"services ready (logs in {log_dir}); waiting for the projector")
        seconds, _ = asyncio.run(wait_projected(dsn, results.entries, args.projector_timeout))
        results.projector_seconds = time.monotonic() - started
        say(
            f"  caught up with {results.entries:,} entries {results.projector_seconds:.0f} s after the vouchers "
            f"process started ({seconds:.0f} s after it was ready)"
        )

        headers = bench_headers(auth_dir, DASHBOARD, name="bench-dashboard")
        detail = bench_headers(auth_dir, DASHBOARD, DASHBOARD_DETAIL, name="bench-dashboard-detail")
        say(f"aggregates over HTTP: {args.requests} requests per endpoint, one at a time")
        asyncio.run(measure_api(stack.url("vouchers"), headers, detail, results.targets, args.requests, args.warmup))
        say(f"the same by a plain scan of the ledger ({args.baseline_runs} per endpoint)")
        scans = asyncio.run(measure_scans(dsn, results.targets, args.baseline_runs))
        answers = asyncio.run(api_answers(stack.url("vouchers"), headers, detail))
        results.problems += compare(answers, scans)
        for target in results.targets:
            if target.failures:
                results.problems.append(f"{target.name}: {target.failures} answers were not 200")

        say("reconciliation of the whole ledger")
        with httpx.Client(base_url=stack.url("vouchers"), timeout=900) as client:
            response = client.get("/v1/aggregates/reconciliation", params={"fresh": "true"}, headers=headers)
            response.raise_for_status()
            results.reconciliation = response.json()
        say(
            f"  {results.reconciliation['differences_total']} differences "
            f"({results.reconciliation['seconds']:.1f} s, "
            f"through entry {results.reconciliation['checked_through_entry_id']:,})"
        )
        if not results.reconciliation["ok"]:
            results.problems.append(f"reconciliation: {results.reconciliation['differences'][:3]}")

        stop_services(processes)
        say(f"\ntotal {time.monotonic() - begun:.0f} s")
        say("\n--- paste into docs/benchmarks.md " + "-" * 40 + "\n")
        say(markdown(args, argv, results, where))
        say("\n" + "-" * 74)
        ok = not results.problems
        if not ok:
            say("\nFAILED:")
            for problem in results.problems:
                say(f"  ! {problem}")
        return 0 if ok else 1
    except (RuntimeError, TimeoutError, OSError, httpx.HTTPError, subprocess.TimeoutExpired) as exc:
        say(f"error: {type(exc).__name__}: {exc}")
        return 1
    finally:
        with signals_ignored():
            stop_services(processes)
            for log in log_files.values():
                log.close()
            if created and server_url and args.keep_database:
                say(f"database {database} kept (--keep-database)")
            elif created and server_url:
                try:
                    asyncio.run(drop_database(server_url, database))
                    say(f"database {database} dropped")
                except Exception as exc:  # report it, keep cleaning up
                    say(f"! could not drop database {database}: {exc}")
            if started_server is not None:
                started_server.stop()
                say("embedded PostgreSQL stopped (it was not running before)")
            shutil.rmtree(auth_dir, ignore_errors=True)
            if ok and not args.keep_logs:
                shutil.rmtree(log_dir, ignore_errors=True)
            else:
                say(f"service logs kept in {log_dir}")


if __name__ == "__main__":
    raise SystemExit(main())
