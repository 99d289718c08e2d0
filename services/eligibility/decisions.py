"""Decisions as they are read: one decision as a principal may see it, and an approved decision
as the vouchers service reads it to issue vouchers (its amount, the ceilings the ledger enforces
and the facets it records: M1's class cap and revenue class).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Principal
from shared.errors import ProblemError

from . import repository
from .errors import DECISION_NOT_APPROVED, DECISION_NOT_FOUND
from .models import Decision
from .schemas import ApprovedDecisionRead, DecisionRead
from .service import decision_read, visible


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
