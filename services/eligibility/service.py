"""Eligibility flows: submit and decide, review, approve, A1, policy versions, simulations.

I/O lives here and in `facts.py`; the rules stay pure. Each function only flushes: the
request dependency commits. Facts come from the registry before anything is written, so
a registry outage (503) leaves nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import ADMIN, OFFICER, ORGANISATION_MISMATCH, Principal
from shared.context import request_id_var
from shared.errors import ProblemError
from shared.instants import SHENZHEN
from shared.money import format_yuan

from . import events, repository
from .engine import Trace
from .errors import (
    ALREADY_AWARDED,
    AMOUNT_NOT_ALLOWED,
    AMOUNT_REQUIRED,
    ANNUAL_CAP_REACHED,
    APPLICATION_NOT_FOUND,
    APPROVE_REJECTED_REVIEW,
    AS_OF_BEFORE_POLICY,
    AS_OF_IN_FUTURE,
    AS_OF_OFFICER_ONLY,
    AS_OF_REASON_REQUIRED,
    DECISION_NOT_APPROVED,
    DECISION_NOT_FOUND,
    INVALID_STATE,
    OVERRIDE_NOT_CLAIMED,
    PARAMETER_INVALID,
    PARAMETER_NOT_FOUND,
    PARAMETER_NOT_FUTURE,
    SELF_APPROVAL,
)
from .evidence import AnyEvidence, Evidence
from .facts import Facts, RegistryFacts
from .models import Application, Decision, ParameterVersion, Review
from .parameters import SPECS, ParameterFileError, ParameterSet, Value, jsonable, parse_value
from .priority import PriorityRubric
from .rules import Evaluation, claim_keys, evaluate_application, facts_needed
from .rules.claims import allocate, cap_uses, kind_of
from .schemas import (
    ApplicationCreate,
    ApplicationRead,
    ApprovalCreate,
    ApprovedDecisionRead,
    DecisionRead,
    ManualDecisionCreate,
    ParameterVersionCreate,
    ReviewCreate,
    ReviewRead,
)

EVIDENCE = TypeAdapter(AnyEvidence)


def jsonable_value(value: Any) -> Any:
    return jsonable(value)


def request_id() -> str | None:
    """This request's id, as recorded in the audit log (None outside a request)."""
    value = request_id_var.get()
    return None if value == "-" else value


def visible(principal: Principal, applicant: str) -> bool:
    """Bureau roles see every application; an applicant client only its own organisation's."""
    return principal.sees_everything() or principal.applicant == applicant


def today() -> date:
    return datetime.now(SHENZHEN).date()


@dataclass(frozen=True)
class Policy:
    """The parameter file and rubric loaded (and checked) at start-up, and the clock."""

    parameters: ParameterSet
    rubric: PriorityRubric
    today: Callable[[], date] = field(default=today)


def benefit_year(evidence: Evidence, as_of: date) -> int:
    """The year an award counts against (annual caps): the evidence's year, else the application's."""
    for name in ("year", "fiscal_year"):
        value = getattr(evidence, name, None)
        if isinstance(value, int):
            return value
    return as_of.year


async def current_parameters(session: AsyncSession, base: ParameterSet) -> ParameterSet:
    rows = await repository.parameter_versions(session)
    if not rows:
        return base
    return base.with_versions((row.parameter_id, _stored_value(row)) for row in rows)


def _stored_value(row: ParameterVersion) -> Value:
    raw = {
        "effective_from": row.effective_from,
        "value": row.value,
        "status": row.status,
        "source": row.source,
    }
    return parse_value(f"parameter_versions[{row.id}]", row.parameter_id, raw, origin=f"version:{row.id}")


# --- reading ---------------------------------------------------------------------------------


def decision_read(decision: Decision) -> DecisionRead:
    return DecisionRead.model_validate(decision, from_attributes=True)


def application_read(application: Application, decision: Decision | None, reviews: list[Review]) -> ApplicationRead:
    return ApplicationRead(
        id=application.id,
        measure=application.measure,
        applicant=application.applicant,
        as_of=application.as_of,
        as_of_reason=application.as_of_reason,
        as_of_recorded_by=application.as_of_recorded_by,
        benefit_year=application.benefit_year,
        evidence=application.evidence,
        submitted_by=application.submitted_by,
        submitted_at=application.submitted_at,
        status=application.status,  # type: ignore[arg-type]
        priority=application.priority,
        decision=decision_read(decision) if decision else None,
        reviews=[ReviewRead.model_validate(review, from_attributes=True) for review in reviews],
    )


async def read_applications(session: AsyncSession, applications: list[Application]) -> list[ApplicationRead]:
    decisions = await repository.decisions_by_id(
        session, [a.current_decision_id for a in applications if a.current_decision_id]
    )
    reviews = await repository.reviews_of(session, [a.id for a in applications])
    return [
        application_read(
            a, decisions.get(a.current_decision_id) if a.current_decision_id else None, reviews.get(a.id, [])
        )
        for a in applications
    ]


async def read_application(
    session: AsyncSession, application_id: uuid.UUID, principal: Principal | None = None
) -> ApplicationRead:
    """One application; another organisation's is as unknown as a missing one (404) to an applicant."""
    application = await repository.get_application(session, application_id)
    if application is None or (principal is not None and not visible(principal, application.applicant)):
        raise ProblemError(APPLICATION_NOT_FOUND, id=str(application_id))
    return (await read_applications(session, [application]))[0]


# --- submitting -------------------------------------------------------------------------------


def _decision_row(application_id: uuid.UUID, evaluation: Evaluation, facts: Facts, principal: Principal) -> Decision:
    result = evaluation.result
    return Decision(
        id=uuid.uuid4(),
        application_id=application_id,
        kind="automatic",
        outcome=result.outcome,
        amount_fen=result.amount_fen,
        failures=[r.as_dict() for r in result.failures],
        review_reasons=[r.as_dict() for r in result.review_reasons],
        components=dict(result.components),
        trace=evaluation.trace,
        facts=facts.model_dump(mode="json"),
        policy_version=evaluation.policy_version,
        parameters_digest=evaluation.parameters_digest,
        engine_version=evaluation.engine_version,
        client_id=principal.client_id,
        request_id=request_id(),
        claims=list(result.claims),
        caps=list(result.caps),
        basis=result.basis,
    )


def _application_date(payload: ApplicationCreate, received_on: date, principal: Principal, policy: Policy) -> date:
    """A4: the application is dated the day it is received; only an officer records an earlier day, saying why."""
    as_of = payload.as_of or received_on
    if as_of > received_on:
        raise ProblemError(AS_OF_IN_FUTURE, as_of=as_of.isoformat())
    if as_of < received_on:
        if not principal.has(OFFICER, ADMIN):
            raise ProblemError(AS_OF_OFFICER_ONLY, as_of=as_of.isoformat(), today=received_on.isoformat())
        if payload.as_of_reason is None:
            raise ProblemError(AS_OF_REASON_REQUIRED, as_of=as_of.isoformat(), today=received_on.isoformat())
    if as_of < policy.parameters.covered_from:
        first = policy.parameters.covered_from.isoformat()
        raise ProblemError(AS_OF_BEFORE_POLICY, as_of=as_of.isoformat(), first=first)
    return as_of


def _dated(received_on: date, as_of: date, payload: ApplicationCreate, principal: Principal) -> list[dict[str, Any]]:
    """The trace's first step: which day the application counts as made, and who decided it if not today."""
    trace = Trace()
    if as_of == received_on:
        trace.step(
            "A4",
            "申请日期：收件当日（服务器时间，深圳）",
            "Application date: the day received (server clock, Shenzhen time)",
            inputs={"received_on": received_on.isoformat(), "as_of": as_of.isoformat()},
        )
    else:
        trace.step(
            "A4",
            "申请日期由工作人员登记为更早的日期（逾期登记的纸质申请）",
            "Application date recorded earlier by an officer (a paper application registered late)",
            inputs={
                "received_on": received_on.isoformat(),
                "as_of": as_of.isoformat(),
                "recorded_by": principal.actor,
                "reason": payload.as_of_reason,
            },
            outcome="review",
        )
    return trace.as_list()


async def submit(
    session: AsyncSession, policy: Policy, registry: RegistryFacts, payload: ApplicationCreate, principal: Principal
) -> ApplicationRead:
    if not principal.has(OFFICER, ADMIN) and payload.applicant != principal.applicant:
        raise ProblemError(ORGANISATION_MISMATCH, org=principal.organisation or "-")
    received_on = policy.today()
    as_of = _application_date(payload, received_on, principal, policy)
    evidence: Evidence = payload.evidence
    measure: str = evidence.measure  # type: ignore[attr-defined]
    await repository.lock_applicant_measure(session, payload.applicant, measure)
    request = facts_needed(evidence)
    facts = await registry.fetch(payload.applicant, as_of, request)
    if request.prior_awards:
        facts.prior_awards = await repository.prior_awards(session, payload.applicant, measure)
    parameters = await current_parameters(session, policy.parameters)
    keys = claim_keys(evidence, payload.applicant, parameters, as_of)
    facts.claimed = await repository.claim_holders(session, keys)
    evaluation = evaluate_application(evidence, as_of, facts, parameters)
    evaluation = replace(evaluation, trace=_dated(received_on, as_of, payload, principal) + evaluation.trace)
    back_dated = as_of != received_on
    application = Application(
        id=uuid.uuid4(),
        measure=measure,
        applicant=payload.applicant,
        as_of=as_of,
        as_of_reason=payload.as_of_reason if back_dated else None,
        as_of_recorded_by=principal.actor if back_dated else None,
        benefit_year=benefit_year(evidence, as_of),
        evidence=evidence.model_dump(mode="json"),
        submitted_by=principal.actor,
        status="ineligible" if evaluation.result.outcome == "ineligible" else "in_review",
        priority=policy.rubric.score(evaluation.result, measure),
    )
    session.add(application)
    await session.flush()
    decision = _decision_row(application.id, evaluation, facts, principal)
    session.add(decision)
    await session.flush()
    application.current_decision_id = decision.id
    await session.flush()
    await session.refresh(application)
    await session.refresh(decision)
    read = application_read(application, decision, [])
    await events.application_changed(session, read, "submitted", "decided")
    return read


# --- review, approval, A1 ---------------------------------------------------------------------

_ACTIONS = {
    "review": ("审核", "review it"),
    "approve": ("核准", "approve it"),
    "a1": ("一事一议", "decide it under A1"),
}


async def _locked(
    session: AsyncSession, application_id: uuid.UUID, allowed: tuple[str, ...], action: str
) -> Application:
    application = await repository.get_application(session, application_id, lock=True)
    if application is None:
        raise ProblemError(APPLICATION_NOT_FOUND, id=str(application_id))
    if application.status not in allowed:
        zh, en = _ACTIONS[action]
        raise ProblemError(INVALID_STATE, status=application.status, action=en, action_zh=zh)
    return application


async def review(
    session: AsyncSession, application_id: uuid.UUID, payload: ReviewCreate, principal: Principal
) -> ApplicationRead:
    application = await _locked(session, application_id, ("in_review",), "review")
    decision = await repository.get_decision(session, application.current_decision_id)  # type: ignore[arg-type]
    assert decision is not None
    amount = payload.amount_fen
    if payload.verdict == "approve":
        if decision.outcome == "needs_review":
            if amount is None:
                raise ProblemError(AMOUNT_REQUIRED)
            if decision.amount_fen is not None and amount > decision.amount_fen:
                raise ProblemError(AMOUNT_NOT_ALLOWED, amount_fen=amount, allowed=f"≤ {decision.amount_fen}")
        elif amount is None:
            amount = decision.amount_fen
        elif amount != decision.amount_fen:
            raise ProblemError(AMOUNT_NOT_ALLOWED, amount_fen=amount, allowed=f"= {decision.amount_fen}")
    session.add(
        Review(
            application_id=application.id,
            decision_id=decision.id,
            step="review",
            actor=principal.actor,
            verdict=payload.verdict,
            amount_fen=amount if payload.verdict == "approve" else None,
            reason=payload.reason,
            client_id=principal.client_id,
            request_id=request_id(),
        )
    )
    application.status = "reviewed"
    await session.flush()
    read = await read_application(session, application.id)
    await events.application_changed(session, read, "reviewed")
    return read


def _own_review(review: Review | None, principal: Principal) -> bool:
    """Four eyes: was this review made by the same client (rows from before tokens: the same name)?"""
    if review is None:
        return False
    if review.client_id is not None:
        return review.client_id == principal.client_id
    return review.actor == principal.actor


@dataclass(frozen=True)
class BudgetNeed:
    """What an approval will pay: reserved from the programme budget before the approval commits (A2)."""

    decision_id: uuid.UUID
    measure: str
    amount_fen: int


async def _approval_checks(
    session: AsyncSession, application_id: uuid.UUID, payload: ApprovalCreate, principal: Principal
) -> tuple[Application, Review]:
    application = await _locked(session, application_id, ("reviewed",), "approve")
    reviews = (await repository.reviews_of(session, [application.id])).get(application.id, [])
    last_review = [r for r in reviews if r.step == "review"][-1]
    if _own_review(last_review, principal):
        raise ProblemError(SELF_APPROVAL, actor=principal.actor)
    if payload.verdict == "approve" and last_review.verdict != "approve":
        raise ProblemError(APPROVE_REJECTED_REVIEW)
    return application, last_review


async def approval_budget(
    session: AsyncSession, application_id: uuid.UUID, payload: ApprovalCreate, principal: Principal
) -> BudgetNeed | None:
    """The approval's own refusals first (nothing is reserved for them), then what it would pay."""
    application, last_review = await _approval_checks(session, application_id, payload, principal)
    if payload.verdict != "approve" or not last_review.amount_fen:
        return None
    return BudgetNeed(last_review.decision_id, application.measure, last_review.amount_fen)


async def approve(
    session: AsyncSession,
    application_id: uuid.UUID,
    payload: ApprovalCreate,
    principal: Principal,
    reservation_id: uuid.UUID | None = None,
) -> ApplicationRead:
    """Approve (or reject) the review; `reservation_id` is the budget reserved for it (A2)."""
    application, last_review = await _approval_checks(session, application_id, payload, principal)
    if payload.verdict == "approve":
        decision = await repository.get_decision(session, last_review.decision_id)
        assert decision is not None
        await _award(session, application, decision, last_review.amount_fen or 0, principal, "automatic", {})
    session.add(
        Review(
            application_id=application.id,
            decision_id=last_review.decision_id,
            step="approval",
            review_id=last_review.id,
            actor=principal.actor,
            verdict=payload.verdict,
            amount_fen=last_review.amount_fen if payload.verdict == "approve" else None,
            reason=payload.reason,
            client_id=principal.client_id,
            request_id=request_id(),
            budget_reservation_id=reservation_id if payload.verdict == "approve" else None,
        )
    )
    application.status = "approved" if payload.verdict == "approve" else "rejected"
    await session.flush()
    read = await read_application(session, application.id)
    await events.application_changed(session, read, "approved" if payload.verdict == "approve" else "rejected")
    return read


async def _a1_checks(
    session: AsyncSession, application_id: uuid.UUID, principal: Principal
) -> tuple[Application, Decision | None]:
    """Four eyes as for approvals: whoever reviewed the current decision cannot also decide it under A1."""
    application = await _locked(session, application_id, ("in_review", "reviewed", "ineligible", "rejected"), "a1")
    previous = await repository.get_decision(session, application.current_decision_id)  # type: ignore[arg-type]
    reviews = (await repository.reviews_of(session, [application.id])).get(application.id, [])
    current_reviews = [r for r in reviews if r.step == "review" and previous and r.decision_id == previous.id]
    if _own_review(current_reviews[-1] if current_reviews else None, principal):
        raise ProblemError(SELF_APPROVAL, actor=principal.actor)
    return application, previous


async def manual_decision_budget(
    session: AsyncSession,
    application_id: uuid.UUID,
    payload: ManualDecisionCreate,
    principal: Principal,
    decision_id: uuid.UUID,
) -> BudgetNeed | None:
    """The A1 decision's own refusals first (nothing is reserved for them), then what it would pay."""
    application, _ = await _a1_checks(session, application_id, principal)
    return BudgetNeed(decision_id, application.measure, payload.amount_fen) if payload.amount_fen else None


async def manual_decision(
    session: AsyncSession,
    policy: Policy,
    application_id: uuid.UUID,
    payload: ManualDecisionCreate,
    principal: Principal,
    decision_id: uuid.UUID | None = None,
    reservation_id: uuid.UUID | None = None,
) -> ApplicationRead:
    """A1 一事一议: an approver decides outside the formulas, with a written reason.

    `decision_id` is the new decision's id (chosen before its budget was reserved), and
    `reservation_id` the budget reserved for it (A2).
    """
    application, previous = await _a1_checks(session, application_id, principal)
    decision = Decision(
        id=decision_id or uuid.uuid4(),
        application_id=application.id,
        kind="manual_a1",
        outcome="eligible",
        amount_fen=payload.amount_fen,
        failures=[],
        review_reasons=[],
        components=allocate(payload.amount_fen, previous.components if previous else {}),
        trace=[
            {
                "clause": "A1",
                "label": {
                    "zh": "一事一议：人工决定，不适用公式",
                    "en": "Case by case (A1): a manual decision outside the formulas",
                },
                "inputs": {
                    "approver": principal.actor,
                    "reason": payload.reason,
                    "supersedes": str(previous.id) if previous else None,
                    "claims": list(previous.claims) if previous else [],
                    "overrides": {o.claim_key: o.reason for o in payload.overrides},
                },
                "parameters": [],
                "amounts": {"amount_fen": payload.amount_fen},
                "outcome": "eligible",
            }
        ],
        facts=previous.facts if previous else {},
        policy_version=policy.parameters.version,
        parameters_digest=previous.parameters_digest if previous else policy.parameters.digest,
        engine_version="manual",
        decided_by=principal.actor,
        reason=payload.reason,
        client_id=principal.client_id,
        request_id=request_id(),
        # A1 pays for what the superseded decision asked for, within the same annual caps
        claims=list(previous.claims) if previous else [],
        caps=list(previous.caps) if previous else [],
        basis=previous.basis if previous else {},
    )
    session.add(decision)
    await session.flush()
    overrides = {o.claim_key: o.reason for o in payload.overrides}
    await _award(session, application, decision, payload.amount_fen, principal, "manual_a1", overrides)
    session.add(
        Review(
            application_id=application.id,
            decision_id=decision.id,
            step="approval",
            actor=principal.actor,
            verdict="approve",
            amount_fen=payload.amount_fen,
            reason=payload.reason,
            client_id=principal.client_id,
            request_id=request_id(),
            budget_reservation_id=reservation_id,
        )
    )
    application.current_decision_id = decision.id
    application.status = "approved"
    await session.flush()
    read = await read_application(session, application.id)
    await events.application_changed(session, read, "a1_decided")
    return read


# --- the award register ---------------------------------------------------------------------------


async def _award(
    session: AsyncSession,
    application: Application,
    decision: Decision,
    amount_fen: int,
    principal: Principal,
    path: str,
    overrides: dict[str, str],
) -> None:
    """Register what an approval pays for: its claim keys (once each) and its share of the year's caps.

    The database decides: the unique key index makes a second award on a key impossible
    (a concurrent approval waits for the first and then finds the key taken), and each cap
    is taken by one conditional UPDATE. Any refusal rolls the whole approval back.
    """
    unknown = sorted(set(overrides) - set(decision.claims))
    if unknown:
        raise ProblemError(OVERRIDE_NOT_CLAIMED, claim_key=unknown[0])
    row = {
        "measure": application.measure,
        "applicant": application.applicant,
        "benefit_year": application.benefit_year,
        "application_id": application.id,
        "decision_id": decision.id,
        "amount_fen": amount_fen,
        "path": path,
        "actor": principal.actor,
        "request_id": request_id(),
    }
    plain = [
        {**row, "claim_key": key, "clause": kind_of(key).clause} for key in decision.claims if key not in overrides
    ]
    taken = await repository.register_awards(session, plain)
    if taken:
        key = min(taken)
        holder = await repository.standing_award(session, key)
        raise ProblemError(
            ALREADY_AWARDED,
            claim_key=key,
            clause=kind_of(key).clause,
            holder=str(holder.application_id) if holder else "?",
        )
    for key, why in sorted(overrides.items()):
        holder = await repository.standing_award(session, key)
        overriding = {"overrides_id": holder.id, "override_reason": why} if holder else {}
        if not await repository.register_override(
            session, {**row, "claim_key": key, "clause": kind_of(key).clause, **overriding}
        ):
            raise ProblemError(
                ALREADY_AWARDED, claim_key=key, clause=kind_of(key).clause, holder="(a concurrent decision)"
            )
    for use in cap_uses(amount_fen, decision.components, decision.caps):
        if await repository.year_cap(session, application.applicant, use["kind"], use["year"]) is None:
            await _open_year_cap(session, application, decision, use)
        if await repository.take_year_cap(session, application.applicant, use) is None:
            cap = await repository.year_cap(session, application.applicant, use["kind"], use["year"])
            limit, used = (cap.limit_fen, cap.used_fen) if cap else (use["limit_fen"], 0)
            raise ProblemError(
                ANNUAL_CAP_REACHED,
                clause=use["clause"],
                year=use["year"],
                cap=use["kind"],
                limit_yuan=format_yuan(limit),
                used_yuan=format_yuan(used),
                remaining_yuan=format_yuan(limit - used),
                remaining_fen=limit - used,
                amount_yuan=format_yuan(use["amount_fen"]),
            )


async def _open_year_cap(
    session: AsyncSession, application: Application, decision: Decision, use: dict[str, Any]
) -> None:
    """A year's first approval opens its cap row, counting the awards approved before the register existed."""
    earlier = await repository.awards_before_register(session, application.applicant, application.measure, use["year"])
    used = sum(
        part["amount_fen"]
        for amount, components in earlier
        for part in cap_uses(amount, components, decision.caps)
        if part["kind"] == use["kind"]
    )
    await repository.open_year_cap(session, application.applicant, use, used)


async def get_decision(session: AsyncSession, decision_id: uuid.UUID, principal: Principal) -> DecisionRead:
    """One decision; another organisation's is as unknown as a missing one (404) to an applicant."""
    decision = await repository.get_decision(session, decision_id)
    if decision is not None and not principal.sees_everything():
        application = await repository.get_application(session, decision.application_id)
        if application is None or not visible(principal, application.applicant):
            decision = None
    if decision is None:
        raise ProblemError(DECISION_NOT_FOUND, id=str(decision_id))
    return decision_read(decision)


_LIMIT_KEYS = ("class_cap_fen",)


def _limits(decision: Decision) -> dict[str, int]:
    """Ceilings recorded in the trace that the ledger must enforce across vouchers (M1 class cap)."""
    limits: dict[str, int] = {}
    for step in decision.trace:
        for key in _LIMIT_KEYS:
            if key in step.get("amounts", {}):
                limits[key] = int(step["amounts"][key])
    return limits


def _facets(decision: Decision) -> dict[str, Any]:
    """What the ledger records with a voucher for reporting (issue #6): M1's revenue class and compute base split."""
    facets: dict[str, Any] = {}
    for step in decision.trace:
        inputs, amounts = step.get("inputs", {}), step.get("amounts", {})
        if step.get("clause") != "M1":
            continue
        if "class" in inputs and "class_cap_fen" in amounts:
            facets["revenue_class"] = str(inputs["class"])
        if isinstance(inputs.get("paid_to"), dict) and "base_fen" in amounts and "compute_base_fen" not in facets:
            facets["compute_base_fen"] = int(amounts["base_fen"])
            facets["compute_paid_to"] = {str(k): int(v) for k, v in inputs["paid_to"].items()}
    return facets


async def _superseded(session: AsyncSession, decision: Decision) -> Decision | None:
    if decision.kind != "manual_a1" or not decision.trace:
        return None
    superseded = decision.trace[0].get("inputs", {}).get("supersedes")
    return await repository.get_decision(session, uuid.UUID(superseded)) if superseded else None


async def _limits_with_superseded(session: AsyncSession, decision: Decision) -> dict[str, int]:
    """An A1 decision replaces the amount, not the ceilings: it carries those of the decision it supersedes."""
    limits = _limits(decision)
    if limits:
        return limits
    previous = await _superseded(session, decision)
    return _limits(previous) if previous else {}


async def _facets_with_superseded(session: AsyncSession, decision: Decision) -> dict[str, Any]:
    facets = _facets(decision)
    if facets:
        return facets
    previous = await _superseded(session, decision)
    return _facets(previous) if previous else {}


async def approved_decision(session: AsyncSession, decision_id: uuid.UUID) -> ApprovedDecisionRead:
    """For the vouchers service: only the current decision of an approved application."""
    decision = await repository.get_decision(session, decision_id)
    application = await repository.get_application(session, decision.application_id) if decision else None
    if decision is None or application is None or application.status != "approved":
        raise ProblemError(DECISION_NOT_APPROVED, id=str(decision_id))
    if application.current_decision_id != decision.id:
        raise ProblemError(DECISION_NOT_APPROVED, id=str(decision_id))
    reviews = (await repository.reviews_of(session, [application.id])).get(application.id, [])
    approval = [r for r in reviews if r.step == "approval" and r.verdict == "approve"][-1]
    return ApprovedDecisionRead(
        decision_id=decision.id,
        application_id=application.id,
        measure=application.measure,
        applicant=application.applicant,
        as_of=application.as_of,
        benefit_year=application.benefit_year,
        kind=decision.kind,
        amount_fen=approval.amount_fen if approval.amount_fen is not None else (decision.amount_fen or 0),
        components=decision.components,
        limits=await _limits_with_superseded(session, decision),
        facets=await _facets_with_superseded(session, decision),
        evidence=application.evidence,
        policy_version=decision.policy_version,
        parameters_digest=decision.parameters_digest,
        approved_by=approval.actor,
        approved_at=approval.created_at,
        budget_reservation_id=approval.budget_reservation_id,
    )


# --- policy administration ----------------------------------------------------------------------


async def add_parameter_version(
    session: AsyncSession, policy: Policy, parameter_id: str, payload: ParameterVersionCreate, principal: Principal
) -> ParameterSet:
    if parameter_id not in SPECS:
        raise ProblemError(PARAMETER_NOT_FOUND, id=parameter_id)
    if payload.effective_from <= policy.today():
        raise ProblemError(PARAMETER_NOT_FUTURE, today=policy.today().isoformat())
    raw = {
        "effective_from": payload.effective_from,
        "value": payload.value,
        "status": payload.status,
        "source": payload.source,
    }
    try:
        value = parse_value(f"new version of {parameter_id}", parameter_id, raw, origin="version:new")
        current = await current_parameters(session, policy.parameters)
        current.with_versions([(parameter_id, value)])
    except ParameterFileError as exc:
        raise ProblemError(PARAMETER_INVALID, problem=str(exc)) from exc
    session.add(
        ParameterVersion(
            parameter_id=parameter_id,
            effective_from=payload.effective_from,
            value=payload.value,
            status=payload.status,
            source=payload.source,
            reason=payload.reason,
            created_by=principal.actor,
            request_id=request_id(),
            client_id=principal.client_id,
        )
    )
    await session.flush()
    await events.parameter_versioned(
        session,
        parameter_id,
        {"parameter_id": parameter_id, **raw, "reason": payload.reason, "created_by": principal.actor},
    )
    return await current_parameters(session, policy.parameters)
