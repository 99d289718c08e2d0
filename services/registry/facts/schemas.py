"""What `POST /v1/facts` is asked and answers: the records in the shapes the record reads answer."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from pydantic import BaseModel, Field

from shared.identifiers import CreditCode

from ..schemas import (
    AffiliationRead,
    FilingRead,
    Input,
    ModelRead,
    OrganisationRead,
    RecognitionRead,
    RevenueRead,
    VendorRead,
)

#: An M1 application lists at most 1,000 invoices (one vendor each); an M5 one at most 200 library purchases.
MAX_VENDOR_CODES = 1000
MAX_RECOGNITION_IDS = 200
#: questions in one `POST /v1/facts/batch` (a peer sends the submissions it has waiting, a few at a time)
MAX_BATCH = 64


class FactsQuery(Input):
    """Which facts to read about one organisation, all as of one date. Each list is read without duplicates."""

    credit_code: CreditCode = Field(description="The organisation (the applicant)")
    as_of: date = Field(description="Every fact as it was in effect on this date (YYYY-MM-DD)")
    revenues: bool = Field(default=False, description="Its revenue by year")
    affiliations: bool = Field(default=False, description="Its active affiliations")
    vendor_codes: Annotated[list[CreditCode], Field(max_length=MAX_VENDOR_CODES)] = Field(
        default_factory=list, description=f"Vendors to read, by credit code (at most {MAX_VENDOR_CODES})"
    )
    recognitions: bool = Field(default=False, description="Its recognitions and catalogue entries")
    recognition_ids: Annotated[list[uuid.UUID], Field(max_length=MAX_RECOGNITION_IDS)] = Field(
        default_factory=list, description=f"Recognitions to read by id, anyone's (at most {MAX_RECOGNITION_IDS})"
    )
    model_id: uuid.UUID | None = Field(default=None, description="A model to read")
    filings_on: date | None = Field(default=None, description="The model's filings as of this date as well")
    filings_on_as_of: bool = Field(default=False, description="The model's filings as of `as_of` as well")
    ranked_models: bool = Field(default=False, description="Every model with a national filing date")


class FactsRead(BaseModel):
    """The facts asked for, read in one snapshot. A field not asked for is null; so is everything when the
    organisation had no record on the date, and the filings when the model had none."""

    credit_code: str
    as_of: date
    organisation: OrganisationRead | None = Field(description="null: no record of it on `as_of`")
    revenues: list[RevenueRead] | None = None
    affiliations: list[AffiliationRead] | None = None
    vendors: dict[str, VendorRead | None] | None = Field(
        default=None, description="By credit code; null: no vendor record on `as_of`"
    )
    recognitions: list[RecognitionRead] | None = None
    recognitions_by_id: dict[str, RecognitionRead | None] | None = Field(
        default=None, description="By id; null: no such recognition on `as_of`"
    )
    model: ModelRead | None = Field(default=None, description="null: not asked, or no record of it on `as_of`")
    filings: list[FilingRead] | None = Field(default=None, description="The model's filings on `filings_on`")
    filings_on_as_of: list[FilingRead] | None = Field(default=None, description="The model's filings on `as_of`")
    ranked_models: list[ModelRead] | None = None


class FactsBatchQuery(Input):
    """Several applications' questions, answered together from one snapshot (`POST /v1/facts/batch`)."""

    queries: Annotated[list[FactsQuery], Field(min_length=1, max_length=MAX_BATCH)] = Field(
        description=f"Each as `POST /v1/facts` takes it (at least 1, at most {MAX_BATCH})"
    )


class FactsBatchRead(BaseModel):
    """Each question's answer, in the order asked, exactly as `POST /v1/facts` answers it alone."""

    facts: list[FactsRead]
