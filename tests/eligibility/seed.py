"""Facts for eligibility tests, written to the live registry through its public API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories import new_credit_code, organisation_payload


async def _post(registry: httpx.AsyncClient, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = await registry.post(path, json=payload)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def organisation(registry: httpx.AsyncClient, **overrides: Any) -> str:
    payload = organisation_payload(**{"registered_on": "2021-01-04", **overrides})
    return str((await _post(registry, "/v1/organisations", payload))["credit_code"])


async def revenue(registry: httpx.AsyncClient, code: str, year: int, revenue_fen: int) -> None:
    await _post(registry, "/v1/revenues", {"credit_code": code, "year": year, "revenue_fen": revenue_fen})


async def vendor(registry: httpx.AsyncClient, **flags: Any) -> str:
    code = await organisation(registry)
    await _post(registry, "/v1/vendors", {"credit_code": code, "effective_from": "2021-01-04", **flags})
    return code


async def affiliation(registry: httpx.AsyncClient, a: str, b: str) -> None:
    await _post(
        registry,
        "/v1/affiliations",
        {"credit_code_a": a, "credit_code_b": b, "relation": "control", "effective_from": "2022-01-01"},
    )


async def recognition(registry: httpx.AsyncClient, code: str, recognised_on: str, **details: Any) -> str:
    body = await _post(
        registry, "/v1/recognitions", {"credit_code": code, "recognised_on": recognised_on, "details": details}
    )
    return str(body["id"])


async def model(registry: httpx.AsyncClient, vendor_code: str, **fields: Any) -> str:
    payload = {
        "vendor_credit_code": vendor_code,
        "name": f"模型-{new_credit_code()[-6:]}",
        "effective_from": "2021-01-04",
        **fields,
    }
    return str((await _post(registry, "/v1/models", payload))["id"])


async def filing(registry: httpx.AsyncClient, model_id: str, filed_on: str, number: str | None = None) -> str:
    number = number or f"Guangdong-Test{new_credit_code()[-8:]}-{filed_on.replace('-', '')}0001"
    await _post(
        registry, "/v1/filings", {"number": number, "model_id": model_id, "kind": "filing", "filed_on": filed_on}
    )
    return number
