"""The ledger's hot functions reach rows by key, whatever the tables' size when their plans were made (0024).

PL/pgSQL keeps each statement's plan for the session. On a fresh database every table is small, and a plan made
then scanned a table whole and kept doing so as the table grew: in a benchmark run the batch check read all of
`vouchers.idempotency` on every batch. `vouchers.redeem()`, `finish_hold()`, `ledger_batch()` and
`ledger_captures()` run with `enable_seqscan` off. This test calls them on a fresh database (every table nearly
empty: the case where a scan looks cheapest), more often than PostgreSQL's five custom plans before it settles
on a generic one, with every nested statement's plan logged to the test's connection (auto_explain), and finds
no table of the ledger read by a sequential scan.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.redemption_cpu import VENDOR, insert_vouchers
from shared.instants import local_today
from tests.conftest import DatabaseFactory

BATCH = (
    "SELECT ord, status_code, body FROM vouchers.ledger_batch($1::text[], $2::text[], $3::text[], $4::text[], "
    "$5::text[], $6::bigint[], $7::text[], $8::text[], $9::int[], $10::bigint[], $11::text[], $12::timestamptz[], "
    "$13::date[], $14::text[], $15::boolean)"
)
SCAN = re.compile(r"Seq Scan on (\w+)")
#: one-row tables (the ledger's and the feed's transaction-id offsets, migrations 0015 and 0019): read whole by design
ONE_ROW = {"ledger_epoch", "feed_epoch"}


def batch_arguments(calls: list[dict[str, Any]]) -> list[Any]:
    """`vouchers.ledger_batch()`'s arrays for `calls` (each: op, key, and code and amount, or hold and action)."""
    now = datetime.now(UTC)
    return [
        [c["op"] for c in calls],
        [VENDOR for _ in calls],
        [c["key"] for c in calls],
        [f"hash-{c['key']}" for c in calls],
        [c.get("code") for c in calls],
        [c.get("amount") for c in calls],
        [f"invoice-{c['key']}" if c["op"] == "redeem" else None for c in calls],
        [None for _ in calls],
        [c.get("hold_seconds") for c in calls],
        [c.get("hold") for c in calls],
        [c.get("action") for c in calls],
        [now for _ in calls],
        [local_today(now) for _ in calls],
        [f"request-{c['key']}" for c in calls],
        False,
    ]


async def test_the_ledger_functions_read_no_table_whole_on_a_fresh_database(databases: DatabaseFactory) -> None:
    url = databases.create("longgang_ledger_plans")
    first, second = await insert_vouchers(url, 2)
    connection = await asyncpg.connect(url)
    plans: list[str] = []
    connection.add_log_listener(lambda _, message: plans.append(str(message.message)))
    try:
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_nested_statements = on",
            "SET client_min_messages = log",
        ):
            await connection.execute(setting)
        statuses: list[int] = []
        for n in range(8):  # more than the five custom plans PostgreSQL makes before a generic one
            plain = [  # plain M3 redemptions: vouchers.ledger_captures()
                {"op": "redeem", "key": f"p{n}a", "code": first, "amount": 100},
                {"op": "redeem", "key": f"p{n}b", "code": second, "amount": 200},
            ]
            rows = await connection.fetch(BATCH, *batch_arguments(plain))
            held = [  # a hold, and a code that names no voucher: call by call, vouchers.redeem()
                {"op": "redeem", "key": f"h{n}", "code": first, "amount": 50, "hold_seconds": 600},
                {"op": "redeem", "key": f"u{n}", "code": f"M3-NONE{n}", "amount": 1},
            ]
            rows += await connection.fetch(BATCH, *batch_arguments(held))
            hold = int(json.loads(rows[-2]["body"])["id"])
            finished = [{"op": "finish", "key": f"c{n}", "hold": hold, "action": "capture"}]  # finish_hold()
            rows += await connection.fetch(BATCH, *batch_arguments(finished * 2))  # and its replay
            statuses += [row["status_code"] for row in rows]
    finally:
        await connection.close()
    assert statuses == [201, 201, 201, 404, 200, 200] * 8
    assert any("ledger_captures" in plan for plan in plans)  # the plans were logged, the set-by-set path among them
    assert any("vouchers.redeem(" in plan for plan in plans)
    assert any("finish_hold" in plan for plan in plans)
    # the system catalogs are asyncpg's own queries (its type introspection), not the ledger's
    scanned = sorted({t for plan in plans for t in SCAN.findall(plan) if not t.startswith("pg_") and t not in ONE_ROW})
    assert scanned == [], f"read whole: {scanned}"
