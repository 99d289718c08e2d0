"""The aggregates API's routes (issue #6); the work is in `service.py`, the SQL in `repository.py`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from shared.auth import ADMIN, AUDITOR, DASHBOARD, DASHBOARD_DETAIL, Principal, require
from shared.db import SessionDep, raw_connection

from ..deps import Now
from ..policy.budgets import Budgets
from . import service
from .deps import DETAIL_READERS, MeasureFilter, Reader, Year
from .errors import detail_forbidden
from .schemas import (
    BudgetRead,
    ComputeShareRead,
    HeadroomRead,
    MonthlyRead,
    ReconciliationRead,
    RevenueClassesRead,
    SummaryRead,
    TopEnterprisesRead,
    VendorsRead,
)

router = APIRouter(tags=["aggregates"])


@router.get("/v1/aggregates/summary", response_model=SummaryRead, summary="Totals of the year, by measure")
async def summary(_: Reader, session: SessionDep, moment: Now, year: Year = None) -> SummaryRead:
    year = service.year_of(year, moment)
    return await service.summary(await raw_connection(session), year)


@router.get("/v1/aggregates/monthly", response_model=MonthlyRead, summary="The year month by month")
async def monthly(
    _: Reader, session: SessionDep, moment: Now, year: Year = None, measure: MeasureFilter = None
) -> MonthlyRead:
    year = service.year_of(year, moment)
    return await service.monthly(await raw_connection(session), year, measure)


@router.get(
    "/v1/aggregates/revenue-classes",
    response_model=RevenueClassesRead,
    summary="Compute vouchers (M1) by the holder's revenue class",
)
async def revenue_classes(_: Reader, session: SessionDep, moment: Now, year: Year = None) -> RevenueClassesRead:
    year = service.year_of(year, moment)
    return await service.revenue_classes(await raw_connection(session), year)


@router.get(
    "/v1/aggregates/compute-share",
    response_model=ComputeShareRead,
    summary="Compute vouchers (M1) by district / domestic compute, apportioned by each voucher's compute base",
)
async def compute_share(_: Reader, session: SessionDep, moment: Now, year: Year = None) -> ComputeShareRead:
    year = service.year_of(year, moment)
    return await service.compute_share(await raw_connection(session), year)


@router.get("/v1/aggregates/vendors", response_model=VendorsRead, summary="Vendors ranked by the amount redeemed")
async def vendors(
    _: Reader,
    session: SessionDep,
    moment: Now,
    year: Year = None,
    measure: MeasureFilter = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> VendorsRead:
    year = service.year_of(year, moment)
    return await service.vendors(await raw_connection(session), year, measure, limit)


@router.get(
    "/v1/aggregates/budget",
    response_model=BudgetRead,
    summary="Budget committed against the budget, per measure (clause A2; figures from policy/budgets.yaml)",
)
async def budget(request: Request, _: Reader, session: SessionDep, moment: Now, year: Year = None) -> BudgetRead:
    """The budget is a ceiling (A2): `committed_fen` is read live from its row, `used_fen` from the projection.

    The two agree once the projector has caught up (`as_of`); `remaining_fen` is what may still be
    committed today, `over_budget` a year committed beyond the figure standing today.
    """
    year = service.year_of(year, moment)
    budgets: Budgets = request.app.state.budgets
    return await service.budget(await raw_connection(session), budgets, year, moment)


@router.get(
    "/v1/aggregates/ceiling-headroom",
    response_model=HeadroomRead,
    summary="M3's annual claim ceiling: how many enterprises have how much headroom left (live, from the ceilings)",
)
async def ceiling_headroom(
    _: Reader,
    session: SessionDep,
    moment: Now,
    year: Year = None,
    buckets: Annotated[int, Query(ge=1, le=50)] = 10,
) -> HeadroomRead:
    """Read from the ceiling rows themselves (each changed in its claim's own transaction): live, not projected.

    An enterprise counts once it has claimed in the year (the ceiling row is created by its first
    claim); its headroom is the ceiling less what it claimed (voiding gives none back, M3-6).
    Buckets divide 0 … the ceiling into equal parts (the highest ceiling, if it changed in the year).
    """
    year = service.year_of(year, moment)
    return await service.ceiling_headroom(await raw_connection(session), year, buckets)


@router.get(
    "/v1/aggregates/top-enterprises",
    response_model=TopEnterprisesRead,
    summary="Enterprises with the largest amounts awarded (vouchers issued + grants); per-enterprise detail",
)
async def top_enterprises(
    principal: Annotated[Principal, require(*DETAIL_READERS, DASHBOARD)],
    session: SessionDep,
    moment: Now,
    year: Year = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> TopEnterprisesRead:
    if not principal.has(*DETAIL_READERS) and not principal.has(DASHBOARD_DETAIL):
        raise detail_forbidden()
    year = service.year_of(year, moment)
    return await service.top_enterprises(await raw_connection(session), year, limit)


@router.get(
    "/v1/aggregates/reconciliation",
    response_model=ReconciliationRead,
    summary="The projections checked against the ledger: the last check (or a new one with fresh=true)",
    dependencies=[require(AUDITOR, ADMIN, DASHBOARD)],
)
async def reconciliation(
    request: Request,
    fresh: Annotated[bool, Query(description="Check now (a scan of the ledger) instead of showing the last check")] = (
        False
    ),
) -> ReconciliationRead:
    return await service.reconciliation(request, fresh)


FORWARDED: dict[int | str, dict[str, Any]] = {200: {"description": "The eligibility service's answer (see its API)"}}


@router.get(
    "/v1/aggregates/applications",
    summary="Applications by measure and outcome (the eligibility service's, forwarded)",
    responses=FORWARDED,
)
async def applications(request: Request, _: Reader, year: Year = None) -> Response:
    return await service.forward(request, "/v1/aggregates/applications")


@router.get(
    "/v1/aggregates/review-queue",
    summary="The review queue's size and age (the eligibility service's, forwarded)",
    responses=FORWARDED,
)
async def review_queue(request: Request, _: Reader) -> Response:
    return await service.forward(request, "/v1/aggregates/review-queue")
