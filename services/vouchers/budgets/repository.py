"""All the programme budget's SQL: its `allowances` rows and the approvals' reservations (A2)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Row, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Account, Allowance, BudgetReservation

HOLDER = "programme"
CLAUSE = "A2"

_ENSURE = text(
    """
    INSERT INTO vouchers.allowances (holder, year, kind, limit_fen, used_fen, clause, parameter)
    SELECT :holder, :year, :kind, greatest(:figure, ledger.used), ledger.used, :clause, :parameter
    FROM (SELECT vouchers.budget_committed(:ref) AS used) ledger
    ON CONFLICT (holder, year, kind) DO NOTHING
    """
)
#: the ceiling: one conditional UPDATE, checked against the figure standing today, which becomes the limit
_TAKE = text(
    """
    UPDATE vouchers.allowances SET used_fen = used_fen + :amount, limit_fen = :figure
    WHERE holder = :holder AND year = :year AND kind = :kind AND used_fen + :amount <= :figure
    RETURNING used_fen
    """
)
_GIVE_BACK = text(
    """
    UPDATE vouchers.allowances SET used_fen = used_fen - :amount
    WHERE holder = :holder AND year = :year AND kind = :kind AND used_fen >= :amount
    RETURNING used_fen
    """
)
_EMPTY = text("UPDATE vouchers.allowances SET used_fen = 0 WHERE holder = :holder AND year = :year AND kind = :kind")


def kind_of(measure: str) -> str:
    return f"budget.{measure}"


def account_ref(measure: str, year: int) -> str:
    """The budget account the money leaves from and returns to (`accounts.ref`)."""
    return f"{measure}:{year}"


def _key(measure: str, year: int) -> dict[str, object]:
    return {"holder": HOLDER, "year": year, "kind": kind_of(measure)}


async def ensure(session: AsyncSession, measure: str, year: int, figure_fen: int) -> None:
    """The budget row of a measure and year, created with what the ledger has committed if it is not there."""
    await session.execute(
        _ENSURE,
        {
            **_key(measure, year),
            "figure": figure_fen,
            "clause": CLAUSE,
            "parameter": f"budgets.yaml:{measure}",
            "ref": account_ref(measure, year),
        },
    )


async def take(session: AsyncSession, measure: str, year: int, amount: int, figure_fen: int) -> bool:
    """Commit `amount` if it fits under `figure_fen` (which becomes the row's limit); False: refused."""
    taken = (await session.execute(_TAKE, {**_key(measure, year), "amount": amount, "figure": figure_fen})).first()
    return taken is not None


async def give_back(session: AsyncSession, measure: str, year: int, amount: int) -> bool:
    """Return `amount` to the row; False if it counted less than that (nothing changed)."""
    return (await session.execute(_GIVE_BACK, {**_key(measure, year), "amount": amount})).first() is not None


async def empty(session: AsyncSession, measure: str, year: int) -> None:
    await session.execute(_EMPTY, _key(measure, year))


async def committed(session: AsyncSession, measure: str, year: int) -> int | None:
    """What the budget row says is committed (None: no row yet)."""
    used = await session.scalar(
        select(Allowance.used_fen).where(
            Allowance.holder == HOLDER, Allowance.year == year, Allowance.kind == kind_of(measure)
        )
    )
    return None if used is None else int(used)


async def budget_ref(session: AsyncSession, account_id: int) -> str | None:
    """The `measure:year` of a budget account (None if the account is not a budget)."""
    ref = await session.scalar(select(Account.ref).where(Account.id == account_id, Account.kind == "budget"))
    return None if ref is None else str(ref)


# --- approvals' reservations -----------------------------------------------------------------------


async def reservation(
    session: AsyncSession, reservation_id: uuid.UUID, *, fresh: bool = False, lock: bool = False
) -> BudgetReservation | None:
    """A reservation (`fresh`: re-read from the database; `lock`: FOR UPDATE)."""
    if lock:
        statement = select(BudgetReservation).where(BudgetReservation.id == reservation_id).with_for_update()
        return (await session.execute(statement)).scalar_one_or_none()
    return await session.get(BudgetReservation, reservation_id, populate_existing=fresh)


async def add_reservation(
    session: AsyncSession,
    reservation_id: uuid.UUID,
    decision_id: uuid.UUID,
    measure: str,
    year: int,
    amount: int,
    actor: str,
    request_id: str | None,
) -> bool:
    """Insert a reservation; False if one with its id, or a live one of its decision, is there."""
    inserted = (
        await session.execute(
            insert(BudgetReservation)
            .values(
                id=reservation_id,
                decision_id=decision_id,
                measure=measure,
                year=year,
                amount_fen=amount,
                state="reserved",
                reserved_by=actor,
                request_id=request_id,
            )
            .on_conflict_do_nothing()
            .returning(BudgetReservation.id)
        )
    ).first()
    return inserted is not None


async def live_reservation(session: AsyncSession, decision_id: uuid.UUID) -> BudgetReservation | None:
    """The decision's reservation that is reserved or consumed (a partial unique index: at most one)."""
    return (
        await session.execute(
            select(BudgetReservation).where(
                BudgetReservation.decision_id == decision_id, BudgetReservation.state != "released"
            )
        )
    ).scalar_one_or_none()


async def settle(
    session: AsyncSession, reservation_id: uuid.UUID, state: str, actor: str, reason: str, now: datetime
) -> bool:
    """Move a reserved row to `state`; False if it was not reserved any more (a concurrent settlement won)."""
    moved = await session.execute(
        update(BudgetReservation)
        .where(BudgetReservation.id == reservation_id, BudgetReservation.state == "reserved")
        .values(state=state, settled_at=now, settled_by=actor, settled_reason=reason)
        .returning(BudgetReservation.id)
    )
    return moved.first() is not None


async def confirm(session: AsyncSession, reservation_id: uuid.UUID, now: datetime) -> None:
    """The reconciler found the approval that recorded this reservation: stop asking about it."""
    await session.execute(
        update(BudgetReservation)
        .where(BudgetReservation.id == reservation_id, BudgetReservation.state == "reserved")
        .values(confirmed_at=now)
    )


async def unconfirmed(session: AsyncSession, older_than: datetime, limit: int) -> Sequence[Row[uuid.UUID, uuid.UUID]]:
    """(id, decision) of reserved, unconfirmed reservations made before `older_than`, oldest first."""
    return (
        await session.execute(
            select(BudgetReservation.id, BudgetReservation.decision_id)
            .where(
                BudgetReservation.state == "reserved",
                BudgetReservation.confirmed_at.is_(None),
                BudgetReservation.reserved_at < older_than,
            )
            .order_by(BudgetReservation.reserved_at)
            .limit(limit)
        )
    ).all()


async def reservations(
    session: AsyncSession, state: str | None, decision_id: uuid.UUID | None, limit: int
) -> Sequence[BudgetReservation]:
    """Reservations, newest first, optionally of one state or decision."""
    query = select(BudgetReservation).order_by(BudgetReservation.reserved_at.desc()).limit(limit)
    if state is not None:
        query = query.where(BudgetReservation.state == state)
    if decision_id is not None:
        query = query.where(BudgetReservation.decision_id == decision_id)
    return (await session.execute(query)).scalars().all()
