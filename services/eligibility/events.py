"""The eligibility service's events (shared/feed), written in the request's transaction.

`eligibility.application.submitted` and `.decided` (the automatic decision) when an
application comes in; `.reviewed`, `.approved` / `.rejected` and `.a1_decided` as officers
and approvers act; `eligibility.parameter.versioned` when an administrator adds a version.
The subject is the application id and `organisation` the applicant, so an applicant
client's webhook receives its own applications' events. The payload is a summary (ids,
status, outcome, amount, the acting review): the trace and facts stay behind
`GET /v1/applications/{id}`.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from shared.feed.catalogue import register_catalogue
from shared.feed.outbox import NewEvent, emit_many

from .schemas import ApplicationRead, DecisionRead, ReviewRead

#: the eligibility service's event types (GET /v1/events/types)
CATALOGUE = register_catalogue(
    "eligibility",
    {
        "eligibility.application.submitted": "An application was submitted",
        "eligibility.application.decided": "The automatic decision on a submitted application (outcome, amount)",
        "eligibility.application.reviewed": "An officer reviewed an application",
        "eligibility.application.approved": "An approver approved an application: its decision may be claimed",
        "eligibility.application.rejected": "An approver rejected an application",
        "eligibility.application.a1_decided": "An approver decided an application case by case (A1); it is approved",
        "eligibility.parameter.versioned": "An administrator added a future version of a policy parameter",
    },
)

ApplicationChange = Literal["submitted", "decided", "reviewed", "approved", "rejected", "a1_decided"]


def _decision(decision: DecisionRead | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "id": decision.id,
        "kind": decision.kind,
        "outcome": decision.outcome,
        "amount_fen": decision.amount_fen,
        "policy_version": decision.policy_version,
        "parameters_digest": decision.parameters_digest,
        "decided_by": decision.decided_by,
        "decided_at": decision.decided_at,
    }


def _review(review: ReviewRead | None) -> dict[str, Any] | None:
    if review is None:
        return None
    return {
        "id": review.id,
        "step": review.step,
        "verdict": review.verdict,
        "amount_fen": review.amount_fen,
        "actor": review.actor,
        "reason": review.reason,
        "created_at": review.created_at,
    }


def application_event(change: ApplicationChange, application: ApplicationRead) -> NewEvent:
    payload: dict[str, Any] = {
        "application_id": application.id,
        "applicant": application.applicant,
        "measure": application.measure,
        "as_of": application.as_of,
        "benefit_year": application.benefit_year,
        "status": application.status,
        "submitted_by": application.submitted_by,
        "decision": _decision(application.decision),
    }
    if change in ("reviewed", "approved", "rejected", "a1_decided"):
        payload["review"] = _review(application.reviews[-1] if application.reviews else None)
    return NewEvent(
        type=f"eligibility.application.{change}",
        subject=str(application.id),
        payload=payload,
        organisation=application.applicant,
    )


async def application_changed(session: AsyncSession, application: ApplicationRead, *changes: ApplicationChange) -> None:
    await emit_many(session, [application_event(change, application) for change in changes])


async def parameter_versioned(session: AsyncSession, parameter_id: str, version: dict[str, Any]) -> None:
    await emit_many(session, [NewEvent(type="eligibility.parameter.versioned", subject=parameter_id, payload=version)])
