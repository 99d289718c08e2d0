"""Applications through review and approval; bad input; the registry really stopped.

Whoever reviews, approves or decides under A1 is the client of the request's token; an
officer "wang" reviews and an approver "li" approves (`tests/auth.py`).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from services.eligibility.app import create_app
from services.eligibility.settings import EligibilitySettings
from tests.auth import admin
from tests.conftest import DatabaseFactory, running_service
from tests.eligibility import seed
from tests.eligibility.actors import DIRECTOR, LI, WANG, WANG_BOTH, audit_row, client_id
from tests.vouchers.flow import late_application

YUAN = 100


async def _m6(
    eligibility: httpx.AsyncClient, registry: httpx.AsyncClient, investment_yuan: int = 3_000_000
) -> dict[str, Any]:
    applicant, evidence = await seed.m6_applicant(registry, investment_yuan * YUAN)
    response = await eligibility.post(
        "/v1/applications",
        json=late_application(applicant, evidence, "2026-03-01"),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["submitted_by"] == "test admin"  # the token's client (the rollback client is an admin)
    return body


async def test_the_submissions_answer_is_what_is_stored(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    """The application and its decision are written by one statement (issue #16): what the submission answers,
    clock columns included, is what reading it back answers."""
    application = await _m6(eligibility, live_registry_client)
    read = await eligibility.get(f"/v1/applications/{application['id']}")
    assert read.status_code == 200, read.text
    assert read.json() == application
    assert application["decision"]["application_id"] == application["id"]
    assert application["decision"]["trace"][0]["clause"] == "A4"


async def test_review_then_approval_by_someone_else(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    application = await _m6(eligibility, live_registry_client)
    assert (application["status"], application["decision"]["amount_fen"]) == ("in_review", 1_000_000 * YUAN)
    path = f"/v1/applications/{application['id']}"
    decision_id = application["decision"]["id"]

    not_yet = await eligibility.get(f"/v1/approved-decisions/{decision_id}")
    assert not_yet.status_code == 404
    assert not_yet.json()["code"] == "decision_not_approved"
    early = await eligibility.post(path + "/approvals", json={"verdict": "approve", "reason": "同意"}, headers=LI)
    assert early.status_code == 409
    assert early.json()["code"] == "invalid_state"
    named = await eligibility.post(
        path + "/reviews", json={"reviewer": "li", "verdict": "approve", "reason": "材料齐全"}, headers=WANG_BOTH
    )
    assert named.status_code == 422, "the actor comes from the token, never from the body"
    assert named.json()["errors"][0]["field"] == "body.reviewer"

    reviewed = await eligibility.post(
        path + "/reviews", json={"verdict": "approve", "reason": "材料齐全"}, headers=WANG_BOTH
    )
    assert reviewed.status_code == 200, reviewed.text
    assert reviewed.json()["status"] == "reviewed"
    own = await eligibility.post(path + "/approvals", json={"verdict": "approve", "reason": "同意"}, headers=WANG_BOTH)
    assert own.status_code == 403
    assert own.json()["code"] == "self_approval"
    assert (await eligibility.get(path)).json()["status"] == "reviewed"
    approved = await eligibility.post(path + "/approvals", json={"verdict": "approve", "reason": "同意"}, headers=LI)
    assert approved.status_code == 200
    body = approved.json()
    assert body["status"] == "approved"
    assert [(r["step"], r["actor"], r["client_id"]) for r in body["reviews"]] == [
        ("review", "wang", client_id(WANG_BOTH)),
        ("approval", "li", client_id(LI)),
    ]
    assert body["reviews"][1]["review_id"] == body["reviews"][0]["id"]
    assert body["decision"]["id"] == decision_id  # approval references the automatic decision, which is unchanged
    # the approval links to the audit log's record of its request
    assert body["reviews"][1]["request_id"] == approved.headers["x-request-id"]
    logged = await audit_row(eligibility, body["reviews"][1]["request_id"])
    assert (logged["client_id"], logged["actor"], logged["method"], logged["status"]) == (
        client_id(LI),
        "li",
        "POST",
        200,
    )
    assert logged["path"] == path + "/approvals"

    for_vouchers = await eligibility.get(f"/v1/approved-decisions/{decision_id}")
    assert for_vouchers.status_code == 200
    assert for_vouchers.json()["amount_fen"] == 1_000_000 * YUAN
    assert for_vouchers.json()["approved_by"] == "li"
    assert for_vouchers.json()["measure"] == "M6"
    again = await eligibility.post(path + "/reviews", json={"verdict": "approve", "reason": "再审"}, headers=WANG)
    assert again.status_code == 409


async def test_an_admin_may_review_or_approve_but_not_both(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    application = await _m6(eligibility, live_registry_client)
    path = f"/v1/applications/{application['id']}"
    reviewed = await eligibility.post(path + "/reviews", json={"verdict": "approve", "reason": "材料齐全"})
    assert reviewed.status_code == 200, reviewed.text
    assert reviewed.json()["reviews"][0]["actor"] == "test admin"
    own = await eligibility.post(path + "/approvals", json={"verdict": "approve", "reason": "同意"})
    assert (own.status_code, own.json()["code"]) == (403, "self_approval")
    officer = await eligibility.post(path + "/approvals", json={"verdict": "approve", "reason": "同意"}, headers=WANG)
    assert (officer.status_code, officer.json()["code"]) == (403, "forbidden")
    approved = await eligibility.post(path + "/approvals", json={"verdict": "approve", "reason": "同意"}, headers=LI)
    assert approved.json()["status"] == "approved"


async def test_a_recommended_rejection_cannot_be_approved(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    application = await _m6(eligibility, live_registry_client)
    path = f"/v1/applications/{application['id']}"
    await eligibility.post(path + "/reviews", json={"verdict": "reject", "reason": "诊断报告不符"}, headers=WANG)
    grant = await eligibility.post(path + "/approvals", json={"verdict": "approve", "reason": "同意"}, headers=LI)
    assert grant.status_code == 409
    assert grant.json()["code"] == "review_recommended_rejection"
    rejected = await eligibility.post(path + "/approvals", json={"verdict": "reject", "reason": "同意驳回"}, headers=LI)
    assert rejected.json()["status"] == "rejected"


async def test_needs_review_requires_an_amount_within_the_proposal(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    applicant = await seed.organisation(live_registry_client, kind="research_institute")
    response = await eligibility.post(
        "/v1/applications",
        json={
            "applicant": applicant,
            "as_of": "2026-03-01",
            "as_of_reason": "逾期登记的纸质申请",
            "evidence": {
                "measure": "M2",
                "track": "a",
                "achievement": "national_major_project",
                "achievement_name": "科技创新2030—新一代人工智能重大项目",
            },
        },
    )
    decision = response.json()["decision"]
    assert decision["outcome"] == "needs_review"
    assert decision["amount_fen"] == 5_000_000 * YUAN  # the cap, as a proposal
    path = f"/v1/applications/{response.json()['id']}/reviews"
    missing = await eligibility.post(path, json={"verdict": "approve", "reason": "ok"}, headers=WANG)
    assert missing.json()["code"] == "amount_required"
    too_much = await eligibility.post(
        path, json={"verdict": "approve", "reason": "ok", "amount_fen": 5_000_000 * YUAN + 1}, headers=WANG
    )
    assert too_much.status_code == 422
    assert too_much.json()["code"] == "amount_not_allowed"
    fine = await eligibility.post(
        path, json={"verdict": "approve", "reason": "ok", "amount_fen": 3_000_000 * YUAN}, headers=WANG
    )
    assert fine.status_code == 200
    assert fine.json()["reviews"][0]["amount_fen"] == 3_000_000 * YUAN


async def test_a1_is_a_marked_manual_decision(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    application = await _m6(eligibility, live_registry_client)
    path = f"/v1/applications/{application['id']}/manual-decisions"
    no_reason = await eligibility.post(path, json={"amount_fen": 100}, headers=DIRECTOR)
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["field"] == "body.reason"
    reason = "区政府常务会议决定（一事一议）"
    officer = await eligibility.post(path, json={"amount_fen": 100, "reason": reason}, headers=WANG)
    assert (officer.status_code, officer.json()["code"]) == (403, "forbidden")
    decided = await eligibility.post(path, json={"amount_fen": 2_500_000 * YUAN, "reason": reason}, headers=DIRECTOR)
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert body["status"] == "approved"
    assert body["decision"]["kind"] == "manual_a1"
    assert body["decision"]["decided_by"] == "director"
    assert body["decision"]["trace"][0]["clause"] == "A1"
    assert body["decision"]["trace"][0]["inputs"]["approver"] == "director"
    assert body["decision"]["trace"][0]["inputs"]["supersedes"] == application["decision"]["id"]
    assert [(r["step"], r["actor"], r["client_id"]) for r in body["reviews"]] == [
        ("approval", "director", client_id(DIRECTOR))
    ]
    # the A1 decision links to the audit log's record of its request
    assert body["decision"]["request_id"] == decided.headers["x-request-id"]
    logged = await audit_row(eligibility, body["decision"]["request_id"])
    assert (logged["client_id"], logged["path"], logged["status"]) == (client_id(DIRECTOR), path, 200)
    approved = await eligibility.get(f"/v1/approved-decisions/{body['decision']['id']}")
    assert approved.json()["amount_fen"] == 2_500_000 * YUAN
    assert approved.json()["approved_by"] == "director"
    superseded = await eligibility.get(f"/v1/approved-decisions/{application['decision']['id']}")
    assert superseded.status_code == 404
    automatic = await eligibility.get(f"/v1/decisions/{application['decision']['id']}")
    assert automatic.json()["amount_fen"] == 1_000_000 * YUAN  # never rewritten


async def test_a1_is_not_for_the_reviewer_of_the_decision(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    application = await _m6(eligibility, live_registry_client)
    path = f"/v1/applications/{application['id']}"
    await eligibility.post(path + "/reviews", json={"verdict": "approve", "reason": "材料齐全"}, headers=WANG_BOTH)
    payload = {"amount_fen": 2_000_000 * YUAN, "reason": "区政府常务会议决定（一事一议）"}
    own = await eligibility.post(path + "/manual-decisions", json=payload, headers=WANG_BOTH)
    assert (own.status_code, own.json()["code"]) == (403, "self_approval")
    assert (await eligibility.get(path)).json()["decision"]["kind"] == "automatic"
    other = await eligibility.post(path + "/manual-decisions", json=payload, headers=DIRECTOR)
    assert other.status_code == 200, other.text
    assert other.json()["decision"]["kind"] == "manual_a1"


@pytest.mark.parametrize(
    ("evidence", "field"),
    [
        ({"measure": "M6", "diagnosis_reference": "x", "audited_investment_fen": 100, "colour": "red"}, "colour"),
        ({"measure": "M6", "diagnosis_reference": "x", "audited_investment_fen": 1.5}, "audited_investment_fen"),
        ({"measure": "M6", "diagnosis_reference": "x"}, "audited_investment_fen"),
        ({"measure": "M99"}, "evidence"),
        ({"measure": "M11", "year": 2025, "area_m2": "-5", "months": 12, "rent_paid_fen": 1}, "area_m2"),
        ({"measure": "M11", "year": 2025, "area_m2": "5", "months": 13, "rent_paid_fen": 1}, "months"),
    ],
)
async def test_bad_evidence_is_a_422_naming_the_field_and_stores_nothing(
    eligibility: httpx.AsyncClient, evidence: dict[str, Any], field: str
) -> None:
    response = await eligibility.post(
        "/v1/applications",
        json=late_application("9144030071526726XG", evidence, "2026-03-01"),
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert any(field in error["field"] for error in response.json()["errors"]), response.json()["errors"]
    assert (await eligibility.get("/v1/applications")).json()["items"] == []


async def test_future_dates_and_bad_codes(eligibility: httpx.AsyncClient) -> None:
    evidence = {"measure": "M6", "diagnosis_reference": "x", "audited_investment_fen": 100}
    future = await eligibility.post(
        "/v1/applications",
        json=late_application("9144030071526726XG", evidence, "2999-01-01"),
    )
    assert future.json()["code"] == "as_of_in_future"
    # before the first day the parameter file covers, nothing can be decided (this was a 500, found by schemathesis)
    ancient = await eligibility.post(
        "/v1/applications",
        json=late_application("9144030071526726XG", evidence, "2000-01-01"),
    )
    assert ancient.status_code == 422
    assert ancient.json()["code"] == "as_of_before_policy"
    assert ancient.headers["content-type"] == "application/problem+json"
    # U+0000 in the evidence (stored as JSONB, which cannot hold it): 422, nothing stored (this was a 500 too)
    nul = {**evidence, "diagnosis_reference": "深工信\u0000诊断"}
    refused = await eligibility.post(
        "/v1/applications",
        json=late_application("9144030071526726XG", nul, "2026-03-01"),
    )
    assert (refused.status_code, refused.json()["code"]) == (422, "unstorable_text")
    bad_code = await eligibility.post(
        "/v1/applications",
        json=late_application("9144030071526726XA", evidence, "2026-03-01"),
    )
    assert bad_code.json()["errors"][0]["code"] == "invalid_credit_code"
    assert (await eligibility.get("/v1/applications")).json()["items"] == []


async def test_unknown_applicant_needs_review(eligibility: httpx.AsyncClient) -> None:
    from tests.factories import new_credit_code

    response = await eligibility.post(
        "/v1/applications",
        json=late_application(
            new_credit_code(),
            {"measure": "M6", "diagnosis_reference": "x", "audited_investment_fen": 100},
            "2026-03-01",
        ),
    )
    decision = response.json()["decision"]
    assert decision["outcome"] == "needs_review"
    assert decision["review_reasons"][0]["code"] == "applicant_not_registered"


async def test_review_queue_orders_by_priority_then_age(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    small = await _m6(eligibility, live_registry_client, investment_yuan=100_000)  # 50,000 yuan
    big = await _m6(eligibility, live_registry_client, investment_yuan=3_000_000)  # 1,000,000 yuan
    small_again = await _m6(eligibility, live_registry_client, investment_yuan=100_000)
    assert big["priority"] > small["priority"] == small_again["priority"]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await eligibility.get("/v1/review-queue", params=params)).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [big["id"], small["id"], small_again["id"]]


async def test_decisions_and_reviews_are_immutable_in_the_database(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.execute(
            """
            INSERT INTO eligibility.applications
                (id, measure, applicant, as_of, benefit_year, evidence, status, priority)
            VALUES ('00000000-0000-0000-0000-000000000001', 'M6', 'x', '2026-01-01', 2026, '{}', 'in_review', 0);
            INSERT INTO eligibility.decisions (id, application_id, kind, outcome, failures, review_reasons, components,
                trace, facts, policy_version, parameters_digest, engine_version)
            VALUES ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'automatic',
                'eligible', '[]', '[]', '{}', '[]', '{}', 'v', 'd', 'e');
            INSERT INTO eligibility.reviews (application_id, decision_id, step, actor, verdict, reason, id)
            VALUES ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002', 'review', 'a',
                'approve', 'r', '00000000-0000-0000-0000-000000000003');
            INSERT INTO eligibility.parameter_versions (parameter_id, effective_from, value, status, source, reason,
                created_by) VALUES ('M6.ratio', '2030-01-01', '"0.4"', 'provisional', 's', 'r', 'admin');
            """
        )
        for table in ("decisions", "reviews", "parameter_versions"):
            for statement in (
                f"UPDATE eligibility.{table} SET created_by = created_by"
                if table == "parameter_versions"
                else f"UPDATE eligibility.{table} SET reason = 'changed'",
                f"DELETE FROM eligibility.{table}",
                f"TRUNCATE eligibility.{table} CASCADE",
            ):
                savepoint = connection.transaction()
                await savepoint.start()
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                    await connection.execute(statement)
                await savepoint.rollback()
    finally:
        await transaction.rollback()
        await connection.close()


async def test_registry_stopped_means_503_and_nothing_stored(
    databases: DatabaseFactory, database_url: str, live_registry_client: httpx.AsyncClient
) -> None:
    with running_service(databases.create("longgang_registry_stop"), "registry") as registry_url:
        async with httpx.AsyncClient(base_url=registry_url, headers=admin()) as registry:
            applicant = await seed.organisation(registry)
        app = create_app(
            EligibilitySettings(database_url=database_url, registry_url=registry_url, peer_timeout_seconds=0.5)
        )
    # the registry process has stopped: its port refuses connections
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://e", headers=admin()) as client:
            before = (await client.get("/v1/applications", params={"applicant": applicant})).json()["items"]
            response = await client.post(
                "/v1/applications",
                json=late_application(
                    applicant,
                    {"measure": "M6", "diagnosis_reference": "x", "audited_investment_fen": 100},
                    "2026-03-01",
                ),
            )
            assert response.status_code == 503
            assert response.json()["code"] == "peer_unavailable"
            assert response.headers["retry-after"]
            after = (await client.get("/v1/applications", params={"applicant": applicant})).json()["items"]
            assert before == after == []
    finally:
        await app.state.registry_facts.registry.aclose()
        await app.state.database.dispose()
