"""The eligibility service's registry client, against a stubbed registry (httpx MockTransport)."""

from __future__ import annotations

import asyncio
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


def _facts(handler: object, *, batch: bool = True, in_flight: int = 1) -> RegistryFacts:
    transport = httpx.MockTransport(handler)  # type: ignore[arg-type]
    client = make_peer_client("http://registry", timeout_seconds=0.2, retries=1, transport=transport)
    return RegistryFacts(PeerClient("registry", client), batch=batch, in_flight=in_flight)


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


# --- questions asked while a call is in flight go together (POST /v1/facts/batch, issue #16) -----------------------

APPLICANTS = [f"9144030071526726{n:02d}" for n in range(6)]


class Registry:
    """A stub registry that holds its first `hold` calls until released, and records every call."""

    def __init__(
        self,
        *,
        refuse: set[str] = frozenset(),  # type: ignore[assignment]
        refuse_batches: bool = False,
        hold: int = 1,
    ) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.arrived, self.release = asyncio.Event(), asyncio.Event()
        self.refuse = refuse
        self.refuse_batches = refuse_batches
        self.hold = hold

    def one(self, query: dict[str, Any]) -> dict[str, Any]:
        revenues = (
            [{"credit_code": query["credit_code"], "year": 2025, "revenue_fen": 7}] if query["revenues"] else None
        )
        return {
            **_answer(query, revenues=revenues),
            "organisation": {**ORGANISATION, "credit_code": query["credit_code"]},
        }

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.calls.append((request.url.path, body))
        if len(self.calls) <= self.hold:
            if len(self.calls) == self.hold:
                self.arrived.set()
            await self.release.wait()
        if request.url.path == "/v1/facts/batch":
            if self.refuse_batches or any(q["credit_code"] in self.refuse for q in body["queries"]):
                return httpx.Response(422, json={"code": "validation_failed"})
            return httpx.Response(200, json={"facts": [self.one(q) for q in body["queries"]]})
        if body["credit_code"] in self.refuse:
            return httpx.Response(422, json={"code": "validation_failed"})
        return httpx.Response(200, json=self.one(body))


async def _while_one_is_in_flight(registry: Registry, facts: RegistryFacts) -> list[Any]:
    """APPLICANTS[0]'s question first (held by the registry), the others while it is in flight."""
    first = asyncio.create_task(facts.fetch(APPLICANTS[0], date(2026, 3, 1), FactsRequest()))
    await registry.arrived.wait()
    others = [
        asyncio.create_task(facts.fetch(code, date(2026, 3, 1), FactsRequest(revenues=True))) for code in APPLICANTS[1:]
    ]
    await asyncio.sleep(0.01)
    registry.release.set()
    return await asyncio.gather(first, *others, return_exceptions=True)


async def test_questions_asked_while_a_call_is_in_flight_go_together_each_with_its_own_answer() -> None:
    registry = Registry()
    answers = await _while_one_is_in_flight(registry, _facts(registry))
    assert [path for path, _ in registry.calls] == ["/v1/facts", "/v1/facts/batch"]
    assert [q["credit_code"] for q in registry.calls[1][1]["queries"]] == APPLICANTS[1:]
    assert all(q["revenues"] for q in registry.calls[1][1]["queries"])
    assert [facts.applicant for facts in answers] == APPLICANTS
    assert [facts.organisation.credit_code for facts in answers] == APPLICANTS
    assert [facts.revenues for facts in answers] == [{}, *[{2025: 7}] * 5]  # each as it asked


async def test_with_two_calls_in_flight_a_second_question_goes_at_once_and_the_rest_together() -> None:
    registry = Registry(hold=2)
    facts = _facts(registry, in_flight=2)
    alone = [asyncio.create_task(facts.fetch(code, date(2026, 3, 1), FactsRequest())) for code in APPLICANTS[:2]]
    await asyncio.wait_for(registry.arrived.wait(), 2)  # both in flight at once: the second did not wait
    others = [asyncio.create_task(facts.fetch(code, date(2026, 3, 1), FactsRequest())) for code in APPLICANTS[2:]]
    await asyncio.sleep(0.01)
    assert [path for path, _ in registry.calls] == ["/v1/facts", "/v1/facts"]  # the rest wait for a free call
    registry.release.set()
    answers = await asyncio.gather(*alone, *others)
    assert [path for path, _ in registry.calls] == ["/v1/facts", "/v1/facts", "/v1/facts/batch"]
    assert [q["credit_code"] for q in registry.calls[2][1]["queries"]] == APPLICANTS[2:]
    assert [a.organisation.credit_code for a in answers] == APPLICANTS


async def test_a_refused_batch_is_asked_again_question_by_question_so_one_never_fails_another() -> None:
    registry = Registry(refuse={APPLICANTS[3]})
    answers = await _while_one_is_in_flight(registry, _facts(registry))
    assert [path for path, _ in registry.calls] == ["/v1/facts", "/v1/facts/batch", *["/v1/facts"] * 5]
    assert isinstance(answers[3], PeerUnavailable)  # its own question's refusal is its own fault
    assert [a.organisation.credit_code for n, a in enumerate(answers) if n != 3] == [
        code for n, code in enumerate(APPLICANTS) if n != 3
    ]


async def test_a_registry_without_batches_still_answers_every_question() -> None:
    registry = Registry(refuse_batches=True)
    answers = await _while_one_is_in_flight(registry, _facts(registry))
    assert [a.organisation.credit_code for a in answers] == APPLICANTS


async def test_an_unreachable_registry_fails_every_question_of_a_batch() -> None:
    calls: list[str] = []
    arrived, release = asyncio.Event(), asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) == 1:
            arrived.set()
            await release.wait()
            return httpx.Response(200, json=_answer(json.loads(request.content)))
        raise httpx.ConnectError("refused", request=request)

    facts = _facts(handler)
    first = asyncio.create_task(facts.fetch(CODE, date(2026, 3, 1), FactsRequest()))
    await arrived.wait()
    others = [asyncio.create_task(facts.fetch(code, date(2026, 3, 1), FactsRequest())) for code in APPLICANTS]
    await asyncio.sleep(0.01)
    release.set()
    assert (await first).organisation is not None
    outcomes = await asyncio.gather(*others, return_exceptions=True)
    assert all(isinstance(outcome, PeerUnavailable) for outcome in outcomes), outcomes
    assert set(calls[1:]) == {"/v1/facts/batch"}  # one batch (tried again by the retry policy), none alone


async def test_with_batches_off_every_question_is_its_own_call() -> None:
    registry = Registry()
    answers = await _while_one_is_in_flight(registry, _facts(registry, batch=False))
    assert [path for path, _ in registry.calls] == ["/v1/facts"] * len(APPLICANTS)
    assert [a.organisation.credit_code for a in answers] == APPLICANTS
