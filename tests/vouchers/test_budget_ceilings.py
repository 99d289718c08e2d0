"""Clause A2: the programme budget of each measure and year is a ceiling, held by the database.

A vouchers service of its own (own database, a small budget file of its own, its clock set by
the tests, its projector driven by hand), issuing from decisions approved by the live
registry and eligibility processes. Each test works on its own measure and budget year, so
the budget rows they fill never meet:

    M3 2026  5,000,000     exhaustion, void and expiry give headroom back
    M6 2025    500,000     history already over the budget (ledger entries from before 0009)
    M6 2027    800,000     grants and reversals
    M6 2028  1,300,000     concurrent grants on two service instances
    M6 2029    800,000 → 1,200,000 (1 July) → 600,000 (1 October) → 700,000 (a new file)
    M3, M6 2030            no budget

After each, the aggregates' `committed_fen` (the ceiling row, live) agrees with `used_fen`
(the ledger, projected), and the ledger's invariants (budget rows included) hold.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
import yaml
from fastapi import FastAPI

from services.vouchers.app import create_app
from services.vouchers.invariants import check_database
from services.vouchers.policy.budgets import load_budget_file
from services.vouchers.settings import VouchersSettings
from shared.auth import APPROVER
from shared.dbroles import login_url
from tests.aggregates.conftest import project
from tests.auth import admin, auth
from tests.conftest import DatabaseFactory, _settings_auth
from tests.eligibility import seed
from tests.factories import new_credit_code
from tests.vouchers.flow import OFFICER_CHEN, YUAN, approve, approved_m3, issue, redeem, submit

APPROVER_SUN = auth(APPROVER, name="approver-sun")
IN_ENGLISH = {**OFFICER_CHEN, "Accept-Language": "en"}
SOURCE = "test budget (A2)"


def _value(year: int, yuan: int, effective_from: date) -> dict[str, Any]:
    return {
        "year": year,
        "budget_fen": yuan * YUAN,
        "effective_from": effective_from,
        "status": "given",
        "source": SOURCE,
    }


def budget_document(version: str = "test-1", extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "version": version,
        "published": date(2024, 10, 1),
        "budgets": {
            "M3": {
                "clause": "A2",
                "label": {"zh": "模型券", "en": "Model vouchers"},
                "history": [_value(2026, 5_000_000, date(2024, 10, 1))],
            },
            "M6": {
                "clause": "A2",
                "label": {"zh": "标杆企业智能化改造", "en": "Benchmark transformation"},
                "history": [
                    _value(2025, 500_000, date(2024, 10, 1)),
                    _value(2027, 800_000, date(2024, 10, 1)),
                    _value(2028, 1_300_000, date(2024, 10, 1)),
                    _value(2029, 800_000, date(2029, 1, 1)),
                    _value(2029, 1_200_000, date(2029, 7, 1)),  # a mid-year raise
                    _value(2029, 600_000, date(2029, 10, 1)),  # lowered below what is committed by then
                    *(extra or []),
                ],
            },
        },
    }


def write_budgets(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def budget_database(databases: DatabaseFactory) -> str:
    return databases.create("longgang_budgets")


@pytest.fixture(scope="module")
def budget_settings(
    budget_database: str,
    live_eligibility: str,
    live_registry: str,
    service_auth_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> VouchersSettings:
    return VouchersSettings(
        database_url=login_url(budget_database, "vouchers"),  # type: ignore[arg-type]
        eligibility_url=live_eligibility,
        registry_url=live_registry,
        projector_interval_seconds=0,
        reconciliation_interval_seconds=0,
        budget_file=write_budgets(tmp_path_factory.mktemp("budgets") / "budgets.yaml", budget_document()),
        **_settings_auth(service_auth_env, "vouchers"),  # type: ignore[arg-type]
    )


@asynccontextmanager
async def service(settings: VouchersSettings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://vouchers", timeout=30, headers=admin()) as c:
            yield app, c


@pytest_asyncio.fixture(scope="module")
async def budget_service(budget_settings: VouchersSettings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with service(budget_settings) as running:
        yield running


@pytest.fixture
def vouchers(budget_service: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return budget_service[1]


@pytest.fixture
def clock(budget_service: tuple[FastAPI, httpx.AsyncClient]) -> Iterator[Callable[[datetime], None]]:
    app = budget_service[0]
    original = app.state.clock

    def set_now(moment: datetime) -> None:
        app.state.clock = lambda: moment

    yield set_now
    app.state.clock = original


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


async def budget_row(dsn: str, measure: str, year: int) -> tuple[int, int] | None:
    """(limit_fen, used_fen) of the budget's ceiling row, if it exists."""
    rows = await fetch(
        dsn,
        "SELECT limit_fen, used_fen FROM vouchers.allowances WHERE holder = 'programme' AND kind = $1 AND year = $2",
        f"budget.{measure}",
        year,
    )
    return (int(rows[0]["limit_fen"]), int(rows[0]["used_fen"])) if rows else None


async def m6_decision(registry: httpx.AsyncClient, eligibility: httpx.AsyncClient, grant_yuan: int) -> str:
    """An approved M6 decision paying `grant_yuan` (half of the audited investment, under the cap)."""
    holder, evidence = await seed.m6_applicant(registry, 2 * grant_yuan * YUAN)
    application = await submit(eligibility, holder, evidence, as_of="2026-02-01")
    assert application["decision"]["amount_fen"] == grant_yuan * YUAN, application["decision"]
    return await approve(eligibility, application)


async def grant(vouchers: httpx.AsyncClient, decision_id: str, headers: dict[str, str] = OFFICER_CHEN) -> Any:
    return await vouchers.post("/v1/grants", json={"decision_id": decision_id}, headers=headers)


async def reverse(vouchers: httpx.AsyncClient, grant_id: int) -> None:
    response = await vouchers.post(f"/v1/grants/{grant_id}/reversal", json={"reason": "重复拨付"}, headers=APPROVER_SUN)
    assert response.status_code == 201, response.text


def assert_exhausted(
    response: httpx.Response, measure: str, year: int, budget_yuan: int, remaining_yuan: int, requested_yuan: int
) -> None:
    """409 budget_exhausted naming A2, the measure, the year, the budget and what remains (in yuan and fen)."""
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["code"], body["clause"], body["measure"], body["year"]) == ("budget_exhausted", "A2", measure, year)
    assert (body["budget_fen"], body["remaining_fen"], body["requested_fen"]) == (
        budget_yuan * YUAN,
        remaining_yuan * YUAN,
        requested_yuan * YUAN,
    )
    detail = body["detail"]
    for part in ("A2", measure, str(year), f"{budget_yuan:,}.00", f"{remaining_yuan:,}.00"):
        assert part in detail, (part, detail)


async def agree(vouchers: httpx.AsyncClient, dsn: str, measure: str, year: int) -> dict[str, Any]:
    """The aggregates' line for the measure and year once projected: committed (the row) = used (the ledger)."""
    await project(dsn)
    response = await vouchers.get("/v1/aggregates/budget", params={"year": year})
    assert response.status_code == 200, response.text
    [line] = [line for line in response.json()["measures"] if line["measure"] == measure]
    assert line["committed_fen"] == line["used_fen"], line
    row = await budget_row(dsn, measure, year)
    if row is not None:
        assert row[1] == line["committed_fen"]
    assert await check_database(dsn) == []  # budget rows equal what their accounts committed, among the rest
    result: dict[str, Any] = line
    return result


# --- vouchers: exhaustion, void and expiry --------------------------------------------------------------


async def test_a_voucher_over_the_budget_is_refused_and_void_and_expiry_give_headroom_back(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    budget_database: str,
    clock: Callable[[datetime], None],
) -> None:
    clock(datetime(2026, 6, 15, 2, tzinfo=UTC))
    first_supply, first = await approved_m3(live_registry_client, live_eligibility_client)  # 3,000,000 each
    second_supply, second = await approved_m3(live_registry_client, live_eligibility_client)
    issued = await issue(vouchers, first)
    assert issued.status_code == 201, issued.text
    code = issued.json()["code"]
    assert await budget_row(budget_database, "M3", 2026) == (5_000_000 * YUAN, 3_000_000 * YUAN)

    entries = len(await fetch(budget_database, "SELECT id FROM vouchers.entries"))
    refused = await vouchers.post("/v1/vouchers", json={"decision_id": second}, headers=IN_ENGLISH)
    assert_exhausted(refused, "M3", 2026, 5_000_000, 2_000_000, 3_000_000)
    assert "Model vouchers" in refused.json()["detail"]
    in_chinese = await issue(vouchers, second)
    assert_exhausted(in_chinese, "M3", 2026, 5_000_000, 2_000_000, 3_000_000)
    assert "尚余 2,000,000.00 元" in in_chinese.json()["detail"]
    # nothing written: no voucher, no entry, not even the M3 claim the ceiling check took first
    assert len(await fetch(budget_database, "SELECT id FROM vouchers.entries")) == entries
    assert (
        await fetch(budget_database, "SELECT id FROM vouchers.vouchers WHERE decision_id = $1", uuid.UUID(second)) == []
    )
    assert (
        await fetch(budget_database, "SELECT id FROM vouchers.allowances WHERE holder = $1", second_supply.holder) == []
    )
    assert await budget_row(budget_database, "M3", 2026) == (5_000_000 * YUAN, 3_000_000 * YUAN)

    # voiding gives back the unused amount (a redemption moved money to the vendor, not to or from the budget)
    assert (await redeem(vouchers, code, first_supply.vendor, 1_000_000 * YUAN, f"{code}-r")).status_code == 201
    assert await budget_row(budget_database, "M3", 2026) == (5_000_000 * YUAN, 3_000_000 * YUAN)
    voided = await vouchers.post(f"/v1/vouchers/{code}/void", json={"reason": "企业申请注销"}, headers=OFFICER_CHEN)
    assert voided.status_code == 200, voided.text
    assert await budget_row(budget_database, "M3", 2026) == (5_000_000 * YUAN, 1_000_000 * YUAN)
    again = await issue(vouchers, second)
    assert again.status_code == 201, again.text
    assert await budget_row(budget_database, "M3", 2026) == (5_000_000 * YUAN, 4_000_000 * YUAN)
    line = await agree(vouchers, budget_database, "M3", 2026)
    assert (line["committed_fen"], line["remaining_fen"], line["over_budget"]) == (
        4_000_000 * YUAN,
        YUAN * 1_000_000,
        False,
    )

    _, third = await approved_m3(live_registry_client, live_eligibility_client, claim_fen=1_500_000 * YUAN)
    assert_exhausted(await issue(vouchers, third), "M3", 2026, 5_000_000, 1_000_000, 1_500_000)

    # expiry (after the end of the next calendar year) gives back what was never redeemed, to the 2026 budget
    clock(datetime(2028, 1, 2, 2, tzinfo=UTC))
    expired = await vouchers.post("/v1/expiries", headers=OFFICER_CHEN)
    assert expired.status_code == 200, expired.text
    assert expired.json()["expired_vouchers"] == 1
    assert await budget_row(budget_database, "M3", 2026) == (5_000_000 * YUAN, 1_000_000 * YUAN)
    line = await agree(vouchers, budget_database, "M3", 2026)
    assert (line["budget_fen"], line["committed_fen"], line["remaining_fen"]) == (
        5_000_000 * YUAN,
        1_000_000 * YUAN,
        4_000_000 * YUAN,
    )
    # and a claim in 2028, when no M3 budget stands for 2028, is refused before anything is written
    refused_2028 = await issue(vouchers, third)
    assert (refused_2028.status_code, refused_2028.json()["code"], refused_2028.json()["clause"]) == (
        409,
        "no_budget",
        "A2",
    )


# --- grants: exhaustion and reversal --------------------------------------------------------------------


async def test_a_grant_over_the_budget_is_refused_and_a_reversal_gives_headroom_back(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    budget_database: str,
    clock: Callable[[datetime], None],
) -> None:
    clock(datetime(2027, 3, 1, 2, tzinfo=UTC))
    first = await m6_decision(live_registry_client, live_eligibility_client, 500_000)
    second = await m6_decision(live_registry_client, live_eligibility_client, 500_000)
    granted = await grant(vouchers, first)
    assert granted.status_code == 201, granted.text
    refused = await grant(vouchers, second, IN_ENGLISH)
    assert_exhausted(refused, "M6", 2027, 800_000, 300_000, 500_000)
    assert "Benchmark transformation" in refused.json()["detail"]
    assert (
        await fetch(budget_database, "SELECT id FROM vouchers.grants WHERE decision_id = $1", uuid.UUID(second)) == []
    )
    assert await budget_row(budget_database, "M6", 2027) == (800_000 * YUAN, 500_000 * YUAN)

    await reverse(vouchers, granted.json()["id"])
    assert await budget_row(budget_database, "M6", 2027) == (800_000 * YUAN, 0)
    assert (await grant(vouchers, second)).status_code == 201
    line = await agree(vouchers, budget_database, "M6", 2027)
    assert (line["committed_fen"], line["remaining_fen"], line["over_budget"]) == (
        500_000 * YUAN,
        300_000 * YUAN,
        False,
    )


# --- two grants at once -----------------------------------------------------------------------------


async def _wait_for_lock_waiters(dsn: str, count: int, patience: float = 20) -> None:
    """Until `count` transactions wait on a lock (asked on a connection of its own: pg_stat_activity
    is a snapshot per transaction)."""
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            waiting = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting >= count:
                return
            await asyncio.sleep(0.02)
    finally:
        await connection.close()
    raise TimeoutError(f"fewer than {count} transactions waiting on the budget row")


async def test_two_concurrent_grants_that_together_exceed_the_budget_on_two_instances_exactly_one_succeeds(
    vouchers: httpx.AsyncClient,
    budget_settings: VouchersSettings,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    budget_database: str,
    clock: Callable[[datetime], None],
) -> None:
    moment = datetime(2028, 5, 1, 2, tzinfo=UTC)
    clock(moment)
    opening = await grant(vouchers, await m6_decision(live_registry_client, live_eligibility_client, 500_000))
    assert opening.status_code == 201, opening.text  # 800,000 remain of 1,300,000
    async with service(budget_settings) as (other_app, other):
        other_app.state.clock = lambda: moment
        for round_ in range(2):
            decisions = [await m6_decision(live_registry_client, live_eligibility_client, 500_000) for _ in range(2)]
            if round_ == 0:
                # both transactions reach the budget row while a third holds it: they certainly overlap there
                holder = await asyncpg.connect(budget_database)
                transaction = holder.transaction()
                await transaction.start()
                await holder.execute(
                    "SELECT 1 FROM vouchers.allowances WHERE holder = 'programme' AND kind = 'budget.M6' "
                    "AND year = 2028 FOR UPDATE"
                )
                calls = [
                    asyncio.create_task(grant(client, d))
                    for client, d in zip((vouchers, other), decisions, strict=True)
                ]
                try:
                    await _wait_for_lock_waiters(budget_database, 2)
                finally:
                    await transaction.rollback()
                    await holder.close()
                answers = await asyncio.gather(*calls)
            else:
                answers = await asyncio.gather(grant(vouchers, decisions[0]), grant(other, decisions[1]))
            statuses = sorted(answer.status_code for answer in answers)
            assert statuses == [201, 409], [answer.text for answer in answers]
            [loser] = [answer for answer in answers if answer.status_code == 409]
            assert_exhausted(loser, "M6", 2028, 1_300_000, 300_000, 500_000)
            assert await budget_row(budget_database, "M6", 2028) == (1_300_000 * YUAN, 1_000_000 * YUAN)
            if round_ == 0:
                [winner] = [answer for answer in answers if answer.status_code == 201]
                await reverse(vouchers, winner.json()["id"])  # 800,000 remain again
    line = await agree(vouchers, budget_database, "M6", 2028)
    assert (line["committed_fen"], line["remaining_fen"]) == (1_000_000 * YUAN, 300_000 * YUAN)


# --- the figure changes ---------------------------------------------------------------------------------


async def test_a_changed_budget_figure_takes_effect_and_a_lowered_one_below_what_is_committed_refuses(
    vouchers: httpx.AsyncClient,
    budget_service: tuple[FastAPI, httpx.AsyncClient],
    budget_settings: VouchersSettings,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    budget_database: str,
    clock: Callable[[datetime], None],
    tmp_path: Path,
) -> None:
    clock(datetime(2029, 3, 1, 2, tzinfo=UTC))
    first, second = [await m6_decision(live_registry_client, live_eligibility_client, 500_000) for _ in range(2)]
    assert (await grant(vouchers, first)).status_code == 201
    assert_exhausted(await grant(vouchers, second), "M6", 2029, 800_000, 300_000, 500_000)
    assert await budget_row(budget_database, "M6", 2029) == (800_000 * YUAN, 500_000 * YUAN)

    clock(datetime(2029, 7, 2, 2, tzinfo=UTC))  # raised to 1,200,000 from 1 July
    assert (await grant(vouchers, second)).status_code == 201
    assert await budget_row(budget_database, "M6", 2029) == (1_200_000 * YUAN, 1_000_000 * YUAN)

    clock(datetime(2029, 10, 2, 2, tzinfo=UTC))  # lowered to 600,000 from 1 October: 1,000,000 is committed
    small = await m6_decision(live_registry_client, live_eligibility_client, 100_000)
    assert_exhausted(await grant(vouchers, small), "M6", 2029, 600_000, 0, 100_000)
    # nothing committed is undone or made invalid: the row keeps a limit above what it used
    assert await budget_row(budget_database, "M6", 2029) == (1_200_000 * YUAN, 1_000_000 * YUAN)
    line = await agree(vouchers, budget_database, "M6", 2029)
    assert (line["budget_fen"], line["committed_fen"], line["remaining_fen"], line["over_budget"]) == (
        600_000 * YUAN,
        1_000_000 * YUAN,
        0,
        True,
    )
    # a reversal brings the commitments under the figure; the next commitment sets the limit to it
    first_grant = await fetch(
        budget_database, "SELECT id FROM vouchers.grants WHERE decision_id = $1", uuid.UUID(first)
    )
    await reverse(vouchers, first_grant[0]["id"])
    assert (await grant(vouchers, small)).status_code == 201
    assert await budget_row(budget_database, "M6", 2029) == (600_000 * YUAN, 600_000 * YUAN)
    line = await agree(vouchers, budget_database, "M6", 2029)
    assert (line["committed_fen"], line["remaining_fen"], line["over_budget"]) == (600_000 * YUAN, 0, False)

    # the bureau publishes a new file (a restart loads it): 700,000 from 1 November
    app = budget_service[0]
    original = app.state.budgets
    amended = budget_document("test-2", extra=[_value(2029, 700_000, date(2029, 11, 1))])
    app.state.budgets = load_budget_file(write_budgets(tmp_path / "budgets.yaml", amended))
    try:
        clock(datetime(2029, 11, 2, 2, tzinfo=UTC))
        more = await m6_decision(live_registry_client, live_eligibility_client, 100_000)
        assert (await grant(vouchers, more)).status_code == 201
        assert await budget_row(budget_database, "M6", 2029) == (700_000 * YUAN, 700_000 * YUAN)
        line = await agree(vouchers, budget_database, "M6", 2029)
        assert (line["budget_fen"], line["remaining_fen"]) == (700_000 * YUAN, 0)
    finally:
        app.state.budgets = original


# --- no budget ------------------------------------------------------------------------------------------


async def test_without_a_budget_nothing_is_issued_or_granted(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    budget_database: str,
    clock: Callable[[datetime], None],
) -> None:
    clock(datetime(2030, 2, 1, 2, tzinfo=UTC))
    decision = await m6_decision(live_registry_client, live_eligibility_client, 100_000)
    _, m3 = await approved_m3(live_registry_client, live_eligibility_client)
    entries = len(await fetch(budget_database, "SELECT id FROM vouchers.entries"))
    for response in (await grant(vouchers, decision, IN_ENGLISH), await issue(vouchers, m3)):
        assert response.status_code == 409, response.text
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert (body["code"], body["clause"], body["year"], body["budget_file_version"]) == (
            "no_budget",
            "A2",
            2030,
            "test-1",
        )
        for part in ("A2", "2030", body["measure"]):
            assert part in body["detail"]
    assert len(await fetch(budget_database, "SELECT id FROM vouchers.entries")) == entries
    assert await budget_row(budget_database, "M6", 2030) is None
    assert await budget_row(budget_database, "M3", 2030) is None


# --- history already over the budget ----------------------------------------------------------------


async def _grant_before_0009(dsn: str, amount_fen: int) -> int:
    """A grant the ledger holds from before budgets were ceilings (written as the table owner); its id."""
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            holder = new_credit_code()
            await connection.execute(
                "INSERT INTO vouchers.accounts (kind, ref) VALUES ('budget', 'M6:2025'), ('grant_paid', $1) "
                "ON CONFLICT DO NOTHING",
                holder,
            )
            budget = await connection.fetchval(
                "SELECT id FROM vouchers.accounts WHERE kind = 'budget' AND ref = 'M6:2025'"
            )
            paid = await connection.fetchval(
                "SELECT id FROM vouchers.accounts WHERE kind = 'grant_paid' AND ref = $1", holder
            )
            decision = uuid.uuid4()
            entry = await connection.fetchval(
                "INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, decision_id, actor) "
                "VALUES ('grant', $1, $2, $3, $4, 'before-0009') RETURNING id",
                budget,
                paid,
                amount_fen,
                decision,
            )
            grant_id: int = await connection.fetchval(
                "INSERT INTO vouchers.grants (decision_id, measure, holder, year, amount_fen, entry_id, issued_by) "
                "VALUES ($1, 'M6', $2, 2025, $3, $4, 'before-0009') RETURNING id",
                decision,
                holder,
                amount_fen,
                entry,
            )
            return grant_id
    finally:
        await connection.close()


async def test_history_over_the_budget_is_kept_reported_and_refuses_new_commitments(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    budget_database: str,
    clock: Callable[[datetime], None],
) -> None:
    larger = await _grant_before_0009(budget_database, 500_000 * YUAN)
    smaller = await _grant_before_0009(budget_database, 400_000 * YUAN)  # 900,000 committed of 500,000
    clock(datetime(2025, 6, 1, 2, tzinfo=UTC))
    decision = await m6_decision(live_registry_client, live_eligibility_client, 100_000)
    refused = await grant(vouchers, decision)
    assert_exhausted(refused, "M6", 2025, 500_000, 0, 100_000)
    assert refused.json()["committed_fen"] == 900_000 * YUAN
    line = await agree(vouchers, budget_database, "M6", 2025)  # no row yet: committed is the ledger's
    assert (line["committed_fen"], line["remaining_fen"], line["over_budget"]) == (900_000 * YUAN, 0, True)

    # the first return creates the row from the ledger: limit = max(budget, used), nothing dropped
    await reverse(vouchers, smaller)
    assert await budget_row(budget_database, "M6", 2025) == (900_000 * YUAN, 500_000 * YUAN)
    assert_exhausted(await grant(vouchers, decision), "M6", 2025, 500_000, 0, 100_000)
    line = await agree(vouchers, budget_database, "M6", 2025)
    assert (line["committed_fen"], line["remaining_fen"], line["over_budget"]) == (500_000 * YUAN, 0, False)

    await reverse(vouchers, larger)
    assert (await grant(vouchers, decision)).status_code == 201
    assert await budget_row(budget_database, "M6", 2025) == (500_000 * YUAN, 100_000 * YUAN)
    line = await agree(vouchers, budget_database, "M6", 2025)
    assert (line["committed_fen"], line["remaining_fen"], line["over_budget"]) == (
        100_000 * YUAN,
        400_000 * YUAN,
        False,
    )
