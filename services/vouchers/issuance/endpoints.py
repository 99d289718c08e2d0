"""Issuance's routes: officers issue vouchers and disburse grants, void and expire; approvers reverse grants.

The actor recorded in the ledger is the token's client name. A voucher is read by its holder, a
vendor that may redeem it and the bureau; anyone else hears `voucher_not_found`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from shared.auth import ADMIN, APPLICANT, APPROVER, AUDITOR, OFFICER, PLATFORM, VENDOR, Principal, require
from shared.db import SessionDep
from shared.instants import local_today

from ..clocks import VoucherNow, bound
from ..deps import BudgetsDep, Now, Officer, VoucherCode
from ..peers import ISSUE_PARAMETERS
from ..schemas import GrantRead, VoucherRead
from ..visibility import ensure_visible
from . import service
from .deps import PaymentDep
from .schemas import IssueRequest, ReversalRequest, VoidRequest

router = APIRouter(tags=["vouchers"])

BUDGET_NOTE = (
    "The amount is taken from the programme budget of the measure and this year (clause A2, "
    "`policy/budgets.yaml`) in the same transaction: `no_budget` (409) when no figure stands, "
    "`budget_exhausted` (409, with `remaining_fen`) when the budget would be exceeded; nothing is written."
)

#: Who reads one voucher: its holder, a vendor that may redeem it, and the bureau's roles.
VoucherReader = Annotated[Principal, require(APPLICANT, VENDOR, OFFICER, APPROVER, ADMIN, AUDITOR, PLATFORM)]


@router.post(
    "/v1/vouchers",
    status_code=201,
    response_model=VoucherRead,
    summary="Issue a compute (M1) or model (M3) voucher from an approved decision (officers)",
    description=BUDGET_NOTE,
)
async def issue_voucher(payload: IssueRequest, payment: PaymentDep) -> VoucherRead | Response:
    """With an `Idempotency-Key`, a retry answers what the first call did (idempotency.py)."""
    return await payment.once("issue", payload, ISSUE_PARAMETERS, service.issue_voucher)


@router.post(
    "/v1/grants",
    status_code=201,
    response_model=GrantRead,
    summary="Disburse another measure's grant (M2, M4–M13) from an approved decision (officers)",
    description=BUDGET_NOTE,
)
async def disburse_grant(payload: IssueRequest, payment: PaymentDep) -> GrantRead | Response:
    """With an `Idempotency-Key`, a retry answers what the first call did (idempotency.py)."""
    return await payment.once("grant", payload, (), service.grant)


@router.post(
    "/v1/grants/{grant_id}/reversal",
    status_code=201,
    response_model=GrantRead,
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
    summary="A voucher (its holder, a vendor that may redeem it, the bureau)",
)
async def get_voucher(
    request: Request, session: SessionDep, principal: VoucherReader, code: VoucherCode, moment: VoucherNow
) -> VoucherRead:
    voucher = await service.get_voucher(session, code)
    await session.commit()  # only read: no connection is held while the registry may be asked (issue #12)
    await ensure_visible(request, principal, voucher, moment)
    return service.voucher_read(voucher, local_today(moment))


@router.post(
    "/v1/vouchers/{code}/void",
    response_model=VoucherRead,
    summary="Void a voucher: its unused amount returns to the budget (officers)",
)
async def void_voucher(
    session: SessionDep,
    budgets: BudgetsDep,
    principal: Officer,
    code: VoucherCode,
    payload: VoidRequest,
    moment: VoucherNow,
) -> VoucherRead:
    return await service.void(session, budgets, code, payload, principal.actor, moment)


@router.post(
    "/v1/expiries",
    summary="Release expired holds and expire vouchers past their date (officers)",
    dependencies=[require(OFFICER, ADMIN)],
)
async def expire_vouchers(request: Request, session: SessionDep, budgets: BudgetsDep, moment: Now) -> dict[str, int]:
    # sandbox mode: a test enterprise's vouchers expire by its clock (docs/sandbox.md), asked before the transaction
    clocks = await bound(request)
    return {"expired_vouchers": await service.expire_due(session, budgets, moment, clocks)}
