"""Clause A2: the programme budget of each measure and year is a ceiling, held by the database.

One `allowances` row per measure and budget year (holder `programme`, kind `budget.<measure>`,
clause A2, parameter `budgets.yaml:<measure>`), the technique of the M3 and M1 ceilings: issuing
a voucher or a grant takes its amount with one conditional UPDATE in the entry's own
transaction, with `CHECK (used_fen <= limit_fen)` behind it; voiding, expiry and a grant's
reversal give the amount back to the row of the budget account's year (`M3:2026` → M3, 2026).
`used_fen` is what the budget account has committed: issued + granted − returned, the figure
the ledger shows (`GET /v1/ledger/invariants` checks that they agree).

**The limit is the figure standing on the day of the commitment** (budgets.yaml's latest dated
value for that year). A commitment succeeds only if `used + amount <= figure`, and the same
UPDATE sets `limit_fen` to the figure: a raised figure gives room at once, a lowered one is the
limit from the next commitment on. A figure lowered below what is already committed invalidates
nothing (no row is rewritten below its `used_fen`): the row keeps its earlier limit, every new
commitment is refused with `budget_exhausted` and 0 remaining until returns bring the
commitments under the figure, and `GET /v1/aggregates/budget` reports the year `over_budget`.

**Rows are created lazily**, by the first commitment or return on the budget account (the
migration cannot read budgets.yaml), race-safe: `INSERT … ON CONFLICT DO NOTHING` with
`used_fen` from `vouchers.budget_committed(ref)` (migration 0009: the account's committed
entries, other transactions' only). Every later commitment or return goes through the row, so
the row and the ledger move together. History that already exceeds the budget is kept: the row
is created with limit = max(figure, used).

**Approval reserves** (vouchers migration 0011): the eligibility service reserves a decision's
amount before its approval commits, under an id of its own per attempt that the approval records.
The reservation takes from the same row, so the row counts committed + reserved and the bureau
cannot approve past the budget. Issuing the voucher or the grant consumes the reservation instead of
taking again, from the reservation's budget year; a failed approval releases it; a reservation no
approval recorded is released by the reconciler (`reconciler.py`).
"""

from __future__ import annotations

import logging
import uuid
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import ProblemError
from shared.money import format_yuan

from ..models import BudgetReservation
from ..policy.budgets import Budget, Budgets
from . import repository
from .errors import (
    BUDGET_ALREADY_RESERVED,
    BUDGET_EXHAUSTED,
    NO_BUDGET,
    RESERVATION_CONFLICT,
    RESERVATION_CONSUMED,
    RESERVATION_NOT_FOUND,
)
from .repository import account_ref, budget_ref

__all__ = ["account_ref", "budget_ref", "consume", "give_back", "parse_ref", "release", "reserve", "standing", "take"]

logger = logging.getLogger("services.vouchers.budgets")


def parse_ref(ref: str) -> tuple[str, int] | None:
    """`M3:2026` → ("M3", 2026); None for anything else."""
    measure, _, year = ref.partition(":")
    return (measure, int(year)) if measure and year.isdigit() else None


def standing(budgets: Budgets, measure: str, year: int, today: date) -> Budget:
    """The budget figure for the measure and year on `today`; none standing → `no_budget` (A2)."""
    figure = budgets.budget(measure, year, today)
    if figure is None:
        raise ProblemError(
            NO_BUDGET,
            measure=measure,
            year=year,
            budget_file_version=budgets.version,
            _label_zh=budgets.label(measure, "zh"),
            _label_en=budgets.label(measure, "en"),
        )
    return figure


async def take(session: AsyncSession, budgets: Budgets, figure: Budget, amount: int) -> None:
    """Commit `amount` of the budget `figure` stands for, or refuse with what remains (nothing is written)."""
    measure, year = figure.measure, figure.year
    await repository.ensure(session, measure, year, figure.budget_fen)
    if await repository.take(session, measure, year, amount, figure.budget_fen):
        return
    used = await repository.committed(session, measure, year) or 0
    remaining = max(0, figure.budget_fen - used)
    raise ProblemError(
        BUDGET_EXHAUSTED,
        measure=measure,
        year=year,
        budget_fen=figure.budget_fen,
        committed_fen=used,
        remaining_fen=remaining,
        requested_fen=amount,
        budget_yuan=format_yuan(figure.budget_fen),
        remaining_yuan=format_yuan(remaining),
        requested_yuan=format_yuan(amount),
        _label_zh=budgets.label(measure, "zh"),
        _label_en=budgets.label(measure, "en"),
    )


async def give_back(session: AsyncSession, budgets: Budgets, ref: str, amount: int, today: date) -> None:
    """Return `amount` to the budget row of the account `ref` (voided, expired, reversed): never refused."""
    parsed = parse_ref(ref)
    if parsed is None or amount <= 0:
        return
    measure, year = parsed
    figure = budgets.budget(measure, year, today)
    await repository.ensure(session, measure, year, figure.budget_fen if figure else 0)
    if not await repository.give_back(session, measure, year, amount):
        # the row counted less than comes back: commitments it never saw (a process older than
        # migration 0009 issuing meanwhile). A return is never refused; the invariants name the row.
        logger.error("budget row %s counted less than the %s fen returned: set to 0", ref, amount)
        await repository.empty(session, measure, year)


# --- approval reserves (A2) -----------------------------------------------------------------------


def _reservation_fields(row: BudgetReservation) -> dict[str, object]:
    return {"decision_id": row.decision_id, "measure": row.measure, "amount_fen": row.amount_fen}


async def reserve(
    session: AsyncSession,
    budgets: Budgets,
    reservation_id: uuid.UUID,
    decision_id: uuid.UUID,
    measure: str,
    amount: int,
    today: date,
    actor: str,
    request_id: str | None,
) -> BudgetReservation:
    """Take `amount` of this year's budget for an approval attempt; idempotent on the attempt's id.

    A repeated call with the same content answers the reservation as it stands; different content
    is `reservation_conflict`. Another live reservation of the decision (a concurrent approval, or
    one already issued) is `budget_already_reserved`. Over the budget: `budget_exhausted`, nothing
    written.
    """
    existing = await repository.reservation(session, reservation_id)
    if existing is not None:
        if _reservation_fields(existing) != {"decision_id": decision_id, "measure": measure, "amount_fen": amount}:
            raise ProblemError(RESERVATION_CONFLICT, id=str(reservation_id))
        return existing
    live = await repository.live_reservation(session, decision_id)
    if live is not None:
        raise _already_reserved(live)
    figure = standing(budgets, measure, today.year, today)
    if not await repository.add_reservation(
        session, reservation_id, decision_id, measure, today.year, amount, actor, request_id
    ):  # a concurrent call won: the same attempt retried, or another attempt on the decision
        again = await repository.reservation(session, reservation_id, fresh=True)
        if again is not None:
            return await reserve(session, budgets, reservation_id, decision_id, measure, amount, today, actor, None)
        other = await repository.live_reservation(session, decision_id)
        assert other is not None  # the insert met it
        raise _already_reserved(other)
    await take(session, budgets, figure, amount)
    row = await repository.reservation(session, reservation_id, fresh=True)
    assert row is not None
    return row


def _already_reserved(live: BudgetReservation) -> ProblemError:
    return ProblemError(
        BUDGET_ALREADY_RESERVED,
        headers={"Retry-After": "30"},
        decision_id=str(live.decision_id),
        reservation_state=live.state,
        reserved_at=live.reserved_at.isoformat(),
    )


async def release(
    session: AsyncSession, budgets: Budgets, reservation_id: uuid.UUID, actor: str, reason: str, now: datetime
) -> BudgetReservation:
    """Give a reservation's amount back to its year's budget (a failed or abandoned approval); idempotent."""
    row = await repository.reservation(session, reservation_id)
    if row is None:
        raise ProblemError(RESERVATION_NOT_FOUND, id=str(reservation_id))
    if row.state == "reserved" and await repository.settle(session, reservation_id, "released", actor, reason, now):
        await give_back(session, budgets, account_ref(row.measure, row.year), row.amount_fen, now.date())
    await session.refresh(row)
    if row.state == "consumed":
        raise ProblemError(RESERVATION_CONSUMED, id=str(reservation_id))
    return row


async def consume(
    session: AsyncSession,
    budgets: Budgets,
    reservation_id: uuid.UUID | None,
    decision_id: uuid.UUID,
    measure: str,
    amount: int,
    actor: str,
    now: datetime,
) -> int | None:
    """Issuance or grant of an approved decision: use the budget its approval reserved.

    Returns the reservation's budget year (the entry leaves that year's budget account), or None
    when there is nothing to consume (an approval from before reservations, or one whose
    reservation was released): the caller then takes from today's budget as before.
    """
    if reservation_id is None:
        return None
    row = await repository.reservation(session, reservation_id, lock=True)
    if row is None or row.state != "reserved":
        return None
    if _reservation_fields(row) != {"decision_id": decision_id, "measure": measure, "amount_fen": amount}:
        # not what was approved: give it back and let the caller take what is being paid
        await release(session, budgets, reservation_id, actor, "issued amount differs from the reservation", now)
        return None
    await repository.settle(session, reservation_id, "consumed", actor, "issued", now)
    return row.year
