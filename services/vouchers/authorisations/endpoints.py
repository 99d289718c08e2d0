"""The authorisations' routes: the holder authorises and revokes; the bureau reads, and an officer may revoke."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from shared.auth import ADMIN, APPLICANT, APPROVER, AUDITOR, OFFICER, Principal, require
from shared.db import SessionDep
from shared.identifiers import CreditCode
from shared.openapi import document_required_headers

from ..deps import KeyHeader, VoucherCode, idempotency_key
from . import service
from .schemas import AuthorisationRead, AuthorisationRequest

router = APIRouter(tags=["vouchers"])

Holder = Annotated[Principal, require(APPLICANT)]
Revoker = Annotated[Principal, require(APPLICANT, OFFICER, ADMIN)]
Reader = Annotated[Principal, require(APPLICANT, OFFICER, APPROVER, AUDITOR, ADMIN)]


@router.post(
    "/v1/vouchers/{code}/authorisations",
    status_code=201,
    response_model=AuthorisationRead,
    summary="The holder lets a vendor spend its compute voucher (applicants; idempotent by Idempotency-Key)",
    description="201 with the new authorisation, or 200 with the standing one. A model voucher (M3) is spent "
    "only by its contract's vendor: 409 `voucher_names_its_vendor`.",
)
@document_required_headers("Idempotency-Key")  # missing: our 400 `idempotency_key_required`, not FastAPI's 422
async def authorise_vendor(
    session: SessionDep,
    principal: Holder,
    code: VoucherCode,
    payload: AuthorisationRequest,
    key: KeyHeader = None,
) -> Any:
    return await service.authorise(session, principal, code, payload, idempotency_key(key))


@router.get(
    "/v1/vouchers/{code}/authorisations",
    response_model=list[AuthorisationRead],
    summary="The vendors a compute voucher's holder authorised, revoked ones included (its holder, the bureau)",
)
async def list_authorisations(session: SessionDep, principal: Reader, code: VoucherCode) -> list[AuthorisationRead]:
    return await service.list_for(session, principal, code)


@router.delete(
    "/v1/vouchers/{code}/authorisations/{vendor}",
    response_model=AuthorisationRead,
    summary="Revoke a vendor's authorisation (the holder, or an officer): no new holds or redemptions by it",
    description="Holds the vendor already made stay until captured, released, or ended by the bureau "
    "(`POST /v1/holds/{id}/bureau-release`).",
)
async def revoke_authorisation(
    session: SessionDep,
    principal: Revoker,
    code: VoucherCode,
    vendor: Annotated[CreditCode, Path(description="The vendor's credit code")],
    reason: Annotated[str | None, Query(min_length=2, max_length=2000, description="Why (recorded)")] = None,
) -> AuthorisationRead:
    return await service.revoke(session, principal, code, vendor, reason)
