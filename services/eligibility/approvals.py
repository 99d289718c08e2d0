"""Review, approval and A1 (一事一议): the four-eyes path from a decision to an award.

An approval (or an A1 decision) first checks its own refusals, then says what it would pay
(`BudgetNeed`, reserved from the programme budget before it commits: A2, `budget.py`), then
registers the award (`awards.py`). Each function only flushes: the request dependency commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Principal
from shared.errors import ProblemError

from . import events, repository
from .awards import award
from .errors import (
    AMOUNT_NOT_ALLOWED,
    AMOUNT_REQUIRED,
    APPLICATION_NOT_FOUND,
    APPROVE_REJECTED_REVIEW,
    INVALID_STATE,
    SELF_APPROVAL,
)
from .models import Application, Decision, Review
from .rules.claims import allocate
from .schemas import ApplicationRead, ApprovalCreate, ManualDecisionCreate, ReviewCreate
from .service import Policy, read_application, request_id

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
        await award(session, application, decision, last_review.amount_fen or 0, principal, "automatic", {})
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
    await award(session, application, decision, payload.amount_fen, principal, "manual_a1", overrides)
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
