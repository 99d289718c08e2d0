"""The dashboard's eligibility aggregates: the projection always equals a plain GROUP BY.

Applications go through the API (submissions with each outcome, reviews, approvals,
rejections, A1) and by SQL (as a benchmark loads them); after each mix the answer of
`GET /v1/aggregates/applications` and the projection are compared with counts made from
the rows themselves, in the same transaction. A request that fails after writing leaves
the counts as they were. The review queue's ages are checked against the waiting rows.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.eligibility import aggregates
from services.eligibility.submission_sql import insert_submission
from shared.auth import DASHBOARD
from shared.errors import PEER_UNAVAILABLE, ProblemError
from tests.auth import admin, auth
from tests.conftest import sessions_in
from tests.eligibility import seed
from tests.eligibility.actors import DIRECTOR, LI, WANG
from tests.factories import new_credit_code

YUAN = 100
DASHBOARD_CLIENT = auth(DASHBOARD, name="dashboard")
M6_EVIDENCE = {"measure": "M6", "diagnosis_reference": "诊断-1", "audited_investment_fen": 3_000_000 * YUAN}


@pytest_asyncio.fixture
async def api_and_db(eligibility_app: FastAPI) -> AsyncIterator[tuple[httpx.AsyncClient, AsyncConnection]]:
    """The rollback client of conftest, and the connection its requests run on (to count rows in it)."""
    async with eligibility_app.state.database.engine.connect() as connection:
        transaction = await connection.begin()
        try:
            with sessions_in(eligibility_app, connection):
                transport = httpx.ASGITransport(app=eligibility_app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://eligibility", headers=admin()
                ) as client:
                    yield client, connection
        finally:
            await transaction.rollback()


async def _submit(client: httpx.AsyncClient, applicant: str, evidence: dict[str, Any], as_of: str) -> dict[str, Any]:
    response = await client.post(
        "/v1/applications",
        json={"applicant": applicant, "as_of": as_of, "as_of_reason": "逾期登记的纸质申请", "evidence": evidence},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _act(
    client: httpx.AsyncClient, application: dict[str, Any], step: str, body: dict[str, Any], who: Any
) -> None:
    response = await client.post(f"/v1/applications/{application['id']}/{step}", json=body, headers=who)
    assert response.status_code == 200, response.text


async def _aggregate(client: httpx.AsyncClient, year: int) -> dict[str, Any]:
    response = await client.get("/v1/aggregates/applications", params={"year": year}, headers=DASHBOARD_CLIENT)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _plain_counts(connection: AsyncConnection, year: int) -> dict[str, dict[str, int]]:
    """The answer's fields per measure, counted from the rows (no projection involved)."""
    rows = await connection.execute(
        text(
            """
            SELECT a.measure, a.status, d.outcome
            FROM eligibility.applications a
            JOIN eligibility.decisions d ON d.application_id = a.id AND d.kind = 'automatic'
            WHERE extract(year FROM a.submitted_at AT TIME ZONE 'Asia/Shanghai') = :year
            """
        ),
        {"year": year},
    )
    counts: dict[str, dict[str, int]] = {}
    for measure, status, outcome in rows.all():
        fields = counts.setdefault(measure, {})
        for name in ("submitted", outcome, "ineligible_closed" if status == "ineligible" else status):
            fields[name] = fields.get(name, 0) + 1
    return counts


def _answered(answer: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The answer's non-zero fields per measure (the shape of `_plain_counts`)."""
    return {
        row["measure"]: {k: v for k, v in row.items() if k != "measure" and v}
        for row in answer["by_measure"]
        if row["submitted"]
    }


async def _assert_consistent(client: httpx.AsyncClient, connection: AsyncConnection) -> dict[str, Any]:
    year = aggregates.this_year()
    answer = await _aggregate(client, year)
    assert _answered(answer) == await _plain_counts(connection, year)
    assert await aggregates.differences(connection) == []
    totals = answer["totals"]
    for field in totals:
        assert totals[field] == sum(row[field] for row in answer["by_measure"]), field
    return answer


def _m6(answer: dict[str, Any]) -> dict[str, int]:
    [row] = [row for row in answer["by_measure"] if row["measure"] == "M6"]
    return {k: v for k, v in row.items() if k != "measure"}


async def test_counts_equal_a_plain_group_by_after_a_mix_through_the_api(
    api_and_db: tuple[httpx.AsyncClient, AsyncConnection], live_registry_client: httpx.AsyncClient
) -> None:
    client, connection = api_and_db
    before = _m6(await _assert_consistent(client, connection))

    applicants = [await seed.m6_applicant(live_registry_client) for _ in range(5)]
    registered = [code for code, _ in applicants]
    eligible = [await _submit(client, code, evidence, "2026-03-01") for code, evidence in applicants[:4]]
    needs_review = await _submit(client, new_credit_code(), M6_EVIDENCE, "2026-03-01")  # unknown applicant
    ineligible = await _submit(client, *applicants[4], "2024-09-30")  # before the policy (A4)
    assert [a["decision"]["outcome"] for a in (*eligible, needs_review, ineligible)] == [
        *["eligible"] * 4,
        "needs_review",
        "ineligible",
    ]
    mid = _m6(await _assert_consistent(client, connection))
    assert {k: mid[k] - before[k] for k in mid} == {
        "submitted": 6,
        "eligible": 4,
        "ineligible": 1,
        "needs_review": 1,
        "in_review": 5,
        "reviewed": 0,
        "approved": 0,
        "rejected": 0,
        "ineligible_closed": 1,
    }

    approve, reject = {"verdict": "approve", "reason": "合规"}, {"verdict": "reject", "reason": "不符合"}
    await _act(client, eligible[0], "reviews", approve, WANG)  # reviewed, waiting for an approver
    await _act(client, eligible[1], "reviews", approve, WANG)
    await _act(client, eligible[1], "approvals", approve, LI)  # approved
    await _act(client, eligible[2], "reviews", reject, WANG)
    await _act(client, eligible[2], "approvals", reject, LI)  # rejected
    a1 = {"amount_fen": 100_000 * YUAN, "reason": "一事一议"}
    await _act(client, ineligible, "manual-decisions", a1, DIRECTOR)  # A1: approved, its outcome stays
    after = _m6(await _assert_consistent(client, connection))
    assert {k: after[k] - before[k] for k in after} == {
        "submitted": 6,
        "eligible": 4,
        "ineligible": 1,
        "needs_review": 1,
        "in_review": 2,
        "reviewed": 1,
        "approved": 2,
        "rejected": 1,
        "ineligible_closed": 0,
    }

    # no enterprise is named in the answers
    for path in ("/v1/aggregates/applications", "/v1/aggregates/review-queue"):
        text_ = (await client.get(path, headers=DASHBOARD_CLIENT)).text
        assert not any(code in text_ for code in registered), path


async def test_a_request_that_fails_after_writing_changes_no_count(
    api_and_db: tuple[httpx.AsyncClient, AsyncConnection],
    live_registry_client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, connection = api_and_db
    applicant, evidence = await seed.m6_applicant(live_registry_client)
    application = await _submit(client, applicant, evidence, "2026-03-01")
    before = await _assert_consistent(client, connection)

    async def fail(*args: Any, **kwargs: Any) -> None:  # after the rows were flushed, before the commit
        raise ProblemError(PEER_UNAVAILABLE, peer="test")

    async def write_then_fail(*args: Any, **kwargs: Any) -> None:  # a submission's rows and events, then a failure
        await insert_submission(*args, **kwargs)
        await fail()

    monkeypatch.setattr("services.eligibility.events.application_changed", fail)
    monkeypatch.setattr("services.eligibility.submission_sql.insert_submission", write_then_fail)
    failed_submission = await client.post(
        "/v1/applications",
        json={
            "applicant": applicant,
            "as_of": "2026-03-02",
            "as_of_reason": "逾期登记的纸质申请",
            "evidence": evidence,
        },
    )
    failed_review = await client.post(
        f"/v1/applications/{application['id']}/reviews", json={"verdict": "approve", "reason": "合规"}, headers=WANG
    )
    assert [failed_submission.status_code, failed_review.status_code] == [503, 503]
    monkeypatch.undo()

    assert await _assert_consistent(client, connection) == before
    status = (await client.get(f"/v1/applications/{application['id']}")).json()["status"]
    assert status == "in_review"


async def _insert_by_sql(
    connection: AsyncConnection, measure: str, age_seconds: int, status: str, outcome: str
) -> None:
    """An application and its automatic decision as a bulk load writes them (migration 0006's row set)."""
    application, decision = uuid.uuid4(), uuid.uuid4()
    await connection.execute(
        text(
            """
            INSERT INTO eligibility.applications (id, measure, applicant, as_of, benefit_year, evidence,
                                                  submitted_at, status, priority)
            VALUES (:id, :measure, :applicant, DATE '2026-01-05', 2026, CAST('{}' AS jsonb),
                    now() - make_interval(secs => :age), :status, 0)
            """
        ),
        {"id": application, "measure": measure, "applicant": new_credit_code(), "age": age_seconds, "status": status},
    )
    await connection.execute(
        text(
            """
            INSERT INTO eligibility.decisions (id, application_id, kind, outcome, failures, review_reasons,
                components, trace, facts, policy_version, parameters_digest, engine_version)
            VALUES (:id, :application, 'automatic', :outcome, CAST('[]' AS jsonb), CAST('[]' AS jsonb),
                    CAST('{}' AS jsonb), CAST('[]' AS jsonb), CAST('{}' AS jsonb), 'bulk', 'bulk', 'bulk')
            """
        ),
        {"id": decision, "application": application, "outcome": outcome},
    )
    await connection.execute(
        text("UPDATE eligibility.applications SET current_decision_id = :d WHERE id = :a"),
        {"d": decision, "a": application},
    )


def _percentile(values: list[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear between the two nearest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def test_the_review_queue_ages_and_rows_loaded_by_sql(
    api_and_db: tuple[httpx.AsyncClient, AsyncConnection],
) -> None:
    client, connection = api_and_db
    hour = 3600
    for measure, age, status, outcome in (
        ("M13", 1 * hour, "in_review", "eligible"),
        ("M13", 5 * hour, "reviewed", "needs_review"),
        ("M13", 30 * hour, "in_review", "eligible"),
        ("M12", 2 * hour, "in_review", "needs_review"),
        ("M12", 90 * hour, "approved", "eligible"),  # not waiting
        ("M12", 10 * hour, "ineligible", "ineligible"),  # not waiting
    ):
        await _insert_by_sql(connection, measure, age, status, outcome)
    assert await aggregates.differences(connection) == []  # the triggers counted them

    response = await client.get("/v1/aggregates/review-queue", headers=DASHBOARD_CLIENT)
    assert response.status_code == 200, response.text
    queue = response.json()
    waiting = (
        await connection.execute(
            text(
                "SELECT measure, extract(epoch FROM now() - submitted_at)::float8 AS age, submitted_at "
                "FROM eligibility.applications WHERE status IN ('in_review', 'reviewed')"
            )
        )
    ).all()
    ages = [row.age for row in waiting]
    assert queue["waiting"] == len(waiting)
    assert queue["oldest_submitted_at"] is not None
    assert abs(queue["age_seconds"]["max"] - max(ages)) <= 1
    assert abs(queue["age_seconds"]["p50"] - _percentile(ages, 0.5)) <= 1
    assert abs(queue["age_seconds"]["p90"] - _percentile(ages, 0.9)) <= 1
    by_measure = {row["measure"]: row for row in queue["by_measure"]}
    assert [row["measure"] for row in queue["by_measure"]][:3] == ["M1", "M2", "M3"]
    for measure in ("M12", "M13"):
        mine = [row.age for row in waiting if row.measure == measure]
        assert by_measure[measure]["waiting"] == len(mine)
        assert abs(by_measure[measure]["oldest_age_seconds"] - max(mine)) <= 1
    assert by_measure["M13"]["oldest_age_seconds"] >= 30 * hour
    assert queue["age_seconds"]["max"] >= 30 * hour

    # a bulk load that bypassed the triggers: rebuilt from the rows
    await connection.execute(text("DELETE FROM eligibility.application_counts"))
    assert await aggregates.differences(connection) != []
    assert await aggregates.rebuild_application_counts(connection) > 0
    assert await aggregates.differences(connection) == []
    await _assert_consistent(client, connection)


async def test_year_defaults_to_this_year_and_is_checked(eligibility: httpx.AsyncClient) -> None:
    default = await eligibility.get("/v1/aggregates/applications", headers=DASHBOARD_CLIENT)
    assert default.status_code == 200
    assert default.json()["year"] == aggregates.this_year()
    assert [row["measure"] for row in default.json()["by_measure"]] == [f"M{n}" for n in range(1, 14)]
    empty = await eligibility.get("/v1/aggregates/applications", params={"year": 2001}, headers=DASHBOARD_CLIENT)
    assert empty.json()["totals"] == dict.fromkeys(empty.json()["totals"], 0)
    for bad in ("1999", "abc"):
        refused = await eligibility.get("/v1/aggregates/applications", params={"year": bad}, headers=DASHBOARD_CLIENT)
        assert (refused.status_code, refused.json()["code"]) == (422, "validation_failed")
