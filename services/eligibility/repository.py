"""All queries of the eligibility service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from .facts import PriorAward
from .models import Application, Decision, ParameterVersion, Review

STANDING = ("in_review", "reviewed", "approved")


async def lock_applicant_measure(session: AsyncSession, applicant: str, measure: str) -> None:
    """Serialise evaluations of one applicant and measure, so annual caps see each other."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"eligibility:{applicant}:{measure}"}
    )


async def prior_awards(session: AsyncSession, applicant: str, measure: str) -> list[PriorAward]:
    """Decisions for this applicant and measure that still stand (not rejected, not ineligible)."""
    approved_amount = (
        select(Review.amount_fen)
        .where(Review.application_id == Application.id, Review.step == "approval", Review.verdict == "approve")
        .order_by(Review.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    statement = (
        select(Decision.id, Application.benefit_year, Decision.amount_fen, Decision.components, approved_amount)
        .join(Application, Application.current_decision_id == Decision.id)
        .where(
            Application.applicant == applicant,
            Application.measure == measure,
            Application.status.in_(STANDING),
            Decision.outcome.in_(("eligible", "needs_review")),
        )
    )
    awards: list[PriorAward] = []
    for decision_id, year, amount, components, approved in (await session.execute(statement)).all():
        value = approved if approved is not None else amount
        if value:
            awards.append(PriorAward(decision_id=decision_id, year=year, amount_fen=value, components=components))
    return awards


async def parameter_versions(session: AsyncSession) -> list[ParameterVersion]:
    return list((await session.execute(select(ParameterVersion).order_by(ParameterVersion.id))).scalars())


async def get_application(
    session: AsyncSession, application_id: uuid.UUID, *, lock: bool = False
) -> Application | None:
    statement = select(Application).where(Application.id == application_id)
    if lock:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def get_decision(session: AsyncSession, decision_id: uuid.UUID) -> Decision | None:
    return await session.get(Decision, decision_id)


async def decisions_by_id(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Decision]:
    if not ids:
        return {}
    rows = (await session.execute(select(Decision).where(Decision.id.in_(ids)))).scalars()
    return {row.id: row for row in rows}


async def reviews_of(session: AsyncSession, application_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Review]]:
    result: dict[uuid.UUID, list[Review]] = {}
    if not application_ids:
        return result
    statement = select(Review).where(Review.application_id.in_(application_ids)).order_by(Review.created_at, Review.id)
    for review in (await session.execute(statement)).scalars():
        result.setdefault(review.application_id, []).append(review)
    return result


async def list_applications(
    session: AsyncSession, filters: dict[str, Any], after: int, limit: int
) -> list[Application]:
    statement = select(Application).where(Application.seq > after)
    for name in ("measure", "applicant", "status"):
        if filters.get(name) is not None:
            statement = statement.where(getattr(Application, name) == filters[name])
    statement = statement.order_by(Application.seq).limit(limit + 1)
    return list((await session.execute(statement)).scalars())


async def review_queue(session: AsyncSession, after: tuple[int, int] | None, limit: int) -> list[Application]:
    """Highest priority first, then oldest; keyset on (priority desc, seq asc)."""
    statement = select(Application).where(Application.status.in_(("in_review", "reviewed")))
    if after is not None:
        priority, seq = after
        statement = statement.where(
            or_(Application.priority < priority, and_(Application.priority == priority, Application.seq > seq))
        )
    statement = statement.order_by(Application.priority.desc(), Application.seq).limit(limit + 1)
    return list((await session.execute(statement)).scalars())


async def applications_for_simulation(
    session: AsyncSession, ids: Sequence[uuid.UUID] | None, measure: str | None, year: int | None
) -> list[tuple[Application, Decision]]:
    statement = select(Application, Decision).join(Decision, Decision.id == Application.current_decision_id)
    if ids is not None:
        statement = statement.where(Application.id.in_(ids))
    else:
        statement = statement.where(Application.measure == measure, Application.benefit_year == year)
    statement = statement.where(Decision.kind == "automatic").order_by(Application.seq)
    return [(row[0], row[1]) for row in (await session.execute(statement)).all()]


def queue_key(application: Application) -> tuple[int, int]:
    return application.priority, application.seq
