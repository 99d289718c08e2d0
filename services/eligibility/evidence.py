"""What an applicant submits for each measure: a typed evidence payload, strictly validated.

Unknown fields are refused (422 naming the field). Amounts are integer fen.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from shared.identifiers import CreditCode
from shared.money import FenAmount, PositiveFenAmount

Name = Annotated[str, Field(min_length=1, max_length=300)]
Year = Annotated[int, Field(ge=2000, le=2100)]


class Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Declarations(Evidence):
    """What the applicant declares with the application (shown to the reviewer and in the trace)."""

    no_other_district_funding: bool = Field(
        description="A3: the same item has no other district funding (本措施与区其他扶持规定不一致的，以本措施为准: "
        "one item is funded under one district rule). false sends the application to review"
    )


class MeasureEvidence(Evidence):
    """Every measure's evidence: its own fields, and the applicant's declarations."""

    declarations: Declarations | None = Field(default=None, description="A3: the applicant's declarations")


# --- M1 ------------------------------------------------------------------------------------

LineKind = Literal["compute", "storage", "network", "security", "other"]
IndustryField = Literal[
    "industry",
    "government",
    "healthcare",
    "finance",
    "education",
    "legal",
    "transport",
    "culture_tourism",
    "scientific_research",
    "urban_management",
    "public_services",
]


class InvoiceLine(Evidence):
    kind: LineKind = Field(description="compute counts; storage, network, security and other do not (M1)")
    description: Name
    amount_fen: FenAmount


class ComputeInvoice(Evidence):
    invoice_number: Annotated[str, Field(min_length=1, max_length=64)]
    provider_credit_code: CreditCode
    paid_on: date
    lines: Annotated[list[InvoiceLine], Field(min_length=1, max_length=500)]


class M1Evidence(MeasureEvidence):
    """Compute vouchers: last year's compute invoices, line by line."""

    measure: Literal["M1"]
    fiscal_year: Year = Field(description="The year the fees were paid (上年度)")
    purpose: IndustryField
    invoices: Annotated[list[ComputeInvoice], Field(min_length=1, max_length=1000)]
    compute_for_equity: bool = Field(default=False, description="算力作价入股: recorded only, computes nothing")

    @model_validator(mode="after")
    def _each_invoice_once(self) -> M1Evidence:
        """M1: fees actually paid count once; the same invoice listed twice would count twice."""
        seen: set[tuple[str, str]] = set()
        for invoice in self.invoices:
            identity = (invoice.provider_credit_code, invoice.invoice_number)
            if identity in seen:
                raise ValueError(f"invoice {invoice.invoice_number} of {invoice.provider_credit_code} is listed twice")
            seen.add(identity)
        return self


# --- M2 ------------------------------------------------------------------------------------


class M2Evidence(MeasureEvidence):
    """Self-developed large models: (a) a national project or award, (b) a nationally filed industry model."""

    measure: Literal["M2"]
    track: Literal["a", "b"]
    achievement: Literal["national_major_project", "key_rnd_programme", "national_science_award"] | None = None
    achievement_name: Name | None = None
    model_id: uuid.UUID | None = Field(default=None, description="(b) the registry model")

    @model_validator(mode="after")
    def _track_fields(self) -> M2Evidence:
        if self.track == "a" and (self.achievement is None or self.achievement_name is None):
            raise ValueError("track a needs achievement and achievement_name")
        if self.track == "b" and self.model_id is None:
            raise ValueError("track b needs model_id")
        return self


# --- M3 ------------------------------------------------------------------------------------

CostKind = Literal["private_deployment", "cloud_deployment", "api_calls", "appliance_model_part", "other"]


class CostComponent(Evidence):
    kind: CostKind
    amount_fen: FenAmount


class ModelContract(Evidence):
    number: Annotated[str, Field(min_length=1, max_length=100)]
    vendor_credit_code: CreditCode
    model_id: uuid.UUID
    signed_on: date
    amount_fen: PositiveFenAmount
    components: Annotated[list[CostComponent], Field(min_length=1, max_length=50)]

    @model_validator(mode="after")
    def _components_add_up(self) -> ModelContract:
        if sum(c.amount_fen for c in self.components) != self.amount_fen:
            raise ValueError("the components must add up to the contract amount")
        return self


class M3Evidence(MeasureEvidence):
    """Model vouchers: the procurement contract with its cost components."""

    measure: Literal["M3"]
    contract: ModelContract
    claim_fen: PositiveFenAmount | None = Field(default=None, description="Amount claimed; default the maximum")


# --- M4 – M13 ----------------------------------------------------------------------------------


class M4Evidence(MeasureEvidence):
    measure: Literal["M4"]
    recognition_id: uuid.UUID = Field(description="The registry's demonstration_project recognition")


class LibraryPurchase(Evidence):
    product_recognition_id: uuid.UUID = Field(description="A digital_product entry of the district library")
    amount_fen: PositiveFenAmount
    paid_on: date


class M5Evidence(MeasureEvidence):
    measure: Literal["M5"]
    year: Year
    purchases: Annotated[list[LibraryPurchase], Field(min_length=1, max_length=200)]


class M6Evidence(MeasureEvidence):
    measure: Literal["M6"]
    diagnosis_reference: Name = Field(description="The diagnosis's document number, as the applicant gives it")
    diagnosis_id: uuid.UUID | None = Field(
        default=None,
        description="The registry's digital_diagnosis recognition: the city's manufacturing digital-transformation "
        "diagnosis (制造业数字化转型咨询诊断项目) the project follows. Without it the application is ineligible (M6)",
    )
    audited_investment_fen: PositiveFenAmount


class M7Evidence(MeasureEvidence):
    measure: Literal["M7"]
    year: Year
    standard_recognition_ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=50)]


class M8Evidence(MeasureEvidence):
    measure: Literal["M8"]
    recognition_id: uuid.UUID = Field(description="The key_software_enterprise recognition")


class M9Evidence(MeasureEvidence):
    measure: Literal["M9"]
    year: Year = Field(description="The revenue year being rewarded (revenues come from the registry)")


class M10Evidence(MeasureEvidence):
    measure: Literal["M10"]
    track: Literal["first_sale", "city_matching"]
    year: Year
    recognition_id: uuid.UUID | None = Field(
        default=None,
        description="first_sale: the catalogue entry; city_matching: the registry's city_first_version_support "
        "record (the city's support of last year; without it the application is ineligible, M10)",
    )
    received_within_year_fen: FenAmount | None = Field(default=None, description="first_sale: audited amount")
    city_support_fen: FenAmount | None = Field(
        default=None,
        description="city_matching: last year's city support as the applicant declares it; "
        "the amount matched is the registry's record",
    )

    @model_validator(mode="after")
    def _track_fields(self) -> M10Evidence:
        if self.track == "first_sale" and (self.recognition_id is None or self.received_within_year_fen is None):
            raise ValueError("first_sale needs recognition_id and received_within_year_fen")
        if self.track == "city_matching" and self.recognition_id is None and self.city_support_fen is None:
            raise ValueError("city_matching needs recognition_id (the city's support record)")
        return self


class M11Evidence(MeasureEvidence):
    measure: Literal["M11"]
    year: Year = Field(description="The year the rent was paid (上年度)")
    innovative_housing: bool = Field(default=False, description="区属创新型产业用房: discount rules, recorded only")
    area_m2: Annotated[Decimal, Field(gt=0, le=1_000_000, max_digits=10, decimal_places=2)]
    months: Annotated[int, Field(ge=1, le=12)]
    rent_paid_fen: PositiveFenAmount = Field(description="Rent actually paid for the whole area in the year")


class M12Evidence(MeasureEvidence):
    measure: Literal["M12"]
    recognition_id: uuid.UUID = Field(description="The public_platform recognition")


class M13Evidence(MeasureEvidence):
    """The event is the registry's major_event record (`event_id`): its organisers, date, venue and influence.

    The other fields are the event as the applicant describes it; decisions made before the
    record was asked for have only them (without `event_id` the application is ineligible, M13).
    """

    measure: Literal["M13"]
    event_id: uuid.UUID | None = Field(default=None, description="The registry's major_event record")
    event_name: Name | None = None
    held_on: date | None = None
    held_in_longgang: bool | None = None
    influence: Literal["international", "national", "regional"] | None = None
    audited_cost_fen: PositiveFenAmount

    @model_validator(mode="after")
    def _the_event(self) -> M13Evidence:
        if self.event_id is None and (self.event_name is None or self.held_on is None):
            raise ValueError("M13 needs event_id (the registry's major_event record)")
        return self


AnyEvidence = Annotated[
    M1Evidence
    | M2Evidence
    | M3Evidence
    | M4Evidence
    | M5Evidence
    | M6Evidence
    | M7Evidence
    | M8Evidence
    | M9Evidence
    | M10Evidence
    | M11Evidence
    | M12Evidence
    | M13Evidence,
    Field(discriminator="measure"),
]

MEASURES = ("M1", "M2", "M3", "M4", "M5", "M6", "M7", "M8", "M9", "M10", "M11", "M12", "M13")

#: parses any stored or submitted evidence by its `measure`
EVIDENCE: TypeAdapter[Evidence] = TypeAdapter(AnyEvidence)
