"""Unified Social Credit Codes (GB 32100-2015) through the API: docs/policy.md's valid and invalid fixture codes."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import INVALID_CODES, VALID_CODES, organisation_payload


@pytest.mark.parametrize("code", VALID_CODES)
async def test_valid_codes_are_accepted(registry: httpx.AsyncClient, code: str) -> None:
    response = await registry.post("/v1/organisations", json=organisation_payload(credit_code=code))
    assert response.status_code == 201, response.text
    assert response.json()["credit_code"] == code
    assert response.json()["division_code"] == code[2:8]
    assert response.headers["location"].endswith(f"/v1/organisations/{code}")
    fetched = await registry.get(f"/v1/organisations/{code}")
    assert fetched.status_code == 200
    assert fetched.json()["name"] == response.json()["name"]


@pytest.mark.parametrize(("code", "expected"), INVALID_CODES.items())
async def test_invalid_codes_are_rejected_with_the_wrong_position(
    registry: httpx.AsyncClient, code: str, expected: tuple[str, int | None]
) -> None:
    reason, position = expected
    response = await registry.post("/v1/organisations", json=organisation_payload(credit_code=code))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_failed"
    [error] = problem["errors"]
    assert error["field"] == "body.credit_code"
    assert error["code"] == "invalid_credit_code"
    assert error["reason"] == reason
    assert error.get("position") == position
    if position is not None:
        assert f"第 {position} 位" in error["message"]  # Chinese by default
    listing = await registry.get("/v1/organisations")
    assert all(item["credit_code"] != code for item in listing.json()["items"])


async def test_wrong_check_character_says_which_was_expected_in_english(registry: httpx.AsyncClient) -> None:
    response = await registry.post(
        "/v1/organisations",
        json=organisation_payload(credit_code="9144030071526726XA"),
        headers={"Accept-Language": "en-US,en;q=0.9"},
    )
    [error] = response.json()["errors"]
    assert error["expected"] == "G"
    assert "position 18" in error["message"]
    assert response.headers["content-language"] == "en"


async def test_an_invalid_code_in_the_path_is_a_422_not_a_404(registry: httpx.AsyncClient) -> None:
    response = await registry.get("/v1/organisations/9144030071526726XA")
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "path.credit_code"
    assert error["position"] == 18


async def test_lowercase_and_letters_outside_the_alphabet_are_rejected(registry: httpx.AsyncClient) -> None:
    response = await registry.post("/v1/organisations", json=organisation_payload(credit_code="9144030071526726xg"))
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["reason"] == "character"
    assert error["position"] == 17
