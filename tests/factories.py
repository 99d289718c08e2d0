"""Async factories: build valid records through the public API."""

from __future__ import annotations

import itertools
import random
from typing import Any

import httpx

from shared.identifiers import USCC_ALPHABET, uscc_check_character

_serial = itertools.count(1)
_random = random.Random(20261127)

#: The valid and invalid fixture codes of docs/policy.md ("Identifier formats").
VALID_CODES = ("9144030071526726XG", "914403001922038216", "91440300708461136T", "91350100M000100Y43")
INVALID_CODES = {
    "9144030071526726XA": ("check_character", 18),
    "9144030071526726X": ("length", None),
    "9144030071526726XI": ("character", 18),
}


def new_credit_code(division: str = "440307") -> str:
    """A fresh, valid Unified Social Credit Code (enterprise, given division)."""
    body = "91" + division + "".join(_random.choice(USCC_ALPHABET) for _ in range(9))
    return body + uscc_check_character(body)


def organisation_payload(**overrides: Any) -> dict[str, Any]:
    n = next(_serial)
    payload: dict[str, Any] = {
        "credit_code": new_credit_code(),
        "name": f"深圳龙岗测试科技有限公司{n}",
        "kind": "enterprise",
        "registered_district": "440307",
        "registered_on": "2021-05-10",
        "is_software_internet": True,
    }
    payload.update(overrides)
    return payload


async def _post(client: httpx.AsyncClient, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=payload)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def make_organisation(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    return await _post(client, "/v1/organisations", organisation_payload(**overrides))


async def make_vendor(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    if "credit_code" not in overrides:
        overrides["credit_code"] = (await make_organisation(client))["credit_code"]
    payload = {"is_model_vendor": True, "is_compute_vendor": False, **overrides}
    return await _post(client, "/v1/vendors", payload)


async def make_model(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    if "vendor_credit_code" not in overrides:
        overrides["vendor_credit_code"] = (await make_vendor(client))["credit_code"]
    payload = {"name": f"龙岗行业大模型-{next(_serial)}", **overrides}
    return await _post(client, "/v1/models", payload)


async def make_filing(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    if "model_id" not in overrides:
        overrides["model_id"] = (await make_model(client))["id"]
    payload = {
        "number": f"Guangdong-LonggangModel{next(_serial)}-202403010001",
        "kind": "filing",
        "filed_on": "2024-03-01",
        **overrides,
    }
    return await _post(client, "/v1/filings", payload)
