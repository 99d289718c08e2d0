"""Compute vouchers (M1), holds, grants, voiding and expiry, and peers that are down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from services.vouchers.app import create_app
from services.vouchers.redemptions.endpoints import HOT_ROUTE, HotPath, redeem_hot
from services.vouchers.redemptions.endpoints import redeem_voucher as documented_redeem
from services.vouchers.settings import VouchersSettings
from shared.auth import APPROVER, OFFICER
from shared.dbroles import login_url
from shared.errors import install_error_handlers
from shared.limits import install_request_guard
from tests.auth import as_vendor, auth
from tests.conftest import free_port
from tests.eligibility import seed
from tests.vouchers.flow import (
    OFFICER_CHEN,
    YUAN,
    approve,
    approved_m3,
    authorise,
    issue,
    m1_decision,
    redeem,
    submit,
    vendor_call,
)


@pytest.fixture
def clock(vouchers_app: FastAPI) -> Iterator[Callable[[datetime], None]]:
    original = vouchers_app.state.clock

    def set_now(moment: datetime) -> None:
        vouchers_app.state.clock = lambda: moment

    yield set_now
    vouchers_app.state.clock = original


async def _fetch(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


# --- M1 compute vouchers -------------------------------------------------------------------


async def test_m1_voucher_redeemed_only_by_a_non_affiliated_compute_vendor(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    holder, provider, application = await m1_decision(live_registry_client, live_eligibility_client)
    voucher = (await issue(vouchers, await approve(live_eligibility_client, application))).json()
    assert (voucher["kind"], voucher["amount_fen"], voucher["vendor"]) == ("M1", 500_000 * YUAN, None)
    code = voucher["code"]
    assert code.startswith("M1-")

    affiliated = await seed.vendor(live_registry_client, is_compute_vendor=True)
    await seed.affiliation(live_registry_client, holder, affiliated)
    model_vendor = await seed.vendor(live_registry_client, is_model_vendor=True)

    refused = await redeem(vouchers, code, affiliated, 100 * YUAN, "m1-a")
    assert (refused.status_code, refused.json()["code"], refused.json()["clause"]) == (403, "vendor_affiliated", "M1")
    not_compute = await redeem(vouchers, code, model_vendor, 100 * YUAN, "m1-b")
    assert (not_compute.status_code, not_compute.json()["code"]) == (403, "vendor_not_compute_vendor")
    accepted = await redeem(vouchers, code, provider, 100 * YUAN, "m1-c")  # named on the holder's application
    assert accepted.status_code == 201, accepted.text
    other_compute = await seed.vendor(live_registry_client, is_compute_vendor=True)
    unauthorised = await redeem(vouchers, code, other_compute, 100 * YUAN, "m1-d")
    assert (unauthorised.status_code, unauthorised.json()["code"]) == (403, "vendor_not_authorised")
    await authorise(vouchers, code, holder, other_compute)  # the holder's choice (issue #12, finding 7)
    assert (await redeem(vouchers, code, other_compute, 100 * YUAN, "m1-e")).status_code == 201
    assert (await vouchers.get(f"/v1/vouchers/{code}")).json()["redeemed_fen"] == 200 * YUAN


async def test_m1_class_cap_holds_across_vouchers_even_for_a1_decisions(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    holder, _provider, application = await m1_decision(live_registry_client, live_eligibility_client)
    assert (await issue(vouchers, await approve(live_eligibility_client, application))).status_code == 201
    # a second application for 2025 on new fees: the eligibility service sees the cap is used up
    evidence = application["evidence"]
    more = {**evidence, "invoices": [{**evidence["invoices"][0], "invoice_number": "INV-MORE"}]}
    again = await submit(live_eligibility_client, holder, more, as_of="2026-02-02")
    assert again["decision"]["outcome"] == "ineligible"
    assert [f["code"] for f in again["decision"]["failures"]] == ["class_cap_reached"]
    # an A1 decision for it all the same: the year's cap refuses it (eligibility's register) ...
    manual = await live_eligibility_client.post(
        f"/v1/applications/{again['id']}/manual-decisions",
        json={"amount_fen": 100_000 * YUAN, "reason": "测试：一事一议"},
        headers=auth(APPROVER, name="director"),
    )
    assert (manual.status_code, manual.json()["code"], manual.json()["clause"]) == (409, "annual_cap_reached", "M1")
    # ... and nothing reached the ledger: its class-cap row is as the first voucher left it
    [allowance] = await _fetch(
        vouchers_database,
        "SELECT limit_fen, used_fen FROM vouchers.allowances WHERE holder = $1 AND kind = 'M1.class_cap'",
        holder,
    )
    assert (allowance["limit_fen"], allowance["used_fen"]) == (500_000 * YUAN, 500_000 * YUAN)


# --- holds ----------------------------------------------------------------------------------


async def test_holds_reserve_capture_release_and_expire(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    code = (await issue(vouchers, decision_id)).json()["code"]
    vendor = supply.vendor

    held = await vouchers.post(
        f"/v1/vouchers/{code}/holds",
        json={"amount_fen": 1_000_000 * YUAN, "invoice_number": "H-1"},
        headers=vendor_call(vendor, "h-1"),
    )
    assert held.status_code == 201, held.text
    hold = held.json()
    assert (hold["status"], hold["voucher"]["available_fen"], hold["voucher"]["held_fen"]) == (
        "held",
        2_000_000 * YUAN,
        1_000_000 * YUAN,
    )
    # a held amount counts against the balance: 2,500,000 more is refused
    over = await redeem(vouchers, code, vendor, 2_500_000 * YUAN, "h-2")
    assert over.json()["code"] == "insufficient_balance"

    stranger = await seed.vendor(live_registry_client, is_model_vendor=True)
    not_theirs = await vouchers.post(f"/v1/holds/{hold['id']}/capture", headers=vendor_call(stranger, "h-x"))
    assert not_theirs.status_code == 404
    captured = await vouchers.post(f"/v1/holds/{hold['id']}/capture", headers=vendor_call(vendor, "h-3"))
    assert (captured.status_code, captured.json()["status"]) == (200, "captured")
    replay = await vouchers.post(f"/v1/holds/{hold['id']}/capture", headers=vendor_call(vendor, "h-3"))
    assert replay.json() == captured.json()
    twice = await vouchers.post(f"/v1/holds/{hold['id']}/release", headers=vendor_call(vendor, "h-4"))
    assert (twice.status_code, twice.json()["code"]) == (409, "hold_not_active")

    second = (
        await vouchers.post(
            f"/v1/vouchers/{code}/holds",
            json={"amount_fen": 500_000 * YUAN, "invoice_number": "H-2"},
            headers=vendor_call(vendor, "h-5"),
        )
    ).json()
    released = await vouchers.post(f"/v1/holds/{second['id']}/release", headers=vendor_call(vendor, "h-6"))
    assert released.json()["status"] == "released"

    short = (
        await vouchers.post(
            f"/v1/vouchers/{code}/holds",
            json={"amount_fen": 300_000 * YUAN, "invoice_number": "H-3", "hold_seconds": 1},
            headers=vendor_call(vendor, "h-7"),
        )
    ).json()
    await asyncio.sleep(1.2)
    late = await vouchers.post(f"/v1/holds/{short['id']}/capture", headers=vendor_call(vendor, "h-8"))
    assert (late.status_code, late.json()["code"], late.json()["hold_status"]) == (409, "hold_not_active", "expired")

    state = (await vouchers.get(f"/v1/vouchers/{code}")).json()
    assert (state["available_fen"], state["held_fen"], state["redeemed_fen"]) == (2_000_000 * YUAN, 0, 1_000_000 * YUAN)
    [allowance] = await _fetch(
        vouchers_database,
        "SELECT used_fen FROM vouchers.allowances WHERE holder = $1 AND kind = 'M3.redemptions' AND year = $2",
        supply.holder,
        datetime.now(UTC).year,
    )
    assert allowance["used_fen"] == 1_000_000 * YUAN  # released and expired holds gave their headroom back


async def test_the_redemption_ceiling_counts_the_redemption_year(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    clock: Callable[[datetime], None],
) -> None:
    """M3: redemptions per enterprise per calendar year ≤ 5,000,000, whatever year the voucher was claimed."""
    clock(datetime(2025, 6, 1, 2, tzinfo=UTC))
    supply, first = await approved_m3(live_registry_client, live_eligibility_client)
    _, second = await approved_m3(
        live_registry_client, live_eligibility_client, supply=supply, claim_fen=2_000_000 * YUAN
    )
    codes = [(await issue(vouchers, d)).json()["code"] for d in (first, second)]
    clock(datetime(2026, 3, 1, 2, tzinfo=UTC))
    _, third = await approved_m3(live_registry_client, live_eligibility_client, supply=supply)
    codes.append((await issue(vouchers, third)).json()["code"])
    assert (await redeem(vouchers, codes[0], supply.vendor, 3_000_000 * YUAN, "y-1")).status_code == 201
    assert (await redeem(vouchers, codes[1], supply.vendor, 2_000_000 * YUAN, "y-2")).status_code == 201
    refused = await redeem(vouchers, codes[2], supply.vendor, 1 * YUAN, "y-3")
    assert refused.status_code == 409
    problem = refused.json()
    assert (problem["code"], problem["clause"], problem["year"], problem["headroom_fen"]) == (
        "redemption_ceiling",
        "M3",
        2026,
        0,
    )
    clock(datetime(2027, 1, 5, 2, tzinfo=UTC))
    assert (await redeem(vouchers, codes[2], supply.vendor, 1 * YUAN, "y-4")).status_code == 201


# --- grants, voiding, expiry -------------------------------------------------------------------


async def test_other_measures_are_grants_once(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    holder, evidence = await seed.m6_applicant(live_registry_client, 1_000_000 * YUAN)
    application = await submit(live_eligibility_client, holder, evidence, as_of="2026-02-01")
    decision_id = await approve(live_eligibility_client, application)
    wrong = await issue(vouchers, decision_id)
    assert (wrong.status_code, wrong.json()["code"]) == (422, "wrong_instrument")
    granted = await vouchers.post("/v1/grants", json={"decision_id": decision_id}, headers=OFFICER_CHEN)
    assert granted.status_code == 201, granted.text
    assert (granted.json()["measure"], granted.json()["amount_fen"], granted.json()["issued_by"]) == (
        "M6",
        500_000 * YUAN,
        "officer-chen",
    )
    again = await vouchers.post("/v1/grants", json={"decision_id": decision_id}, headers=OFFICER_CHEN)
    assert (again.status_code, again.json()["code"]) == (409, "already_issued")
    [entry] = await _fetch(
        vouchers_database,
        "SELECT e.kind, e.amount_fen, a.kind AS to_kind, a.ref FROM vouchers.entries e "
        "JOIN vouchers.accounts a ON a.id = e.to_account_id WHERE e.decision_id = $1",
        uuid.UUID(decision_id),
    )
    assert (entry["kind"], entry["amount_fen"], entry["to_kind"], entry["ref"]) == (
        "grant",
        500_000 * YUAN,
        "grant_paid",
        holder,
    )

    # a mistaken grant is corrected by a reversing entry that references it, once
    grant_id = granted.json()["id"]
    approver = auth(APPROVER, name="approver-sun")
    reversed_ = await vouchers.post(f"/v1/grants/{grant_id}/reversal", json={"reason": "重复拨付"}, headers=approver)
    assert reversed_.status_code == 201, reversed_.text
    reversal_id = reversed_.json()["reversed_by_entry_id"]
    [reversal] = await _fetch(
        vouchers_database,
        "SELECT r.kind, r.amount_fen, r.reverses_entry_id, r.actor, "
        "r.from_account_id = o.to_account_id AS swapped_from, "
        "r.to_account_id = o.from_account_id AS swapped_to FROM vouchers.entries r "
        "JOIN vouchers.entries o ON o.id = r.reverses_entry_id WHERE r.id = $1",
        reversal_id,
    )
    assert (reversal["kind"], reversal["amount_fen"], reversal["reverses_entry_id"], reversal["actor"]) == (
        "reversal",
        500_000 * YUAN,
        granted.json()["entry_id"],
        "approver-sun",
    )
    assert reversal["swapped_from"]
    assert reversal["swapped_to"]
    twice = await vouchers.post(f"/v1/grants/{grant_id}/reversal", json={"reason": "再次"}, headers=approver)
    assert (twice.status_code, twice.json()["code"]) == (409, "already_reversed")
    missing = await vouchers.post("/v1/grants/999999999/reversal", json={"reason": "无此记录"}, headers=approver)
    assert missing.status_code == 404


async def test_not_approved_decisions_issue_nothing(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    from tests.vouchers.flow import m3_evidence, model_supply

    supply = await model_supply(live_registry_client)
    application = await submit(live_eligibility_client, supply.holder, m3_evidence(supply, 1_000_000 * YUAN, None))
    pending = await issue(vouchers, application["decision"]["id"])
    assert (pending.status_code, pending.json()["code"]) == (409, "decision_not_approved")
    unknown = await issue(vouchers, "00000000-0000-0000-0000-000000000000")
    assert unknown.json()["code"] == "decision_not_approved"


async def test_voiding_returns_the_unused_amount(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    code = (await issue(vouchers, decision_id)).json()["code"]
    assert (await redeem(vouchers, code, supply.vendor, 1_000_000 * YUAN, "v-1")).status_code == 201
    no_reason = await vouchers.post(f"/v1/vouchers/{code}/void", json={}, headers=OFFICER_CHEN)
    assert no_reason.status_code == 422
    actor_in_body = await vouchers.post(
        f"/v1/vouchers/{code}/void", json={"officer": "chen", "reason": "企业申请注销"}, headers=OFFICER_CHEN
    )
    assert actor_in_body.status_code == 422  # the actor is the token's client, never the body
    voided = await vouchers.post(f"/v1/vouchers/{code}/void", json={"reason": "企业申请注销"}, headers=OFFICER_CHEN)
    assert voided.status_code == 200, voided.text
    body = voided.json()
    assert (body["state"], body["available_fen"], body["returned_fen"]) == ("voided", 0, 2_000_000 * YUAN)
    after = await redeem(vouchers, code, supply.vendor, 1, "v-2")
    assert after.json()["code"] == "voucher_voided"
    twice = await vouchers.post(f"/v1/vouchers/{code}/void", json={"reason": "再次"}, headers=OFFICER_CHEN)
    assert twice.json()["code"] == "voucher_not_active"
    kinds = await _fetch(
        vouchers_database,
        "SELECT e.kind, e.amount_fen, a.kind AS to_kind, e.actor FROM vouchers.entries e "
        "JOIN vouchers.vouchers v ON v.id = e.voucher_id JOIN vouchers.accounts a ON a.id = e.to_account_id "
        "WHERE v.code = $1 ORDER BY e.id",
        code,
    )
    assert [(k["kind"], k["amount_fen"], k["to_kind"], k["actor"]) for k in kinds] == [
        ("issue", 3_000_000 * YUAN, "voucher", "officer-chen"),
        ("redeem", 1_000_000 * YUAN, "vendor_receivable", supply.vendor),
        ("void", 2_000_000 * YUAN, "budget", "officer-chen"),
    ]


async def test_expiry_after_the_end_of_the_next_calendar_year(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    clock: Callable[[datetime], None],
) -> None:
    clock(datetime(2025, 6, 1, 2, tzinfo=UTC))
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    voucher = (await issue(vouchers, decision_id)).json()
    assert voucher["valid_until"] == "2026-12-31"
    code = voucher["code"]
    clock(datetime(2026, 12, 31, 15, 59, tzinfo=UTC))  # 23:59 on 31 December in Shenzhen: still valid
    assert (await redeem(vouchers, code, supply.vendor, 100 * YUAN, "e-1")).status_code == 201
    clock(datetime(2027, 1, 2, 2, tzinfo=UTC))
    late = await redeem(vouchers, code, supply.vendor, 100 * YUAN, "e-2")
    assert (late.status_code, late.json()["code"]) == (409, "voucher_expired")
    assert (await vouchers.get(f"/v1/vouchers/{code}")).json()["state"] == "expired"
    expired = await vouchers.post("/v1/expiries")
    assert expired.json()["expired_vouchers"] >= 1
    state = (await vouchers.get(f"/v1/vouchers/{code}")).json()
    assert (state["state"], state["available_fen"], state["returned_fen"]) == (
        "expired",
        0,
        3_000_000 * YUAN - 100 * YUAN,
    )


# --- bad input and missing headers -------------------------------------------------------------


VENDOR_G = "9144030071526726XG"
GOOD = {"amount_fen": 1, "invoice_number": "x"}


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        (as_vendor(VENDOR_G), GOOD, 400, "idempotency_key_required"),
        (as_vendor(VENDOR_G, **{"Idempotency-Key": ""}), GOOD, 400, "idempotency_key_required"),
        ({"Idempotency-Key": "k"}, GOOD, 403, "forbidden"),  # the client's default token: an administrator
        ({"Idempotency-Key": "k", "X-Vendor-Id": VENDOR_G}, GOOD, 403, "forbidden"),  # the old header is no identity
        ({"Authorization": "Bearer nonsense", "Idempotency-Key": "k"}, GOOD, 401, "invalid_token"),
        (vendor_call(VENDOR_G, "k" * 201), GOOD, 422, "validation_failed"),
        (vendor_call(VENDOR_G, "k"), {"amount_fen": 0, "invoice_number": "x"}, 422, "validation_failed"),
        (vendor_call(VENDOR_G, "k"), {"amount_fen": 1.5, "invoice_number": "x"}, 422, "validation_failed"),
        (vendor_call(VENDOR_G, "k"), {"amount_fen": 1}, 422, "validation_failed"),
        (vendor_call(VENDOR_G, "k"), {**GOOD, "tip": 5}, 422, "validation_failed"),
        # JSON can carry U+0000, PostgreSQL text cannot (this was a 500, found by schemathesis)
        (vendor_call(VENDOR_G, "k"), {"amount_fen": 1, "invoice_number": "x\u0000"}, 422, "unstorable_text"),
    ],
)
async def test_garbage_from_vendors_is_refused_cleanly(
    vouchers: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any], status: int, code: str
) -> None:
    response = await vouchers.post("/v1/vouchers/M3-AAAAA-BBBBB-CCCCC-DDDDD/redemptions", json=body, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


async def test_unknown_voucher(vouchers: httpx.AsyncClient) -> None:
    response = await redeem(vouchers, "M3-AAAAA-BBBBB-CCCCC-DDDDD", VENDOR_G, 1, "u-1")
    assert (response.status_code, response.json()["code"]) == (404, "voucher_not_found")
    lowercase = await vouchers.get("/v1/vouchers/m3-nope")
    assert lowercase.status_code == 422


async def test_eligibility_down_means_503_and_nothing_written(
    vouchers_database: str,
    live_registry: str,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
) -> None:
    _, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    app = create_app(
        VouchersSettings(
            database_url=login_url(vouchers_database, "vouchers"),
            eligibility_url=f"http://127.0.0.1:{free_port()}",
            registry_url=live_registry,
            peer_timeout_seconds=0.5,
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://v") as client:
            response = await client.post("/v1/vouchers", json={"decision_id": decision_id}, headers=OFFICER_CHEN)
    assert response.status_code == 503
    assert response.json()["code"] == "peer_unavailable"
    assert response.headers["retry-after"]
    rows = await _fetch(vouchers_database, "SELECT 1 FROM vouchers.vouchers WHERE decision_id = $1::uuid", decision_id)
    assert rows == []


async def test_the_invariants_endpoint_reports_a_broken_projection(
    vouchers: httpx.AsyncClient, vouchers_database: str
) -> None:
    """The check can fail: corrupt a projection (as superuser), see it named, put it back."""
    assert (await vouchers.get("/v1/ledger/invariants")).json() == {"ok": True, "violations": []}
    connection = await asyncpg.connect(vouchers_database)
    try:
        voucher_id = await connection.fetchval(
            "SELECT id FROM vouchers.vouchers WHERE available_fen > 1 ORDER BY id LIMIT 1"
        )
        assert voucher_id is not None
        await connection.execute(
            "UPDATE vouchers.vouchers SET available_fen = available_fen - 1, returned_fen = returned_fen + 1 "
            "WHERE id = $1",
            voucher_id,
        )
        report = (await vouchers.get("/v1/ledger/invariants")).json()
        assert report["ok"] is False
        assert {v["check"] for v in report["violations"]} == {"voucher_projection"}
    finally:
        await connection.execute(
            "UPDATE vouchers.vouchers SET available_fen = available_fen + 1, returned_fen = returned_fen - 1 "
            "WHERE id = $1",
            voucher_id,
        )
        await connection.close()
    assert (await vouchers.get("/v1/ledger/invariants")).json()["ok"] is True


def _answer(response: httpx.Response) -> tuple[Any, ...]:
    """Everything a client sees but what differs per request (its id)."""
    body = {k: v for k, v in response.json().items() if k not in ("instance", "request_id")}
    headers = ("content-type", "content-language", "www-authenticate", "retry-after")
    return response.status_code, body, [response.headers.get(h) for h in headers]


async def test_the_hot_redemption_route_keeps_the_documented_contract(
    vouchers: httpx.AsyncClient, vouchers_app: FastAPI
) -> None:
    """The redemption endpoint is served by a bare route; OpenAPI documents its FastAPI twin.

    The twin is served on its own here, beside the real app, and both get the same requests:
    authentication, the Idempotency-Key, the path and the body are checked in the same order
    and refused with the same problems.
    """
    # the bare route answers: it is the app's first route, tried before any other (issue #16)
    assert vouchers_app.router.routes[0] is HOT_ROUTE
    assert HOT_ROUTE.endpoint is redeem_hot
    spec = (await vouchers.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/vouchers/{code}/redemptions"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/RedemptionRequest")
    assert operation["security"] == [{"OAuth2": ["vendor"]}]  # client credentials, role vendor (issue #15)
    parameters = {p["name"] for p in operation["parameters"]}
    assert parameters == {"code", "Idempotency-Key"}  # no X-Vendor-Id: the vendor is the token's organisation

    twin = FastAPI()
    install_error_handlers(twin)
    install_request_guard(twin)  # as every service app: the token before the body (issue #12)
    twin.add_api_route("/v1/vouchers/{code}/redemptions", documented_redeem, methods=["POST"], status_code=201)
    for name in ("verifier", "rate_limiter", "ledger_pool", "group_commit", "clock", "settings", "registry"):
        setattr(twin.state, name, getattr(vouchers_app.state, name))
    vendor = vendor_call(VENDOR_G, "k")
    as_json = {"Content-Type": "application/json"}
    bad = {"amount_fen": -1, "invoice_number": ""}
    # (path code, headers or None for a fresh vendor call, body: JSON or raw bytes)
    cases: list[tuple[str, dict[str, str] | None, Any]] = [
        ("M3-AAAAA", {"Authorization": ""}, GOOD),
        ("M3-AAAAA", {"Authorization": "Bearer x.y.z"}, GOOD),
        ("M3-AAAAA", auth(OFFICER, **{"Idempotency-Key": "k"}), GOOD),
        ("M3-AAAAA", as_vendor(VENDOR_G), GOOD),
        ("M3-AAAAA", vendor_call(VENDOR_G, "k" * 201), GOOD),
        ("m3-lower", vendor, GOOD),
        ("M3-" + "A" * 62, vendor, GOOD),
        ("M3-AAAAA%0A", vendor, GOOD),  # a trailing newline is no code in either (Python's `$` would let it pass)
        ("m3-lower", vendor_call(VENDOR_G, "k" * 201), bad),  # every field at once
        ("M3-AAAAA", {**vendor, **as_json}, b"{"),
        ("M3-AAAAA", {"Authorization": "", **as_json}, b"{"),  # the token is checked before the body is read
        ("M3-AAAAA", {**vendor, **as_json}, b"null"),
        ("M3-AAAAA", {**vendor, **as_json}, "\u91d1\u989d".encode("utf-16")),
        ("M3-AAAAA", vendor, b""),
        ("M3-AAAAA", vendor, b'{"amount_fen": 1, "invoice_number": "x"}'),  # no content type
        ("M3-AAAAA", {**vendor, "Content-Type": "text/plain"}, b'{"amount_fen": 1, "invoice_number": "x"}'),
        ("M3-AAAAA", {**vendor, "Accept-Language": "en"}, {"amount_fen": -1, "invoice_number": "x"}),
        ("M3-AAAAA", vendor, {**GOOD, "tip": 1}),
        ("M3-AAAAA", vendor, {"amount_fen": 1.5, "invoice_number": 7, "contract_number": None}),
        ("M3-AAAAA-NOPE", None, GOOD),  # to the ledger: unknown voucher
        ("M3-AAAAA-NOPE", {**vendor_call(VENDOR_G, "json+"), "Content-Type": "application/vnd.x+json"}, GOOD),
        # money is strict in both (issue #12): a string, a float, an exponent, a boolean are not fen
        ("M3-AAAAA-NOPE", None, {"amount_fen": "12", "invoice_number": "x"}),
        ("M3-AAAAA-NOPE", None, {"amount_fen": 12.0, "invoice_number": "x"}),
        ("M3-AAAAA-NOPE", {**vendor, **as_json}, b'{"amount_fen": 1e2, "invoice_number": "x"}'),
        ("M3-AAAAA-NOPE", None, {"amount_fen": True, "invoice_number": "x"}),
    ]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=twin), base_url="http://twin") as documented:

        async def send(
            client: httpx.AsyncClient, n: int, code: str, headers: dict[str, str] | None, body: Any
        ) -> httpx.Response:
            sent = headers if headers is not None else vendor_call(VENDOR_G, f"contract-{id(client)}-{n}")
            if isinstance(body, bytes):
                return await client.post(f"/v1/vouchers/{code}/redemptions", content=body, headers=sent)
            return await client.post(f"/v1/vouchers/{code}/redemptions", json=body, headers=sent)

        for n, (code, headers, body) in enumerate(cases):
            hot, cold = await send(vouchers, n, code, headers, body), await send(documented, n, code, headers, body)
            assert hot.status_code >= 400, hot.text
            assert _answer(hot) == _answer(cold), (code, headers, body, hot.text, cold.text)


async def test_the_fast_path_answers_as_the_routed_path(
    vouchers: httpx.AsyncClient, vouchers_app: FastAPI, vouchers_database: str, live_registry: str
) -> None:
    """`VOUCHERS_FAST_PATH` (on) serves the first route from the innermost middleware; off, the router does (issue
    #16). The same requests get the same answers from both: refusals, problems raised in the route, the ledger's."""
    assert vouchers_app.user_middleware[-1].cls is HotPath  # innermost: inside the request guard and the audit log
    routed = create_app(
        VouchersSettings(
            database_url=login_url(vouchers_database, "vouchers"),
            eligibility_url=f"http://127.0.0.1:{free_port()}",
            registry_url=live_registry,
            fast_path=False,
            # the session's app seals and projects: a second sealer racing it would leave gaps in the chain's
            # sequence, which the ledger's entry count (tests/metrics) reads
            sealer_interval_seconds=0,
            projector_interval_seconds=0,
            reconciliation_interval_seconds=0,
        )
    )
    assert all(middleware.cls is not HotPath for middleware in routed.user_middleware)
    vendor = vendor_call(VENDOR_G, "k")
    cases: list[tuple[str, dict[str, str], Any]] = [
        ("M3-AAAAA", {"Authorization": ""}, GOOD),  # the request guard's 401
        ("M3-AAAAA", as_vendor(VENDOR_G), GOOD),  # the route's 400 (no Idempotency-Key)
        ("M3-AAAAA", auth(OFFICER, **{"Idempotency-Key": "k"}), GOOD),  # 403
        ("m3-lower", vendor_call(VENDOR_G, "k" * 201), {"amount_fen": -1, "invoice_number": ""}),  # 422
        ("M3-AAAAA", {**vendor, "Content-Type": "application/json"}, b"\xff"),  # FastAPI's HTTPException (400)
        ("M3-AAAAA-NOPE", vendor_call(VENDOR_G, f"fast-{uuid.uuid4()}"), GOOD),  # the ledger's 404
    ]
    async with (
        routed.router.lifespan_context(routed),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=routed), base_url="http://v") as client,
    ):
        for code, headers, body in cases:
            path = f"/v1/vouchers/{code}/redemptions"
            sent = {"content": body} if isinstance(body, bytes) else {"json": body}
            fast = await vouchers.post(path, headers=headers, **sent)
            slow = await client.post(path, headers=headers, **sent)
            assert fast.status_code >= 400, fast.text
            assert _answer(fast) == _answer(slow), (code, fast.text, slow.text)
            assert fast.headers["x-request-id"]
            assert fast.json()["instance"] == slow.json()["instance"] == path
