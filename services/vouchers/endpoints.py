"""REST endpoints of the vouchers service.

Who may call what (`shared.auth.require` on every route):

- vendors' systems (`vendor` clients, each bound to one vendor organisation's credit code)
  redeem, hold, capture and release, with an `Idempotency-Key` on every call; the vendor is
  the token's organisation. These routes are rate limited per client (429, Retry-After).
- officers (and administrators) issue, grant, void and expire; approvers reverse grants;
  auditors check the ledger. The actor recorded in the ledger is the token's client name.

Object-level rule: a vendor acts on and sees only vouchers it may redeem, and only its own
holds; an applicant sees only vouchers it holds. Anything else answers the usual 404
(`voucher_not_found`, `hold_not_found`), so a client cannot learn what exists.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import (
    ADMIN,
    APPLICANT,
    APPROVER,
    AUDITOR,
    FORBIDDEN,
    OFFICER,
    PLATFORM,
    VENDOR,
    Principal,
    authorize,
    protected,
    require,
)
from shared.db import SessionDep
from shared.errors import ProblemError
from shared.openapi import document_required_headers

from . import holds, replay, service
from .deps import BudgetsDep, EligibilityDep, HotDep, KeyHeader, Now, VoucherCode, now, read_body, redemption_input
from .errors import IDEMPOTENCY_KEY_REQUIRED
from .hotpath import HotPath, local_today, render, request_hash
from .invariants import check_invariants
from .peers import ISSUE_PARAMETERS, Eligibility
from .policy.budgets import Budgets
from .schemas import (
    GrantRead,
    HoldFinished,
    HoldRequest,
    IssueRequest,
    RedemptionRead,
    RedemptionRequest,
    ReversalRequest,
    VoidRequest,
    VoucherRead,
)
from .visibility import compute_vendor_may_redeem, ensure_visible

router = APIRouter()


M = TypeVar("M", bound=BaseModel)

BUDGET_NOTE = (
    "The amount is taken from the programme budget of the measure and this year (clause A2, "
    "`policy/budgets.yaml`) in the same transaction: `no_budget` (409) when no figure stands, "
    "`budget_exhausted` (409, with `remaining_fen`) when the budget would be exceeded; nothing is written."
)

#: Bureau staff who issue and void (officers) and administrators.
Officer = Annotated[Principal, require(OFFICER, ADMIN)]
#: Who reads one voucher: its holder, a vendor that may redeem it, and the bureau's roles.
VoucherReader = Annotated[Principal, require(APPLICANT, VENDOR, OFFICER, APPROVER, ADMIN, AUDITOR, PLATFORM)]
#: Vendors' systems: one vendor each, rate limited per client.
VendorPrincipal = Annotated[Principal, require(VENDOR, rate_limited=True)]


def vendor_of(principal: Principal) -> str:
    """The vendor a vendor client acts for (its token's organisation)."""
    vendor = principal.vendor
    if vendor is None:  # a vendor token always names its organisation (shared.auth), but be explicit
        raise ProblemError(FORBIDDEN, needed=VENDOR)
    return vendor


def idempotency_key(value: str | None) -> str:
    if not value:
        raise ProblemError(IDEMPOTENCY_KEY_REQUIRED)
    return value


@document_required_headers("Idempotency-Key")  # missing: our 400 `idempotency_key_required`, not FastAPI's 422
async def vendor_call(principal: VendorPrincipal, key: KeyHeader = None) -> tuple[str, str]:
    """Every mutating vendor call: the vendor (from the token) and its Idempotency-Key."""
    return vendor_of(principal), idempotency_key(key)


VendorCall = Annotated[tuple[str, str], Depends(vendor_call)]


#: what a hold asks beyond a redemption's fields
HOLD_ONLY = set(HoldRequest.model_fields) - set(RedemptionRequest.model_fields)


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
        await compute_vendor_may_redeem(request, hotpath, code, vendor, moment)
    if hold_seconds is None:
        digest = request_hash("redeem", code, payload.model_dump(mode="json"))
    else:  # a hold's digest is that of the redemption it reserves for (its length aside)
        digest = request_hash("hold", code, payload.model_dump(mode="json", exclude=HOLD_ONLY))
    status_code, body = await hotpath.redeem(
        vendor=vendor,
        key=key,
        digest=digest,
        code=code,
        amount_fen=payload.amount_fen,
        invoice_number=payload.invoice_number,
        contract_number=payload.contract_number,
        hold_seconds=hold_seconds,
        now=moment,
    )
    return render(request, status_code, body)


_VENDOR_ONLY = (VENDOR,)


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
    hotpath: HotPath = request.app.state.hotpath
    return await _redeem(request, hotpath, code, payload, vendor, key, None, await now(request))


# registered first, so it is the one that answers; the documented route has the same contract
router.add_route("/v1/vouchers/{code}/redemptions", redeem_hot, methods=["POST"], include_in_schema=False)


@router.post(
    "/v1/vouchers/{code}/redemptions",
    status_code=201,
    tags=["redemption"],
    summary="Redeem part or all of a voucher (vendors; idempotent by Idempotency-Key)",
    responses={
        201: {"model": RedemptionRead, "description": "Redeemed: the redemption and the voucher's balances after it"},
        429: {"description": "Too many requests from this client; retry after `Retry-After` seconds"},
    },
)
async def redeem_voucher(
    request: Request,
    hotpath: HotDep,
    moment: Now,
    call: VendorCall,
    code: VoucherCode,
    payload: RedemptionRequest,
) -> Response:
    vendor, key = call
    return await _redeem(request, hotpath, code, payload, vendor, key, None, moment)


@router.post(
    "/v1/vouchers/{code}/holds",
    status_code=201,
    tags=["redemption"],
    summary="Reserve an amount (like a card authorisation); capture or release it later",
    responses={
        201: {"model": RedemptionRead, "description": "Held (`status` held): the hold, its id and end"},
        429: {"description": "Too many requests from this client; retry after `Retry-After` seconds"},
    },
)
async def create_hold(
    request: Request,
    hotpath: HotDep,
    moment: Now,
    call: VendorCall,
    code: VoucherCode,
    payload: HoldRequest,
) -> Response:
    vendor, key = call
    settings = request.app.state.settings
    seconds = payload.hold_seconds or settings.hold_seconds
    holds.check_hold_seconds(seconds, settings.hold_max_seconds)
    return await _redeem(request, hotpath, code, payload, vendor, key, seconds, moment)


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
    description="Only the vendor that made the hold may finish it; another vendor's hold answers `hold_not_found`.",
    responses={
        200: {"model": HoldFinished, "description": "Captured or released"},
        429: {"description": "Too many requests from this client; retry after `Retry-After` seconds"},
    },
)
async def finish_hold(
    request: Request,
    hotpath: HotDep,
    moment: Now,
    call: VendorCall,
    hold_id: HoldId,
    action: Literal["capture", "release"],
) -> Response:
    vendor, key = call
    return await _finish(request, hotpath, hold_id, action, vendor, key, moment)


@dataclass(frozen=True)
class Payment:
    """What issuing a voucher or disbursing a grant needs from the request: one dependency for both routes."""

    session: AsyncSession
    eligibility: Eligibility
    budgets: Budgets
    moment: datetime
    principal: Principal
    key: str | None

    async def once(
        self,
        action: str,
        payload: IssueRequest,
        parameters: tuple[str, ...],
        pay: Callable[[AsyncSession, Eligibility, Budgets, IssueRequest, str, datetime], Awaitable[M]],
    ) -> M | Response:
        """Once per Idempotency-Key, with the decision and `parameters` read from eligibility first (`prepared`,
        before the transaction: no peer call while it is open)."""
        eligibility = await self.eligibility.prepared(payload.decision_id, parameters)
        return await replay.once(
            self.session,
            self.principal.client_id,
            self.key,
            action,
            payload.model_dump(mode="json"),
            lambda: pay(self.session, eligibility, self.budgets, payload, self.principal.actor, self.moment),
        )


async def payment(
    session: SessionDep,
    client: EligibilityDep,
    budgets: BudgetsDep,
    moment: Now,
    principal: Officer,
    key: KeyHeader = None,
) -> Payment:
    return Payment(session, client, budgets, moment, principal, key)


PaymentDep = Annotated[Payment, Depends(payment)]


# --- officers -------------------------------------------------------------------------------


@router.post(
    "/v1/vouchers",
    status_code=201,
    response_model=VoucherRead,
    tags=["vouchers"],
    summary="Issue a compute (M1) or model (M3) voucher from an approved decision (officers)",
    description=BUDGET_NOTE,
)
async def issue_voucher(payload: IssueRequest, payment: PaymentDep) -> VoucherRead | Response:
    """With an `Idempotency-Key`, a retry answers what the first call did (replay.py)."""
    return await payment.once("issue", payload, ISSUE_PARAMETERS, service.issue_voucher)


@router.post(
    "/v1/grants",
    status_code=201,
    response_model=GrantRead,
    tags=["vouchers"],
    summary="Disburse another measure's grant (M2, M4–M13) from an approved decision (officers)",
    description=BUDGET_NOTE,
)
async def disburse_grant(payload: IssueRequest, payment: PaymentDep) -> GrantRead | Response:
    """With an `Idempotency-Key`, a retry answers what the first call did (replay.py)."""
    return await payment.once("grant", payload, (), service.grant)


@router.post(
    "/v1/grants/{grant_id}/reversal",
    status_code=201,
    response_model=GrantRead,
    tags=["vouchers"],
    summary="Correct a mistaken grant with a reversing entry; the original stays in the ledger (approvers)",
)
async def reverse_grant(
    session: SessionDep,
    budgets: BudgetsDep,
    moment: Now,
    principal: Annotated[Principal, require(APPROVER, ADMIN)],
    grant_id: Annotated[int, Path(ge=1, le=2**62)],
    payload: ReversalRequest,
) -> GrantRead:
    return await service.reverse_grant(session, budgets, grant_id, payload, principal.actor, moment)


@router.get(
    "/v1/vouchers/{code}",
    response_model=VoucherRead,
    tags=["vouchers"],
    summary="A voucher (its holder, a vendor that may redeem it, the bureau)",
)
async def get_voucher(
    request: Request, session: SessionDep, moment: Now, principal: VoucherReader, code: VoucherCode
) -> VoucherRead:
    voucher = await service.get_voucher(session, code)
    await session.commit()  # only read: no connection is held while the registry may be asked (issue #12)
    await ensure_visible(request, principal, voucher, moment)
    return service.voucher_read(voucher, local_today(moment))


@router.post(
    "/v1/vouchers/{code}/void",
    response_model=VoucherRead,
    tags=["vouchers"],
    summary="Void a voucher: its unused amount returns to the budget (officers)",
)
async def void_voucher(
    session: SessionDep, budgets: BudgetsDep, moment: Now, principal: Officer, code: VoucherCode, payload: VoidRequest
) -> VoucherRead:
    return await service.void(session, budgets, code, payload, principal.actor, moment)


@router.post(
    "/v1/expiries",
    tags=["vouchers"],
    summary="Release expired holds and expire vouchers past their date (officers)",
    dependencies=[require(OFFICER, ADMIN)],
)
async def expire_vouchers(session: SessionDep, budgets: BudgetsDep, moment: Now) -> dict[str, int]:
    return {"expired_vouchers": await service.expire_due(session, budgets, moment)}


@router.get(
    "/v1/ledger/invariants",
    tags=["ledger"],
    summary="Check the ledger against its projections: sums, balances, ceilings, redemptions (auditors)",
    dependencies=[require(AUDITOR, ADMIN)],
)
async def check_ledger_invariants(hotpath: HotDep) -> dict[str, object]:
    assert hotpath.pool is not None
    async with hotpath.pool.acquire() as connection:
        violations = await check_invariants(connection)
    return {"ok": not violations, "violations": [{"check": v.check, "row": v.row} for v in violations]}
