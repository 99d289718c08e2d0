"""All of settlement's SQL: batches, their redemptions, and what the statements read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

from sqlalchemy import BigInteger, Row, Select, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Account, Allowance, Entry, Grant, Redemption, SettlementBatch, Voucher
from .schemas import BatchStatus, RedemptionStatus

#: A result row of any columns.
AnyRow: TypeAlias = Row[*tuple[Any, ...]]

# --- settlement --------------------------------------------------------------------------------


async def lock_vendor(session: AsyncSession, vendor: str) -> None:
    """One batcher per vendor at a time (a transaction-scoped advisory lock)."""
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtext("settle:" + vendor))))


async def unbatched_captured(session: AsyncSession, vendor: str) -> Sequence[AnyRow]:
    """The vendor's captured redemptions in no batch yet, locked in id order; the redemption path
    is never waited on (SKIP LOCKED)."""
    return (
        await session.execute(
            select(Redemption.id, Redemption.amount_fen)
            .where(
                Redemption.vendor == vendor,
                Redemption.status == "captured",
                Redemption.settlement_batch_id.is_(None),
            )
            .order_by(Redemption.id)
            .with_for_update(skip_locked=True)
        )
    ).all()


async def add(session: AsyncSession, row: SettlementBatch | Entry) -> None:
    session.add(row)
    await session.flush()


async def flush(session: AsyncSession) -> None:
    await session.flush()


async def join_batch(session: AsyncSession, batch_id: int, ids: list[int]) -> int:
    """Puts the redemptions `ids` (those in no batch yet) into the batch; how many joined."""
    joined = (
        await session.execute(
            update(Redemption)
            .where(
                Redemption.id == func.any(bindparam("ids", ids, type_=ARRAY(BigInteger))),
                Redemption.settlement_batch_id.is_(None),
            )
            .values(settlement_batch_id=batch_id)
            .returning(Redemption.id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    return len(joined)


async def find_batch(session: AsyncSession, batch_id: int, *, lock: bool = False) -> SettlementBatch | None:
    statement = select(SettlementBatch).where(SettlementBatch.id == batch_id)
    if lock:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def batch_redemptions(session: AsyncSession, batch_id: int, after: int, limit: int) -> Sequence[AnyRow]:
    return (
        await session.execute(
            select(
                Redemption.id,
                Voucher.code.label("voucher_code"),
                Redemption.amount_fen,
                Redemption.invoice_number,
                Redemption.contract_number,
                Redemption.year,
                Redemption.created_at,
                Redemption.updated_at,
            )
            .join(Voucher, Voucher.id == Redemption.voucher_id)
            .where(Redemption.settlement_batch_id == batch_id, Redemption.id > after)
            .order_by(Redemption.id)
            .limit(limit)
        )
    ).all()


async def batches(
    session: AsyncSession,
    after: int,
    limit: int,
    *,
    own_vendor: str | None,
    vendor: str | None,
    status: BatchStatus | None,
    all_vendors: bool,
) -> Sequence[SettlementBatch]:
    statement = select(SettlementBatch).where(SettlementBatch.id > after)
    if not all_vendors:
        statement = statement.where(SettlementBatch.vendor == own_vendor)
    if vendor is not None:
        statement = statement.where(SettlementBatch.vendor == vendor)
    if status is not None:
        statement = statement.where(SettlementBatch.status == status)
    return (await session.execute(statement.order_by(SettlementBatch.id).limit(limit))).scalars().all()


# --- statements ----------------------------------------------------------------------------------

VOUCHER_LINES = text(
    """
    WITH lines AS (
        SELECT e.id AS entry_id, e.kind, e.amount_fen, e.created_at, e.redemption_id, e.actor, e.memo,
               fa.kind AS from_kind, fa.ref AS from_ref, ta.kind AS to_kind, ta.ref AS to_ref,
               r.invoice_number,
               sum(CASE WHEN e.to_account_id = :holding THEN e.amount_fen
                        WHEN e.from_account_id = :holding THEN -e.amount_fen ELSE 0 END) OVER w AS available_fen,
               sum(CASE WHEN e.to_account_id = :hold THEN e.amount_fen
                        WHEN e.from_account_id = :hold THEN -e.amount_fen ELSE 0 END) OVER w AS held_fen,
               sum(CASE WHEN e.kind IN ('redeem', 'capture') THEN e.amount_fen ELSE 0 END) OVER w AS redeemed_fen,
               sum(CASE WHEN e.kind IN ('void', 'expire') THEN e.amount_fen ELSE 0 END) OVER w AS returned_fen
        FROM vouchers.entries e
        JOIN vouchers.accounts fa ON fa.id = e.from_account_id
        JOIN vouchers.accounts ta ON ta.id = e.to_account_id
        LEFT JOIN vouchers.redemptions r ON r.id = e.redemption_id
        WHERE e.from_account_id IN (:holding, :hold) OR e.to_account_id IN (:holding, :hold)
        WINDOW w AS (ORDER BY e.id))
    SELECT * FROM lines WHERE entry_id > :after ORDER BY entry_id LIMIT :limit
    """
)


async def voucher_lines(session: AsyncSession, holding: int, hold: int, after: int, limit: int) -> Sequence[AnyRow]:
    return (
        await session.execute(VOUCHER_LINES, {"holding": holding, "hold": hold, "after": after, "limit": limit})
    ).all()


async def enterprise_vouchers(
    session: AsyncSession, holder: str, year: int, after: int, limit: int
) -> Sequence[Voucher]:
    return (
        (
            await session.execute(
                select(Voucher)
                .where(Voucher.holder == holder, Voucher.year == year, Voucher.id > after)
                .order_by(Voucher.id)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )


async def enterprise_totals(session: AsyncSession, holder: str, year: int) -> dict[str, AnyRow]:
    """The year's vouchers' totals, by kind."""
    return await _by_kind(
        session,
        select(
            Voucher.kind,
            func.count().label("vouchers"),
            func.sum(Voucher.amount_fen).label("claimed_fen"),
            func.sum(Voucher.available_fen).label("available_fen"),
            func.sum(Voucher.held_fen).label("held_fen"),
            func.sum(Voucher.redeemed_fen).label("redeemed_fen"),
            func.sum(Voucher.returned_fen).label("returned_fen"),
        )
        .where(Voucher.holder == holder, Voucher.year == year)
        .group_by(Voucher.kind),
    )


async def redeemed_in_year(session: AsyncSession, holder: str, year: int) -> dict[str, AnyRow]:
    """Redemptions made in the calendar year (captured, held), of vouchers of any year, by kind."""
    return await _by_kind(
        session,
        select(
            Voucher.kind,
            func.sum(Redemption.amount_fen).filter(Redemption.status == "captured").label("captured"),
            func.sum(Redemption.amount_fen).filter(Redemption.status == "held").label("held"),
        )
        .join(Voucher, Voucher.id == Redemption.voucher_id)
        .where(Voucher.holder == holder, Redemption.year == year)
        .group_by(Voucher.kind),
    )


async def _by_kind(session: AsyncSession, statement: Select[*tuple[Any, ...]]) -> dict[str, AnyRow]:
    """A grouped query's rows keyed by their voucher kind (M1, M3)."""
    return {row.kind: row for row in (await session.execute(statement)).all()}


async def allowances(session: AsyncSession, holder: str, year: int) -> Sequence[Allowance]:
    return (
        (
            await session.execute(
                select(Allowance).where(Allowance.holder == holder, Allowance.year == year).order_by(Allowance.kind)
            )
        )
        .scalars()
        .all()
    )


async def grants(session: AsyncSession, holder: str, year: int) -> Sequence[Grant]:
    return (
        (await session.execute(select(Grant).where(Grant.holder == holder, Grant.year == year).order_by(Grant.id)))
        .scalars()
        .all()
    )


async def vendor_redemptions(
    session: AsyncSession, vendor: str, after: int, limit: int, status: RedemptionStatus | None
) -> Sequence[AnyRow]:
    statement = (
        select(
            Redemption.id,
            Voucher.code.label("voucher_code"),
            Voucher.kind.label("voucher_kind"),
            Redemption.amount_fen,
            Redemption.invoice_number,
            Redemption.contract_number,
            Redemption.status,
            Redemption.year,
            Redemption.hold_expires_at,
            Redemption.settlement_batch_id,
            Redemption.created_at,
            Redemption.updated_at,
        )
        .join(Voucher, Voucher.id == Redemption.voucher_id)
        .where(Redemption.vendor == vendor, Redemption.id > after)
    )
    if status is not None:
        statement = statement.where(Redemption.status == status)
    return (await session.execute(statement.order_by(Redemption.id).limit(limit))).all()


async def vendor_redemption_totals(session: AsyncSession, vendor: str) -> Sequence[AnyRow]:
    """(status, n, amount_fen) of the vendor's redemptions."""
    return (
        await session.execute(
            select(Redemption.status, func.count().label("n"), func.sum(Redemption.amount_fen).label("amount_fen"))
            .where(Redemption.vendor == vendor)
            .group_by(Redemption.status)
        )
    ).all()


async def vendor_batch_totals(session: AsyncSession, vendor: str) -> Sequence[AnyRow]:
    """(status, n, amount_fen) of the vendor's batches."""
    return (
        await session.execute(
            select(
                SettlementBatch.status,
                func.count().label("n"),
                func.sum(SettlementBatch.total_fen).label("amount_fen"),
            )
            .where(SettlementBatch.vendor == vendor)
            .group_by(SettlementBatch.status)
        )
    ).all()


async def unbatched_fen(session: AsyncSession, vendor: str) -> Any:
    """The sum of the vendor's captured redemptions in no batch yet (None if there are none)."""
    return await session.scalar(
        select(func.sum(Redemption.amount_fen)).where(
            Redemption.vendor == vendor,
            Redemption.status == "captured",
            Redemption.settlement_batch_id.is_(None),
        )
    )


async def balance(session: AsyncSession, kind: str, ref: str) -> Any:
    """An account's balance from its entries (Σ in − Σ out); 0 for an account not yet opened."""
    account = select(Account.id).where(Account.kind == kind, Account.ref == ref).scalar_subquery()
    incoming = select(func.coalesce(func.sum(Entry.amount_fen), 0)).where(Entry.to_account_id == account)
    outgoing = select(func.coalesce(func.sum(Entry.amount_fen), 0)).where(Entry.from_account_id == account)
    return await session.scalar(select(incoming.scalar_subquery() - outgoing.scalar_subquery()))
