"""docs/policy.md's worked examples M3-1 … M3-14 through the HTTP APIs.

Real registry and eligibility processes, real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from shared.auth import APPROVER
from tests.auth import auth
from tests.factories import new_credit_code
from tests.vouchers.flow import YUAN, approved_m3, issue, m3_evidence, model_supply, redeem, submit


@pytest.fixture
def clock(vouchers_app: FastAPI) -> Iterator[Callable[[datetime], None]]:
    original = vouchers_app.state.clock

    def set_now(moment: datetime) -> None:
        vouchers_app.state.clock = lambda: moment

    yield set_now
    vouchers_app.state.clock = original


async def _entries(database_url: str, voucher_code: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return list(
            await connection.fetch(
                "SELECT e.* FROM vouchers.entries e JOIN vouchers.vouchers v ON v.id = e.voucher_id "
                "WHERE v.code = $1 ORDER BY e.id",
                voucher_code,
            )
        )
    finally:
        await connection.close()


async def test_m3_1_claim_30_percent_of_a_filed_model_contract(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    response = await issue(vouchers, decision_id)
    assert response.status_code == 201, response.text
    voucher = response.json()
    assert (voucher["kind"], voucher["amount_fen"], voucher["available_fen"]) == (
        "M3",
        3_000_000 * YUAN,
        3_000_000 * YUAN,
    )
    assert (voucher["holder"], voucher["vendor"], voucher["state"]) == (supply.holder, supply.vendor, "active")
    assert voucher["valid_until"] == f"{datetime.now(UTC).year + 1}-12-31"
    [entry] = await _entries(vouchers_database, voucher["code"])
    assert (entry["kind"], entry["amount_fen"], str(entry["decision_id"])) == ("issue", 3_000_000 * YUAN, decision_id)
    again = await issue(vouchers, decision_id)
    assert (again.status_code, again.json()["code"]) == (409, "already_issued")


async def test_m3_2_a_contract_is_claimed_once(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    supply = await model_supply(live_registry_client)
    evidence = m3_evidence(supply, 10_000_000 * YUAN, 3_000_000 * YUAN)
    first = await submit(live_eligibility_client, supply.holder, evidence)
    from tests.vouchers.flow import approve

    assert (await issue(vouchers, await approve(live_eligibility_client, first))).status_code == 201
    # the same contract again, any amount: refused early by eligibility ...
    second = await submit(live_eligibility_client, supply.holder, {**evidence, "claim_fen": 100 * YUAN})
    assert second["decision"]["outcome"] == "ineligible"
    assert "contract_already_claimed" in {f["code"] for f in second["decision"]["failures"]}
    # ... by the award register for a decision taken outside the formulas (A1) ...
    path = f"/v1/applications/{second['id']}/manual-decisions"
    director = auth(APPROVER, name="director")
    a1 = {"amount_fen": 100 * YUAN, "reason": "测试：一事一议"}
    register = await live_eligibility_client.post(path, json=a1, headers=director)
    assert (register.status_code, register.json()["code"]) == (409, "already_awarded")
    # ... and by the ledger itself, even when the A1 decision deliberately overrides the register
    overrides = [{"claim_key": k, "reason": "测试：覆盖"} for k in second["decision"]["claims"]]
    manual = await live_eligibility_client.post(path, json={**a1, "overrides": overrides}, headers=director)
    assert manual.status_code == 200, manual.text
    refused = await issue(vouchers, manual.json()["decision"]["id"])
    assert (refused.status_code, refused.json()["code"]) == (409, "contract_already_claimed")
    connection = await asyncpg.connect(vouchers_database)
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM vouchers.vouchers WHERE decision_id = $1", uuid.UUID(manual.json()["decision"]["id"])
        )
    finally:
        await connection.close()
    assert count == 0


async def test_m3_3_over_30_percent_is_refused(
    live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    supply = await model_supply(live_registry_client)
    application = await submit(
        live_eligibility_client, supply.holder, m3_evidence(supply, 10_000_000 * YUAN, 3_000_000 * YUAN + 1)
    )
    assert application["decision"]["outcome"] == "ineligible"
    assert [f["code"] for f in application["decision"]["failures"]] == ["over_contract_share"]


async def test_m3_3_the_ledger_refuses_over_30_percent_even_under_a1(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    supply = await model_supply(live_registry_client)
    application = await submit(
        live_eligibility_client, supply.holder, m3_evidence(supply, 10_000_000 * YUAN, 3_000_000 * YUAN + 1)
    )
    manual = await live_eligibility_client.post(
        f"/v1/applications/{application['id']}/manual-decisions",
        json={"amount_fen": 3_000_000 * YUAN + 1, "reason": "测试：超过30%"},
        headers=auth(APPROVER, name="director"),
    )
    refused = await issue(vouchers, manual.json()["decision"]["id"])
    assert (refused.status_code, refused.json()["code"]) == (409, "over_contract_share")


async def test_m3_4_thirty_percent_rounds_down_to_the_fen(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    _, decision_id = await approved_m3(
        live_registry_client, live_eligibility_client, contract_fen=33_333, claim_fen=None
    )
    voucher = (await issue(vouchers, decision_id)).json()
    assert voucher["amount_fen"] == 9_999  # 99.99


@pytest.mark.parametrize("filing", ["absent", "revoked_before_contract"])
async def test_m3_5_the_model_must_be_filed(
    filing: str, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    from tests.eligibility import seed
    from tests.vouchers.flow import ModelSupply

    holder = await seed.organisation(live_registry_client)
    vendor = await seed.vendor(live_registry_client, is_model_vendor=True)
    model_id = await seed.model(live_registry_client, vendor)
    if filing == "revoked_before_contract":
        number = await seed.filing(live_registry_client, model_id, "2024-03-01")
        revoked = await live_registry_client.patch(
            f"/v1/filings/{number}", json={"status": "revoked", "effective_from": "2025-02-01"}
        )
        assert revoked.status_code == 200
    evidence = m3_evidence(ModelSupply(holder, vendor, model_id), 10_000_000 * YUAN, 3_000_000 * YUAN)
    application = await submit(live_eligibility_client, holder, evidence)
    assert application["decision"]["outcome"] == "ineligible"
    assert "model_not_filed" in [f["code"] for f in application["decision"]["failures"]]


async def _second_claim(
    vouchers: httpx.AsyncClient,
    registry: httpx.AsyncClient,
    eligibility: httpx.AsyncClient,
    clock: Callable[[datetime], None],
    second_claim_at: datetime,
) -> httpx.Response:
    clock(datetime(2025, 5, 10, 2, tzinfo=UTC))
    supply, first = await approved_m3(registry, eligibility)
    assert (await issue(vouchers, first)).status_code == 201
    _, second = await approved_m3(registry, eligibility, supply=supply)
    clock(second_claim_at)
    return await issue(vouchers, second)


async def test_m3_6_the_annual_claim_ceiling_says_what_remains(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    clock: Callable[[datetime], None],
) -> None:
    refused = await _second_claim(
        vouchers, live_registry_client, live_eligibility_client, clock, datetime(2025, 11, 3, 2, tzinfo=UTC)
    )
    assert refused.status_code == 409
    problem = refused.json()
    assert (problem["code"], problem["clause"], problem["headroom_fen"]) == ("claim_ceiling", "M3", 2_000_000 * YUAN)
    assert "尚余 2,000,000.00 元" in problem["detail"]


async def test_m3_6_in_english(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    clock: Callable[[datetime], None],
) -> None:
    vouchers.headers["Accept-Language"] = "en"
    refused = await _second_claim(
        vouchers, live_registry_client, live_eligibility_client, clock, datetime(2025, 12, 31, 15, 59, tzinfo=UTC)
    )  # 23:59 in Shenzhen: still 2025
    assert "2,000,000.00 remains for 2025" in refused.json()["detail"]


async def test_m3_7_the_ceiling_is_per_calendar_year(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    clock: Callable[[datetime], None],
) -> None:
    accepted = await _second_claim(
        vouchers, live_registry_client, live_eligibility_client, clock, datetime(2026, 1, 2, 2, tzinfo=UTC)
    )
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["year"] == 2026


async def test_m3_8_twenty_simultaneous_claims_five_accepted(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    supply = await model_supply(live_registry_client)
    decisions = []
    for _ in range(20):
        _, decision_id = await approved_m3(
            live_registry_client,
            live_eligibility_client,
            contract_fen=4_000_000 * YUAN,
            claim_fen=1_000_000 * YUAN,
            supply=supply,
        )
        decisions.append(decision_id)
    responses = await asyncio.gather(*(issue(vouchers, decision_id) for decision_id in decisions))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * 5 + [409] * 15
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"claim_ceiling"}
    connection = await asyncpg.connect(vouchers_database)
    try:
        year = datetime.now(UTC).year
        total = await connection.fetchval(
            "SELECT sum(amount_fen) FROM vouchers.vouchers WHERE holder = $1 AND year = $2", supply.holder, year
        )
        used = await connection.fetchval(
            "SELECT used_fen FROM vouchers.allowances WHERE holder = $1 AND year = $2 AND kind = 'M3.claims'",
            supply.holder,
            year,
        )
        issued = await connection.fetchval(
            "SELECT sum(e.amount_fen) FROM vouchers.entries e JOIN vouchers.vouchers v ON v.id = e.voucher_id "
            "WHERE v.holder = $1 AND e.kind = 'issue'",
            supply.holder,
        )
    finally:
        await connection.close()
    assert total == used == issued == 5_000_000 * YUAN


@pytest.fixture
async def voucher(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> tuple[str, str]:
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    response = await issue(vouchers, decision_id)
    assert response.status_code == 201
    return str(response.json()["code"]), supply.vendor


async def test_m3_9_and_10_partial_redemptions_then_insufficient_balance(
    vouchers: httpx.AsyncClient, voucher: tuple[str, str], vouchers_database: str
) -> None:
    code, vendor = voucher
    first = await redeem(vouchers, code, vendor, 1_200_000 * YUAN, "k-1", "FP-001")
    assert first.status_code == 201, first.text
    assert first.json()["voucher"]["available_fen"] == 1_800_000 * YUAN
    second = await redeem(vouchers, code, vendor, 1_800_000 * YUAN, "k-2", "FP-002")
    assert second.status_code == 201
    assert second.json()["voucher"]["available_fen"] == 0
    state = (await vouchers.get(f"/v1/vouchers/{code}")).json()
    assert (state["state"], state["redeemed_fen"], state["available_fen"]) == ("redeemed", 3_000_000 * YUAN, 0)

    more = await redeem(vouchers, code, vendor, 1, "k-3", "FP-003")
    assert (more.status_code, more.json()["code"]) == (409, "insufficient_balance")
    assert more.json()["available_fen"] == 0
    assert len(await _entries(vouchers_database, code)) == 3  # issue + two redemptions


async def test_m3_11_a_retry_gets_the_first_answer_and_one_entry(
    vouchers: httpx.AsyncClient, voucher: tuple[str, str], vouchers_database: str
) -> None:
    code, vendor = voucher
    first = await redeem(vouchers, code, vendor, 100_000 * YUAN, "retry-me")
    again = await redeem(vouchers, code, vendor, 100_000 * YUAN, "retry-me")
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json()
    assert [e["kind"] for e in await _entries(vouchers_database, code)] == ["issue", "redeem"]
    # a refusal is remembered too: after the balance runs out, the same key still answers the same
    refused = await redeem(vouchers, code, vendor, 10_000_000 * YUAN, "too-much")
    assert refused.json()["code"] == "insufficient_balance"
    replayed = (await redeem(vouchers, code, vendor, 10_000_000 * YUAN, "too-much")).json()
    assert {**replayed, "request_id": None} == {**refused.json(), "request_id": None}


async def test_m3_12_the_same_key_with_another_body_is_a_conflict(
    vouchers: httpx.AsyncClient, voucher: tuple[str, str], vouchers_database: str
) -> None:
    code, vendor = voucher
    assert (await redeem(vouchers, code, vendor, 100_000 * YUAN, "same-key")).status_code == 201
    conflict = await redeem(vouchers, code, vendor, 200_000 * YUAN, "same-key")
    assert (conflict.status_code, conflict.json()["code"]) == (409, "idempotency_key_reused")
    assert [e["amount_fen"] for e in await _entries(vouchers_database, code)] == [3_000_000 * YUAN, 100_000 * YUAN]


async def test_m3_13_another_vendor_is_refused_without_learning_the_voucher_exists(
    vouchers: httpx.AsyncClient, voucher: tuple[str, str], vouchers_database: str
) -> None:
    code, _ = voucher
    stranger = new_credit_code()
    refused = await redeem(vouchers, code, stranger, 100 * YUAN, "w-1")
    unknown_code = code[:-1] + ("A" if code[-1] != "A" else "B")
    unknown = await redeem(vouchers, unknown_code, stranger, 100 * YUAN, "w-2")
    assert (refused.status_code, refused.json()["code"]) == (404, "voucher_not_found")
    # the same answer as for a voucher that does not exist (but for the code it names)
    varying = ("detail", "instance", "request_id")
    assert {k: v for k, v in refused.json().items() if k not in varying} == {
        k: v for k, v in unknown.json().items() if k not in varying
    }
    assert refused.json()["detail"] == unknown.json()["detail"].replace(unknown_code, code)
    assert "available" not in str(refused.json())  # nothing about the voucher leaks
    assert [e["kind"] for e in await _entries(vouchers_database, code)] == ["issue"]


async def test_m3_14_fifty_simultaneous_redemptions_thirty_accepted(
    vouchers: httpx.AsyncClient, voucher: tuple[str, str], vouchers_database: str
) -> None:
    code, vendor = voucher
    responses = await asyncio.gather(
        *(redeem(vouchers, code, vendor, 100_000 * YUAN, f"burst-{i}", f"FP-{i}") for i in range(50))
    )
    assert sorted(r.status_code for r in responses) == [201] * 30 + [409] * 20
    available = [r.json()["voucher"]["available_fen"] for r in responses if r.status_code == 201]
    assert min(available) == 0
    assert sorted(available, reverse=True) == [(30 - i) * 100_000 * YUAN - 100_000 * YUAN for i in range(30)]
    state = (await vouchers.get(f"/v1/vouchers/{code}")).json()
    assert (state["available_fen"], state["redeemed_fen"]) == (0, 3_000_000 * YUAN)
    redeemed = [e for e in await _entries(vouchers_database, code) if e["kind"] == "redeem"]
    assert len(redeemed) == 30


async def test_the_ledger_is_consistent_after_all_of_the_above(vouchers_database: str) -> None:
    """Runs last in this module: every invariant holds over everything the tests wrote."""
    from services.vouchers.invariants import check_database

    assert await check_database(vouchers_database) == []
