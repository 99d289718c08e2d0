"""The eligibility service's registry client, against a stubbed registry (httpx MockTransport)."""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

import httpx
import pytest

from services.eligibility.facts import FactsRequest, RegistryFacts
from shared.peers import PeerClient, PeerUnavailable, make_peer_client

CODE = "9144030071526726XG"
VENDOR = "91440300MA5FXXXX1X"
ORGANISATION = {"credit_code": CODE, "name": "示例", "kind": "enterprise", "registered_district": "440307"}
MODEL = {"id": str(uuid.UUID(int=7)), "vendor_credit_code": VENDOR, "name": "模型"}
FILING = {"number": "Guangdong-Model-202401010001", "kind": "filing", "status": "filed", "filed_on": "2024-01-01"}


def _facts(handler: object) -> RegistryFacts:
    transport = httpx.MockTransport(handler)  # type: ignore[arg-type]
    client = make_peer_client("http://registry", timeout_seconds=0.2, retries=1, transport=transport)
    return RegistryFacts(PeerClient("registry", client))


def _answer(query: dict[str, Any], **found: Any) -> dict[str, Any]:
    """What the registry answers: null for what was not asked."""
    empty: dict[str, Any] = dict.fromkeys(
        (
            "revenues",
            "affiliations",
            "vendors",
            "recognitions",
            "recognitions_by_id",
            "model",
            "filings",
            "filings_on_as_of",
            "ranked_models",
        )
    )
    return {
        "credit_code": query["credit_code"],
        "as_of": query["as_of"],
        "organisation": ORGANISATION,
        **empty,
        **found,
    }


async def test_one_call_asks_for_exactly_what_the_rule_needs_as_of_the_application_date() -> None:
    seen: list[httpx.Request] = []
    recognition = uuid.uuid4()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        query = json.loads(request.content)
        return httpx.Response(
            200,
            json=_answer(
                query,
                revenues=[{"credit_code": CODE, "year": 2025, "revenue_fen": 7}],
                affiliations=[{"credit_code_a": "91110000100000000X", "credit_code_b": CODE}],
                vendors={VENDOR: None},
                recognitions_by_id={str(recognition): None},
            ),
        )

    request = FactsRequest(
        revenues=True, affiliates=True, vendor_codes=(VENDOR, VENDOR), recognition_ids=(recognition, recognition)
    )
    facts = await _facts(handler).fetch(CODE, date(2026, 3, 1), request)
    assert [(r.method, r.url.path) for r in seen] == [("POST", "/v1/facts")]
    assert json.loads(seen[0].content) == {
        "credit_code": CODE,
        "as_of": "2026-03-01",
        "revenues": True,
        "affiliations": True,
        "vendor_codes": [VENDOR],
        "recognitions": False,
        "recognition_ids": [str(recognition)],
        "model_id": None,
        "filings_on": None,
        "filings_on_as_of": False,
        "ranked_models": False,
    }
    assert facts.organisation is not None
    assert facts.revenues == {2025: 7}
    assert facts.affiliates == ["91110000100000000X"]
    assert facts.vendors == {VENDOR: None}
    assert facts.referenced == {str(recognition): None}  # absent on that date, not an error
    assert facts.filings_on_as_of is None  # not asked: not read


async def test_a_model_its_filings_and_the_ranked_models() -> None:
    ranked = {**MODEL, "national_filing_date": "2024-02-01", "national_filing_rank": 3}

    def handler(request: httpx.Request) -> httpx.Response:
        query = json.loads(request.content)
        assert (query["model_id"], query["filings_on"], query["filings_on_as_of"]) == (MODEL["id"], "2025-01-01", True)
        return httpx.Response(
            200,
            json=_answer(query, model=MODEL, filings=[FILING], filings_on_as_of=[], ranked_models=[ranked]),
        )

    request = FactsRequest(
        model_id=uuid.UUID(MODEL["id"]), filings_on=date(2025, 1, 1), filings_on_as_of=True, ranked_models=True
    )
    facts = await _facts(handler).fetch(CODE, date(2026, 3, 1), request)
    assert facts.model is not None
    assert facts.model.name == "模型"
    assert [f.number for f in facts.filings] == [FILING["number"]]
    assert facts.filings_on_as_of == []
    assert [m.national_filing_rank for m in facts.ranked_models] == [3]


async def test_an_organisation_unknown_on_the_date_has_no_facts() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={**_answer(json.loads(request.content)), "organisation": None})

    facts = await _facts(handler).fetch(CODE, date(2026, 3, 1), FactsRequest(revenues=True))
    assert (facts.organisation, facts.revenues) == (None, {})


async def test_a_slow_registry_is_unavailable_not_a_guess() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(PeerUnavailable):
        await _facts(handler).fetch(CODE, date(2026, 3, 1), FactsRequest())


@pytest.mark.parametrize("status", [500, 422, 404])
async def test_a_registry_error_or_refusal_is_unavailable(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"code": "internal_error"})

    with pytest.raises(PeerUnavailable):
        await _facts(handler).fetch(CODE, date(2026, 3, 1), FactsRequest(revenues=True))


async def test_a_reply_cut_once_is_asked_again() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("cut", request=request)
        return httpx.Response(200, json=_answer(json.loads(request.content)))

    facts = await _facts(handler).fetch(CODE, date(2026, 3, 1), FactsRequest())
    assert facts.organisation is not None
    assert len(calls) == 2
