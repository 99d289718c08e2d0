"""Clause A2: an approval reserves the programme budget before it commits.

The eligibility service calls `PUT /v1/budget-reservations/{id}` with an id of its own for the
approval attempt, before the approval's transaction writes anything; the amount is taken from the
budget row of the measure and year (`budget_ceilings.reserve`). The approval records the id; the
approved decision carries it to issuance, which consumes the reservation. A failed approval
releases its own attempt (`DELETE`). An attempt that neither committed nor released (a process
killed in between) is found by the reconciler below: once it is older than the grace period it
asks the eligibility service whether an approval recorded it, and releases it if not.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.auth import ADMIN, APPROVER, AUDITOR, BUDGET_RESERVE, OFFICER, Principal, require
from shared.context import request_id_var
from shared.db import SessionDep
from shared.errors import ProblemError
from shared.money import PositiveFenAmount
from shared.peers import PeerUnavailable
from shared.periodic import Periodic, start_jobs, stop_jobs

from . import budget_ceilings
from .deps import BudgetsDep, Now
from .errors import DECISION_NOT_APPROVED
from .hotpath import local_today
from .models import BudgetReservation
from .peers import Eligibility
from .policy.budgets import Budgets
from .schemas import Input

logger = logging.getLogger("services.vouchers.reservations")

router = APIRouter(tags=["budget"])
#: the eligibility service's own client reserves and releases; administrators may release by hand
Reserver = Annotated[Principal, require(BUDGET_RESERVE)]
Releaser = Annotated[Principal, require(BUDGET_RESERVE, ADMIN)]
Reader = Annotated[Principal, require(BUDGET_RESERVE, OFFICER, APPROVER, AUDITOR, ADMIN)]
ReservationId = Annotated[uuid.UUID, Path(description="The approval attempt's id, chosen by the eligibility service")]


class ReservationCreate(Input):
    decision_id: uuid.UUID = Field(description="The decision being approved")
    measure: Annotated[str, Field(pattern=r"^M(1[0-3]|[1-9])$", description="The measure paying (M1–M13)")]
    amount_fen: PositiveFenAmount


class ReservationRead(BaseModel):
    id: uuid.UUID
    decision_id: uuid.UUID
    measure: str
    year: int = Field(description="The budget year the amount is reserved from (the year of the approval)")
    amount_fen: int
    state: Literal["reserved", "consumed", "released"]
    reserved_by: str
    reserved_at: datetime
    settled_at: datetime | None
    settled_by: str | None
    settled_reason: str | None
    confirmed_at: datetime | None = Field(description="When the reconciler found the approval that recorded it")


def _read(row: BudgetReservation) -> ReservationRead:
    return ReservationRead.model_validate(row, from_attributes=True)


@router.put(
    "/v1/budget-reservations/{reservation_id}",
    response_model=ReservationRead,
    summary="Reserve a decision's amount from this year's programme budget before its approval commits (A2)",
    description=(
        "For the eligibility service. Idempotent on the id: a repeat with the same content answers the "
        "reservation as it stands. `budget_exhausted` / `no_budget` (409): nothing is reserved. "
        "`budget_already_reserved` (409): another approval attempt of the decision holds a reservation."
    ),
)
async def reserve(
    principal: Reserver,
    session: SessionDep,
    budgets: BudgetsDep,
    moment: Now,
    reservation_id: ReservationId,
    payload: ReservationCreate,
) -> ReservationRead:
    row = await budget_ceilings.reserve(
        session,
        budgets,
        reservation_id,
        payload.decision_id,
        payload.measure,
        payload.amount_fen,
        local_today(moment),
        principal.actor,
        request_id_var.get(),
    )
    return _read(row)


@router.delete(
    "/v1/budget-reservations/{reservation_id}",
    response_model=ReservationRead,
    summary="Release a reservation whose approval failed: its amount goes back to the budget (A2)",
    description="Idempotent. `reservation_consumed` (409) once the voucher or grant was issued from it.",
)
async def release(
    principal: Releaser,
    session: SessionDep,
    budgets: BudgetsDep,
    moment: Now,
    reservation_id: ReservationId,
    reason: Annotated[str, Query(min_length=2, max_length=500)] = "approval failed",
) -> ReservationRead:
    return _read(await budget_ceilings.release(session, budgets, reservation_id, principal.actor, reason, moment))


@router.get(
    "/v1/budget-reservations",
    response_model=list[ReservationRead],
    summary="Budget reservations of approvals (A2), newest first",
)
async def list_reservations(
    principal: Reader,
    session: SessionDep,
    state: Literal["reserved", "consumed", "released"] | None = None,
    decision_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ReservationRead]:
    query = select(BudgetReservation).order_by(BudgetReservation.reserved_at.desc()).limit(limit)
    if state is not None:
        query = query.where(BudgetReservation.state == state)
    if decision_id is not None:
        query = query.where(BudgetReservation.decision_id == decision_id)
    return [_read(row) for row in (await session.execute(query)).scalars()]


# --- the reconciler ---------------------------------------------------------------------------------


class Reconciler(Periodic):
    """Releases reservations no approval recorded, once they are older than any approval can take.

    Each round: read a page of old, unconfirmed reservations (short transaction), ask the
    eligibility service about each (no transaction held), then confirm or release each in its
    own short transaction. The eligibility service unreachable → try again next round.
    """

    name = "budget-reservation-reconciler"

    def __init__(
        self,
        sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
        eligibility: Eligibility,
        budgets: Budgets,
        clock: Callable[[], datetime],
        *,
        grace_seconds: float,
        interval_seconds: float,
    ) -> None:
        super().__init__(interval_seconds)
        self.sessionmaker = sessionmaker
        self.eligibility = eligibility
        self.budgets = budgets
        self.clock = clock
        self.grace = timedelta(seconds=grace_seconds)

    async def run_once(self, limit: int = 100) -> dict[str, int]:
        """One round; returns how many were confirmed, released, and left for later."""
        now = self.clock()
        async with self.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(BudgetReservation.id, BudgetReservation.decision_id)
                    .where(
                        BudgetReservation.state == "reserved",
                        BudgetReservation.confirmed_at.is_(None),
                        BudgetReservation.reserved_at < now - self.grace,
                    )
                    .order_by(BudgetReservation.reserved_at)
                    .limit(limit)
                )
            ).all()
        counts = {"confirmed": 0, "released": 0, "unknown": 0}
        for reservation_id, decision_id in rows:
            try:
                decision = await self.eligibility.approved_decision(decision_id)
                recorded = str(decision.get("budget_reservation_id")) == str(reservation_id)
            except ProblemError as exc:
                if exc.error is not DECISION_NOT_APPROVED:
                    raise
                recorded = False
            except PeerUnavailable:
                counts["unknown"] += 1
                continue
            async with self.sessionmaker() as session, session.begin():
                if recorded:
                    await budget_ceilings.confirm(session, reservation_id, now)
                    counts["confirmed"] += 1
                else:
                    with contextlib.suppress(ProblemError):  # consumed meanwhile: nothing to release
                        await budget_ceilings.release(
                            session, self.budgets, reservation_id, "reconciler", "no approval recorded it", now
                        )
                        counts["released"] += 1
                        logger.warning("released budget reservation %s: no approval recorded it", reservation_id)
        return counts

    async def round(self) -> None:
        await self.run_once()

    def failed(self, exc: Exception) -> None:
        """A round that fails is retried next interval, never ends the loop."""
        logger.error("budget reservation reconciler round failed", exc_info=exc)


async def start_reconciler(app: FastAPI) -> None:
    settings = app.state.settings
    reconciler = Reconciler(
        app.state.database.sessionmaker,
        app.state.eligibility,
        app.state.budgets,
        app.state.clock,
        grace_seconds=settings.reservation_grace_seconds,
        interval_seconds=settings.reservation_reconcile_seconds,
    )
    await start_jobs(app, reservation_reconciler=reconciler)


async def stop_reconciler(app: FastAPI) -> None:
    await stop_jobs(app, "reservation_reconciler")
