"""One error format everywhere: RFC 9457 problem+json, a stable code, Chinese or English."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import organisation_payload


def _assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, object] = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"] == f"urn:longgang-ai:problem:{code}"
    assert problem["request_id"] == response.headers["x-request-id"]
    for key in ("title", "detail", "instance"):
        assert isinstance(problem[key], str)
        assert problem[key]
    return problem


async def test_unknown_fields_are_named(registry: httpx.AsyncClient) -> None:
    response = await registry.post("/v1/organisations", json={**organisation_payload(), "colour": "red"})
    problem = _assert_problem(response, 422, "validation_failed")
    assert problem["errors"] == [{"field": "body.colour", "code": "extra_forbidden", "message": "不允许的字段"}]


async def test_language_follows_accept_language(registry: httpx.AsyncClient) -> None:
    zh = await registry.get("/v1/vendors/9144030071526726XG")
    en = await registry.get("/v1/vendors/9144030071526726XG", headers={"Accept-Language": "en"})
    prefers_zh = await registry.get(
        "/v1/vendors/9144030071526726XG", headers={"Accept-Language": "fr, zh-CN;q=0.9, en;q=0.8"}
    )
    _assert_problem(zh, 404, "record_not_found")
    _assert_problem(en, 404, "record_not_found")
    assert zh.json()["detail"] == "供应商不存在：9144030071526726XG"
    assert en.json()["detail"] == "No such vendor: 9144030071526726XG"
    assert (zh.headers["content-language"], en.headers["content-language"]) == ("zh", "en")
    assert prefers_zh.headers["content-language"] == "zh"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[]", "application/json"),
        (b"null", "application/json"),
        (b'{"credit_code": 123}', "application/json"),
        ("\x00\xff".encode("latin-1"), "application/json"),
    ],
)
async def test_garbage_bodies_are_422_and_write_nothing(
    registry: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    response = await registry.post("/v1/organisations", content=content, headers={"Content-Type": content_type})
    _assert_problem(response, 422, "validation_failed")
    assert (await registry.get("/v1/organisations")).json()["items"] == []


async def test_unknown_routes_and_methods(registry: httpx.AsyncClient) -> None:
    _assert_problem(await registry.get("/v1/nothing-here"), 404, "route_not_found")
    _assert_problem(await registry.delete("/v1/organisations/9144030071526726XG"), 405, "method_not_allowed")


async def test_bad_query_values(registry: httpx.AsyncClient) -> None:
    response = await registry.get("/v1/organisations", params={"as_of": "2025-13-01"})
    problem = _assert_problem(response, 422, "validation_failed")
    assert problem["errors"][0]["field"] == "query.as_of"  # type: ignore[index]
    bad_uuid = await registry.get("/v1/models/not-a-uuid")
    _assert_problem(bad_uuid, 422, "validation_failed")


async def test_request_ids_are_the_servers_and_the_callers_is_echoed_as_correlation(
    registry: httpx.AsyncClient,
) -> None:
    """The server assigns the request id (issue #12); a caller's sane X-Request-ID comes back as X-Correlation-ID."""
    mine = await registry.get("/healthz", headers={"X-Request-ID": "platform-batch-42"})
    assert mine.headers["x-request-id"] != "platform-batch-42"
    assert len(mine.headers["x-request-id"]) == 32
    assert mine.headers["x-correlation-id"] == "platform-batch-42"
    hostile = await registry.get("/healthz", headers={"X-Request-ID": "x" * 500})
    assert hostile.headers["x-request-id"] != "x" * 500
    assert len(hostile.headers["x-request-id"]) == 32
    assert "x-correlation-id" not in hostile.headers


async def test_oversized_bodies_are_refused_before_reading(registry: httpx.AsyncClient) -> None:
    response = await registry.post(
        "/v1/organisations", content=b"x", headers={"Content-Type": "application/json", "Content-Length": str(10**9)}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "payload_too_large"
    # the documented Problem (shared/openapi.py), like every other refusal
    assert problem["instance"] == "/v1/organisations"
    assert problem["request_id"] == response.headers["x-request-id"]


async def test_text_postgresql_cannot_store_is_a_422_and_changes_nothing(registry: httpx.AsyncClient) -> None:
    """U+0000 travels in JSON and URLs but not into PostgreSQL text: a 422 wherever it reaches the database
    (a stored field, a filter, a key), never a 500 (found by schemathesis, tests/api/)."""
    payload = organisation_payload(name="深圳\u0000科技")
    stored = await registry.post("/v1/organisations", json=payload)
    _assert_problem(stored, 422, "unstorable_text")
    assert (await registry.get(f"/v1/organisations/{payload['credit_code']}")).status_code == 404
    _assert_problem(await registry.get("/v1/organisations", params={"kind": "a\u0000"}), 422, "unstorable_text")
    _assert_problem(await registry.get("/v1/filings/ab%00cd"), 422, "unstorable_text")


async def test_a_nul_in_a_path_does_not_jam_the_audit_log(registry: httpx.AsyncClient, registry_app: FastAPI) -> None:
    """The audit row of a mutating request keeps its path: one with U+0000 would fail every COPY of its batch."""
    refused = await registry.patch("/v1/filings/ab%00cd", json={})
    _assert_problem(refused, 422, "unstorable_text")
    assert await registry_app.state.audit.flush() >= 1  # 0: the batch was refused and kept for a retry
    rows = (await registry.get("/v1/audit", params={"request_id": refused.headers["x-request-id"]})).json()["items"]
    assert [row["path"] for row in rows] == ["/v1/filings/ab\ufffdcd"]
