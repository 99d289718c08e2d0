"""The redemption path vendors call, and the holds the holder and the bureau can end.

A redemption, hold, capture or release is one call of a ledger function (repository.py). The same
(vendor, key) with the same request always gets the same answer; with a different request, 409.
Refusals come back from the database as a code and parameters, rendered here as problem+json in
the caller's language.

A hold reserves part of a voucher for the vendor that made it (issue #12, finding 7): left alone,
it blocks the holder's own vendor, the officer's void and expiry until it runs out. So a hold
lives at most `VOUCHERS_HOLD_MAX_SECONDS` (24 h by default; longer is refused, not clamped, so the
vendor knows what it got), the bureau can release one with a reason, and a void or an expiry
releases the voucher's open holds first, with the reason recorded in each release entry (actor,
memo) and its `vouchers.hold.released`/`.expired` event.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.context import request_id_var
from shared.errors import ErrorCode, ProblemError, problem_response
from shared.money import format_yuan

from ..errors import IDEMPOTENCY_KEY_REUSED, VOUCHER_NOT_FOUND
from ..idempotency import request_hash
from ..metrics import count_redemption
from ..visibility import compute_vendor_may_redeem
from . import repository
from .errors import (
    HOLD_NOT_ACTIVE,
    HOLD_NOT_FOUND,
    HOLD_TOO_LONG,
    INSUFFICIENT_BALANCE,
    REDEMPTION_CEILING,
    VENDOR_NOT_AUTHORISED,
    VOUCHER_EXPIRED,
    VOUCHER_HAS_HOLDS,
    VOUCHER_VOIDED,
)
from .group_commit import Finish, GroupCommit, Redemption
from .schemas import BureauRelease, HoldRequest, RedemptionRequest, ReleasedHold

REFUSALS: dict[str, ErrorCode] = {
    error.code: error
    for error in (
        VOUCHER_NOT_FOUND,
        VOUCHER_VOIDED,
        VOUCHER_EXPIRED,
        INSUFFICIENT_BALANCE,
        REDEMPTION_CEILING,
        IDEMPOTENCY_KEY_REUSED,
        HOLD_NOT_FOUND,
        HOLD_NOT_ACTIVE,
        VENDOR_NOT_AUTHORISED,
    )
}
# `vouchers.redeem()` refuses another vendor's voucher as `vendor_not_allowed`; a vendor is not
# told that a voucher it may not redeem exists (issue #5: wrong owner → 404), so it is rendered
# as `voucher_not_found` (also for answers stored under an Idempotency-Key before this rule).
REFUSALS["vendor_not_allowed"] = VOUCHER_NOT_FOUND

#: what a hold asks beyond a redemption's fields
HOLD_ONLY = set(HoldRequest.model_fields) - set(RedemptionRequest.model_fields)

_ACTIONS = (("/redemptions", "redeem"), ("/holds", "hold"), ("/capture", "capture"), ("/release", "release"))


def _with_yuan(params: dict[str, Any]) -> dict[str, Any]:
    """Amount parameters also as yuan strings, for the messages."""
    result = dict(params)
    for key, value in params.items():
        if key.endswith("_fen") and isinstance(value, int):
            result[key.removesuffix("_fen") + "_yuan"] = format_yuan(value)
    return result


def action_of(path: str) -> str:
    """The redemption path's action, from the request path (a metrics label)."""
    for suffix, action in _ACTIONS:
        if path.endswith(suffix):
            return action
    return "other"


def render(request: Request, status_code: int, body: str) -> Response:
    """The ledger function's answer as the vendor gets it; counted by action and outcome (no query)."""
    if status_code < 300:
        count_redemption(action_of(request.scope["path"]), "ok")
        return Response(content=body, status_code=status_code, media_type="application/json")
    refusal = json.loads(body)
    # the ledger's own code (`vendor_not_allowed` is answered as `voucher_not_found`); a ceiling is
    # also counted by clause when the problem is answered (metrics.py CEILING_CODES)
    count_redemption(action_of(request.scope["path"]), str(refusal["code"]))
    error = REFUSALS[refusal["code"]]
    params = _with_yuan(refusal.get("params") or {})
    if "status" in params:  # a hold's status, not the HTTP status of the problem
        params["hold_status"] = params.pop("status")
    return problem_response(request, error, **params)


async def redeem(
    request: Request,
    ledger: GroupCommit,
    code: str,
    payload: RedemptionRequest,
    vendor: str,
    key: str,
    hold_seconds: int | None,
    moment: datetime,
) -> Response:
    """A redemption, or a hold of `hold_seconds`, answered as the ledger function decided."""
    if code.startswith("M1-"):
        await compute_vendor_may_redeem(request, ledger.ledger, code, vendor, moment)
    if hold_seconds is None:
        digest = request_hash("redeem", code, payload.model_dump(mode="json"))
    else:  # a hold's digest is that of the redemption it reserves for (its length aside)
        digest = request_hash("hold", code, payload.model_dump(mode="json", exclude=HOLD_ONLY))
    status_code, body = await ledger.call(
        Redemption(
            vendor,
            key,
            digest,
            moment,
            request_id_var.get(),
            code=code,
            amount_fen=payload.amount_fen,
            invoice_number=payload.invoice_number,
            contract_number=payload.contract_number,
            hold_seconds=hold_seconds,
        )
    )
    return render(request, status_code, body)


async def finish(
    request: Request, ledger: GroupCommit, hold_id: int, action: str, vendor: str, key: str, moment: datetime
) -> Response:
    """A hold captured or released by the vendor that made it."""
    digest = request_hash(action, str(hold_id), {})
    status_code, body = await ledger.call(
        Finish(vendor, key, digest, moment, request_id_var.get(), redemption_id=hold_id, action=action)
    )
    return render(request, status_code, body)


def check_hold_seconds(seconds: int, maximum: int) -> None:
    """A hold longer than the maximum is refused (422), never shortened behind the vendor's back."""
    if seconds > maximum:
        raise ProblemError(HOLD_TOO_LONG, hold_seconds=seconds, max_seconds=maximum)


async def lock_open_holds(session: AsyncSession, code: str) -> None:
    """Before a void locks the voucher's row: its open holds, in the order a capture locks them."""
    await repository.lock_open_holds(session, code)


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
    try:
        held = await repository.lock_held(session, voucher_id, skip_locked=skip_locked)
    except DBAPIError as exc:  # lock_not_available: a capture is finishing that hold right now
        raise ProblemError(VOUCHER_HAS_HOLDS, held_yuan=format_yuan(held_fen)) from exc
    released = 0
    for hold_id in held:
        if await repository.release(session, hold_id, status, now, actor, reason) is not None:
            released += 1
    return released


async def bureau_release(
    session: AsyncSession, hold_id: int, payload: BureauRelease, actor: str, now: datetime
) -> ReleasedHold:
    """The bureau ends a vendor's hold, with a reason: the amount is available again."""
    row = await repository.hold_for_release(session, hold_id)
    if row is None or row["hold_expires_at"] is None:  # no such redemption, or a direct one (never a hold)
        raise ProblemError(HOLD_NOT_FOUND, id=hold_id)
    if row["status"] != "held":
        raise ProblemError(HOLD_NOT_ACTIVE, id=hold_id, hold_status=row["status"])
    entry = await repository.release(session, hold_id, "released", now, actor, payload.reason)
    assert entry is not None  # the row is locked and held
    return ReleasedHold(
        id=hold_id,
        status="released",
        amount_fen=int(row["amount_fen"]),
        voucher_code=str(row["code"]),
        vendor=str(row["vendor"]),
        entry_id=entry,
        released_by=actor,
        reason=payload.reason,
    )
