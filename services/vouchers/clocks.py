"""Sandbox mode (docs/sandbox.md): the time of the enterprise a request is about, its test clock's.

Outside sandbox mode every function here answers the app's clock (`app.state.clock`, which tests set)
without a call or a query: the redemption path pays one attribute test. In sandbox mode the holder of
the voucher (or hold) is read on the ledger's pool first, then the registry is asked for its clock
(shared/testclocks.py), before the request opens its transaction: no peer call while one is open
(issue #12). A registry that cannot answer makes the request 503, nothing written.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from shared.testclocks import EnterpriseClocks

HOLDER_OF_VOUCHER = "SELECT holder FROM vouchers.vouchers WHERE code = $1"
HOLDER_OF_HOLD = (
    "SELECT v.holder FROM vouchers.redemptions r JOIN vouchers.vouchers v ON v.id = r.voucher_id WHERE r.id = $1"
)


#: An app without clocks (a test's twin of a route) is not in sandbox mode.
NO_CLOCKS = EnterpriseClocks(None)


def _clocks(request: Request) -> EnterpriseClocks:
    clocks: EnterpriseClocks = getattr(request.app.state, "enterprise_clocks", NO_CLOCKS)
    return clocks


def in_sandbox(request: Request) -> bool:
    return _clocks(request).sandbox


def real(request: Request) -> datetime:
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


async def of_holder(request: Request, holder: str) -> datetime:
    """Now for a request about this enterprise."""
    clocks = _clocks(request)
    if not clocks.sandbox:
        return real(request)
    return await clocks.now_for(holder)


async def _of_row(request: Request, sql: str, key: object) -> datetime:
    clocks = _clocks(request)
    if not clocks.sandbox:
        return real(request)
    holder = await request.app.state.ledger_pool.ready.fetchval(sql, key)
    if holder is None:  # no such voucher or hold: the route answers 404 by its own rules
        return real(request)
    return await clocks.now_for(str(holder))


async def of_voucher(request: Request, code: str) -> datetime:
    """Now for a request about a voucher: its holder's time."""
    return await _of_row(request, HOLDER_OF_VOUCHER, code)


async def of_hold(request: Request, hold_id: int) -> datetime:
    """Now for a request about a hold: the holder's time of the voucher it holds."""
    return await _of_row(request, HOLDER_OF_HOLD, hold_id)


async def bound(request: Request) -> dict[str, datetime]:
    """Every enterprise bound to a test clock and its time (none outside sandbox mode)."""
    return await _clocks(request).bound()


async def voucher_now(request: Request) -> datetime:
    """The route validates `{code}` itself (one problem per field): read here as sent."""
    return await of_voucher(request, str(request.path_params.get("code", "")))


async def hold_now(request: Request) -> datetime:
    try:
        hold_id = int(request.path_params.get("hold_id", ""))
    except ValueError:  # the route refuses it (422)
        return real(request)
    return await of_hold(request, hold_id) if 1 <= hold_id <= 2**62 else real(request)


#: The time of a route about `{code}` (its holder's, in sandbox mode); the app's clock otherwise.
VoucherNow = Annotated[datetime, Depends(voucher_now)]
#: The time of a route about `{hold_id}`.
HoldNow = Annotated[datetime, Depends(hold_now)]
