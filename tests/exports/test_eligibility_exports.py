"""`GET /v1/exports/decisions` and `/v1/exports/applications`: round trips, bounds, filters, roles.

Applications and decisions are inserted with SQL (as the tables' owner) at chosen instants,
in a database of this module's own, so that the date bounds can be tested to the microsecond.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from services.eligibility.exports import APPLICATION_COLUMNS, DECISION_COLUMNS
from shared.auth import PLATFORM
from shared.dbroles import login_url
from tests.auth import auth
from tests.conftest import DatabaseFactory
from tests.exports.helpers import ROLES, as_csv, assert_problem, csv_rows, instant, ndjson
from tests.factories import new_credit_code

PLATFORM_HEADERS = auth(PLATFORM, name="data platform")
DAY = datetime(2026, 5, 31, 16, tzinfo=UTC)  # 2026-06-01T00:00:00+08:00
MICROSECOND = timedelta(microseconds=1)
DECIDED = [DAY - timedelta(days=1), DAY - MICROSECOND, DAY, DAY + timedelta(hours=23), DAY + timedelta(days=1)]


@pytest.fixture(scope="module")
def eligibility_database(databases: DatabaseFactory) -> str:
    return databases.create("exports_eligibility")


@pytest_asyncio.fixture(scope="module")
async def stored(eligibility_database: str) -> dict[str, Any]:
    applicants = [new_credit_code(), new_credit_code()]
    connection = await asyncpg.connect(eligibility_database)
    try:
        for index, decided_at in enumerate(DECIDED):
            application = uuid.uuid4()
            decision = uuid.uuid4()
            measure = ("M3", "M9")[index % 2]
            evidence = {"measure": measure, "note": f'合同, "第{index}号"\n附件', "claim_fen": 1000 * index}
            await connection.execute(
                "INSERT INTO eligibility.applications (id, measure, applicant, as_of, benefit_year, evidence, "
                "submitted_by, submitted_at, status, priority, current_decision_id) "
                "VALUES ($1, $2, $3, $4, 2026, $5::jsonb, $6, $7, $8, $9, $10)",
                application,
                measure,
                applicants[index % 2],
                (decided_at - timedelta(days=2)).date(),
                json.dumps(evidence, ensure_ascii=False),
                "applicant portal",
                decided_at - timedelta(days=2),
                ("in_review", "ineligible")[index % 2],
                index,
                decision,
            )
            await connection.execute(
                "INSERT INTO eligibility.decisions (id, application_id, kind, outcome, amount_fen, failures, "
                "review_reasons, components, trace, facts, policy_version, parameters_digest, engine_version, "
                "decided_by, reason, decided_at) "
                "VALUES ($1, $2, $3, $4, $5, $6::jsonb, '[]', $7::jsonb, $8::jsonb, $9::jsonb, 'policy-2026', "
                "'sha256:params', 'engine-1', $10, $11, $12)",
                decision,
                application,
                "automatic" if index != 3 else "manual_a1",
                ("needs_review", "ineligible")[index % 2],
                None if index % 2 else 100_000 * (index + 1),
                json.dumps([{"code": "growth_below_minimum", "clause": "M9"}] if index % 2 else []),
                json.dumps({"base_fen": 100_000 * (index + 1)}),
                json.dumps([{"step": "cap", "clause": measure, "note": "上限，按30%"}], ensure_ascii=False),
                json.dumps({"registry": {"name": '龙岗\t科技, "有限"'}}, ensure_ascii=False),
                None if index != 3 else "approver 李科长",
                None if index != 3 else "A1: 特殊情况, 见附件\n第二页",
                decided_at,
            )
        decisions = await connection.fetch(
            "SELECT d.*, a.applicant, a.measure, a.benefit_year, a.as_of FROM eligibility.decisions d "
            "JOIN eligibility.applications a ON a.id = d.application_id ORDER BY d.decided_at, d.id"
        )
        applications = await connection.fetch("SELECT * FROM eligibility.applications ORDER BY seq")
        return {
            "decisions": [dict(row) for row in decisions],
            "applications": [dict(row) for row in applications],
            "applicants": applicants,
        }
    finally:
        await connection.close()


@pytest_asyncio.fixture(scope="module")
async def eligibility_export_app(eligibility_database: str) -> AsyncIterator[FastAPI]:
    from services.eligibility.app import create_app
    from services.eligibility.settings import EligibilitySettings

    settings = EligibilitySettings(
        database_url=login_url(eligibility_database, "eligibility"),  # type: ignore[arg-type]
        registry_url="http://127.0.0.1:9",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest_asyncio.fixture
async def client(eligibility_export_app: FastAPI, stored: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=eligibility_export_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://eligibility", headers=PLATFORM_HEADERS) as http:
        yield http


def json_value(value: Any) -> Any:
    """A stored value as the export writes it in JSON."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in "[{":  # asyncpg gives jsonb as text
        return json.loads(value)
    return value


def expected(row: dict[str, Any], columns: Any) -> dict[str, Any]:
    return {column.name: json_value(row[column.name]) for column in columns}


def parsed(record: dict[str, Any], name: str) -> dict[str, Any]:
    return {**record, name: instant(record[name])}


async def test_decisions_round_trip_as_ndjson(client: httpx.AsyncClient, stored: dict[str, Any]) -> None:
    records, trailer = ndjson(await client.get("/v1/exports/decisions"))
    assert [parsed(r, "decided_at") for r in records] == [expected(d, DECISION_COLUMNS) for d in stored["decisions"]]
    assert "trace" not in records[0]
    assert trailer["kind"] == "decisions"
    with_trace, _ = ndjson(await client.get("/v1/exports/decisions", params={"trace": "true"}))
    assert [r["trace"] for r in with_trace] == [json.loads(d["trace"]) for d in stored["decisions"]]


async def test_decisions_round_trip_as_csv(client: httpx.AsyncClient, stored: dict[str, Any]) -> None:
    header, rows = csv_rows(await client.get("/v1/exports/decisions", params={"format": "csv"}))
    assert header == [c.name for c in DECISION_COLUMNS]
    for row, decision in zip(rows, stored["decisions"], strict=True):
        want = expected(decision, DECISION_COLUMNS)
        assert instant(row.pop("decided_at")) == want.pop("decided_at")
        for name, value in want.items():
            if isinstance(value, dict | list):
                assert json.loads(row[name]) == value, name
            else:
                assert row[name] == as_csv(value), name
    assert len(rows) == len(stored["decisions"])


async def test_applications_round_trip(client: httpx.AsyncClient, stored: dict[str, Any]) -> None:
    records, trailer = ndjson(await client.get("/v1/exports/applications"))
    assert [parsed(r, "submitted_at") for r in records] == [
        expected(a, APPLICATION_COLUMNS) for a in stored["applications"]
    ]
    assert trailer["kind"] == "applications"
    header, rows = csv_rows(await client.get("/v1/exports/applications", params={"format": "csv"}))
    assert header == [c.name for c in APPLICATION_COLUMNS]
    assert [json.loads(row["evidence"]) for row in rows] == [r["evidence"] for r in records]


async def test_decided_at_bounds_are_half_open_shenzhen_days(client: httpx.AsyncClient) -> None:
    for start, end in (("2026-06-01", "2026-06-02"), ("2026-05-31T16:00:00Z", "2026-06-01T16:00:00.000000Z")):
        records, trailer = ndjson(await client.get("/v1/exports/decisions", params={"from": start, "to": end}))
        assert [instant(r["decided_at"]) for r in records] == [DAY, DAY + timedelta(hours=23)]
        assert (trailer["from"], trailer["to"]) == ("2026-05-31T16:00:00.000000Z", "2026-06-01T16:00:00.000000Z")


async def test_filters(client: httpx.AsyncClient, stored: dict[str, Any]) -> None:
    m9, trailer = ndjson(await client.get("/v1/exports/decisions", params={"measure": "M9"}))
    assert {r["measure"] for r in m9} == {"M9"}
    assert len(m9) == 2
    assert trailer["filters"] == {"measure": "M9"}
    a1, _ = ndjson(await client.get("/v1/exports/decisions", params={"kind": "manual_a1"}))
    assert [r["reason"] for r in a1] == ["A1: 特殊情况, 见附件\n第二页"]
    ineligible, _ = ndjson(await client.get("/v1/exports/decisions", params={"outcome": "ineligible"}))
    assert {r["outcome"] for r in ineligible} == {"ineligible"}
    first = stored["applicants"][0]
    own, _ = ndjson(await client.get("/v1/exports/applications", params={"applicant": first, "status": "in_review"}))
    assert {(r["applicant"], r["status"]) for r in own} == {(first, "in_review")}
    assert len(own) == 3


@pytest.mark.parametrize("path", ["/v1/exports/decisions", "/v1/exports/applications"])
@pytest.mark.parametrize(("who", "headers", "status"), ROLES, ids=[r[0] for r in ROLES])
async def test_roles(client: httpx.AsyncClient, path: str, who: str, headers: dict[str, str], status: int) -> None:
    response = await client.get(path, headers=headers)
    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/exports/decisions", {"outcome": "approved"}, "query.outcome"),
        ("/v1/exports/decisions", {"measure": "X1"}, "query.measure"),
        ("/v1/exports/decisions", {"applicant": "9144030071526726XA"}, "query.applicant"),
        ("/v1/exports/decisions", {"trace": "sometimes"}, "query.trace"),
        ("/v1/exports/applications", {"status": "pending"}, "query.status"),
        ("/v1/exports/applications", {"to": "2026-06-01T00:00:00"}, "query.to"),
        ("/v1/exports/applications", {"from": "2026-06-01", "to": "2026-06-01"}, "query.to"),
    ],
)
async def test_invalid_parameters_are_422_problems(
    client: httpx.AsyncClient, path: str, params: dict[str, str], field: str
) -> None:
    body = assert_problem(await client.get(path, params=params), 422, "validation_failed")
    assert [e["field"] for e in body["errors"]] == [field]
