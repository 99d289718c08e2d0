"""API payloads of the eligibility service."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.identifiers import CreditCode
from shared.money import FenAmount

from .evidence import AnyEvidence

WrittenReason = Annotated[str, Field(min_length=2, max_length=4000)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ApplicationCreate(Input):
    """An application; its date is the day the service receives it (server clock, Shenzhen time).

    Only an officer may record an earlier date — a paper application registered late — and
    must say why (`as_of_reason`); the date, the officer and the reason are kept with the
    application, audited and shown in the decision's trace.
    """

    applicant: CreditCode
    as_of: date | None = Field(
        default=None,
        description="Omit: today (Shenzhen). An earlier day: officers only, with as_of_reason. "
        "Facts and parameters are taken as of this day",
    )
    as_of_reason: WrittenReason | None = Field(
        default=None, description="Why an officer records an earlier application date (required then)"
    )
    evidence: AnyEvidence = Field(description="Typed by `measure` (M1 … M13)")


class ReasonRead(BaseModel):
    clause: str
    code: str
    zh: str
    en: str


class DecisionRead(BaseModel):
    id: uuid.UUID
    application_id: uuid.UUID
    kind: Literal["automatic", "manual_a1"]
    outcome: Literal["eligible", "ineligible", "needs_review"]
    amount_fen: int | None = Field(description="eligible: the amount; needs_review: a proposal, if any")
    failures: list[ReasonRead]
    review_reasons: list[ReasonRead]
    components: dict[str, int]
    trace: list[dict[str, Any]]
    policy_version: str
    parameters_digest: str
    engine_version: str
    decided_by: str | None = Field(description="A1: the deciding client's name (from its token)")
    reason: str | None
    decided_at: datetime
    request_id: str | None = Field(
        default=None, description="The request that made it (submission or A1), as in the audit log (GET /v1/audit)"
    )
    claims: list[str] = Field(
        default_factory=list, description="Claim keys this decision pays for (award register, docs/awards.md)"
    )
    caps: list[dict[str, Any]] = Field(
        default_factory=list, description="Annual caps of the enterprise's year that an award of it uses"
    )


class AwardRead(BaseModel):
    """One row of the award register: a key an approved award pays for."""

    id: int
    claim_key: str
    clause: str
    measure: str
    applicant: str
    benefit_year: int
    application_id: uuid.UUID
    decision_id: uuid.UUID
    amount_fen: int = Field(description="The approved amount of the award this key belongs to")
    path: Literal["automatic", "manual_a1", "history"]
    overrides_id: int | None = Field(description="The award this one deliberately pays again (A1), if any")
    override_reason: str | None
    actor: str | None
    created_at: datetime


class AwardPage(BaseModel):
    items: list[AwardRead]
    next_cursor: str | None


class DoubleAwardsRead(BaseModel):
    """Keys held by more than one award: deliberate A1 overrides and doubles found in history."""

    keys: int
    items: list[AwardRead]


class ReviewRead(BaseModel):
    id: uuid.UUID
    application_id: uuid.UUID
    decision_id: uuid.UUID
    step: Literal["review", "approval"]
    review_id: uuid.UUID | None
    actor: str = Field(description="Who acted: the name of the authenticated client")
    client_id: str | None = Field(default=None, description="The acting client (four eyes compare these)")
    verdict: Literal["approve", "reject"]
    amount_fen: int | None
    reason: str
    created_at: datetime
    request_id: str | None = Field(default=None, description="The request, as in the audit log (GET /v1/audit)")


class ApplicationRead(BaseModel):
    id: uuid.UUID
    measure: str
    applicant: str
    as_of: date
    as_of_reason: str | None = Field(default=None, description="Why an officer recorded an earlier date, if one did")
    as_of_recorded_by: str | None = Field(default=None, description="The officer who recorded an earlier date")
    benefit_year: int
    evidence: dict[str, Any]
    submitted_by: str | None
    submitted_at: datetime
    status: Literal["in_review", "reviewed", "approved", "rejected", "ineligible"]
    priority: int = Field(ge=0, le=100)
    decision: DecisionRead | None
    reviews: list[ReviewRead] = Field(default_factory=list)


class ReviewCreate(Input):
    """An officer's review; the reviewer is the authenticated client."""

    verdict: Literal["approve", "reject"]
    reason: WrittenReason
    amount_fen: FenAmount | None = Field(
        default=None, description="Needed when the decision needs review: the amount recommended"
    )


class ApprovalCreate(Input):
    """An approver's decision on the review; the approver is the authenticated client (never the reviewer)."""

    verdict: Literal["approve", "reject"]
    reason: WrittenReason


class KeyOverride(Input):
    """An A1 decision that deliberately pays a key again names it and says why."""

    claim_key: Annotated[str, Field(min_length=3, max_length=600)]
    reason: WrittenReason = Field(description="Why this key is paid again (required, audited)")


class ManualDecisionCreate(Input):
    """A1 一事一议: a case-by-case decision outside the formulas, by the authenticated approver.

    It pays for the same claim keys as the decision it supersedes and counts against the
    same annual caps; a key already awarded is refused unless named in `overrides`.
    """

    amount_fen: FenAmount
    reason: WrittenReason = Field(description="The written reason (required, audited)")
    overrides: Annotated[list[KeyOverride], Field(max_length=100)] = Field(
        default_factory=list, description="Claim keys already awarded that this decision deliberately pays again"
    )


class ApprovedDecisionRead(BaseModel):
    """What the vouchers service needs to issue: only for approved decisions."""

    decision_id: uuid.UUID
    application_id: uuid.UUID
    measure: str
    applicant: str
    as_of: date
    benefit_year: int
    kind: str
    amount_fen: int
    components: dict[str, int]
    limits: dict[str, int] = Field(
        default_factory=dict, description="Ceilings the ledger enforces with it (M1: class_cap_fen)"
    )
    facets: dict[str, Any] = Field(
        default_factory=dict,
        description="Facts of the trace the ledger records for reporting (M1: revenue_class, compute_base_fen, "
        "compute_paid_to {district, domestic, both})",
    )
    evidence: dict[str, Any]
    policy_version: str
    parameters_digest: str
    approved_by: str
    approved_at: datetime
    budget_reservation_id: uuid.UUID | None = Field(
        default=None,
        description="A2: the programme budget the approval reserved in the vouchers service; issuance consumes it "
        "(null: approved before reservations, issuance takes from the budget)",
    )


# --- policy ---------------------------------------------------------------------------------


class ParameterValueRead(BaseModel):
    effective_from: date
    effective_to: date | None
    value: Any
    status: str
    source: str
    origin: str


class ParameterRead(BaseModel):
    id: str
    clause: str
    label: dict[str, str]
    kind: str
    history: list[ParameterValueRead]
    used_by: list[str] = Field(description="Measures whose rules read it")


class ClauseRead(BaseModel):
    id: str
    title: dict[str, str]
    treatment: str = Field(
        description="computed (a rule pays it) · record_only (the text sets no amount: nothing paid) · "
        "manual_decision (A1) · administration · precedence · validity · scope"
    )
    pays: bool = Field(description="Whether anything is ever paid under this clause")
    service_does: dict[str, str] = Field(description="What the service does for the clause, in Chinese and English")
    rule_module: str | None
    parameters: list[str]


class ClaimKindRead(BaseModel):
    """What one kind of claim key names, and the clause that makes it once-only (docs/awards.md)."""

    kind: str
    clause: str
    parts: list[str]
    once_only: dict[str, str] = Field(description="Why, in Chinese and English")


class CapKindRead(BaseModel):
    """An annual cap on an enterprise's year, across all its applications."""

    kind: str
    clause: str
    parameter: str
    label: dict[str, str]


class PolicyRead(BaseModel):
    policy: str
    version: str
    parameters_digest: str
    validity_window: tuple[date, date]
    clauses: list[ClauseRead]
    parameters: list[ParameterRead]
    claim_kinds: list[ClaimKindRead] = Field(description="The award register's keys: what each award pays for")
    cap_kinds: list[CapKindRead] = Field(description="Caps that apply to an enterprise's year as a whole")


class ParameterVersionCreate(Input):
    effective_from: date = Field(description="Strictly in the future: a change never alters past decisions")
    value: Any
    status: Literal["given", "provisional", "interpretation"]
    source: WrittenReason
    reason: WrittenReason


# --- simulations ------------------------------------------------------------------------------


SimulationStatus = Literal["approved", "pending", "all"]


class SimulationCreate(Input):
    """Which stored applications to re-run, under which parameters, and whether to show one trace."""

    application_ids: Annotated[list[uuid.UUID], Field(max_length=100_000)] | None = None
    measure: str | None = Field(default=None, pattern=r"^M(1[0-3]|[1-9])$")
    year: int | None = Field(default=None, ge=2000, le=2100, description="benefit year, with measure")
    status: SimulationStatus = Field(
        default="all",
        description="approved: approved applications; pending: in review or reviewed; all: those and, listed "
        "but never counted as money, the rejected and ineligible ones",
    )
    overrides: dict[str, Any] = Field(description="parameter id → value replacing it on every date")
    trace_of: uuid.UUID | None = Field(
        default=None, description="an application of the scope: its full rule trace under the new parameters"
    )
    include_trace: bool = Field(default=False, description="the trace of the only application in application_ids")


class SimulatedApplication(BaseModel):
    """One application: what it was given (before), what the new rules give it (after)."""

    application_id: uuid.UUID
    measure: str
    applicant: str
    benefit_year: int
    as_of: date
    status: str = Field(description="the application's status now")
    counted: bool = Field(description="counted as money: approved, in review or reviewed (never rejected/ineligible)")
    before_source: Literal["approved", "approved_a1", "automatic", "not_money"] = Field(
        description="approved: the approval's amount; approved_a1: an A1 decision's amount; automatic: the automatic "
        "decision's amount (pending); not_money: rejected or ineligible, 0"
    )
    before_outcome: str = Field(description="the current decision's outcome (manual_a1 decisions: eligible)")
    before_fen: int | None = Field(description="what was approved, or the automatic amount for pending ones")
    before_a1_fen: int = Field(description="the part of before_fen an A1 decision paid above the formula's components")
    after_outcome: str = Field(
        description="the new rules' outcome (not_evaluable: the stored evidence no longer reads)"
    )
    after_fen: int | None = Field(
        description="the new rules' amount, with the year's caps taken in order; 0 if not money"
    )
    difference_fen: int = Field(description="after_fen − before_fen")
    cap_trimmed_fen: int = Field(description="cut by an annual cap already used by the year's earlier applications")
    earlier_in_year: list[uuid.UUID] = Field(
        description="the enterprise's standing applications of the measure and benefit year taken before this one "
        "(application date, then order received)"
    )


class SimulationTotal(BaseModel):
    """Sums over the counted applications of one measure or one clause."""

    count: int
    before_fen: int
    after_fen: int
    difference_fen: int


class SimulationMeasureTotal(SimulationTotal):
    measure: str
    budget_impact_fen: int = Field(
        description="after − before: what the change would add to (or free from) the measure's budget; compare with "
        "the vouchers service's GET /v1/aggregates/budget"
    )


class SimulationClauseTotal(SimulationTotal):
    clause: str = Field(
        description="the measure's clause for formula amounts; A1 for what A1 decisions paid above them"
    )


class SimulationTrace(BaseModel):
    application_id: uuid.UUID
    outcome: str
    amount_fen: int | None
    trace: list[dict[str, Any]] = Field(description="every step under the new parameters, in the decision's format")


class SimulationRead(BaseModel):
    count: int
    changed: int
    status: SimulationStatus
    order: str = Field(description="how each enterprise's applications of a measure are taken in turn")
    total_before_fen: int
    total_after_fen: int
    total_difference_fen: int
    parameters_digest: str
    by_measure: list[SimulationMeasureTotal]
    by_clause: list[SimulationClauseTotal]
    trace: SimulationTrace | None = None
    applications: list[SimulatedApplication]
