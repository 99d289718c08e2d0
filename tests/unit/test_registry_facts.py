"""The eligibility service's registry client, against a stubbed registry (httpx MockTransport)."""

from __future__ import annotations

import uuid
from datetime import date

import httpx
import pytest

from services.eligibility.facts import FactsRequest, RegistryFacts
from shared.peers import PeerClient, PeerUnavailable, make_peer_client

CODE = "9144030071526726XG"
ORGANISATION = {"credit_code": CODE, "name": "示例", "kind": "enterprise", "registered_district": "440307"}


def _facts(handler: object) -> RegistryFacts:
    transport = httpx.MockTransport(handler)  # type: ignore[arg-type]
    client = make_peer_client("http://registry", timeout_seconds=0.2, retries=1, transport=transport)
    return RegistryFacts(PeerClient("registry", client))


async def test_everything_is_read_as_of_the_application_date() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        if request.url.path == f"/v1/organisations/{CODE}":
            return httpx.Response(200, json=ORGANISATION)
        if request.url.path == "/v1/revenues":
            return httpx.Response(200, json={"items": [{"year": 2025, "revenue_fen": 7}], "next_cursor": None})
        if request.url.path.startswith("/v1/recognitions/"):
            return httpx.Response(404, json={"code": "record_not_found_as_of"})
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    recognition = uuid.uuid4()
    facts = await _facts(handler).fetch(
        CODE, date(2026, 3, 1), FactsRequest(revenues=True, recognition_ids=(recognition,))
    )
    assert facts.organisation is not None
    assert facts.revenues == {2025: 7}
    assert facts.referenced == {str(recognition): None}  # absent on that date, not an error
    assert all(url.params["as_of"] == "2026-03-01" for url in seen)


async def test_a_slow_registry_is_unavailable_not_a_guess() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(PeerUnavailable):
        await _facts(handler).fetch(CODE, date(2026, 3, 1), FactsRequest())


async def test_a_registry_error_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == f"/v1/organisations/{CODE}":
            return httpx.Response(200, json=ORGANISATION)
        return httpx.Response(500, json={"code": "internal_error"})

    with pytest.raises(PeerUnavailable):
        await _facts(handler).fetch(CODE, date(2026, 3, 1), FactsRequest(revenues=True))
