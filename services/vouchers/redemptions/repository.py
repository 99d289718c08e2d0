"""All the redemption path's SQL: the ledger functions a vendor's call is one round trip to, and the holds'.

The conditional UPDATEs, the idempotency record and the entry are written by `vouchers.redeem()`
and `vouchers.finish_hold()` in one transaction (migrations/vouchers/functions/); a successful
answer is the JSON the database built, passed through untouched, and a refusal a code with its
parameters (`service.render`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.context import request_id_var
from shared.instants import local_today

from ..pool import Lending

REDEEM_SQL = "SELECT status_code, body FROM vouchers.redeem($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
FINISH_SQL = "SELECT status_code, body FROM vouchers.finish_hold($1, $2, $3, $4, $5, $6, $7, $8)"
RELEASE_SQL = text("SELECT vouchers.release_hold(:id, :status, :now, :request_id, :actor, :reason)")


async def redeem(
    pool: Lending,
    *,
    vendor: str,
    key: str,
    digest: str,
    code: str,
    amount_fen: int,
    invoice_number: str,
    contract_number: str | None,
    hold_seconds: int | None,
    now: datetime,
) -> tuple[int, str]:
    """A redemption (or, with `hold_seconds`, a hold): the ledger's status code and JSON answer."""
    row = await pool.fetchrow(
        REDEEM_SQL,
        vendor,
        key,
        digest,
        code,
        vendor,
        amount_fen,
        invoice_number,
        contract_number,
        hold_seconds,
        now,
        local_today(now),
        request_id_var.get(),
    )
    assert row is not None
    return int(row["status_code"]), str(row["body"])


async def finish_hold(
    pool: Lending, *, vendor: str, key: str, digest: str, redemption_id: int, action: str, now: datetime
) -> tuple[int, str]:
    """A hold captured or released by its vendor: the ledger's status code and JSON answer."""
    row = await pool.fetchrow(FINISH_SQL, vendor, key, digest, redemption_id, vendor, action, now, request_id_var.get())
    assert row is not None
    return int(row["status_code"]), str(row["body"])


async def release(
    session: AsyncSession, hold_id: int, status: str, now: datetime, actor: str | None, reason: str
) -> int | None:
    """Release one held redemption (the row must be locked by the caller); the release entry's id."""
    entry = await session.scalar(
        RELEASE_SQL,
        {
            "id": hold_id,
            "status": status,
            "now": now,
            "request_id": request_id_var.get(),
            "actor": actor,
            "reason": reason,
        },
    )
    return None if entry is None else int(entry)


async def lock_open_holds(session: AsyncSession, code: str) -> None:
    """Before the voucher's row: the open holds of a voucher, in id order (a capture locks its hold first)."""
    await session.execute(
        text(
            "SELECT r.id FROM vouchers.redemptions r JOIN vouchers.vouchers v ON v.id = r.voucher_id "
            "WHERE v.code = :code AND r.status = 'held' ORDER BY r.id FOR UPDATE OF r"
        ),
        {"code": code},
    )


async def lock_held(session: AsyncSession, voucher_id: int, *, skip_locked: bool) -> list[int]:
    """The ids of a voucher's open holds, locked in id order (NOWAIT, or SKIP LOCKED: raises or skips a busy one)."""
    mode = "SKIP LOCKED" if skip_locked else "NOWAIT"
    rows = await session.execute(
        text(
            "SELECT id FROM vouchers.redemptions WHERE voucher_id = :voucher AND status = 'held' "
            f"ORDER BY id FOR UPDATE {mode}"
        ),
        {"voucher": voucher_id},
    )
    return [int(hold_id) for hold_id in rows.scalars()]


async def hold_for_release(session: AsyncSession, hold_id: int) -> RowMapping | None:
    """A redemption with its voucher's code, locked (None: no such redemption)."""
    row = (
        (
            await session.execute(
                text(
                    "SELECT r.id, r.status, r.amount_fen, r.vendor, r.hold_expires_at, v.code "
                    "FROM vouchers.redemptions r JOIN vouchers.vouchers v ON v.id = r.voucher_id "
                    "WHERE r.id = :id FOR UPDATE OF r"
                ),
                {"id": hold_id},
            )
        )
        .mappings()
        .first()
    )
    return row
