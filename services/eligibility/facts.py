"""Facts a rule decides on, and how they are fetched from the registry as of a date.

`Facts` is plain data (stored with every decision, so a simulation can re-run the rules
without asking the registry again). `RegistryFacts` is the I/O edge: it asks the
registry over REST for exactly what a rule says it needs (`FactsRequest`), as of the
application's date. Any failure to reach the registry raises `PeerUnavailable` — the
caller answers 503 and decides nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import BaseModel, Field

from shared.peers import PeerClient, PeerRejected, PeerUnavailable


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
    """Reads the registry over REST, always `as_of` the application's date."""

    PAGE = 500

    def __init__(self, registry: PeerClient) -> None:
        self.registry = registry

    async def _get(self, path: str, **params: Any) -> Any | None:
        """A record, or None when the registry says it did not exist (404)."""
        try:
            return await self.registry.get_json(path, params=params)
        except PeerRejected as exc:
            if exc.status == 404:
                return None
            raise PeerUnavailable(self.registry.name, f"unexpected HTTP {exc.status} for {path}") from exc

    async def _list(self, path: str, **params: Any) -> list[Any]:
        items: list[Any] = []
        cursor: str | None = None
        while True:
            query = {**params, "limit": self.PAGE, **({"cursor": cursor} if cursor else {})}
            page = await self._get(path, **query)
            if page is None:
                return items
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    async def fetch(self, applicant: str, as_of: date, request: FactsRequest) -> Facts:
        day = as_of.isoformat()
        facts = Facts(as_of=as_of, applicant=applicant)
        organisation = await self._get(f"/v1/organisations/{applicant}", as_of=day)
        if organisation is None:
            return facts
        facts.organisation = OrganisationFacts.model_validate(organisation)

        async def revenues() -> None:
            rows = await self._list("/v1/revenues", credit_code=applicant, as_of=day)
            facts.revenues = {int(row["year"]): int(row["revenue_fen"]) for row in rows}

        async def affiliates() -> None:
            rows = await self._list("/v1/affiliations", organisation=applicant, active="true", as_of=day)
            facts.affiliates = sorted(
                {row["credit_code_b"] if row["credit_code_a"] == applicant else row["credit_code_a"] for row in rows}
            )

        async def vendor(code: str) -> None:
            found = await self._get(f"/v1/vendors/{code}", as_of=day)
            facts.vendors[code] = VendorFacts.model_validate(found) if found else None

        async def recognitions() -> None:
            rows = await self._list("/v1/recognitions", credit_code=applicant, as_of=day)
            facts.recognitions = [RecognitionFacts.model_validate(row) for row in rows]

        async def referenced(recognition_id: uuid.UUID) -> None:
            found = await self._get(f"/v1/recognitions/{recognition_id}", as_of=day)
            facts.referenced[str(recognition_id)] = RecognitionFacts.model_validate(found) if found else None

        async def model(model_id: uuid.UUID) -> None:
            found = await self._get(f"/v1/models/{model_id}", as_of=day)
            facts.model = ModelFacts.model_validate(found) if found else None
            if found and request.filings_on is not None:
                rows = await self._list("/v1/filings", model_id=str(model_id), as_of=request.filings_on.isoformat())
                facts.filings = [FilingFacts.model_validate(row) for row in rows]
            if found and request.filings_on_as_of:
                rows = await self._list("/v1/filings", model_id=str(model_id), as_of=day)
                facts.filings_on_as_of = [FilingFacts.model_validate(row) for row in rows]

        async def ranked_models() -> None:
            rows = await self._list("/v1/models", as_of=day)
            facts.ranked_models = [
                ModelFacts.model_validate(row) for row in rows if row.get("national_filing_date") is not None
            ]

        tasks = []
        if request.revenues:
            tasks.append(revenues())
        if request.affiliates:
            tasks.append(affiliates())
        tasks.extend(vendor(code) for code in sorted(set(request.vendor_codes)))
        if request.recognitions:
            tasks.append(recognitions())
        tasks.extend(referenced(rid) for rid in sorted(set(request.recognition_ids), key=str))
        if request.model_id is not None:
            tasks.append(model(request.model_id))
        if request.ranked_models:
            tasks.append(ranked_models())
        await asyncio.gather(*tasks)
        return facts
