"""The redemption routes: vendors redeem, hold, capture and release; the bureau releases a hold.

Vendors' systems (`vendor` clients, each bound to one vendor organisation's credit code) call
with an `Idempotency-Key` on every call; the vendor is the token's organisation. These routes are
rate limited per client (429, Retry-After). A vendor acts on and sees only vouchers it may
redeem, and only its own holds: anything else answers the usual 404 (`voucher_not_found`,
`hold_not_found`), so a client cannot learn what exists.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.responses import Response
from starlette._exception_handler import ExceptionHandlers, StatusHandlers
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.app import state_dependency
from shared.auth import ADMIN, OFFICER, VENDOR, Principal, authorize, protected, require
from shared.db import SessionDep

from ..clocks import HoldNow, VoucherNow, of_voucher
from ..deps import VoucherCode, idempotency_key
from . import service
from .deps import VendorCall, read_body, redemption_input, vendor_of
from .group_commit import GroupCommit
from .schemas import BureauRelease, HoldFinished, HoldRequest, RedemptionRead, RedemptionRequest, ReleasedHold

router = APIRouter(tags=["redemption"])
#: the process's ledger calls (group commit: what waits for a busy ledger goes as one batch)
LedgerCalls = Annotated[GroupCommit, Depends(state_dependency("group_commit", GroupCommit))]

_VENDOR_ONLY = (VENDOR,)
HoldId = Annotated[int, Path(ge=1, le=2**62)]
TOO_MANY = {"description": "Too many requests from this client; retry after `Retry-After` seconds"}


@router.post(
    "/v1/holds/{hold_id}/bureau-release",
    response_model=ReleasedHold,
    summary="Release a vendor's hold for the bureau, with a reason (officers): the amount is available again",
    description="The release entry records the officer and the reason, as does the `vouchers.hold.released` event.",
)
async def bureau_release(
    session: SessionDep,
    principal: Annotated[Principal, require(OFFICER, ADMIN)],
    hold_id: HoldId,
    moment: HoldNow,
    payload: BureauRelease,
) -> ReleasedHold:
    """Registered before `/v1/holds/{hold_id}/{action}`, which would take it."""
    return await service.bureau_release(session, hold_id, payload, principal.actor, moment)


@protected(VENDOR)
async def redeem_hot(request: Request) -> Response:
    """The same endpoint as `redeem_voucher` below, without FastAPI's dependency machinery.

    Vendors' redemptions are the hot path: resolving four dependencies per request cost a
    measurable share of the process's CPU (docs/benchmarks.md). The answers are FastAPI's,
    in FastAPI's order: the token (401, verified before the body is read by
    `shared.limits.RequestGuardMiddleware`, which leaves the principal in the request state),
    a body that is not JSON (422), the role and rate (403, 429), the Idempotency-Key (400), then
    the header, path and body rules together (one 422 with every field), with the same models.
    The FastAPI route below documents it in OpenAPI (a test sends both the same requests).
    """
    received = await read_body(request)
    vendor = vendor_of(authorize(request, _VENDOR_ONLY, rate_limited=True))
    key = idempotency_key(request.headers.get("idempotency-key"))
    code = request.path_params["code"]
    payload = redemption_input(code, key, received)
    ledger: GroupCommit = request.app.state.group_commit
    moment = await of_voucher(request, code)  # the app's clock; in sandbox mode, the holder's test clock
    return await service.redeem(request, ledger, code, payload, vendor, key, None, moment)


#: the app puts it first of all its routes (app.py), so it is the one that answers, matched before any other
#: route (Starlette tries them in order: the health, metrics and docs routes cost every redemption a match each);
#: the documented route below has the same contract
class _ServingRoute(Route):
    """A bare Starlette route that says it served the request (`scope["route"]`, as FastAPI's own routes do):
    the metrics label the request by its template and the tracing names its span by it."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


HOT_ROUTE = _ServingRoute("/v1/vouchers/{code}/redemptions", redeem_hot, methods=["POST"], include_in_schema=False)


class HotPath:
    """Pure ASGI, the vouchers app's innermost middleware (`VOUCHERS_FAST_PATH`, on by default): a request the
    first route serves goes from the request guard straight to it, past three layers that only routing needs:
    Starlette's ExceptionMiddleware, FastAPI's AsyncExitStack (which closes uploaded files; a redemption has
    none) and its router's loop. The route is matched and run as the router runs it (`scope` updated with its
    path parameters, `scope["router"]`), and it answers errors with the handlers ExceptionMiddleware would have
    given it (`scope["starlette.exception_handlers"]`: the route's own wrapper handles what it raises, as when
    routed; what no handler takes goes up to ServerErrorMiddleware as before). Everything else goes the usual way.
    """

    def __init__(self, app: ASGIApp, route: Route = HOT_ROUTE) -> None:
        self.app = app
        self.route = route
        self._handlers: tuple[ExceptionHandlers, StatusHandlers] | None = None

    def handlers(self, application: FastAPI) -> tuple[ExceptionHandlers, StatusHandlers]:
        """The handlers FastAPI's middleware stack gives ExceptionMiddleware (every one but the 500 handler,
        ServerErrorMiddleware's), as ExceptionMiddleware itself files them (its own HTTPException default
        included); taken when the first request comes, once the app's handlers are all installed."""
        given = {key: value for key, value in application.exception_handlers.items() if key not in (500, Exception)}
        middleware = ExceptionMiddleware(self.app, handlers=given, debug=application.debug)
        return middleware._exception_handlers, middleware._status_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match, child = self.route.matches(scope)
            if match is Match.FULL:
                if self._handlers is None:
                    self._handlers = self.handlers(scope["app"])
                scope.update(child)
                if "router" not in scope:
                    scope["router"] = scope["app"].router
                scope["starlette.exception_handlers"] = self._handlers
                await self.route.handle(scope, receive, send)
                return
        await self.app(scope, receive, send)


@router.post(
    "/v1/vouchers/{code}/redemptions",
    status_code=201,
    summary="Redeem part or all of a voucher (vendors; idempotent by Idempotency-Key)",
    responses={
        201: {"model": RedemptionRead, "description": "Redeemed: the redemption and the voucher's balances after it"},
        429: TOO_MANY,
    },
)
async def redeem_voucher(
    request: Request,
    ledger: LedgerCalls,
    call: VendorCall,
    code: VoucherCode,
    moment: VoucherNow,  # after the caller's checks: in sandbox mode it may ask the registry
    payload: RedemptionRequest,
) -> Response:
    vendor, key = call
    return await service.redeem(request, ledger, code, payload, vendor, key, None, moment)


@router.post(
    "/v1/vouchers/{code}/holds",
    status_code=201,
    summary="Reserve an amount (like a card authorisation); capture or release it later",
    responses={
        201: {"model": RedemptionRead, "description": "Held (`status` held): the hold, its id and end"},
        429: TOO_MANY,
    },
)
async def create_hold(
    request: Request,
    ledger: LedgerCalls,
    call: VendorCall,
    code: VoucherCode,
    moment: VoucherNow,  # after the caller's checks: in sandbox mode it may ask the registry
    payload: HoldRequest,
) -> Response:
    vendor, key = call
    settings = request.app.state.settings
    seconds = payload.hold_seconds or settings.hold_seconds
    service.check_hold_seconds(seconds, settings.hold_max_seconds)
    return await service.redeem(request, ledger, code, payload, vendor, key, seconds, moment)


@router.post(
    "/v1/holds/{hold_id}/{action}",
    summary="Capture a hold (it becomes a redemption) or release it (the amount is available again)",
    description="Only the vendor that made the hold may finish it; another vendor's hold answers `hold_not_found`.",
    responses={
        200: {"model": HoldFinished, "description": "Captured or released"},
        429: TOO_MANY,
    },
)
async def finish_hold(
    request: Request,
    ledger: LedgerCalls,
    call: VendorCall,
    hold_id: HoldId,
    moment: HoldNow,
    action: Literal["capture", "release"],
) -> Response:
    vendor, key = call
    return await service.finish(request, ledger, hold_id, action, vendor, key, moment)
