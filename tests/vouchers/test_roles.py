"""Issue #5: who may do what in the vouchers service.

The table below is written here, from the issue's role matrix, not read from the code: every
route of the service (and the shared audit log) against every role and service scope.
A forbidden role gets 403 `forbidden`; an allowed one gets past authorisation (whatever the
request then earns: the requests are built to be refused by validation or to find nothing,
so that the matrix writes nothing); no token gets 401. Then the object-level rules: a vendor
sees and acts only on vouchers it may redeem and on its own holds, batches and statement; an
applicant only on its own vouchers and statements; wrong owner → the usual 404. Last, the
vendor-facing rate limit: 429 with Retry-After, and nothing written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from shared.auth import (
    ADMIN,
    ALL_SCOPES,
    APPLICANT,
    APPROVER,
    AUDITOR,
    BUDGET_RESERVE,
    DASHBOARD,
    DASHBOARD_DETAIL,
    METRICS_READ,
    OFFICER,
    PLATFORM,
    VENDOR,
    RateLimiter,
    is_public,
    iter_routes,
    route_scopes,
)
from tests.auth import as_applicant, as_vendor, auth
from tests.eligibility import seed
from tests.factories import new_credit_code
from tests.vouchers.flow import YUAN, approve, approved_m3, authorise, issue, m1_decision, redeem, vendor_call

BUREAU_READERS = {OFFICER, APPROVER, ADMIN, AUDITOR}
AGGREGATE_READERS = {DASHBOARD} | BUREAU_READERS
WEBHOOK_CLIENTS = {PLATFORM, AUDITOR, ADMIN, APPLICANT, VENDOR}

#: (method, path template) → the roles and scopes that may call it (issue #5's matrix).
MATRIX: dict[tuple[str, str], set[str]] = {
    # vendors' systems, rate limited; the vendor is the token's organisation
    ("POST", "/v1/vouchers/{code}/redemptions"): {VENDOR},
    ("POST", "/v1/vouchers/{code}/holds"): {VENDOR},
    ("POST", "/v1/holds/{hold_id}/{action}"): {VENDOR},
    # officers issue, grant, void and expire; approvers reverse grants
    ("POST", "/v1/vouchers"): {OFFICER, ADMIN},
    ("POST", "/v1/grants"): {OFFICER, ADMIN},
    ("POST", "/v1/grants/{grant_id}/reversal"): {APPROVER, ADMIN},
    ("POST", "/v1/vouchers/{code}/void"): {OFFICER, ADMIN},
    ("POST", "/v1/expiries"): {OFFICER, ADMIN},
    # the bureau releases a vendor's hold, with a reason (issue #12, finding 7)
    ("POST", "/v1/holds/{hold_id}/bureau-release"): {OFFICER, ADMIN},
    # who may spend a compute voucher: its holder authorises and revokes (an officer may revoke)
    ("POST", "/v1/vouchers/{code}/authorisations"): {APPLICANT},
    ("GET", "/v1/vouchers/{code}/authorisations"): {APPLICANT} | BUREAU_READERS,
    ("DELETE", "/v1/vouchers/{code}/authorisations/{vendor}"): {APPLICANT, OFFICER, ADMIN},
    # budget reservations (A2): the eligibility service reserves when it approves; administrators may release
    ("PUT", "/v1/budget-reservations/{reservation_id}"): {BUDGET_RESERVE},
    ("DELETE", "/v1/budget-reservations/{reservation_id}"): {BUDGET_RESERVE, ADMIN},
    ("GET", "/v1/budget-reservations"): {BUDGET_RESERVE} | BUREAU_READERS,
    # one voucher: its holder, a vendor that may redeem it, the bureau and the data platform
    ("GET", "/v1/vouchers/{code}"): {APPLICANT, VENDOR, PLATFORM} | BUREAU_READERS,
    # the ledger's integrity: auditors; the export also for the data platform
    ("GET", "/v1/ledger/invariants"): {AUDITOR, ADMIN},
    ("GET", "/v1/ledger/verify"): {AUDITOR, ADMIN},
    ("GET", "/v1/ledger/seal-lag"): {AUDITOR, ADMIN},
    ("GET", "/v1/ledger/checkpoints"): {AUDITOR, ADMIN},
    ("POST", "/v1/ledger/checkpoints"): {AUDITOR, ADMIN},
    ("GET", "/v1/ledger/export"): {AUDITOR, ADMIN, PLATFORM},
    # settlement: officers create and close; batches are per vendor, so a vendor reads its own
    ("POST", "/v1/settlement-batches"): {OFFICER, ADMIN},
    ("POST", "/v1/settlement-batches/{batch_id}/close"): {OFFICER, ADMIN},
    ("GET", "/v1/settlement-batches"): {VENDOR} | BUREAU_READERS,
    ("GET", "/v1/settlement-batches/{batch_id}"): {VENDOR} | BUREAU_READERS,
    # statements: the applicant its own voucher and enterprise, the vendor its own
    ("GET", "/v1/vouchers/{code}/statement"): {APPLICANT} | BUREAU_READERS,
    ("GET", "/v1/enterprises/{credit_code}/years/{year}/statement"): {APPLICANT} | BUREAU_READERS,
    ("GET", "/v1/vendors/{credit_code}/statement"): {VENDOR} | BUREAU_READERS,
    # every service's audit log
    ("GET", "/v1/audit"): {AUDITOR, ADMIN},
    # the data platform: bulk export and the change feed (with auditors)
    ("GET", "/v1/exports/ledger-entries"): {PLATFORM, AUDITOR, ADMIN},
    ("GET", "/v1/events"): {PLATFORM, AUDITOR, ADMIN},
    # webhooks: every client that may receive events subscribes for itself; an applicant or a
    # vendor is sent only events about its own organisation (shared/feed/dispatcher.py)
    ("GET", "/v1/events/types"): WEBHOOK_CLIENTS,
    ("POST", "/v1/webhooks"): WEBHOOK_CLIENTS,
    ("GET", "/v1/webhooks"): WEBHOOK_CLIENTS,
    ("GET", "/v1/webhooks/{webhook_id}"): WEBHOOK_CLIENTS,
    ("DELETE", "/v1/webhooks/{webhook_id}"): WEBHOOK_CLIENTS,
    ("POST", "/v1/webhooks/{webhook_id}/resume"): WEBHOOK_CLIENTS,
    ("POST", "/v1/webhooks/{webhook_id}/rotate"): WEBHOOK_CLIENTS,
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): WEBHOOK_CLIENTS,
    ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): WEBHOOK_CLIENTS,
    # the aggregates API (issue #6): the programme's figures, no enterprise named (the last two are
    # forwarded to the eligibility service, which checks the same roles)
    ("GET", "/v1/aggregates/summary"): AGGREGATE_READERS,
    ("GET", "/v1/aggregates/monthly"): AGGREGATE_READERS,
    ("GET", "/v1/aggregates/revenue-classes"): AGGREGATE_READERS,
    ("GET", "/v1/aggregates/compute-share"): AGGREGATE_READERS,
    ("GET", "/v1/aggregates/vendors"): AGGREGATE_READERS,
    ("GET", "/v1/aggregates/budget"): AGGREGATE_READERS,
    ("GET", "/v1/aggregates/ceiling-headroom"): AGGREGATE_READERS,
    ("GET", "/v1/aggregates/applications"): AGGREGATE_READERS,
    ("GET", "/v1/aggregates/review-queue"): AGGREGATE_READERS,
    # per enterprise: the bureau; a dashboard client only with the dashboard:detail grant (COMBINED)
    ("GET", "/v1/aggregates/top-enterprises"): BUREAU_READERS,
    ("GET", "/v1/aggregates/reconciliation"): {AUDITOR, ADMIN, DASHBOARD},
    # Prometheus, with its own client (metrics:read), and administrators
    ("GET", "/metrics"): {METRICS_READ, ADMIN},
}

#: routes a role may call only together with a grant: route → {role: the grant it also needs}
COMBINED: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/v1/aggregates/top-enterprises"): {DASHBOARD: DASHBOARD_DETAIL},
}

NO_VOUCHER = "M3-ROLES-NONE"
NO_BATCH = 2**61
SOMEONE = new_credit_code()  # a well-formed credit code nothing else uses


def _request(method: str, template: str) -> tuple[str, str, dict[str, Any]]:
    """A concrete request for a route that, once authorised, changes nothing.

    Mutating routes get a body that validation refuses (422) or miss their Idempotency-Key
    (400), or name an object that does not exist (404); reads are harmless. (Expiries run:
    they only do what is due anyway.)
    """
    path = (
        template.replace("{code}", NO_VOUCHER)
        .replace("{hold_id}", "1")
        .replace("{action}", "capture")
        .replace("{grant_id}", "1")
        .replace("{batch_id}", str(NO_BATCH))
        .replace("{webhook_id}", str(NO_BATCH))
        .replace("{delivery_id}", str(NO_BATCH))
        .replace("{credit_code}", SOMEONE)
        .replace("{vendor}", SOMEONE)
        .replace("{year}", "2026")
    )
    bodies: dict[str, dict[str, Any]] = {
        "/v1/vouchers": {"decision_id": "not-a-uuid"},
        "/v1/grants": {"decision_id": "not-a-uuid"},
        "/v1/grants/1/reversal": {"reason": ""},
        f"/v1/vouchers/{NO_VOUCHER}/void": {"reason": ""},
        "/v1/holds/1/bureau-release": {"reason": ""},
        f"/v1/vouchers/{NO_VOUCHER}/authorisations": {"vendor": "not-a-credit-code"},
        "/v1/ledger/checkpoints": {"day": "2999-01-01"},
        "/v1/settlement-batches": {"vendor": "not-a-credit-code"},
        "/v1/webhooks": {"url": "not a url"},
        f"/v1/vouchers/{NO_VOUCHER}/redemptions": {"amount_fen": 1, "invoice_number": "ROLES"},
        f"/v1/vouchers/{NO_VOUCHER}/holds": {"amount_fen": 1, "invoice_number": "ROLES"},
    }
    params = {
        "/v1/ledger/export": "?checkpoints=perhaps",
        "/v1/settlement-batches": "?limit=1",
        "/v1/audit": "?limit=1",
        "/v1/exports/ledger-entries": "?after_id=-1",
        "/v1/events": "?limit=1",
        "/v1/webhooks": "?limit=1",
    }
    body = bodies.get(path, {}) if method == "POST" else {}
    return method, path + (params.get(path, "") if method == "GET" else ""), body


def _headers(scope: str) -> dict[str, str]:
    """A token with one role or scope (bound to an organisation where the role needs one)."""
    if scope == APPLICANT:
        return as_applicant(SOMEONE)
    if scope == VENDOR:
        return as_vendor(SOMEONE)
    return auth(scope, name=f"roles-{scope}")


def _cases() -> Iterator[Any]:
    for (method, template), allowed in MATRIX.items():
        for scope in ALL_SCOPES:
            yield pytest.param(method, template, scope, scope in allowed, id=f"{method} {template} [{scope}]")


def test_the_matrix_covers_every_route_and_says_what_the_code_declares(vouchers_app: FastAPI) -> None:
    served: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    for context in iter_routes(vouchers_app):
        path = str(context.path)
        if is_public(path):
            continue
        declared = route_scopes(context)
        assert declared is not None, path
        for method in context.methods or ():
            if method != "HEAD":
                served.setdefault((method, path), set()).add(tuple(sorted(declared)))
    assert set(served) == set(MATRIX), (
        f"routes missing from the matrix: {sorted(set(served) - set(MATRIX))}; "
        f"in the matrix but not served: {sorted(set(MATRIX) - set(served))}"
    )
    # the declarations agree with the matrix (this also covers the documented twin of the hot route)
    for route, declarations in served.items():
        assert declarations == {tuple(sorted(MATRIX[route] | set(COMBINED.get(route, {}))))}, route
    # a dashboard reads aggregates only, never an enterprise's detail
    assert all(
        DASHBOARD not in allowed for (_, path), allowed in MATRIX.items() if not path.startswith("/v1/aggregates")
    )


@pytest.mark.parametrize(("method", "template", "scope", "allowed"), list(_cases()))
async def test_each_role_against_each_route(
    vouchers: httpx.AsyncClient, method: str, template: str, scope: str, allowed: bool
) -> None:
    method, path, body = _request(method, template)
    response = await vouchers.request(method, path, json=body if method == "POST" else None, headers=_headers(scope))
    assert response.status_code < 500, response.text
    if allowed:
        assert response.status_code not in (401, 403), response.text
    else:
        assert (response.status_code, response.json()["code"]) == (403, "forbidden"), response.text
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("method", "template"), list(COMBINED))
async def test_a_role_with_its_grant(vouchers: httpx.AsyncClient, method: str, template: str) -> None:
    """A dashboard client sees per-enterprise figures only with `dashboard:detail`; the grant alone is no role."""
    method, path, _ = _request(method, template)
    for role, grant in COMBINED[(method, template)].items():
        allowed = await vouchers.request(method, path, headers=auth(role, grant, name="roles-combined"))
        assert allowed.status_code == 200, allowed.text
        for alone in (role, grant):
            refused = await vouchers.request(method, path, headers=auth(alone, name=f"roles-{alone}"))
            assert (refused.status_code, refused.json()["code"]) == (403, "forbidden"), refused.text


@pytest.mark.parametrize(("method", "template"), list(MATRIX))
async def test_no_token_no_entry(vouchers: httpx.AsyncClient, method: str, template: str) -> None:
    method, path, body = _request(method, template)
    for authorization in ("", "Bearer not-a-token", "Basic dmVuZG9yOnNlY3JldA=="):
        response = await vouchers.request(
            method, path, json=body if method == "POST" else None, headers={"Authorization": authorization}
        )
        assert response.status_code == 401, response.text
        assert response.json()["code"] in ("unauthenticated", "invalid_token")
        assert response.headers["www-authenticate"].startswith("Bearer")


# --- object level: vendors ----------------------------------------------------------------------


async def _count(dsn: str, sql: str, *args: Any) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(sql, *args))
    finally:
        await connection.close()


def _code_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json().get("code", "")


async def test_a_vendor_sees_and_redeems_only_the_m3_vouchers_it_may_redeem(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    code = (await issue(vouchers, decision_id)).json()["code"]
    other = await seed.vendor(live_registry_client, is_model_vendor=True)

    mine = await vouchers.get(f"/v1/vouchers/{code}", headers=as_vendor(supply.vendor))
    assert (mine.status_code, mine.json()["code"]) == (200, code)
    assert _code_of(await vouchers.get(f"/v1/vouchers/{code}", headers=as_vendor(other))) == (
        404,
        "voucher_not_found",
    )
    # redeeming or holding another vendor's voucher: not found either, and nothing written
    body = {"amount_fen": 100 * YUAN, "invoice_number": "FP-OTHER"}
    for kind in ("redemptions", "holds"):
        refused = await vouchers.post(f"/v1/vouchers/{code}/{kind}", json=body, headers=vendor_call(other, kind))
        assert _code_of(refused) == (404, "voucher_not_found"), refused.text
    # the old header names no one: the token's organisation is the vendor
    spoofed = await vouchers.post(
        f"/v1/vouchers/{code}/redemptions",
        json=body,
        headers=vendor_call(other, "spoof", **{"X-Vendor-Id": supply.vendor}),
    )
    assert _code_of(spoofed) == (404, "voucher_not_found")
    assert (
        await _count(
            vouchers_database,
            "SELECT count(*) FROM vouchers.redemptions r JOIN vouchers.vouchers v ON v.id = r.voucher_id "
            "WHERE v.code = $1",
            code,
        )
        == 0
    )
    # an applicant or vendor token cannot read the voucher's statement unless it holds it
    assert _code_of(await vouchers.get(f"/v1/vouchers/{code}/statement", headers=as_vendor(supply.vendor))) == (
        403,
        "forbidden",
    )
    accepted = await redeem(vouchers, code, supply.vendor, 100 * YUAN, f"{code}-own")
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["vendor"] == supply.vendor


async def test_a_vendor_sees_an_m1_voucher_only_if_it_may_redeem_it(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    holder, provider, application = await m1_decision(live_registry_client, live_eligibility_client)
    code = (await issue(vouchers, await approve(live_eligibility_client, application))).json()["code"]
    affiliated = await seed.vendor(live_registry_client, is_compute_vendor=True)
    await seed.affiliation(live_registry_client, holder, affiliated)
    model_vendor = await seed.vendor(live_registry_client, is_model_vendor=True)
    another_compute = await seed.vendor(live_registry_client, is_compute_vendor=True)

    # a registered compute vendor not affiliated with the holder, that the holder authorised: the provider
    # its application named (at issuance), another one once the holder authorises it (issue #12, finding 7)
    assert _code_of(await vouchers.get(f"/v1/vouchers/{code}", headers=as_vendor(another_compute))) == (
        404,
        "voucher_not_found",
    )
    await authorise(vouchers, code, holder, another_compute)
    await authorise(vouchers, code, holder, affiliated)  # authorised, but affiliated: still not
    for vendor in (provider, another_compute):
        seen = await vouchers.get(f"/v1/vouchers/{code}", headers=as_vendor(vendor))
        assert (seen.status_code, seen.json()["holder"]) == (200, holder)
    for vendor in (affiliated, model_vendor, new_credit_code()):
        assert _code_of(await vouchers.get(f"/v1/vouchers/{code}", headers=as_vendor(vendor))) == (
            404,
            "voucher_not_found",
        )


async def test_a_vendor_finishes_only_its_own_holds(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    first, first_decision = await approved_m3(live_registry_client, live_eligibility_client)
    second, second_decision = await approved_m3(live_registry_client, live_eligibility_client)
    code = (await issue(vouchers, first_decision)).json()["code"]
    assert (await issue(vouchers, second_decision)).status_code == 201
    held = await vouchers.post(
        f"/v1/vouchers/{code}/holds",
        json={"amount_fen": 1_000 * YUAN, "invoice_number": "FP-HOLD"},
        headers=vendor_call(first.vendor, f"{code}-hold"),
    )
    assert held.status_code == 201, held.text
    hold_id = held.json()["id"]
    for action in ("capture", "release"):
        refused = await vouchers.post(
            f"/v1/holds/{hold_id}/{action}", headers=vendor_call(second.vendor, f"{code}-{action}-other")
        )
        assert _code_of(refused) == (404, "hold_not_found"), refused.text
    status = await _count(
        vouchers_database, "SELECT count(*) FROM vouchers.redemptions WHERE id = $1 AND status = 'held'", hold_id
    )
    assert status == 1  # untouched
    captured = await vouchers.post(f"/v1/holds/{hold_id}/capture", headers=vendor_call(first.vendor, f"{code}-cap"))
    assert (captured.status_code, captured.json()["status"]) == (200, "captured")


async def test_a_vendor_reads_only_its_own_batches_and_statement(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    batches = {}
    vendors = []
    for n in range(2):
        supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
        code = (await issue(vouchers, decision_id)).json()["code"]
        assert (await redeem(vouchers, code, supply.vendor, 100 * YUAN, f"{code}-b{n}")).status_code == 201
        batch = await vouchers.post("/v1/settlement-batches", json={"vendor": supply.vendor}, headers=auth(OFFICER))
        assert batch.status_code == 201, batch.text
        batches[supply.vendor] = batch.json()["id"]
        vendors.append(supply.vendor)
    mine, theirs = vendors
    own = await vouchers.get(f"/v1/settlement-batches/{batches[mine]}", headers=as_vendor(mine))
    assert (own.status_code, own.json()["batch"]["vendor"]) == (200, mine)
    assert _code_of(await vouchers.get(f"/v1/settlement-batches/{batches[theirs]}", headers=as_vendor(mine))) == (
        404,
        "settlement_batch_not_found",
    )
    listed = (await vouchers.get("/v1/settlement-batches", headers=as_vendor(mine))).json()
    assert {b["vendor"] for b in listed["items"]} == {mine}
    asked_for_theirs = await vouchers.get("/v1/settlement-batches", params={"vendor": theirs}, headers=as_vendor(mine))
    assert asked_for_theirs.json()["items"] == []
    everyone = (await vouchers.get("/v1/settlement-batches", params={"vendor": theirs}, headers=auth(AUDITOR))).json()
    assert [b["id"] for b in everyone["items"]] == [batches[theirs]]

    statement = await vouchers.get(f"/v1/vendors/{mine}/statement", headers=as_vendor(mine))
    assert (statement.status_code, statement.json()["vendor"]) == (200, mine)
    assert _code_of(await vouchers.get(f"/v1/vendors/{theirs}/statement", headers=as_vendor(mine))) == (
        404,
        "statement_not_found",
    )


# --- object level: applicants ---------------------------------------------------------------------


async def test_an_applicant_sees_only_its_own_vouchers_and_statements(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    a, a_decision = await approved_m3(live_registry_client, live_eligibility_client)
    b, b_decision = await approved_m3(live_registry_client, live_eligibility_client)
    a_code = (await issue(vouchers, a_decision)).json()["code"]
    b_code = (await issue(vouchers, b_decision)).json()["code"]
    year = (await vouchers.get(f"/v1/vouchers/{a_code}")).json()["year"]

    own = await vouchers.get(f"/v1/vouchers/{a_code}", headers=as_applicant(a.holder))
    assert (own.status_code, own.json()["holder"]) == (200, a.holder)
    own_statement = await vouchers.get(f"/v1/vouchers/{a_code}/statement", headers=as_applicant(a.holder))
    assert (own_statement.status_code, own_statement.json()["voucher"]["code"]) == (200, a_code)
    enterprise = await vouchers.get(
        f"/v1/enterprises/{a.holder}/years/{year}/statement", headers=as_applicant(a.holder)
    )
    assert (enterprise.status_code, [v["code"] for v in enterprise.json()["items"]]) == (200, [a_code])

    for path in (f"/v1/vouchers/{b_code}", f"/v1/vouchers/{b_code}/statement"):
        assert _code_of(await vouchers.get(path, headers=as_applicant(a.holder))) == (404, "voucher_not_found")
    theirs = await vouchers.get(f"/v1/enterprises/{b.holder}/years/{year}/statement", headers=as_applicant(a.holder))
    assert _code_of(theirs) == (404, "statement_not_found")
    assert not {"items", "by_kind", "ceilings", "grants"} & set(theirs.json())  # nothing of the statement
    # the holder is no vendor: it cannot redeem its own voucher
    assert _code_of(
        await vouchers.post(
            f"/v1/vouchers/{a_code}/redemptions",
            json={"amount_fen": 1, "invoice_number": "FP-SELF"},
            headers=as_applicant(a.holder, **{"Idempotency-Key": "self"}),
        )
    ) == (403, "forbidden")


# --- rate limits ------------------------------------------------------------------------------------


async def test_vendor_calls_are_rate_limited_per_client_and_a_refused_call_writes_nothing(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
    vouchers_app: FastAPI,
) -> None:
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    code = (await issue(vouchers, decision_id)).json()["code"]
    keys = [f"{code}-rl-{n}" for n in range(3)]
    original = vouchers_app.state.rate_limiter
    vouchers_app.state.rate_limiter = RateLimiter(1, 2)
    try:
        answers = [
            await redeem(vouchers, code, supply.vendor, 100 * YUAN, key, f"RL-{n}") for n, key in enumerate(keys)
        ]
        held = await vouchers.post(  # a FastAPI-served vendor route shares the client's bucket
            f"/v1/vouchers/{code}/holds",
            json={"amount_fen": 1, "invoice_number": "RL-HOLD"},
            headers=vendor_call(supply.vendor, f"{code}-rl-hold"),
        )
        other_vendor = await vouchers.get(f"/v1/vouchers/{code}", headers=as_vendor(new_credit_code()))
        officer = await vouchers.get(f"/v1/vouchers/{code}", headers=auth(OFFICER, name="rl-officer"))
    finally:
        vouchers_app.state.rate_limiter = original
    assert [a.status_code for a in answers] == [201, 201, 429], [a.text for a in answers]
    limited = answers[2]
    assert limited.json()["code"] == "rate_limited"
    assert limited.headers["content-type"] == "application/problem+json"
    assert int(limited.headers["retry-after"]) >= 1
    assert _code_of(held) == (429, "rate_limited")
    assert other_vendor.status_code == 404  # another client has its own bucket (and may not see the voucher)
    assert officer.status_code == 200  # only vendor-facing routes are limited

    # nothing was written for the refused calls: no redemption, no remembered answer
    for key, invoice in ((keys[2], "RL-2"), (f"{code}-rl-hold", "RL-HOLD")):
        assert await _count(vouchers_database, "SELECT count(*) FROM vouchers.idempotency WHERE key = $1", key) == 0
        assert (
            await _count(
                vouchers_database, "SELECT count(*) FROM vouchers.redemptions WHERE invoice_number = $1", invoice
            )
            == 0
        )
    # a retry after Retry-After goes through, with the same key
    await asyncio.sleep(int(limited.headers["retry-after"]))
    retried = await redeem(vouchers, code, supply.vendor, 100 * YUAN, keys[2], "RL-2")
    assert retried.status_code == 201, retried.text
