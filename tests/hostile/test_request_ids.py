"""The server assigns every request's id; what the caller sends is its correlation id (issue #12, finding 11).

A client used to choose the `X-Request-ID` that audit rows, ledger entries, decisions and registry
versions record, so it could file its actions under another client's request. Now the request id
is always the server's (answered in `X-Request-ID` and in problems); the caller's `X-Correlation-ID`,
or its `X-Request-ID` as clients sent before, is echoed in `X-Correlation-ID` and kept in the audit
row's `correlation_id`, never as the request id.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import httpx

from tests.factories import organisation_payload
from tests.vouchers.flow import approved_m3, issue, redeem

SERVER_ID = re.compile(r"^[0-9a-f]{32}$")


async def _audit(client: httpx.AsyncClient, **query: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/audit", params=query)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_a_callers_request_id_is_its_correlation_id_never_the_request_id(registry: httpx.AsyncClient) -> None:
    victim = "platform-batch-42"  # what another client's request is known by
    payload = organisation_payload()
    created = await registry.post("/v1/organisations", json=payload, headers={"X-Request-ID": victim})
    assert created.status_code == 201, created.text
    request_id = created.headers["x-request-id"]
    assert SERVER_ID.match(request_id)
    assert request_id != victim
    assert created.headers["x-correlation-id"] == victim
    # the registry's version, and the audit row, name the server's id; the caller's is the correlation id
    [version] = (await registry.get(f"/v1/organisations/{payload['credit_code']}/history")).json()
    assert version["request_id"] == request_id
    [row] = await _audit(registry, request_id=request_id)
    assert (row["request_id"], row["correlation_id"], row["path"]) == (request_id, victim, "/v1/organisations")
    assert await _audit(registry, request_id=victim) == []
    assert [r["request_id"] for r in await _audit(registry, correlation_id=victim)] == [request_id]


async def test_x_correlation_id_wins_and_insane_values_are_dropped(registry: httpx.AsyncClient) -> None:
    both = await registry.get("/healthz", headers={"X-Correlation-ID": "mine-1", "X-Request-ID": "other-2"})
    assert SERVER_ID.match(both.headers["x-request-id"])
    assert both.headers["x-correlation-id"] == "mine-1"
    for hostile in ("x" * 129, "spaces are not allowed", "semi;colon"):
        answer = await registry.get("/healthz", headers={"X-Correlation-ID": hostile})
        assert SERVER_ID.match(answer.headers["x-request-id"])
        assert "x-correlation-id" not in answer.headers
    plain = await registry.get("/healthz")
    assert SERVER_ID.match(plain.headers["x-request-id"])
    assert "x-correlation-id" not in plain.headers
    # two requests with the same caller's id are two requests
    first = await registry.get("/healthz", headers={"X-Request-ID": "same"})
    second = await registry.get("/healthz", headers={"X-Request-ID": "same"})
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_problems_name_the_servers_request_id(registry: httpx.AsyncClient) -> None:
    refused = await registry.post("/v1/organisations", json={}, headers={"X-Request-ID": "chosen-by-caller"})
    assert refused.status_code == 422
    assert refused.json()["request_id"] == refused.headers["x-request-id"] != "chosen-by-caller"
    [row] = await _audit(registry, correlation_id="chosen-by-caller")
    assert (row["request_id"], row["outcome"]) == (refused.headers["x-request-id"], "refused")


async def test_ledger_entries_and_vouchers_audit_rows_carry_the_servers_request_id(
    vouchers: httpx.AsyncClient,
    vouchers_database: str,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
) -> None:
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    issued = await issue(vouchers, decision_id)
    code = issued.json()["code"]
    vouchers.headers["X-Request-ID"] = "another-vendors-request"
    try:
        redeemed = await redeem(vouchers, code, supply.vendor, 100, "request-id-1")
    finally:
        del vouchers.headers["X-Request-ID"]
    assert redeemed.status_code == 201, redeemed.text
    request_id = redeemed.headers["x-request-id"]
    assert SERVER_ID.match(request_id)
    assert redeemed.headers["x-correlation-id"] == "another-vendors-request"
    connection = await asyncpg.connect(vouchers_database)
    try:
        stored = await connection.fetch(
            "SELECT request_id FROM vouchers.entries WHERE redemption_id = $1", redeemed.json()["id"]
        )
    finally:
        await connection.close()
    assert [row["request_id"] for row in stored] == [request_id]
    [row] = await _audit(vouchers, request_id=request_id)
    assert (row["correlation_id"], row["status"]) == ("another-vendors-request", 201)


async def test_decisions_carry_the_servers_request_id(eligibility: httpx.AsyncClient) -> None:
    application = {
        "applicant": "9144030071526726XG",
        "as_of": "2026-03-01",
        "as_of_reason": "逾期登记的纸质申请",
        "evidence": {"measure": "M6", "diagnosis_reference": "x", "audited_investment_fen": 100},
    }
    submitted = await eligibility.post("/v1/applications", json=application, headers={"X-Request-ID": "not-mine"})
    assert submitted.status_code == 201, submitted.text
    request_id = submitted.headers["x-request-id"]
    assert SERVER_ID.match(request_id)
    assert submitted.json()["decision"]["request_id"] == request_id
    [row] = await _audit(eligibility, request_id=request_id)
    assert row["correlation_id"] == "not-mine"
