"""Clause A2: an approval reserves the programme budget before it commits.

The eligibility service calls `PUT /v1/budget-reservations/{id}` with an id of its own for the
approval attempt, before the approval's transaction writes anything; the amount is taken from the
budget row of the measure and year (`service.reserve`). The approval records the id; the approved
decision carries it to issuance, which consumes the reservation. A failed approval releases its
own attempt (`DELETE`); an attempt nobody released is found by the reconciler (`reconciler.py`).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from shared.auth import ADMIN, APPROVER, AUDITOR, BUDGET_RESERVE, OFFICER, Principal, require
from shared.context import request_id_var
from shared.db import SessionDep
from shared.instants import local_today

from ..deps import BudgetsDep, Now
from ..models import BudgetReservation
from . import repository, service
from .schemas import ReservationCreate, ReservationRead

router = APIRouter(tags=["budget"])
#: the eligibility service's own client reserves and releases; administrators may release by hand
Reserver = Annotated[Principal, require(BUDGET_RESERVE)]
Releaser = Annotated[Principal, require(BUDGET_RESERVE, ADMIN)]
Reader = Annotated[Principal, require(BUDGET_RESERVE, OFFICER, APPROVER, AUDITOR, ADMIN)]
ReservationId = Annotated[uuid.UUID, Path(description="The approval attempt's id, chosen by the eligibility service")]


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
    row = await service.reserve(
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
    return _read(await service.release(session, budgets, reservation_id, principal.actor, reason, moment))


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
    return [_read(row) for row in await repository.reservations(session, state, decision_id, limit)]
