"""All queries of the eligibility service but a submission's, which are fixed SQL in `submission_sql.py`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Text, Uuid, and_, bindparam, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Application, Award, Decision, ParameterVersion, Review, YearCap

STANDING = ("in_review", "reviewed", "approved")


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


SimulationRow = tuple[Application, Decision, int | None]


def _approved_amount() -> Any:
    """The amount of the application's latest approving review (its approval, or its A1 decision)."""
    return (
        select(Review.amount_fen)
        .where(Review.application_id == Application.id, Review.step == "approval", Review.verdict == "approve")
        .order_by(Review.created_at.desc(), Review.id.desc())
        .limit(1)
        .scalar_subquery()
    )


async def applications_for_simulation(
    session: AsyncSession,
    ids: Sequence[uuid.UUID] | None,
    measure: str | None,
    year: int | None,
    statuses: Sequence[str],
) -> list[SimulationRow]:
    """The applications a what-if covers, with their current decision and the approved amount (if approved)."""
    statement = select(Application, Decision, _approved_amount()).join(
        Decision, Decision.id == Application.current_decision_id
    )
    if ids is not None:
        statement = statement.where(Application.id == func.any(bindparam("ids", list(ids), type_=ARRAY(Uuid))))
    if measure is not None:
        statement = statement.where(Application.measure == measure)
    if year is not None:
        statement = statement.where(Application.benefit_year == year)
    statement = statement.where(Application.status.in_(statuses)).order_by(Application.seq)
    return [(row[0], row[1], row[2]) for row in (await session.execute(statement)).all()]


async def standing_for_simulation(
    session: AsyncSession, applicants: Sequence[str], measures: Sequence[str]
) -> list[SimulationRow]:
    """Every standing application of these enterprises and measures: the years a what-if recomputes."""
    if not applicants:
        return []
    statement = (
        select(Application, Decision, _approved_amount())
        .join(Decision, Decision.id == Application.current_decision_id)
        .where(
            Application.applicant == func.any(bindparam("applicants", list(applicants), type_=ARRAY(Text))),
            Application.measure.in_(sorted(set(measures))),
            Application.status.in_(STANDING),
        )
        .order_by(Application.seq)
    )
    return [(row[0], row[1], row[2]) for row in (await session.execute(statement)).all()]


def queue_key(application: Application) -> tuple[int, int]:
    return application.priority, application.seq


# --- the award register (rules/claims.py) ------------------------------------------------------


async def register_awards(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    """Insert one award row per key; returns the keys that were already awarded (nothing inserted for them)."""
    if not rows:
        return set()
    statement = (
        insert(Award)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["claim_key"], index_where=text("overrides_id IS NULL"))
        .returning(Award.claim_key)
    )
    inserted = set((await session.execute(statement)).scalars())
    return {row["claim_key"] for row in rows} - inserted


async def register_override(session: AsyncSession, row: dict[str, Any]) -> bool:
    """An A1 award on a key already held: one row naming the award it overrides (each overridden once)."""
    statement = insert(Award).values(row).on_conflict_do_nothing().returning(Award.id)
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def standing_award(session: AsyncSession, claim_key: str) -> Award | None:
    """The award that holds a key now: the last of its chain (the one no other award overrides)."""
    overridden = select(Award.overrides_id).where(Award.overrides_id.is_not(None)).scalar_subquery()
    statement = select(Award).where(Award.claim_key == claim_key, Award.id.not_in(overridden)).order_by(Award.id)
    return (await session.execute(statement.limit(1))).scalar_one_or_none()


async def awards_before_register(
    session: AsyncSession, applicant: str, measure: str, year: int
) -> list[tuple[int, dict[str, int]]]:
    """Approved awards decided before the register (their decisions name no caps): (amount, components)."""
    statement = (
        select(func.coalesce(_approved_amount(), Decision.amount_fen, 0), Decision.components)
        .join(Application, Application.current_decision_id == Decision.id)
        .where(
            Application.applicant == applicant,
            Application.measure == measure,
            Application.benefit_year == year,
            Application.status == "approved",
            Decision.caps == text("'[]'::jsonb"),
        )
    )
    return [(int(amount), dict(components)) for amount, components in (await session.execute(statement)).all()]


async def open_year_cap(session: AsyncSession, applicant: str, cap: dict[str, Any], used_fen: int) -> None:
    """The year's cap row, counting what was approved before it existed (never below what is used)."""
    await session.execute(
        insert(YearCap)
        .values(
            applicant=applicant,
            kind=cap["kind"],
            year=cap["year"],
            limit_fen=max(cap["limit_fen"], used_fen),
            used_fen=used_fen,
            clause=cap["clause"],
            parameter=cap["parameter"],
        )
        .on_conflict_do_nothing()
    )


async def take_year_cap(session: AsyncSession, applicant: str, cap: dict[str, Any]) -> YearCap | None:
    """The atomic annual-cap check: one conditional UPDATE; None if the year's total would exceed the cap."""
    statement = (
        update(YearCap)
        .where(
            YearCap.applicant == applicant,
            YearCap.kind == cap["kind"],
            YearCap.year == cap["year"],
            YearCap.used_fen + cap["amount_fen"] <= YearCap.limit_fen,
        )
        .values(used_fen=YearCap.used_fen + cap["amount_fen"])
        .returning(YearCap)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def year_cap(session: AsyncSession, applicant: str, kind: str, year: int) -> YearCap | None:
    return await session.get(YearCap, (applicant, kind, year))


async def awards(session: AsyncSession, filters: dict[str, Any], after: int, limit: int) -> list[Award]:
    statement = select(Award).where(Award.id > after)
    for name in ("applicant", "measure", "claim_key", "application_id"):
        if filters.get(name) is not None:
            statement = statement.where(getattr(Award, name) == filters[name])
    return list((await session.execute(statement.order_by(Award.id).limit(limit + 1))).scalars())


async def double_awards(session: AsyncSession) -> list[Award]:
    """Every award row on a key held more than once (A1 overrides and doubles found in history), by key."""
    twice = select(Award.claim_key).group_by(Award.claim_key).having(func.count() > 1).scalar_subquery()
    statement = select(Award).where(Award.claim_key.in_(twice)).order_by(Award.claim_key, Award.id)
    return list((await session.execute(statement)).scalars())
