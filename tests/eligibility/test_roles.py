"""Who may call what on the eligibility service: every route against every role and scope.

The table below is written here, from the intended role matrix, not read from the code:
if a route's `require(...)` drifts from it, or a route is added without a row, a test
fails. Allowed means "not 401 or 403" (ids that do not exist answer 404, bodies that
would change something are refused with 422 before anything is stored); forbidden
means 403 `forbidden`; no token at all means 401. The routers every service shares (audit
log, change feed, webhooks) and the exports are in the table too: they are served here.

Then the object-level rules: an applicant client sees only its own organisation's
applications and decisions (another's answer exactly like an unknown id), files only for
itself (403 `organisation_mismatch`), and a dashboard client reads nothing per enterprise.
"""

from __future__ import annotations

import uuid
from typing import Any

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
    DECISIONS_READ,
    METRICS_READ,
    OFFICER,
    PLATFORM,
    REGISTRY_READ,
    VENDOR,
    is_public,
    iter_routes,
)
from tests.auth import as_applicant, as_vendor, auth
from tests.eligibility import seed
from tests.eligibility.actors import LI, WANG
from tests.factories import new_credit_code

EVERYONE = frozenset(
    {
        ADMIN,
        OFFICER,
        APPROVER,
        APPLICANT,
        VENDOR,
        PLATFORM,
        DASHBOARD,
        AUDITOR,
        REGISTRY_READ,
        DECISIONS_READ,
    }
)
READERS = frozenset({APPLICANT, OFFICER, APPROVER, ADMIN, AUDITOR, PLATFORM})
INTEGRATORS = frozenset({PLATFORM, AUDITOR, ADMIN})  # the change feed and bulk exports
#: webhook subscribers: each for itself; an applicant is sent only its own organisation's events
SUBSCRIBERS = frozenset({PLATFORM, AUDITOR, ADMIN, APPLICANT})

#: (method, path template) → the roles and scopes that may call it
MATRIX: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/v1/applications"): frozenset({APPLICANT, OFFICER, ADMIN}),
    ("GET", "/v1/applications"): READERS,
    ("GET", "/v1/applications/{application_id}"): READERS,
    ("GET", "/v1/decisions/{decision_id}"): READERS,
    ("GET", "/v1/review-queue"): frozenset({OFFICER, APPROVER, ADMIN}),
    ("POST", "/v1/applications/{application_id}/reviews"): frozenset({OFFICER, ADMIN}),
    ("POST", "/v1/applications/{application_id}/approvals"): frozenset({APPROVER, ADMIN}),
    ("POST", "/v1/applications/{application_id}/manual-decisions"): frozenset({APPROVER, ADMIN}),
    ("GET", "/v1/approved-decisions/{decision_id}"): frozenset({DECISIONS_READ, OFFICER, APPROVER, ADMIN, AUDITOR}),
    ("GET", "/v1/policy"): EVERYONE,
    ("GET", "/v1/policy/parameters/{parameter_id}"): EVERYONE,
    ("POST", "/v1/policy/parameters/{parameter_id}/versions"): frozenset({ADMIN}),
    ("POST", "/v1/simulations"): frozenset({OFFICER, APPROVER, ADMIN, AUDITOR}),
    ("POST", "/v1/simulations/export"): frozenset({OFFICER, APPROVER, ADMIN, AUDITOR}),
    ("GET", "/v1/simulations/export"): frozenset({OFFICER, APPROVER, ADMIN, AUDITOR}),
    # the award register names enterprises: the bureau, auditors and the data platform, not applicants
    ("GET", "/v1/awards"): frozenset({OFFICER, APPROVER, ADMIN, AUDITOR, PLATFORM}),
    ("GET", "/v1/awards/double"): frozenset({OFFICER, APPROVER, ADMIN, AUDITOR, PLATFORM}),
    # the routers every service shares: the audit log, the change feed and webhooks; and the exports
    ("GET", "/v1/audit"): frozenset({AUDITOR, ADMIN}),
    ("GET", "/v1/events"): INTEGRATORS,
    ("GET", "/v1/events/types"): SUBSCRIBERS,
    ("POST", "/v1/webhooks"): SUBSCRIBERS,
    ("GET", "/v1/webhooks"): SUBSCRIBERS,
    ("GET", "/v1/webhooks/{webhook_id}"): SUBSCRIBERS,
    ("DELETE", "/v1/webhooks/{webhook_id}"): SUBSCRIBERS,
    ("POST", "/v1/webhooks/{webhook_id}/resume"): SUBSCRIBERS,
    ("POST", "/v1/webhooks/{webhook_id}/rotate"): SUBSCRIBERS,
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): SUBSCRIBERS,
    ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): SUBSCRIBERS,
    ("GET", "/v1/exports/decisions"): INTEGRATORS,
    ("GET", "/v1/exports/applications"): INTEGRATORS,
    # the dashboards' aggregates: no enterprise named in them (issue #6)
    ("GET", "/v1/aggregates/applications"): frozenset({DASHBOARD, ADMIN, AUDITOR, OFFICER, APPROVER}),
    ("GET", "/v1/aggregates/review-queue"): frozenset({DASHBOARD, ADMIN, AUDITOR, OFFICER, APPROVER}),
    # Prometheus, with its own client (metrics:read), and administrators
    ("GET", "/metrics"): frozenset({METRICS_READ, ADMIN}),
}

#: the organisation the matrix's applicant and vendor clients are bound to
ORG = new_credit_code()
M6 = {"measure": "M6", "diagnosis_reference": "诊断-1", "audited_investment_fen": 100_000_000}

#: bodies that pass validation but change nothing (a future date, a past effective date, no scope)
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/applications"): {
        "applicant": ORG,
        "as_of": "2999-01-01",
        "as_of_reason": "逾期登记的纸质申请",
        "evidence": M6,
    },
    ("POST", "/v1/applications/{application_id}/reviews"): {"verdict": "approve", "reason": "材料齐全"},
    ("POST", "/v1/applications/{application_id}/approvals"): {"verdict": "approve", "reason": "同意"},
    ("POST", "/v1/applications/{application_id}/manual-decisions"): {"amount_fen": 100, "reason": "一事一议"},
    ("POST", "/v1/policy/parameters/{parameter_id}/versions"): {
        "effective_from": "2000-01-01",
        "value": "0.40",
        "status": "provisional",
        "source": "测试来源",
        "reason": "测试理由",
    },
    ("POST", "/v1/simulations"): {"overrides": {}},
    ("POST", "/v1/simulations/export"): {"overrides": {}},
    ("POST", "/v1/webhooks"): {"url": "not a url"},
}
#: query strings that keep reads small
PARAMS: dict[tuple[str, str], dict[str, str | int]] = {
    ("GET", "/v1/audit"): {"limit": 1},
    ("GET", "/v1/events"): {"limit": 1},
    ("GET", "/v1/exports/decisions"): {"applicant": ORG},
    ("GET", "/v1/exports/applications"): {"applicant": ORG},
}
NOTHING = 2**61  # no webhook or delivery has this id


def headers_for(scope: str) -> dict[str, str]:
    if scope == APPLICANT:
        return as_applicant(ORG)
    if scope == VENDOR:
        return as_vendor(ORG)
    return auth(scope, name=f"matrix {scope}")


def concrete(path: str) -> str:
    return path.format(
        application_id=uuid.uuid4(),
        decision_id=uuid.uuid4(),
        parameter_id="M6.ratio",
        webhook_id=NOTHING,
        delivery_id=NOTHING,
    )


async def call(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = BODIES.get((method, path))
    params = PARAMS.get((method, path))
    return await client.request(method, concrete(path), json=body, params=params, headers=headers)


def test_the_matrix_names_every_route(eligibility_app: FastAPI) -> None:
    served = {
        (method, str(context.path))
        for context in iter_routes(eligibility_app)
        for method in context.methods or ()
        if method != "HEAD" and not is_public(str(context.path))
    }
    assert served == set(MATRIX), {"without a row": served - set(MATRIX), "not served": set(MATRIX) - served}
    # add-ons to a role, and the vouchers service's own scope for budget reservations: they do not read the policy
    grants = {DASHBOARD_DETAIL, METRICS_READ, BUDGET_RESERVE}
    assert set(ALL_SCOPES) == EVERYONE | grants, "a new role or scope needs a column in the matrix"


@pytest.mark.parametrize(("method", "path"), sorted(MATRIX), ids=[f"{m} {p}" for m, p in sorted(MATRIX)])
async def test_every_role_against_the_route(eligibility: httpx.AsyncClient, method: str, path: str) -> None:
    allowed = MATRIX[(method, path)]
    wrong: list[str] = []
    for scope in ALL_SCOPES:
        response = await call(eligibility, method, path, headers_for(scope))
        if scope in allowed:
            if response.status_code in (401, 403):
                wrong.append(f"{scope}: refused ({response.status_code} {response.text[:200]})")
        elif (response.status_code, response.json().get("code")) != (403, "forbidden"):
            wrong.append(f"{scope}: expected 403 forbidden, got {response.status_code} {response.text[:200]}")
    assert wrong == [], f"{method} {path}"

    del eligibility.headers["Authorization"]  # the rollback client is an admin by default
    anonymous = await call(eligibility, method, path)
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthenticated")
    assert anonymous.headers["www-authenticate"] == "Bearer"


# --- object level ---------------------------------------------------------------------------------


async def _own_application(
    eligibility: httpx.AsyncClient, applicant: str, evidence: dict[str, Any] = M6
) -> dict[str, Any]:
    """An application the applicant client files for itself (dated the day it is received)."""
    response = await eligibility.post(
        "/v1/applications",
        json={"applicant": applicant, "evidence": evidence},
        headers=as_applicant(applicant),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_applicant_sees_only_its_own_applications_and_decisions(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    a = await seed.organisation(live_registry_client)
    b = await seed.organisation(live_registry_client)
    mine = await _own_application(eligibility, a)
    assert mine["submitted_by"] == f"applicant {a}"  # the token's client, not a name in the body
    theirs = await _own_application(eligibility, b)
    as_a = as_applicant(a)

    # an application and a decision of another organisation answer exactly like unknown ids
    for template, code in (
        ("/v1/applications/{}", "application_not_found"),
        ("/v1/decisions/{}", "decision_not_found"),
    ):
        resource = theirs["id"] if "applications" in template else theirs["decision"]["id"]
        own = mine["id"] if "applications" in template else mine["decision"]["id"]
        unknown = str(uuid.uuid4())
        hidden = await eligibility.get(template.format(resource), headers=as_a)
        missing = await eligibility.get(template.format(unknown), headers=as_a)
        assert (
            (hidden.status_code, hidden.json()["code"])
            == (missing.status_code, missing.json()["code"])
            == (
                404,
                code,
            )
        )
        assert hidden.json()["detail"] == missing.json()["detail"].replace(unknown, resource)
        assert (await eligibility.get(template.format(own), headers=as_a)).status_code == 200
        assert (await eligibility.get(template.format(resource))).status_code == 200  # the bureau sees both

    listed = await eligibility.get("/v1/applications", headers=as_a)
    assert [item["id"] for item in listed.json()["items"]] == [mine["id"]]
    asked_for_b = await eligibility.get("/v1/applications", params={"applicant": b}, headers=as_a)
    assert asked_for_b.status_code == 200
    assert asked_for_b.json() == {"items": [], "next_cursor": None}
    by_b = await eligibility.get("/v1/applications", headers=as_applicant(b))
    assert [item["id"] for item in by_b.json()["items"]] == [theirs["id"]]
    by_officer = await eligibility.get("/v1/applications", params={"applicant": b}, headers=WANG)
    assert [item["id"] for item in by_officer.json()["items"]] == [theirs["id"]]


async def test_an_applicant_files_only_for_its_own_organisation(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    a = await seed.organisation(live_registry_client)
    b = await seed.organisation(live_registry_client)
    for_b = await eligibility.post(
        "/v1/applications",
        json={"applicant": b, "as_of": "2026-03-01", "as_of_reason": "逾期登记的纸质申请", "evidence": M6},
        headers=as_applicant(a),
    )
    assert (for_b.status_code, for_b.json()["code"]) == (403, "organisation_mismatch")
    assert a in for_b.json()["detail"]
    assert (await eligibility.get("/v1/applications", params={"applicant": b})).json()["items"] == []
    # an officer enters applications for anyone
    entered = await eligibility.post(
        "/v1/applications",
        json={"applicant": b, "as_of": "2026-03-01", "as_of_reason": "逾期登记的纸质申请", "evidence": M6},
        headers=WANG,
    )
    assert entered.status_code == 201, entered.text
    assert entered.json()["submitted_by"] == "wang"


async def test_an_applicant_cannot_review_or_approve_its_own_application(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    a, evidence = await seed.m6_applicant(live_registry_client)
    mine = await _own_application(eligibility, a, evidence)
    path = f"/v1/applications/{mine['id']}"
    for step, body in (
        ("/reviews", {"verdict": "approve", "reason": "材料齐全"}),
        ("/approvals", {"verdict": "approve", "reason": "同意"}),
        ("/manual-decisions", {"amount_fen": 100, "reason": "一事一议"}),
    ):
        response = await eligibility.post(path + step, json=body, headers=as_applicant(a))
        assert (response.status_code, response.json()["code"]) == (403, "forbidden"), step
    assert (await eligibility.get(path, headers=as_applicant(a))).json()["status"] == "in_review"


async def test_dashboard_and_vendor_clients_read_nothing_per_enterprise(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    applicant, evidence = await seed.m6_applicant(live_registry_client)
    application = await _own_application(eligibility, applicant, evidence)
    path = f"/v1/applications/{application['id']}"
    await eligibility.post(path + "/reviews", json={"verdict": "approve", "reason": "材料齐全"}, headers=WANG)
    approved = await eligibility.post(path + "/approvals", json={"verdict": "approve", "reason": "同意"}, headers=LI)
    assert approved.json()["status"] == "approved"
    decision_id = application["decision"]["id"]
    reads = [
        "/v1/applications",
        f"/v1/applications?applicant={applicant}",
        path,
        f"/v1/decisions/{decision_id}",
        f"/v1/approved-decisions/{decision_id}",
        "/v1/review-queue",
        f"/v1/awards?applicant={applicant}",
    ]
    for headers in (auth(DASHBOARD, name="dashboard"), as_vendor(applicant)):
        for read in reads:
            response = await eligibility.get(read, headers=headers)
            assert (response.status_code, response.json()["code"]) == (403, "forbidden"), read
            assert applicant not in response.text
    # the vouchers service's client reads the approved decision, and nothing else about the enterprise
    service = auth(DECISIONS_READ, name="vouchers service")
    assert (await eligibility.get(f"/v1/approved-decisions/{decision_id}", headers=service)).status_code == 200
    for read in reads[:4]:
        assert (await eligibility.get(read, headers=service)).status_code == 403, read
    # the applicant itself does not read the approved-decision feed meant for issuing vouchers
    own = await eligibility.get(f"/v1/approved-decisions/{decision_id}", headers=as_applicant(applicant))
    assert own.status_code == 403
