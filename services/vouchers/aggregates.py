"""The aggregates API (issue #6): where the programme's money goes, at a glance.

Every answer is read from the projections (`projections.py`), never by scanning the ledger,
and says how fresh it is: `as_of` = the last entry projected, when, and how many entries lie
beyond it. Money is integer fen; `year` is the calendar year, in Shenzhen time, of the event
(an entry's time), as the ledger's annual ceilings count it, except in `budget`, where it is
the budget's year (the budget account the money left or returned to).

Flows (issued, redeemed, settled, expired, voided, granted) are what happened in the year;
`held_fen` and `remaining_fen` are stocks at the end of the year (or now, for the current
year): what holds still reserve, and what vouchers still hold, over this year and the years
before it (remaining = issued − redeemed − expired − voided − held). `granted_fen` is net of
reversed grants. Nothing here names an enterprise except `top-enterprises`, which a dashboard
client may read only with the `dashboard:detail` grant.

Two endpoints are the eligibility service's, forwarded with the caller's own token so a
dashboard reads one origin: `applications` and `review-queue`. Eligibility down → 503.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from shared.auth import (
    ADMIN,
    APPROVER,
    AUDITOR,
    DASHBOARD,
    DASHBOARD_DETAIL,
    FORBIDDEN,
    OFFICER,
    Principal,
    require,
)
from shared.db import SessionDep
from shared.errors import ProblemError
from shared.peers import PeerClient, PeerRejected, make_peer_client
from shared.periodic import close_connection, connect

from .endpoints import Now
from .hotpath import HotPath, local_today
from .policy.budgets import Budgets, load_budget_file
from .projections import AsOf, Reconciler, Reconciliation, as_of
from .settings import VouchersSettings

router = APIRouter(tags=["aggregates"])

#: who reads the programme's aggregates (nothing per enterprise)
READERS = (DASHBOARD, ADMIN, AUDITOR, OFFICER, APPROVER)
#: who reads per-enterprise figures outright; a dashboard client needs `dashboard:detail` as well
DETAIL_READERS = (OFFICER, APPROVER, ADMIN, AUDITOR)
Reader = Annotated[Principal, require(*READERS)]
Year = Annotated[int | None, Query(ge=2000, le=2100, description="Calendar year (Shenzhen time); default: this year")]
MeasureFilter = Annotated[str | None, Query(pattern=r"^M(1[0-5]|[1-9])$", description="One measure, e.g. M1")]
VOUCHER_MEASURES = ("M1", "M3")
SHARES = ("district", "domestic", "other")


# --- answers ----------------------------------------------------------------------------------------


class AsOfRead(BaseModel):
    entry_id: int = Field(description="The last ledger entry projected (in commit-safe (txid, id) order)")
    projected_at: datetime = Field(description="When the projector last advanced")
    lag_entries: int = Field(description="Entries written after it, not yet projected (estimated above 10,000)")


class Totals(BaseModel):
    issued_fen: int
    redeemed_fen: int
    held_fen: int = Field(description="Still reserved by holds at the end of the year (a stock)")
    settled_fen: int
    expired_fen: int
    voided_fen: int
    granted_fen: int = Field(description="Grants disbursed, net of reversed grants")
    remaining_fen: int = Field(description="Still in vouchers at the end of the year (a stock)")


class MeasureTotals(Totals):
    measure: str


class SummaryRead(BaseModel):
    year: int
    totals: Totals
    by_measure: list[MeasureTotals]
    as_of: AsOfRead


class MonthRead(BaseModel):
    month: int
    issued_fen: int
    redeemed_fen: int
    settled_fen: int
    expired_fen: int
    granted_fen: int


class MonthlyRead(BaseModel):
    year: int
    measure: str | None
    months: list[MonthRead]
    as_of: AsOfRead


class RevenueClassRead(BaseModel):
    revenue_class: str = Field(description="M1 revenue class (C1…C5), `unknown` when the voucher did not record it")
    issued_fen: int
    redeemed_fen: int
    vouchers: int


class RevenueClassesRead(BaseModel):
    year: int
    classes: list[RevenueClassRead]
    as_of: AsOfRead


class ShareRead(BaseModel):
    share: str = Field(description="district (incl. district and domestic), domestic (only), other; unknown if any")
    redeemed_fen: int
    issued_fen: int


class ComputeShareRead(BaseModel):
    year: int
    shares: list[ShareRead]
    as_of: AsOfRead


class VendorRead(BaseModel):
    vendor: str
    redeemed_fen: int
    settled_fen: int
    redemptions: int


class VendorsRead(BaseModel):
    year: int
    measure: str | None
    vendors: list[VendorRead]
    as_of: AsOfRead


class BudgetLine(BaseModel):
    measure: str
    budget_fen: int | None = Field(description="None: no budget stands for this measure and year")
    used_fen: int = Field(
        description="issued + granted − returned (voided, expired, reversed) on the budget account, as projected"
    )
    committed_fen: int = Field(
        description="What the budget's ceiling row (A2) has committed, live: issued + granted − returned, plus "
        "reserved_fen. Equals used_fen + reserved_fen once the projection has caught up; before the year's first "
        "commitment since migration 0009 (no row yet) it is used_fen"
    )
    reserved_fen: int = Field(
        default=0,
        description="Reserved by approvals whose voucher or grant is not issued yet (A2; part of committed_fen)",
    )
    remaining_fen: int | None = Field(description="budget − committed, never below 0 (None: no budget)")
    over_budget: bool = Field(
        description="More committed than the budget standing today (a figure lowered below what was already "
        "committed, or history from before the budget was a ceiling); new commitments are refused (A2)"
    )
    used_ratio: str | None = Field(description="used ÷ budget, rounded down to 4 places")
    budget_source: str | None
    budget_status: str | None = Field(description="given, provisional or interpretation")


class BudgetRead(BaseModel):
    year: int
    budget_file_version: str
    measures: list[BudgetLine]
    as_of: AsOfRead


class Bucket(BaseModel):
    from_fen: int
    to_fen: int = Field(description="Exclusive, except for the last bucket")
    enterprises: int


class HeadroomRead(BaseModel):
    year: int
    limit_fen: int | None = Field(description="The ceiling (the highest, if it changed during the year)")
    buckets: list[Bucket]
    enterprises: int
    at_ceiling: int
    as_of: AsOfRead


class EnterpriseRead(BaseModel):
    credit_code: str
    issued_fen: int
    redeemed_fen: int
    granted_fen: int


class TopEnterprisesRead(BaseModel):
    year: int
    enterprises: list[EnterpriseRead]
    as_of: AsOfRead


class DifferenceRead(BaseModel):
    projection: str = Field(description="table.column (counts for entries, redemptions, vouchers)")
    key: str
    projected_fen: int | None
    ledger_fen: int | None


class ReconciliationRead(BaseModel):
    ok: bool
    checked_through_entry_id: int
    differences: list[DifferenceRead] = Field(description="At most 1,000")
    differences_total: int
    checked_at: datetime
    seconds: float


# --- helpers ----------------------------------------------------------------------------------------


async def _raw(session: Any) -> Any:
    raw = await (await session.connection()).get_raw_connection()
    return raw.driver_connection


def _as_of(found: AsOf) -> AsOfRead:
    return AsOfRead(entry_id=found.entry_id, projected_at=found.projected_at, lag_entries=found.lag_entries)


def _year(year: int | None, moment: datetime) -> int:
    return year if year is not None else local_today(moment).year


def _measure_order(measure: str) -> tuple[int, str]:
    digits = measure[1:]
    return (int(digits), measure) if digits.isdigit() else (999, measure)


def _ratio(used: int, budget: int | None) -> str | None:
    if not budget:
        return None
    return str((Decimal(used) / Decimal(budget)).quantize(Decimal("0.0001"), rounding=ROUND_DOWN))


# --- the projected aggregates --------------------------------------------------------------------------

SUMMARY_SQL = """
    SELECT measure, year = $1 AS this_year, flow, sum(amount_fen)::bigint AS fen
    FROM vouchers.agg_flows WHERE year <= $1 GROUP BY measure, year = $1, flow
"""


@router.get("/v1/aggregates/summary", response_model=SummaryRead, summary="Totals of the year, by measure")
async def summary(_: Reader, session: SessionDep, moment: Now, year: Year = None) -> SummaryRead:
    year = _year(year, moment)
    connection = await _raw(session)
    freshness = await as_of(connection)  # first: the figures then cover at least this much
    rows = await connection.fetch(SUMMARY_SQL, year)
    flows: dict[str, dict[str, int]] = {}
    stock: dict[str, dict[str, int]] = {}
    for row in rows:
        if row["this_year"]:
            flows.setdefault(row["measure"], {})[row["flow"]] = int(row["fen"])
        bucket = stock.setdefault(row["measure"], {})
        bucket[row["flow"]] = bucket.get(row["flow"], 0) + int(row["fen"])
    lines = []
    for measure in sorted(set(flows) | {m for m, s in stock.items() if any(s.values())}, key=_measure_order):
        now, ever = flows.get(measure, {}), stock.get(measure, {})
        held = ever.get("held", 0)
        remaining = ever.get("issued", 0) - sum(ever.get(f, 0) for f in ("redeemed", "expired", "voided")) - held
        if not now and not held and not remaining:
            continue
        lines.append(
            MeasureTotals(
                measure=measure,
                issued_fen=now.get("issued", 0),
                redeemed_fen=now.get("redeemed", 0),
                held_fen=held,
                settled_fen=now.get("settled", 0),
                expired_fen=now.get("expired", 0),
                voided_fen=now.get("voided", 0),
                granted_fen=now.get("granted", 0) - now.get("reversed", 0),
                remaining_fen=remaining,
            )
        )
    totals = Totals(**{name: sum(getattr(line, name) for line in lines) for name in Totals.model_fields})
    return SummaryRead(year=year, totals=totals, by_measure=lines, as_of=_as_of(freshness))


@router.get("/v1/aggregates/monthly", response_model=MonthlyRead, summary="The year month by month")
async def monthly(
    _: Reader, session: SessionDep, moment: Now, year: Year = None, measure: MeasureFilter = None
) -> MonthlyRead:
    year = _year(year, moment)
    connection = await _raw(session)
    freshness = await as_of(connection)  # first: the figures then cover at least this much
    rows = await connection.fetch(
        "SELECT month, flow, sum(amount_fen)::bigint AS fen FROM vouchers.agg_flows "
        "WHERE year = $1 AND ($2::text IS NULL OR measure = $2) GROUP BY month, flow",
        year,
        measure,
    )
    months: dict[int, dict[str, int]] = {m: {} for m in range(1, 13)}
    for row in rows:
        months[int(row["month"])][row["flow"]] = int(row["fen"])
    return MonthlyRead(
        year=year,
        measure=measure,
        months=[
            MonthRead(
                month=m,
                issued_fen=f.get("issued", 0),
                redeemed_fen=f.get("redeemed", 0),
                settled_fen=f.get("settled", 0),
                expired_fen=f.get("expired", 0),
                granted_fen=f.get("granted", 0) - f.get("reversed", 0),
            )
            for m, f in months.items()
        ],
        as_of=_as_of(freshness),
    )


@router.get(
    "/v1/aggregates/revenue-classes",
    response_model=RevenueClassesRead,
    summary="Compute vouchers (M1) by the holder's revenue class",
)
async def revenue_classes(_: Reader, session: SessionDep, moment: Now, year: Year = None) -> RevenueClassesRead:
    year = _year(year, moment)
    connection = await _raw(session)
    freshness = await as_of(connection)  # first: the figures then cover at least this much
    rows = await connection.fetch(
        "SELECT revenue_class, issued_fen, redeemed_fen, vouchers FROM vouchers.agg_m1_classes WHERE year = $1 "
        "ORDER BY revenue_class = 'unknown', revenue_class",
        year,
    )
    return RevenueClassesRead(
        year=year, classes=[RevenueClassRead.model_validate(dict(row)) for row in rows], as_of=_as_of(freshness)
    )


@router.get(
    "/v1/aggregates/compute-share",
    response_model=ComputeShareRead,
    summary="Compute vouchers (M1) by district / domestic compute, apportioned by each voucher's compute base",
)
async def compute_share(_: Reader, session: SessionDep, moment: Now, year: Year = None) -> ComputeShareRead:
    year = _year(year, moment)
    connection = await _raw(session)
    freshness = await as_of(connection)  # first: the figures then cover at least this much
    rows = await connection.fetch(
        "SELECT share, issued_fen, redeemed_fen FROM vouchers.agg_m1_shares WHERE year = $1", year
    )
    found = {row["share"]: row for row in rows}
    shares = [*SHARES, *(["unknown"] if "unknown" in found else [])]
    return ComputeShareRead(
        year=year,
        shares=[
            ShareRead(
                share=share,
                redeemed_fen=int(found[share]["redeemed_fen"]) if share in found else 0,
                issued_fen=int(found[share]["issued_fen"]) if share in found else 0,
            )
            for share in shares
        ],
        as_of=_as_of(freshness),
    )


@router.get("/v1/aggregates/vendors", response_model=VendorsRead, summary="Vendors ranked by the amount redeemed")
async def vendors(
    _: Reader,
    session: SessionDep,
    moment: Now,
    year: Year = None,
    measure: MeasureFilter = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> VendorsRead:
    year = _year(year, moment)
    connection = await _raw(session)
    freshness = await as_of(connection)  # first: the figures then cover at least this much
    rows = await connection.fetch(
        "SELECT vendor, sum(redeemed_fen)::bigint AS redeemed_fen, sum(settled_fen)::bigint AS settled_fen, "
        "sum(redemptions)::bigint AS redemptions FROM vouchers.agg_vendors "
        "WHERE year = $1 AND ($2::text IS NULL OR measure = $2) GROUP BY vendor "
        "ORDER BY redeemed_fen DESC, vendor LIMIT $3",
        year,
        measure,
        limit,
    )
    return VendorsRead(
        year=year,
        measure=measure,
        vendors=[VendorRead.model_validate(dict(row)) for row in rows],
        as_of=_as_of(freshness),
    )


#: the budget ceiling rows of the year (A2, services/vouchers/budget_ceilings.py)
BUDGET_ROWS_SQL = (
    "SELECT kind, used_fen FROM vouchers.allowances WHERE holder = 'programme' AND year = $1 AND kind LIKE 'budget.%'"
)

#: what approvals reserved and issuance has not consumed yet (A2, services/vouchers/reservations.py)
RESERVED_SQL = (
    "SELECT measure, sum(amount_fen)::bigint AS reserved_fen FROM vouchers.budget_reservations "
    "WHERE year = $1 AND state = 'reserved' GROUP BY measure"
)


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
    year = _year(year, moment)
    budgets: Budgets = request.app.state.budgets
    connection = await _raw(session)
    freshness = await as_of(connection)  # first: the figures then cover at least this much
    rows = await connection.fetch(
        "SELECT measure, (issued_fen + granted_fen - returned_fen - reversed_fen)::bigint AS used_fen "
        "FROM vouchers.agg_budget WHERE year = $1",
        year,
    )
    used = {row["measure"]: int(row["used_fen"]) for row in rows}
    ceilings = await connection.fetch(BUDGET_ROWS_SQL, year)  # live: each changed with its commitment
    committed = {row["kind"].removeprefix("budget."): int(row["used_fen"]) for row in ceilings}
    reserved = {
        row["measure"]: int(row["reserved_fen"])
        for row in await connection.fetch(RESERVED_SQL, year)  # live, as the rows: reserved, not yet issued
    }
    today = local_today(moment)
    standing = {m: b for m in budgets.measures() if (b := budgets.budget(m, year, today)) is not None}
    lines = []
    for measure in sorted(set(used) | set(committed) | set(standing), key=_measure_order):
        figure = standing.get(measure)
        spent = used.get(measure, 0)
        taken = committed.get(measure, spent)
        amount = figure.budget_fen if figure else None
        lines.append(
            BudgetLine(
                measure=measure,
                budget_fen=amount,
                used_fen=spent,
                committed_fen=taken,
                reserved_fen=reserved.get(measure, 0),
                remaining_fen=None if amount is None else max(0, amount - taken),
                over_budget=taken > (amount or 0),
                used_ratio=_ratio(spent, amount),
                budget_source=figure.source if figure else None,
                budget_status=figure.status if figure else None,
            )
        )
    return BudgetRead(year=year, budget_file_version=budgets.version, measures=lines, as_of=_as_of(freshness))


#: one pass over the year's M3 claim ceilings (a partial index on year finds them); `$4` the bucket width
HEADROOM_SQL = """
    SELECT least((limit_fen - used_fen) / $2::bigint, $3::int - 1) AS bucket, count(*) AS enterprises,
           count(*) FILTER (WHERE used_fen >= limit_fen) AS at_ceiling, max(limit_fen) AS top
    FROM vouchers.allowances WHERE kind = 'M3.claims' AND year = $1
    GROUP BY 1
"""
CEILING_SQL = "SELECT limit_fen FROM vouchers.allowances WHERE kind = 'M3.claims' AND year = $1 LIMIT 1"


def _width(top: int, buckets: int) -> int:
    return max(1, -(-top // buckets))


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
    year = _year(year, moment)
    connection = await _raw(session)
    newest = await connection.fetchval("SELECT coalesce(max(id), 0) FROM vouchers.entries")
    as_of_now = AsOfRead(entry_id=int(newest), projected_at=datetime.now(UTC), lag_entries=0)
    ceiling = await connection.fetchval(CEILING_SQL, year)
    if ceiling is None:
        return HeadroomRead(year=year, limit_fen=None, buckets=[], enterprises=0, at_ceiling=0, as_of=as_of_now)
    top = int(ceiling)
    rows = await connection.fetch(HEADROOM_SQL, year, _width(top, buckets), buckets)
    highest = max(int(row["top"]) for row in rows) if rows else top
    if highest != top:  # the ceiling changed during the year: buckets over the highest
        top = highest
        rows = await connection.fetch(HEADROOM_SQL, year, _width(top, buckets), buckets)
    width = _width(top, buckets)
    counts = {int(row["bucket"]): int(row["enterprises"]) for row in rows}
    edges = [min(i * width, top) for i in range(buckets)] + [top]
    return HeadroomRead(
        year=year,
        limit_fen=top,
        buckets=[Bucket(from_fen=edges[i], to_fen=edges[i + 1], enterprises=counts.get(i, 0)) for i in range(buckets)],
        enterprises=sum(counts.values()),
        at_ceiling=sum(int(row["at_ceiling"]) for row in rows),
        as_of=as_of_now,
    )


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
        raise ProblemError(FORBIDDEN, needed=f"{', '.join(DETAIL_READERS)}, {DASHBOARD} + {DASHBOARD_DETAIL}")
    year = _year(year, moment)
    connection = await _raw(session)
    freshness = await as_of(connection)  # first: the figures then cover at least this much
    rows = await connection.fetch(
        "SELECT holder AS credit_code, issued_fen, redeemed_fen, granted_fen FROM vouchers.agg_holders "
        "WHERE year = $1 AND (awarded_fen <> 0 OR redeemed_fen <> 0) ORDER BY awarded_fen DESC, holder LIMIT $2",
        year,
        limit,
    )
    return TopEnterprisesRead(
        year=year, enterprises=[EnterpriseRead.model_validate(dict(row)) for row in rows], as_of=_as_of(freshness)
    )


# --- reconciliation ------------------------------------------------------------------------------------


def _reconciliation_read(result: Reconciliation) -> ReconciliationRead:
    return ReconciliationRead(
        ok=result.ok,
        checked_through_entry_id=result.checked_through_entry_id,
        differences=[DifferenceRead.model_validate(vars(d)) for d in result.differences],
        differences_total=result.differences_total,
        checked_at=result.checked_at,
        seconds=round(result.seconds, 3),
    )


@contextlib.asynccontextmanager
async def _own_connection(request: Request, timeout_ms: int) -> AsyncIterator[Any]:
    hotpath: HotPath = request.app.state.hotpath
    connection = await connect(hotpath.dsn, hotpath.role, "vouchers-reconciliation", timeout_ms)
    try:
        yield connection
    finally:
        await close_connection(connection)


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
    reconciler: Reconciler = request.app.state.reconciler
    result = reconciler.last
    if fresh or result is None:
        async with _own_connection(request, reconciler.statement_timeout_ms) as connection:
            result = await reconciler.check(connection)
    return _reconciliation_read(result)


# --- forwarded to the eligibility service --------------------------------------------------------------


async def _forward(request: Request, path: str) -> Response:
    """The eligibility service's answer, asked with the caller's own token (its roles apply there too)."""
    forwarder: PeerClient = request.app.state.eligibility_forwarder
    headers = {"Authorization": request.headers.get("authorization", "")}
    if "accept-language" in request.headers:
        headers["Accept-Language"] = request.headers["accept-language"]
    try:
        body = await forwarder.get_json(path, params=dict(request.query_params), headers=headers)
    except PeerRejected as exc:  # its refusal, as it gave it (401, 403, 422 …)
        return JSONResponse(exc.body, status_code=exc.status, media_type="application/problem+json")
    return JSONResponse(body)


FORWARDED: dict[int | str, dict[str, Any]] = {200: {"description": "The eligibility service's answer (see its API)"}}


@router.get(
    "/v1/aggregates/applications",
    summary="Applications by measure and outcome (the eligibility service's, forwarded)",
    responses=FORWARDED,
)
async def applications(request: Request, _: Reader, year: Year = None) -> Response:
    return await _forward(request, "/v1/aggregates/applications")


@router.get(
    "/v1/aggregates/review-queue",
    summary="The review queue's size and age (the eligibility service's, forwarded)",
    responses=FORWARDED,
)
async def review_queue(request: Request, _: Reader) -> Response:
    return await _forward(request, "/v1/aggregates/review-queue")


# --- wiring -------------------------------------------------------------------------------------------


def configure(app: FastAPI, settings: VouchersSettings) -> None:
    """Load the budgets (a bad file stops the service here) and the forwarding client."""
    app.state.budgets = load_budget_file(settings.budget_file)
    app.state.eligibility_forwarder = PeerClient(
        "eligibility", make_peer_client(settings.eligibility_url, timeout_seconds=settings.peer_timeout_seconds)
    )


async def close(app: FastAPI) -> None:
    forwarder: PeerClient | None = getattr(app.state, "eligibility_forwarder", None)
    if forwarder is not None:
        await forwarder.aclose()
