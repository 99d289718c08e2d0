"""Facts a rule decides on, and how they are fetched from the registry as of a date.

`Facts` is plain data (stored with every decision, so a simulation can re-run the rules
without asking the registry again). `RegistryFacts` is the I/O edge: it asks the
registry over REST for exactly what a rule says it needs (`FactsRequest`), as of the
application's date, in one call (`POST /v1/facts`) that the registry answers from one
snapshot. Any failure to reach the registry, or a refusal of the question, raises
`PeerUnavailable` — the caller answers 503 and decides nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import BaseModel, Field

from shared.peers import PeerClient, PeerRejected, PeerUnavailable

logger = logging.getLogger("services.eligibility.facts")


class OrganisationFacts(BaseModel):
    credit_code: str
    name: str
    kind: str
    registered_district: str | None = None
    registered_on: date | None = None
    four_above_category: str | None = None
    is_software_internet: bool = False
    owns_district_industrial_housing: bool | None = None


class VendorFacts(BaseModel):
    credit_code: str
    is_compute_vendor: bool
    is_model_vendor: bool
    district_compute: bool
    domestic_compute: bool
    active: bool = True


class ModelFacts(BaseModel):
    id: uuid.UUID
    vendor_credit_code: str
    name: str
    national_filing_date: date | None = None
    national_filing_rank: int | None = None


class FilingFacts(BaseModel):
    number: str
    kind: str
    status: str
    filed_on: date


class RecognitionFacts(BaseModel):
    id: uuid.UUID
    credit_code: str
    recognised_on: date
    active: bool
    details: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.details.get("kind", ""))


class PriorAward(BaseModel):
    """An earlier decision for the same applicant and measure that still stands."""

    decision_id: uuid.UUID
    year: int
    amount_fen: int
    components: dict[str, int] = Field(default_factory=dict)
    basis: dict[str, Any] = Field(default_factory=dict, description="what year totals build on (e.g. M1 base)")


class ClaimHolder(BaseModel):
    """Who holds a claim key already: an approved award, or an application still in review."""

    application_id: str
    status: str = Field(description="awarded | pending")


class Facts(BaseModel):
    as_of: date
    applicant: str | None = None
    organisation: OrganisationFacts | None = None
    revenues: dict[int, int] = Field(default_factory=dict, description="year → audited revenue in fen")
    affiliates: list[str] = Field(default_factory=list, description="credit codes affiliated on as_of")
    vendors: dict[str, VendorFacts | None] = Field(default_factory=dict)
    model: ModelFacts | None = None
    filings: list[FilingFacts] = Field(default_factory=list, description="the model's filings on the relevant date")
    filings_on_as_of: list[FilingFacts] | None = Field(
        default=None,
        description="the model's filings on the application date (M3: the claim date); None: not read "
        "(facts recorded before the claim date was checked)",
    )
    recognitions: list[RecognitionFacts] = Field(default_factory=list, description="the applicant's, on as_of")
    referenced: dict[str, RecognitionFacts | None] = Field(default_factory=dict, description="by id, on as_of")
    ranked_models: list[ModelFacts] = Field(default_factory=list, description="models with a national filing")
    prior_awards: list[PriorAward] = Field(default_factory=list)
    claimed: dict[str, ClaimHolder] = Field(
        default_factory=dict, description="claim keys of this application already held elsewhere (award register)"
    )


@dataclass(frozen=True)
class FactsRequest:
    """What a rule needs beyond the applicant organisation."""

    revenues: bool = False
    affiliates: bool = False
    vendor_codes: tuple[str, ...] = ()
    recognitions: bool = False
    recognition_ids: tuple[uuid.UUID, ...] = ()
    model_id: uuid.UUID | None = None
    filings_on: date | None = None
    filings_on_as_of: bool = False
    ranked_models: bool = False
    prior_awards: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class RegistryFacts:
    """Reads the registry over REST, always `as_of` the application's date: one call (`POST /v1/facts`),
    which the registry answers from one snapshot, so the facts of a decision are consistent.

    Submissions that need facts while `in_flight` calls to the registry are in flight wait for one to end, then
    go together as one call (`POST /v1/facts/batch`, at most `max_batch`; issue #16): one request, one statement
    and one snapshot for several applications instead of one each. Each still gets exactly the answer its own call
    gets (the registry answers each question of a batch as it answers it alone). A batch the registry refuses (a
    4xx: one wrong question refuses them all, or a registry without the batch call) is asked again question by
    question, so one question never fails another; a registry that cannot be reached fails every question of the
    batch, as it would fail each alone. Alone when a call is free: no added wait when the service is quiet."""

    PATH = "/v1/facts"
    BATCH_PATH = "/v1/facts/batch"

    def __init__(self, registry: PeerClient, *, batch: bool = True, max_batch: int = 16, in_flight: int = 1) -> None:
        self.registry = registry
        self.batch = batch
        self.max_batch = max_batch
        self.in_flight = in_flight
        self._busy = 0  # calls in flight
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]] = []
        self._calls: set[asyncio.Task[None]] = set()

    @staticmethod
    def query(applicant: str, as_of: date, request: FactsRequest) -> dict[str, Any]:
        """What the registry is asked: exactly what the rule needs (each list without duplicates)."""
        return {
            "credit_code": applicant,
            "as_of": as_of.isoformat(),
            "revenues": request.revenues,
            "affiliations": request.affiliates,
            "vendor_codes": sorted(set(request.vendor_codes)),
            "recognitions": request.recognitions,
            "recognition_ids": sorted({str(rid) for rid in request.recognition_ids}),
            "model_id": str(request.model_id) if request.model_id is not None else None,
            "filings_on": request.filings_on.isoformat() if request.filings_on is not None else None,
            "filings_on_as_of": request.filings_on_as_of,
            "ranked_models": request.ranked_models,
        }

    async def fetch(self, applicant: str, as_of: date, request: FactsRequest) -> Facts:
        answer = await self._ask(self.query(applicant, as_of, request))
        facts = Facts(as_of=as_of, applicant=applicant)
        if answer["organisation"] is None:
            return facts
        facts.organisation = OrganisationFacts.model_validate(answer["organisation"])
        if request.revenues:
            facts.revenues = {int(row["year"]): int(row["revenue_fen"]) for row in answer["revenues"]}
        if request.affiliates:
            facts.affiliates = sorted(
                {
                    row["credit_code_b"] if row["credit_code_a"] == applicant else row["credit_code_a"]
                    for row in answer["affiliations"]
                }
            )
        for code, vendor in (answer["vendors"] or {}).items():
            facts.vendors[code] = VendorFacts.model_validate(vendor) if vendor else None
        if request.recognitions:
            facts.recognitions = [RecognitionFacts.model_validate(row) for row in answer["recognitions"]]
        for rid, recognition in (answer["recognitions_by_id"] or {}).items():
            facts.referenced[rid] = RecognitionFacts.model_validate(recognition) if recognition else None
        if request.model_id is not None and answer["model"] is not None:
            facts.model = ModelFacts.model_validate(answer["model"])
            if request.filings_on is not None:
                facts.filings = [FilingFacts.model_validate(row) for row in answer["filings"]]
            if request.filings_on_as_of:
                facts.filings_on_as_of = [FilingFacts.model_validate(row) for row in answer["filings_on_as_of"]]
        if request.ranked_models:
            facts.ranked_models = [
                ModelFacts.model_validate(row)
                for row in answer["ranked_models"]
                if row.get("national_filing_date") is not None
            ]
        return facts

    async def _ask(self, query: dict[str, Any]) -> dict[str, Any]:
        """The registry's answer to one question: alone when a call is free, else in the next batch."""
        if not self.batch:
            return await self._alone(query)
        if self._busy < self.in_flight and not self._waiting:
            self._busy += 1
            try:
                return await self._alone(query)
            finally:
                self._freed()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append((query, future))
        self._dispatch()
        return await future

    async def _alone(self, query: dict[str, Any]) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = await self.registry.query_json(self.PATH, query)
        except PeerRejected as exc:  # the question is ours: a refusal is a fault, never "no facts"
            raise PeerUnavailable(self.registry.name, f"unexpected HTTP {exc.status} for {self.PATH}") from exc
        return answer

    def _freed(self) -> None:
        self._busy -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        """Send what waits, as one call per free place (fewer than `in_flight` calls in flight), `max_batch` each."""
        while self._waiting and self._busy < self.in_flight:
            taken, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            self._busy += 1
            task = asyncio.get_running_loop().create_task(self._run(taken))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _run(self, taken: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]]) -> None:
        try:
            answers = await self._together([query for query, _ in taken])
            if answers is None:  # refused as a batch: each question alone, each with its own answer or fault
                for query, future in taken:
                    try:
                        answer = await self._alone(query)
                    except Exception as exc:
                        _settle(future, exc)
                    else:
                        _settle(future, answer)
                return
            for (_, future), answer in zip(taken, answers, strict=True):
                _settle(future, answer)
        except BaseException as exc:  # the registry unreachable, a bug, or cancelled: no caller is left waiting
            for _, future in taken:
                _settle(future, exc if isinstance(exc, Exception) else None)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._freed()

    async def _together(self, queries: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """The answers of one call for all `queries` (one alone goes as `POST /v1/facts`); None if refused."""
        if len(queries) == 1:
            return [await self._alone(queries[0])]
        try:
            answer = await self.registry.query_json(self.BATCH_PATH, {"queries": queries})
        except PeerRejected as exc:
            logger.warning(
                "the registry refused a batch of %d questions (HTTP %d): asked one by one", len(queries), exc.status
            )
            return None
        facts = answer.get("facts") if isinstance(answer, dict) else None
        if not isinstance(facts, list) or len(facts) != len(queries):
            raise PeerUnavailable(self.registry.name, f"{self.BATCH_PATH} answered other than one fact per question")
        return facts


def _settle(future: asyncio.Future[dict[str, Any]], outcome: dict[str, Any] | BaseException | None) -> None:
    """A waiting question's answer, fault (raised to its caller), or None: cancelled."""
    if future.done():  # its caller is gone (its request cancelled)
        return
    if outcome is None:
        future.cancel()
    elif isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
