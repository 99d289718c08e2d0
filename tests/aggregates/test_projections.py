"""Issue #6: the projections equal the ledger, count every entry once, and wait for commits.

A random mix of what officers and vendors do goes through the HTTP API of a vouchers service
whose projector is driven by hand; the aggregates API's answers are then compared with plain
SQL over the ledger (`data.expected`), and reconciliation must find nothing. The projector is
killed between (and inside) batches and restarted; an entry of a transaction still open is
not projected until it commits. A projection row corrupted behind the service's back is
found by reconciliation, through the endpoint and the periodic job.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.vouchers.reporting import projector as read_side
from services.vouchers.reporting import repository
from services.vouchers.reporting.projector import Projector, Reconciler, project_run, reconcile, reset
from services.vouchers.reporting.repository import PROJECTIONS
from shared.auth import AUDITOR, DASHBOARD
from shared.dbconnect import libpq_url
from shared.dbroles import login_url
from tests.aggregates.conftest import connect, fetch, project
from tests.aggregates.data import Activity, expected, key, m3_voucher, random_activity, this_year
from tests.auth import auth
from tests.vouchers.flow import YUAN, vendor_call

DASHBOARD_CLIENT = auth(DASHBOARD, name="dashboard")


async def _snapshot(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every projection table's rows, in key order."""
    tables = {}
    for p in PROJECTIONS:
        columns = ", ".join((*p.keys, *p.values))
        rows = await fetch(dsn, f"SELECT {columns} FROM vouchers.{p.table} ORDER BY {', '.join(p.keys)}")
        tables[p.table] = [tuple(row) for row in rows if any(row[len(p.keys) :])]
    return tables


async def _get(client: httpx.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    response = await client.get(path, params=params, headers=DASHBOARD_CLIENT)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def assert_answers_match_the_ledger(client: httpx.AsyncClient, dsn: str, year: int) -> dict[str, Any]:
    want = await expected(dsn, year)
    summary = await _get(client, "/v1/aggregates/summary", year=year)
    got = {line["measure"]: {k: v for k, v in line.items() if k != "measure"} for line in summary["by_measure"]}
    assert got == want["by_measure"]
    for name in summary["totals"]:
        assert summary["totals"][name] == sum(line[name] for line in want["by_measure"].values()), name

    monthly = await _get(client, "/v1/aggregates/monthly", year=year)
    assert {m["month"]: {k[:-4]: v for k, v in m.items() if k != "month"} for m in monthly["months"]} == want["months"]

    classes = await _get(client, "/v1/aggregates/revenue-classes", year=year)
    assert {
        c["revenue_class"]: {"issued": c["issued_fen"], "redeemed": c["redeemed_fen"], "vouchers": c["vouchers"]}
        for c in classes["classes"]
    } == want["classes"]

    shares = await _get(client, "/v1/aggregates/compute-share", year=year)
    got_shares = {s["share"]: {"issued": s["issued_fen"], "redeemed": s["redeemed_fen"]} for s in shares["shares"]}
    assert {k: v for k, v in got_shares.items() if any(v.values())} == {
        k: v for k, v in want["shares"].items() if any(v.values())
    }

    vendors = await _get(client, "/v1/aggregates/vendors", year=year, limit=100)
    ranked = [v["redeemed_fen"] for v in vendors["vendors"]]
    assert ranked == sorted(ranked, reverse=True)
    assert {
        v["vendor"]: {"redeemed": v["redeemed_fen"], "settled": v["settled_fen"], "redemptions": v["redemptions"]}
        for v in vendors["vendors"]
    } == want["vendors"]

    budget = await _get(client, "/v1/aggregates/budget", year=year)
    used = {line["measure"]: line["used_fen"] for line in budget["measures"] if line["used_fen"]}
    assert used == {m: fen for m, fen in want["budget_used"].items() if fen}

    top = await client.get("/v1/aggregates/top-enterprises", params={"year": year, "limit": 100})
    assert top.status_code == 200, top.text
    assert {
        e["credit_code"]: {"issued": e["issued_fen"], "redeemed": e["redeemed_fen"], "granted": e["granted_fen"]}
        for e in top.json()["enterprises"]
    } == want["holders"]
    return want


@pytest.fixture(scope="module")
def activity_seed() -> int:
    return random.SystemRandom().randrange(2**32)


async def test_the_aggregates_equal_plain_sql_over_the_ledger_after_random_activity(
    agg: httpx.AsyncClient,
    agg_database: str,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    activity_seed: int,
    agg_clock: Callable[[datetime], None],
) -> None:
    rng = random.Random(activity_seed)
    done: Activity = await random_activity(rng, agg, live_registry_client, live_eligibility_client, operations=60)
    # expire what is left: the clock after the vouchers' dates (entries keep the database's time)
    agg_clock(datetime(2028, 1, 2, 2, tzinfo=UTC))
    expired = await agg.post("/v1/expiries")
    assert expired.status_code == 200, expired.text
    agg_clock(datetime.now(UTC))

    before = await _get(agg, "/v1/aggregates/summary", year=this_year())
    run = await project(agg_database)
    assert run.projected > 0, (activity_seed, done.counts)
    assert run.watermark is not None
    after = await _get(agg, "/v1/aggregates/summary", year=this_year())
    assert after["as_of"]["entry_id"] > before["as_of"]["entry_id"]
    assert after["as_of"]["lag_entries"] == 0

    want = await assert_answers_match_the_ledger(agg, agg_database, this_year())
    assert {"M1", "M3", "M6"} <= set(want["by_measure"]), done.counts
    assert want["by_measure"]["M6"]["granted_fen"] > 0
    assert {"C1", "C2"} <= set(want["classes"])  # the two M1 vouchers' revenue classes (and other tests')
    assert want["shares"]["district"]["issued"] > 0
    assert want["shares"]["domestic"]["issued"] > 0

    checked = await agg.get("/v1/aggregates/reconciliation", params={"fresh": "true"}, headers=auth(AUDITOR))
    assert checked.status_code == 200, checked.text
    assert (checked.json()["ok"], checked.json()["differences"]) == (True, [])
    assert checked.json()["checked_through_entry_id"] == after["as_of"]["entry_id"]


async def test_every_entry_is_counted_once_across_projector_restarts(
    agg: httpx.AsyncClient,
    agg_database: str,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    activity_seed: int,
) -> None:
    rng = random.Random(activity_seed + 1)
    await random_activity(rng, agg, live_registry_client, live_eligibility_client, operations=25)
    await project(agg_database)
    reference = await _snapshot(agg_database)
    entries = int((await fetch(agg_database, "SELECT count(*) FROM vouchers.entries"))[0][0])

    connection = await connect(agg_database)
    try:
        await reset(connection)
        assert await _snapshot(agg_database) == {p.table: [] for p in PROJECTIONS}
        # a few batches, then stop (as a process would between batches)
        stopped = await project_run(connection, batch_size=5, max_batches=3)
        assert (stopped.projected, stopped.batches, stopped.watermark) == (15, 3, None)
        # a batch that fails after its statement, before its commit, counts nothing
        cursor = await connection.fetchrow(repository.CURSOR_SQL)
        with pytest.raises(RuntimeError, match="crash"):
            await _batch_then_crash(connection)
        assert await connection.fetchrow(repository.CURSOR_SQL) == cursor
    finally:
        await connection.close()
    # background projectors killed at random moments: between batches, inside one, mid-statement
    for _ in range(8):
        projector = Projector(libpq_url(login_url(agg_database, "vouchers")), "", 0.001, batch_size=4)
        await projector.start()
        await asyncio.sleep(rng.uniform(0.0, 0.05))
        await projector.stop()
    await project(agg_database, batch_size=7)
    connection = await connect(agg_database)
    try:
        assert int((await connection.fetchrow(repository.CURSOR_SQL))["entries"]) == entries
        result = await reconcile(connection)
    finally:
        await connection.close()
    assert (result.ok, result.differences) == (True, [])
    assert await _snapshot(agg_database) == reference
    await assert_answers_match_the_ledger(agg, agg_database, this_year())


async def _batch_then_crash(connection: Any) -> None:
    async with connection.transaction():
        watermark = int(await connection.fetchval(read_side.XMIN_SQL))
        assert await read_side.project_batch(connection, watermark, 6) == 6
        raise RuntimeError("crash before commit")


async def test_an_entry_is_projected_only_once_its_transaction_commits(
    agg: httpx.AsyncClient,
    agg_database: str,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
) -> None:
    voucher = await m3_voucher(agg, live_registry_client, live_eligibility_client)
    other = await m3_voucher(agg, live_registry_client, live_eligibility_client)  # another holder, another vendor
    vendor, second = voucher.vendors[0], other.vendors[0]
    await project(agg_database)
    open_tx = await connect(agg_database)
    try:
        transaction = open_tx.transaction()
        await transaction.start()
        # a redemption, as the hot path writes it, in a transaction left open
        row = await open_tx.fetchrow(
            "SELECT status_code, body::jsonb ->> 'entry_id' AS entry FROM vouchers.redeem("
            "$1, $2, 'hash', $3, $4, $5, 'FP-OPEN', NULL, NULL, now(), current_date, 'open-tx')",
            vendor,
            key("open"),
            voucher.code,
            vendor,
            12_345 * YUAN,
        )
        assert row["status_code"] == 201
        pending = int(row["entry"])
        # a later redemption that commits at once: behind the open one, it waits too
        later = await agg.post(
            f"/v1/vouchers/{other.code}/redemptions",
            json={"amount_fen": 100 * YUAN, "invoice_number": "FP-LATER"},
            headers=vendor_call(second, key()),
        )
        assert later.status_code == 201, later.text
        assert later.json()["entry_id"] > pending
        await project(agg_database, until_caught_up=False)
        vendors = await _get(agg, "/v1/aggregates/vendors", year=this_year(), limit=100)
        assert not {vendor, second} & {v["vendor"] for v in vendors["vendors"]}
        assert vendors["as_of"]["entry_id"] < pending
        assert vendors["as_of"]["lag_entries"] >= 1  # the committed one (the open one is invisible)
        await transaction.commit()
    finally:
        await open_tx.close()
    await project(agg_database)
    vendors = await _get(agg, "/v1/aggregates/vendors", year=this_year(), limit=100)
    mine = {v["vendor"]: v for v in vendors["vendors"] if v["vendor"] in (vendor, second)}
    assert mine == {
        vendor: {"vendor": vendor, "redeemed_fen": 12_345 * YUAN, "settled_fen": 0, "redemptions": 1},
        second: {"vendor": second, "redeemed_fen": 100 * YUAN, "settled_fen": 0, "redemptions": 1},
    }
    assert vendors["as_of"]["lag_entries"] == 0


async def test_reconciliation_reports_a_corrupted_projection(
    agg: httpx.AsyncClient,
    agg_app: FastAPI,
    agg_database: str,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await m3_voucher(agg, live_registry_client, live_eligibility_client)
    await project(agg_database)
    year = this_year()
    owner = await connect(agg_database, as_service=False)
    try:
        [row] = await owner.fetch(
            "UPDATE vouchers.agg_flows SET amount_fen = amount_fen + 7 "
            "WHERE (year, measure, month, flow) = (SELECT year, measure, month, flow FROM vouchers.agg_flows "
            "WHERE year = $1 AND measure = 'M3' AND flow = 'issued' LIMIT 1) RETURNING month, amount_fen",
            year,
        )
        answer = await agg.get("/v1/aggregates/reconciliation", params={"fresh": "true"}, headers=DASHBOARD_CLIENT)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["ok"] is False
        assert body["differences"] == [
            {
                "projection": "agg_flows.amount_fen",
                "key": f"{year}/M3/{row['month']}/issued",
                "projected_fen": row["amount_fen"],
                "ledger_fen": row["amount_fen"] - 7,
            }
        ]
        # the periodic job finds it too, logs it and keeps it for the endpoint
        reconciler: Reconciler = agg_app.state.reconciler
        job = Reconciler(libpq_url(login_url(agg_database, "vouchers")), "", 0.05)
        agg_app.state.reconciler = job
        try:
            with caplog.at_level(logging.WARNING, logger="services.vouchers.projections"):
                await job.start()
                for _ in range(100):
                    if job.last is not None:
                        break
                    await asyncio.sleep(0.05)
                await job.stop()
            assert job.last is not None
            assert not job.last.ok
            assert "projections differ from the ledger" in caplog.text
            shown = (await agg.get("/v1/aggregates/reconciliation", headers=auth(AUDITOR))).json()
            assert shown["ok"] is False
            assert datetime.fromisoformat(shown["checked_at"]) == job.last.checked_at
        finally:
            agg_app.state.reconciler = reconciler
        await owner.execute(
            "UPDATE vouchers.agg_flows SET amount_fen = amount_fen - 7 WHERE year = $1 AND measure = 'M3' "
            "AND month = $2 AND flow = 'issued'",
            year,
            row["month"],
        )
    finally:
        await owner.close()
    fixed = (await agg.get("/v1/aggregates/reconciliation", params={"fresh": "true"})).json()
    assert (fixed["ok"], fixed["differences_total"]) == (True, 0)


async def test_the_ledger_stays_append_only_for_the_service_role(agg_database: str) -> None:
    """The projector's role may rewrite projections, never the ledger."""
    import asyncpg

    connection = await connect(agg_database)
    try:
        for statement in ("UPDATE vouchers.entries SET memo = 'x'", "DELETE FROM vouchers.entries"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute(statement)
        await connection.execute("UPDATE vouchers.agg_flows SET entries = entries WHERE false")
    finally:
        await connection.close()
