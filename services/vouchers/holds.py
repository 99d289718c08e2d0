"""Holds the holder and the bureau can end (issue #12, finding 7).

A hold reserves part of a voucher for the vendor that made it: left alone, it blocks the
holder's own vendor, the officer's void and expiry until it runs out. So a hold lives at most
`VOUCHERS_HOLD_MAX_SECONDS` (24 h by default; longer is refused, not clamped, so the vendor
knows what it got), the bureau can release one with a reason (`POST /v1/holds/{id}/bureau-release`),
and a void or an expiry releases the voucher's open holds first, with the reason recorded in each
release entry (actor, memo) and its `vouchers.hold.released`/`.expired` event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import ADMIN, OFFICER, Principal, require
from shared.context import request_id_var
from shared.db import SessionDep
from shared.errors import ErrorCode, ProblemError
from shared.money import format_yuan

from .errors import HOLD_NOT_ACTIVE, HOLD_NOT_FOUND, VOUCHER_HAS_HOLDS
from .schemas import Input

HOLD_TOO_LONG = ErrorCode(
    "hold_too_long",
    422,
    "预留时长 {hold_seconds} 秒超过上限 {max_seconds} 秒，未做任何更改",
    "A hold may last at most {max_seconds} seconds, not {hold_seconds}; nothing was changed",
)

router = APIRouter(tags=["redemption"])


async def _now(request: Request) -> datetime:
    """The service's clock (`app.state.clock`, as every route reads it; endpoints.py imports the service)."""
    moment: datetime = request.app.state.clock()
    return moment


Now = Annotated[datetime, Depends(_now)]

RELEASE_SQL = text("SELECT vouchers.release_hold(:id, :status, :now, :request_id, :actor, :reason)")


def check_hold_seconds(seconds: int, maximum: int) -> None:
    """A hold longer than the maximum is refused (422), never shortened behind the vendor's back."""
    if seconds > maximum:
        raise ProblemError(HOLD_TOO_LONG, hold_seconds=seconds, max_seconds=maximum)


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


async def release_all(
    session: AsyncSession,
    voucher_id: int,
    held_fen: int,
    status: str,
    now: datetime,
    actor: str | None,
    reason: str,
    *,
    skip_locked: bool = False,
) -> int:
    """Release every open hold of a voucher whose row the caller has locked; how many were released.

    A hold made after `lock_open_holds` may be in a vendor's capture, which waits for the
    voucher's row: it is not waited for (NOWAIT: the void is refused, to be retried; or, for
    the expiry sweep, SKIP LOCKED: the voucher waits for the next run).
    """
    mode = "SKIP LOCKED" if skip_locked else "NOWAIT"
    try:
        rows = (
            await session.execute(
                text(
                    "SELECT id FROM vouchers.redemptions WHERE voucher_id = :voucher AND status = 'held' "
                    f"ORDER BY id FOR UPDATE {mode}"
                ),
                {"voucher": voucher_id},
            )
        ).scalars()
        held = list(rows)
    except DBAPIError as exc:  # lock_not_available: a capture is finishing that hold right now
        raise ProblemError(VOUCHER_HAS_HOLDS, held_yuan=format_yuan(held_fen)) from exc
    released = 0
    for hold_id in held:
        if await release(session, int(hold_id), status, now, actor, reason) is not None:
            released += 1
    return released


class BureauRelease(Input):
    reason: Annotated[str, Field(min_length=2, max_length=2000)]


class ReleasedHold(BaseModel):
    id: int
    status: str
    amount_fen: int
    voucher_code: str
    vendor: str
    entry_id: int
    released_by: str
    reason: str


@router.post(
    "/v1/holds/{hold_id}/bureau-release",
    response_model=ReleasedHold,
    summary="Release a vendor's hold for the bureau, with a reason (officers): the amount is available again",
    description="The release entry records the officer and the reason, as does the `vouchers.hold.released` event.",
)
async def bureau_release(
    session: SessionDep,
    now: Now,
    principal: Annotated[Principal, require(OFFICER, ADMIN)],
    hold_id: Annotated[int, Path(ge=1, le=2**62)],
    payload: BureauRelease,
) -> ReleasedHold:
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
    if row is None or row["hold_expires_at"] is None:  # no such redemption, or a direct one (never a hold)
        raise ProblemError(HOLD_NOT_FOUND, id=hold_id)
    if row["status"] != "held":
        raise ProblemError(HOLD_NOT_ACTIVE, id=hold_id, hold_status=row["status"])
    entry = await release(session, hold_id, "released", now, principal.actor, payload.reason)
    assert entry is not None  # the row is locked and held
    return ReleasedHold(
        id=hold_id,
        status="released",
        amount_fen=int(row["amount_fen"]),
        voucher_code=str(row["code"]),
        vendor=str(row["vendor"]),
        entry_id=entry,
        released_by=principal.actor,
        reason=payload.reason,
    )
