"""All issuance's queries: accounts, vouchers, grants and the ceilings' `allowances` rows."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import ARRAY, Row, Text, cast, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import Account, Allowance, Entry, Grant, Voucher


async def account(session: AsyncSession, kind: str, ref: str) -> int:
    """Get or create an account (race-safe)."""
    await session.execute(insert(Account).values(kind=kind, ref=ref).on_conflict_do_nothing())
    found = await session.scalar(select(Account.id).where(Account.kind == kind, Account.ref == ref))
    assert found is not None
    return int(found)


async def lock_decision(session: AsyncSession, decision_id: uuid.UUID) -> None:
    """Claims of one decision take turns, so the loser hears `already_issued`, not another refusal."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"vouchers:decision:{decision_id}"}
    )


async def already_issued(session: AsyncSession, decision_id: uuid.UUID) -> str | None:
    """The voucher's code or the grant a decision was paid by (None: not paid yet)."""
    code = await session.scalar(select(Voucher.code).where(Voucher.decision_id == decision_id))
    if code:
        return str(code)
    grant = await session.scalar(select(Grant.id).where(Grant.decision_id == decision_id))
    return f"grant {grant}" if grant else None


async def voucher(session: AsyncSession, code: str, *, lock: bool = False) -> Voucher | None:
    statement = select(Voucher).where(Voucher.code == code)
    if lock:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def contract_claim(session: AsyncSession, contract_key: str) -> Row[str, uuid.UUID] | None:
    """The voucher (code, decision) that claimed a contract, if any (M3: one claim per contract)."""
    return (
        await session.execute(select(Voucher.code, Voucher.decision_id).where(Voucher.contract_key == contract_key))
    ).first()


async def grant(session: AsyncSession, grant_id: int) -> Grant | None:
    # no row lock (the role may not UPDATE grants): the unique index on reverses_entry_id decides races
    return (await session.execute(select(Grant).where(Grant.id == grant_id))).scalar_one_or_none()


async def reversal_of(session: AsyncSession, entry_id: int) -> int | None:
    """The entry that reverses `entry_id`, if any."""
    found = await session.scalar(select(Entry.id).where(Entry.reverses_entry_id == entry_id))
    return None if found is None else int(found)


async def expire_holds(
    session: AsyncSession, now: datetime, *, exclude: Sequence[str] = (), only: Sequence[str] = ()
) -> None:
    """End the holds past their end (the ledger function releases each with its entry); `only` these holders'
    or all but `exclude`'s (sandbox mode: a test enterprise's holds end by its clock, not by `now`)."""
    await session.execute(
        select(
            func.vouchers.expire_holds(
                now, cast(list(only) or None, ARRAY(Text)), cast(list(exclude) or None, ARRAY(Text))
            )
        )
    )


async def due_vouchers(
    session: AsyncSession, today: date, *, exclude: Sequence[str] = (), only: Sequence[str] = ()
) -> Sequence[Voucher]:
    """Vouchers past their date, not yet expired or voided, locked (skipping those another call holds);
    `only` these holders' or all but `exclude`'s (sandbox mode: test enterprises expire by their clocks)."""
    statement = (
        select(Voucher)
        .where(Voucher.valid_until < today, Voucher.expired_at.is_(None), Voucher.voided_at.is_(None))
        .order_by(Voucher.id)
        .with_for_update(skip_locked=True)
    )
    if only:
        statement = statement.where(Voucher.holder.in_(only))
    if exclude:
        statement = statement.where(Voucher.holder.not_in(exclude))
    return (await session.execute(statement)).scalars().all()


# --- the ceilings' rows (ceilings.py) ---------------------------------------------------------------


async def ensure_allowance(
    session: AsyncSession, holder: str, year: int, kind: str, limit_fen: int, clause: str, parameter: str | None
) -> None:
    await session.execute(
        insert(Allowance)
        .values(
            holder=holder, year=year, kind=kind, limit_fen=limit_fen, used_fen=0, clause=clause, parameter=parameter
        )
        .on_conflict_do_nothing()
    )


async def allowance_exists(session: AsyncSession, holder: str, year: int, kind: str) -> bool:
    found = await session.scalar(
        select(Allowance.id).where(Allowance.holder == holder, Allowance.year == year, Allowance.kind == kind)
    )
    return found is not None


async def take_allowance(session: AsyncSession, holder: str, year: int, kind: str, amount: int) -> Allowance | None:
    """The atomic ceiling check: one conditional UPDATE; None if it would exceed the limit."""
    return (
        await session.execute(
            update(Allowance)
            .where(
                Allowance.holder == holder,
                Allowance.year == year,
                Allowance.kind == kind,
                Allowance.used_fen + amount <= Allowance.limit_fen,
            )
            .values(used_fen=Allowance.used_fen + amount)
            .returning(Allowance)
        )
    ).scalar_one_or_none()


async def headroom(session: AsyncSession, holder: str, year: int, kind: str) -> tuple[int, int]:
    """(limit, used) of a ceiling's row."""
    row = (
        await session.execute(
            select(Allowance.limit_fen, Allowance.used_fen).where(
                Allowance.holder == holder, Allowance.year == year, Allowance.kind == kind
            )
        )
    ).one()
    return int(row[0]), int(row[1])
