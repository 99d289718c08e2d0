"""The aggregates API's work: the projected figures read and shaped, the reconciliation, the forwarding.

Every figure is read from the projections (`projector.py`) through `repository.py`'s SQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from shared.db import Connection
from shared.instants import local_today
from shared.peers import PeerClient, PeerRejected, peer_client
from shared.periodic import close_connection, connect

from ..policy.budgets import Budgets, load_budget_file
from ..pool import LedgerPool
from ..settings import VouchersSettings
from .projector import Reconciler, Reconciliation
from .repository import (
    BUDGET_ROWS_SQL,
    BUDGET_USED_SQL,
    CEILING_SQL,
    HEADROOM_SQL,
    MONTHLY_SQL,
    NEWEST_ENTRY_SQL,
    RESERVED_SQL,
    REVENUE_CLASSES_SQL,
    SHARES_SQL,
    SUMMARY_SQL,
    TOP_ENTERPRISES_SQL,
    VENDORS_SQL,
    AsOf,
    as_of,
)
from .schemas import (
    AsOfRead,
    Bucket,
    BudgetLine,
    BudgetRead,
    ComputeShareRead,
    DifferenceRead,
    EnterpriseRead,
    HeadroomRead,
    MeasureTotals,
    MonthlyRead,
    MonthRead,
    ReconciliationRead,
    RevenueClassesRead,
    RevenueClassRead,
    ShareRead,
    SummaryRead,
    TopEnterprisesRead,
    Totals,
    VendorRead,
    VendorsRead,
)

VOUCHER_MEASURES = ("M1", "M3")
SHARES = ("district", "domestic", "other")


# --- helpers ----------------------------------------------------------------------------------------


def as_of_read(found: AsOf) -> AsOfRead:
    return AsOfRead(entry_id=found.entry_id, projected_at=found.projected_at, lag_entries=found.lag_entries)


def year_of(year: int | None, moment: datetime) -> int:
    return year if year is not None else local_today(moment).year


def _measure_order(measure: str) -> tuple[int, str]:
    digits = measure[1:]
    return (int(digits), measure) if digits.isdigit() else (999, measure)


def _ratio(used: int, budget: int | None) -> str | None:
    if not budget:
        return None
    return str((Decimal(used) / Decimal(budget)).quantize(Decimal("0.0001"), rounding=ROUND_DOWN))


def _width(top: int, buckets: int) -> int:
    return max(1, -(-top // buckets))


# --- the projected aggregates --------------------------------------------------------------------------


async def summary(connection: Connection, year: int) -> SummaryRead:
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
    return SummaryRead(year=year, totals=totals, by_measure=lines, as_of=as_of_read(freshness))


async def monthly(connection: Connection, year: int, measure: str | None) -> MonthlyRead:
    freshness = await as_of(connection)  # first: the figures then cover at least this much
    rows = await connection.fetch(MONTHLY_SQL, year, measure)
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
        as_of=as_of_read(freshness),
    )


async def revenue_classes(connection: Connection, year: int) -> RevenueClassesRead:
    freshness = await as_of(connection)  # first: the figures then cover at least this much
    rows = await connection.fetch(REVENUE_CLASSES_SQL, year)
    return RevenueClassesRead(
        year=year, classes=[RevenueClassRead.model_validate(dict(row)) for row in rows], as_of=as_of_read(freshness)
    )


async def compute_share(connection: Connection, year: int) -> ComputeShareRead:
    freshness = await as_of(connection)  # first: the figures then cover at least this much
    rows = await connection.fetch(SHARES_SQL, year)
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
        as_of=as_of_read(freshness),
    )


async def vendors(connection: Connection, year: int, measure: str | None, limit: int) -> VendorsRead:
    freshness = await as_of(connection)  # first: the figures then cover at least this much
    rows = await connection.fetch(VENDORS_SQL, year, measure, limit)
    return VendorsRead(
        year=year,
        measure=measure,
        vendors=[VendorRead.model_validate(dict(row)) for row in rows],
        as_of=as_of_read(freshness),
    )


async def budget(connection: Connection, budgets: Budgets, year: int, moment: datetime) -> BudgetRead:
    freshness = await as_of(connection)  # first: the figures then cover at least this much
    rows = await connection.fetch(BUDGET_USED_SQL, year)
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
    return BudgetRead(year=year, budget_file_version=budgets.version, measures=lines, as_of=as_of_read(freshness))


async def ceiling_headroom(connection: Connection, year: int, buckets: int) -> HeadroomRead:
    newest = await connection.fetchval(NEWEST_ENTRY_SQL)
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


async def top_enterprises(connection: Connection, year: int, limit: int) -> TopEnterprisesRead:
    freshness = await as_of(connection)  # first: the figures then cover at least this much
    rows = await connection.fetch(TOP_ENTERPRISES_SQL, year, limit)
    return TopEnterprisesRead(
        year=year, enterprises=[EnterpriseRead.model_validate(dict(row)) for row in rows], as_of=as_of_read(freshness)
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
async def _own_connection(request: Request, timeout_ms: int) -> AsyncIterator[asyncpg.Connection]:
    ledger_pool: LedgerPool = request.app.state.ledger_pool
    connection = await connect(ledger_pool.dsn, ledger_pool.role, "vouchers-reconciliation", timeout_ms)
    try:
        yield connection
    finally:
        await close_connection(connection)


async def reconciliation(request: Request, fresh: bool) -> ReconciliationRead:
    reconciler: Reconciler = request.app.state.reconciler
    result = reconciler.last
    if fresh or result is None:
        async with _own_connection(request, reconciler.statement_timeout_ms) as connection:
            result = await reconciler.check(connection)
    return _reconciliation_read(result)


# --- forwarded to the eligibility service --------------------------------------------------------------


async def forward(request: Request, path: str) -> Response:
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


# --- wiring -------------------------------------------------------------------------------------------


def configure(app: FastAPI, settings: VouchersSettings) -> None:
    """Load the budgets (a bad file stops the service here) and the forwarding client."""
    app.state.budgets = load_budget_file(settings.budget_file)
    app.state.eligibility_forwarder = peer_client("eligibility", settings.eligibility_url, settings)


async def close(app: FastAPI) -> None:
    forwarder: PeerClient | None = getattr(app.state, "eligibility_forwarder", None)
    if forwarder is not None:
        await forwarder.aclose()
