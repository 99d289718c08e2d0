"""REST endpoints of the vouchers service.

Vendors (their own systems) call the redemption endpoints with `X-Vendor-Id` (their
credit code; issue #5 replaces it with a signed token) and an `Idempotency-Key` on every
mutating call. Officers issue, grant, void and expire.
"""

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import Response
from pydantic import ValidationError

from shared.app import state_dependency
from shared.db import SessionDep
from shared.errors import FieldError, ProblemError, field_errors_from_pydantic, validation_problem
from shared.identifiers import credit_code_error
from shared.peers import PeerUnavailable

from . import service
from .errors import (
    IDEMPOTENCY_KEY_REQUIRED,
    VENDOR_AFFILIATED,
    VENDOR_ID_REQUIRED,
    VENDOR_NOT_COMPUTE_VENDOR,
)
from .hotpath import HotPath, local_today, render, request_hash
from .invariants import check_invariants
from .peers import Eligibility, Registry
from .schemas import (
    GrantRead,
    HoldRequest,
    IssueRequest,
    RedemptionRequest,
    ReversalRequest,
    VoidRequest,
    VoucherRead,
)

router = APIRouter()
VoucherCode = Annotated[str, Path(min_length=3, max_length=64, pattern=r"^[A-Z0-9-]+$")]
KeyHeader = Annotated[
    str | None, Header(alias="Idempotency-Key", max_length=200, description="Required; reuse it when retrying")
]
VendorHeader = Annotated[str | None, Header(alias="X-Vendor-Id", max_length=64, description="The vendor's credit code")]


async def now(request: Request) -> datetime:
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


eligibility = state_dependency("eligibility", Eligibility)
hot = state_dependency("hotpath", HotPath)


Now = Annotated[datetime, Depends(now)]
EligibilityDep = Annotated[Eligibility, Depends(eligibility)]
HotDep = Annotated[HotPath, Depends(hot)]


async def vendor_call(idempotency_key: KeyHeader = None, vendor_id: VendorHeader = None) -> tuple[str, str]:
    """Every mutating vendor call names the vendor and carries an Idempotency-Key."""
    if not vendor_id or credit_code_error(vendor_id) is not None:
        raise ProblemError(VENDOR_ID_REQUIRED)
    if not idempotency_key:
        raise ProblemError(IDEMPOTENCY_KEY_REQUIRED)
    return vendor_id, idempotency_key


VendorCall = Annotated[tuple[str, str], Depends(vendor_call)]


async def _compute_vendor_may_redeem(request: Request, hotpath: HotPath, code: str, vendor: str, day: datetime) -> None:
    """M1: a registered compute vendor, not affiliated with the holder (asked of the registry)."""
    assert hotpath.pool is not None
    holder = await hotpath.pool.fetchval("SELECT holder FROM vouchers.vouchers WHERE code = $1", code)
    if holder is None:
        return  # the ledger function answers voucher_not_found
    registry: Registry = request.app.state.registry
    try:
        check = await registry.compute_vendor_check(vendor, holder, local_today(day))
    except PeerUnavailable as exc:
        raise exc.as_problem() from exc
    if not check.is_compute_vendor:
        raise ProblemError(VENDOR_NOT_COMPUTE_VENDOR)
    if check.affiliated:
        raise ProblemError(VENDOR_AFFILIATED)


async def _redeem(
    request: Request,
    hotpath: HotPath,
    code: str,
    payload: RedemptionRequest,
    vendor: str,
    key: str,
    hold_seconds: int | None,
    moment: datetime,
) -> Response:
    if code.startswith("M1-"):
        await _compute_vendor_may_redeem(request, hotpath, code, vendor, moment)
    action = "hold" if hold_seconds is not None else "redeem"
    status_code, body = await hotpath.redeem(
        vendor=vendor,
        key=key,
        digest=request_hash(action, code, payload.model_dump(mode="json")),
        code=code,
        amount_fen=payload.amount_fen,
        invoice_number=payload.invoice_number,
        contract_number=payload.contract_number,
        hold_seconds=hold_seconds,
        now=moment,
    )
    return render(request, status_code, body)


_CODE = re.compile(r"^[A-Z0-9-]{3,64}$")


async def redeem_hot(request: Request) -> Response:
    """The same endpoint as `redeem` below, without FastAPI's dependency machinery.

    Vendors' redemptions are the hot path: resolving four dependencies per request cost a
    measurable share of the process's CPU (docs/benchmarks.md). Validation and answers are
    identical: the path, headers and body are checked with the same rules and models, and
    errors are the same problem+json. The FastAPI route below documents it in OpenAPI.
    """
    code = request.path_params["code"]
    if not _CODE.match(code):
        raise validation_problem(
            [FieldError("path.code", "string_pattern_mismatch", "格式不正确", "Invalid voucher code format")]
        )
    vendor, key = await vendor_call(request.headers.get("idempotency-key"), request.headers.get("x-vendor-id"))
    try:
        payload = RedemptionRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise validation_problem(field_errors_from_pydantic(exc.errors(), ("body",))) from exc
    hotpath: HotPath = request.app.state.hotpath
    return await _redeem(request, hotpath, code, payload, vendor, key, None, await now(request))


# registered first, so it is the one that answers; the documented route has the same contract
router.add_route("/v1/vouchers/{code}/redemptions", redeem_hot, methods=["POST"], include_in_schema=False)


@router.post(
    "/v1/vouchers/{code}/redemptions",
    status_code=201,
    tags=["redemption"],
    summary="Redeem part or all of a voucher (vendors; idempotent by Idempotency-Key)",
    responses={201: {"description": "Redeemed: the redemption and the voucher's balances after it"}},
)
async def redeem(
    request: Request,
    hotpath: HotDep,
    moment: Now,
    code: VoucherCode,
    payload: RedemptionRequest,
    call: VendorCall,
) -> Response:
    vendor, key = call
    return await _redeem(request, hotpath, code, payload, vendor, key, None, moment)


@router.post(
    "/v1/vouchers/{code}/holds",
    status_code=201,
    tags=["redemption"],
    summary="Reserve an amount (like a card authorisation); capture or release it later",
)
async def hold(
    request: Request,
    hotpath: HotDep,
    moment: Now,
    code: VoucherCode,
    payload: HoldRequest,
    call: VendorCall,
) -> Response:
    vendor, key = call
    seconds = payload.hold_seconds or request.app.state.settings.hold_seconds
    base = RedemptionRequest.model_validate(payload.model_dump(exclude={"hold_seconds"}))
    return await _redeem(request, hotpath, code, base, vendor, key, seconds, moment)


async def _finish(
    request: Request, hotpath: HotPath, hold_id: int, action: str, vendor: str, key: str, moment: datetime
) -> Response:
    status_code, body = await hotpath.finish_hold(
        vendor=vendor,
        key=key,
        digest=request_hash(action, str(hold_id), {}),
        redemption_id=hold_id,
        action=action,
        now=moment,
    )
    return render(request, status_code, body)


HoldId = Annotated[int, Path(ge=1, le=2**62)]


@router.post(
    "/v1/holds/{hold_id}/{action}",
    tags=["redemption"],
    summary="Capture a hold (it becomes a redemption) or release it (the amount is available again)",
)
async def finish_hold(
    request: Request,
    hotpath: HotDep,
    moment: Now,
    hold_id: HoldId,
    action: Literal["capture", "release"],
    call: VendorCall,
) -> Response:
    vendor, key = call
    return await _finish(request, hotpath, hold_id, action, vendor, key, moment)


# --- officers -------------------------------------------------------------------------------


@router.post(
    "/v1/vouchers",
    status_code=201,
    response_model=VoucherRead,
    tags=["vouchers"],
    summary="Issue a compute (M1) or model (M3) voucher from an approved decision",
)
async def issue(session: SessionDep, client: EligibilityDep, moment: Now, payload: IssueRequest) -> VoucherRead:
    try:
        return await service.issue_voucher(session, client, payload, moment)
    except PeerUnavailable as exc:
        raise exc.as_problem() from exc


@router.post(
    "/v1/grants",
    status_code=201,
    response_model=GrantRead,
    tags=["vouchers"],
    summary="Disburse another measure's grant (M2, M4–M13) from an approved decision",
)
async def grant(session: SessionDep, client: EligibilityDep, moment: Now, payload: IssueRequest) -> GrantRead:
    try:
        return await service.grant(session, client, payload, moment)
    except PeerUnavailable as exc:
        raise exc.as_problem() from exc


@router.post(
    "/v1/grants/{grant_id}/reversal",
    status_code=201,
    response_model=GrantRead,
    tags=["vouchers"],
    summary="Correct a mistaken grant with a reversing entry (the original stays in the ledger)",
)
async def reverse_grant(
    session: SessionDep, grant_id: Annotated[int, Path(ge=1, le=2**62)], payload: ReversalRequest
) -> GrantRead:
    return await service.reverse_grant(session, grant_id, payload)


@router.get("/v1/vouchers/{code}", response_model=VoucherRead, tags=["vouchers"])
async def get_voucher(session: SessionDep, moment: Now, code: VoucherCode) -> VoucherRead:
    return service.voucher_read(await service.get_voucher(session, code), local_today(moment))


@router.post(
    "/v1/vouchers/{code}/void",
    response_model=VoucherRead,
    tags=["vouchers"],
    summary="Void a voucher: its unused amount returns to the budget",
)
async def void(session: SessionDep, moment: Now, code: VoucherCode, payload: VoidRequest) -> VoucherRead:
    return await service.void(session, code, payload, moment)


@router.post("/v1/expiries", tags=["vouchers"], summary="Release expired holds and expire vouchers past their date")
async def expire(session: SessionDep, moment: Now) -> dict[str, int]:
    return {"expired_vouchers": await service.expire_due(session, moment)}


@router.get(
    "/v1/ledger/invariants",
    tags=["ledger"],
    summary="Check the ledger against its projections: sums, balances, ceilings, redemptions",
)
async def invariants(hotpath: HotDep) -> dict[str, object]:
    assert hotpath.pool is not None
    async with hotpath.pool.acquire() as connection:
        violations = await check_invariants(connection)
    return {"ok": not violations, "violations": [{"check": v.check, "row": v.row} for v in violations]}
