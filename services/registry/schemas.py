"""What the registry records, as API payloads.

For each record: a `…State` (the whole fact, as stored in each history snapshot), a
`…Create` (the state plus an optional `effective_from`), a `…Update` (every field
optional) and a `…Read` (the state plus version metadata). Inputs refuse unknown
fields; a wrong credit code is refused with the position that is wrong.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from shared.identifiers import CreditCode, credit_code_error
from shared.money import FenAmount

DivisionCode = Annotated[str, Field(pattern=r"^\d{6}$", examples=["440307"], description="行政区划代码")]
Name = Annotated[str, Field(min_length=1, max_length=300)]
Text = Annotated[str, Field(min_length=1, max_length=2000)]
Year = Annotated[int, Field(ge=1990, le=2100)]
#: a rank in a published list (the national model filings, the leading units of a standard); stored as integer
Rank = Annotated[int, Field(ge=1, le=1_000_000)]

OrganisationKind = Literal["enterprise", "university", "research_institute"]
FourAboveCategory = Literal[
    "above_scale_industrial", "above_scale_services", "qualified_construction", "above_limit_trade"
]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class EffectiveFrom(Input):
    effective_from: date | None = Field(
        default=None,
        description="The date this fact takes effect (as-of reads use it). "
        "Defaults to the record's own date where it has one, else today. Not in the future.",
    )


class RecordMeta(BaseModel):
    version: int = Field(description="Version number of this snapshot")
    valid_from: date = Field(description="Date this snapshot takes effect")
    recorded_at: datetime = Field(description="When this snapshot was recorded")


class VersionRead(RecordMeta):
    request_id: str | None
    data: dict[str, Any]


# --- organisations ----------------------------------------------------------------------


class OrganisationState(Input):
    credit_code: CreditCode
    name: Name
    kind: OrganisationKind
    division_code: DivisionCode | None = Field(
        default=None, description="Positions 3–8 of the credit code unless given"
    )
    registered_district: DivisionCode | None = Field(default=None, description="Where it is registered (龙岗: 440307)")
    registered_on: date | None = Field(default=None, description="Registration date in that district")
    four_above_category: FourAboveCategory | None = Field(default=None, description="四上 category (M5)")
    industry: Name | None = None
    is_software_internet: bool = Field(default=False, description="Software / internet enterprise (M7, M9, M11)")
    owns_district_industrial_housing: bool | None = Field(default=None, description="M11")

    @model_validator(mode="after")
    def _division_from_code(self) -> OrganisationState:
        if self.division_code is None and credit_code_error(self.credit_code) is None:
            self.division_code = self.credit_code[2:8]
        return self


class OrganisationCreate(OrganisationState, EffectiveFrom):
    pass


class OrganisationUpdate(EffectiveFrom):
    name: Name | None = None
    kind: OrganisationKind | None = None
    division_code: DivisionCode | None = None
    registered_district: DivisionCode | None = None
    registered_on: date | None = None
    four_above_category: FourAboveCategory | None = None
    industry: Name | None = None
    is_software_internet: bool | None = None
    owns_district_industrial_housing: bool | None = None


class OrganisationRead(OrganisationState, RecordMeta):
    model_config = ConfigDict(extra="ignore")


# --- revenue -----------------------------------------------------------------------------


class RevenueState(Input):
    credit_code: CreditCode
    year: Year
    revenue_fen: FenAmount
    audited: bool = True
    source: Text | None = None


class RevenueCreate(RevenueState, EffectiveFrom):
    pass


class RevenueUpdate(EffectiveFrom):
    revenue_fen: FenAmount | None = None
    audited: bool | None = None
    source: Text | None = None


class RevenueRead(RevenueState, RecordMeta):
    model_config = ConfigDict(extra="ignore")


# --- affiliations ----------------------------------------------------------------------


class AffiliationState(Input):
    credit_code_a: CreditCode
    credit_code_b: CreditCode
    relation: Text = Field(description="e.g. control, common control, significant influence")
    active: bool = True

    @model_validator(mode="after")
    def _ordered_pair(self) -> AffiliationState:
        """An affiliation is symmetric: store the pair in one order so it is unique."""
        if self.credit_code_a == self.credit_code_b:
            raise PydanticCustomError("same_organisation", "An organisation cannot be its own affiliate")
        if self.credit_code_a > self.credit_code_b:
            self.credit_code_a, self.credit_code_b = self.credit_code_b, self.credit_code_a
        return self


class AffiliationCreate(AffiliationState, EffectiveFrom):
    pass


class AffiliationUpdate(EffectiveFrom):
    relation: Text | None = None
    active: bool | None = Field(default=None, description="false ends the affiliation from effective_from")


class AffiliationRead(AffiliationState, RecordMeta):
    model_config = ConfigDict(extra="ignore")
    id: uuid.UUID


# --- vendors -----------------------------------------------------------------------------


class VendorState(Input):
    credit_code: CreditCode
    is_compute_vendor: bool = False
    is_model_vendor: bool = False
    district_compute: bool = Field(default=False, description="本区算力 (M1 bonus)")
    domestic_compute: bool = Field(default=False, description="国产算力 (M1 bonus)")
    active: bool = True


class VendorCreate(VendorState, EffectiveFrom):
    pass


class VendorUpdate(EffectiveFrom):
    is_compute_vendor: bool | None = None
    is_model_vendor: bool | None = None
    district_compute: bool | None = None
    domestic_compute: bool | None = None
    active: bool | None = None


class VendorRead(VendorState, RecordMeta):
    model_config = ConfigDict(extra="ignore")


# --- models ------------------------------------------------------------------------------


class ModelState(Input):
    vendor_credit_code: CreditCode
    name: Name
    national_filing_date: date | None = Field(default=None, description="国家大模型备案登记 date (M2(b))")
    national_filing_rank: Rank | None = Field(default=None, description="Rank in the national filing (M2(b))")


class ModelCreate(ModelState, EffectiveFrom):
    pass


class ModelUpdate(EffectiveFrom):
    name: Name | None = None
    national_filing_date: date | None = None
    national_filing_rank: Rank | None = None


class ModelRead(ModelState, RecordMeta):
    model_config = ConfigDict(extra="ignore")
    id: uuid.UUID


# --- CAC filings ---------------------------------------------------------------------------

FilingKind = Literal["filing", "registration"]
FilingStatus = Literal["filed", "registered", "revoked"]


class FilingState(Input):
    number: Annotated[str, Field(min_length=3, max_length=120, examples=["Beijing-DeepseekChat-202404280016"])]
    model_id: uuid.UUID
    kind: FilingKind = Field(description="filing = 生成式人工智能服务备案; registration = 登记 (apps on a filed model)")
    status: FilingStatus
    filed_on: date
    warnings: list[str] = Field(
        default_factory=list, description="Format warnings (never rejections); computed by the registry"
    )

    @model_validator(mode="after")
    def _status_matches_kind(self) -> FilingState:
        if (self.kind, self.status) in {("filing", "registered"), ("registration", "filed")}:
            raise PydanticCustomError(
                "kind_status_mismatch",
                "status {status} does not fit kind {kind}",
                {"status": self.status, "kind": self.kind},
            )
        return self


class FilingCreate(EffectiveFrom):
    # the number is the record's key in its URL (/v1/filings/{number}): a "/" would make it unreachable
    number: Annotated[str, Field(min_length=3, max_length=120, pattern=r"^[^/]+$")]
    model_id: uuid.UUID
    kind: FilingKind
    status: FilingStatus | None = Field(default=None, description="Defaults to filed / registered by kind")
    filed_on: date


class FilingUpdate(EffectiveFrom):
    status: FilingStatus | None = Field(default=None, description="revoked, with effective_from = the revocation date")
    filed_on: date | None = None


class FilingRead(FilingState, RecordMeta):
    model_config = ConfigDict(extra="ignore")


# --- recognitions and catalogue entries -----------------------------------------------------


class KeySoftwareEnterprise(Input):
    """M8: 国家鼓励的重点软件企业 / 深圳市重点软件企业."""

    kind: Literal["key_software_enterprise"]
    list: Literal["national", "shenzhen"]
    year: Year


class FirstVersionSoftware(Input):
    """M10: an entry of the Longgang first-version (首版次) software catalogue."""

    kind: Literal["first_version_software"]
    product: Name
    catalogue_year: Year
    first_sale_on: date | None = None


class DigitalProduct(Input):
    """M5: the district library of outstanding digital products."""

    kind: Literal["digital_product"]
    product: Name
    category: Name | None = None


class DemonstrationProject(Input):
    """M4: AI application demonstration project selected by a higher-level authority."""

    kind: Literal["demonstration_project"]
    project: Name
    authority: Name


class PublicPlatform(Input):
    """M12: public platform recognised by a national or provincial authority."""

    kind: Literal["public_platform"]
    platform: Name
    level: Literal["national", "provincial"]
    year: Year


class AiStandard(Input):
    """M7: an AI standard the organisation led."""

    kind: Literal["ai_standard"]
    standard: Name
    standard_code: Name | None = None
    level: Literal["international", "national", "industry"]
    rank: Rank = Field(description="Rank of the organisation among the leading units")


class MajorAiProject(Input):
    """M1: a recognised major AI project (重大人工智能项目)."""

    kind: Literal["major_ai_project"]
    project: Name


class CityFirstVersionSupport(Input):
    """M10 (city matching): the city's first-version software support (深圳市首版次软件扶持项目) of a year."""

    kind: Literal["city_first_version_support"]
    project: Name
    year: Year = Field(description="The year the city's support was granted")
    amount_fen: FenAmount = Field(description="The amount the city granted")
    authority: Name = Field(description="Who granted it, e.g. 深圳市工业和信息化局")


class MajorEvent(Input):
    """M13: a major AI event held (大赛、论坛、学术会议、专题研讨会): one record, shared by its co-organisers.

    The record's `credit_code` is the lead organiser; `organisers` lists every organiser, the
    lead included, so each co-organiser's application references the same event.
    """

    kind: Literal["major_event"]
    name: Name
    event_type: Literal["competition", "forum", "conference", "seminar", "other"]
    held_on: date
    venue: Name
    district: DivisionCode = Field(description="Where it was held (龙岗: 440307)")
    organisers: Annotated[list[CreditCode], Field(min_length=1, max_length=20)]
    influence: Literal["international", "national", "regional"] = Field(description="As the bureau assessed it")


class AiEnterprise(Input):
    """M1, M9, M11: recognised as an AI enterprise (人工智能企业认定 / "白名单", M8's wording).

    The text pays M1 to 人工智能相关企业, M9 to 人工智能类 internet and software enterprises and
    M11 to those 具有人工智能能力; the registry keeps the recognition that says so, with its date.
    """

    kind: Literal["ai_enterprise"]
    list: Name = Field(description="The list or recognition, e.g. 龙岗区人工智能企业白名单")
    authority: Name = Field(description="Who recognised it, e.g. 龙岗区工业和信息化局")


class IndustrialEnterprise(Input):
    """M6: an industrial enterprise (工业企业: mining, manufacturing, utilities — GB/T 4754 B, C, D).

    An above-scale industrial enterprise (`four_above_category`) needs no such record.
    """

    kind: Literal["industrial_enterprise"]
    industry_section: Literal["B", "C", "D"] = Field(
        description="GB/T 4754 section: B mining, C manufacturing, D utilities"
    )
    authority: Name = Field(description="Who classified it, e.g. 龙岗区统计局")


class DigitalDiagnosis(Input):
    """M6: the city's manufacturing digital-transformation diagnosis (制造业数字化转型咨询诊断项目)."""

    kind: Literal["digital_diagnosis"]
    project: Name = Field(description="The diagnosis project or plan")
    reference: Name = Field(description="Its document number, e.g. 深工信诊断〔2025〕12号")
    authority: Name = Field(description="Who ran it: 深圳市工业和信息化局")


RecognitionDetails = Annotated[
    KeySoftwareEnterprise
    | FirstVersionSoftware
    | DigitalProduct
    | DemonstrationProject
    | PublicPlatform
    | AiStandard
    | MajorAiProject
    | AiEnterprise
    | IndustrialEnterprise
    | DigitalDiagnosis
    | CityFirstVersionSupport
    | MajorEvent,
    Field(discriminator="kind"),
]

RECOGNITION_CLAUSES = {
    "key_software_enterprise": "M8",
    "first_version_software": "M10",
    "digital_product": "M5",
    "demonstration_project": "M4",
    "public_platform": "M12",
    "ai_standard": "M7",
    "major_ai_project": "M1",
    "ai_enterprise": "M1, M9, M11",
    "industrial_enterprise": "M6",
    "digital_diagnosis": "M6",
    "city_first_version_support": "M10",
    "major_event": "M13",
}


class RecognitionState(Input):
    credit_code: CreditCode
    recognised_on: date = Field(description="Date of recognition, listing or publication")
    active: bool = True
    details: RecognitionDetails

    @model_validator(mode="after")
    def _event_lead_is_an_organiser(self) -> RecognitionState:
        """M13: the record belongs to its lead organiser, who is one of the organisers it lists."""
        if isinstance(self.details, MajorEvent) and self.credit_code not in self.details.organisers:
            raise ValueError("a major_event's credit_code (its lead organiser) must be one of its organisers")
        return self


class RecognitionCreate(RecognitionState, EffectiveFrom):
    pass


class RecognitionUpdate(EffectiveFrom):
    recognised_on: date | None = None
    active: bool | None = Field(default=None, description="false withdraws it from effective_from")
    details: RecognitionDetails | None = None


class RecognitionRead(RecognitionState, RecordMeta):
    model_config = ConfigDict(extra="ignore")
    id: uuid.UUID
    clause: str


# --- bulk import ---------------------------------------------------------------------------


class ImportRowError(BaseModel):
    row: int = Field(description="1-based data row (CSV: the header is row 0)")
    key: str | None
    errors: list[dict[str, Any]]


class ImportReport(BaseModel):
    mode: Literal["all_or_nothing", "best_effort"]
    total: int
    created: int
    updated: int
    unchanged: int
    failed: int
    errors: list[ImportRowError]
