"""Who may spend a voucher: the holder's authorisations (issue #12, finding 7).

A model voucher (M3) names its vendor, the one on the holder's contract: only that vendor
spends it. A compute voucher (M1) names none, and any registered compute vendor not
affiliated with the holder used to be able to redeem or hold it once it knew the code. Now a
compute voucher is spent only by a vendor its holder authorised:

- at issuance, the compute providers the holder named on its own application (the M1
  invoices' `provider_credit_code`) are authorised (`basis: application`);
- the holder (an `applicant` client bound to the holder's credit code) authorises others:
  `POST /v1/vouchers/{code}/authorisations {vendor}` with an `Idempotency-Key`
  (`basis: holder`), and revokes them: `DELETE /v1/vouchers/{code}/authorisations/{vendor}`
  (the holder, or an officer);
- vouchers issued before: vouchers migration 0014 authorised the vendors that had already
  redeemed from them (`basis: migration`); any other vendor needs the holder's authorisation.

The check is in `vouchers.redeem()` itself (one probe of a unique index, in the same
conditional UPDATE: no extra round trip); an unauthorised vendor is refused
`vendor_not_authorised` (403) and nothing changes. Revoking stops new holds and redemptions;
holds already made stay until captured, released or ended by the bureau.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import ADMIN, APPLICANT, APPROVER, AUDITOR, OFFICER, Principal, require
from shared.context import request_id_var
from shared.db import SessionDep
from shared.errors import ErrorCode, ProblemError
from shared.identifiers import CreditCode
from shared.openapi import document_required_headers

from .deps import KeyHeader, VoucherCode
from .errors import IDEMPOTENCY_KEY_REQUIRED, IDEMPOTENCY_KEY_REUSED, VOUCHER_NOT_FOUND
from .hotpath import request_hash
from .schemas import Input

VOUCHER_NAMES_ITS_VENDOR = ErrorCode(
    "voucher_names_its_vendor",
    409,
    "券 {code} 只能由合同供应商 {vendor} 使用，无需授权",
    "Voucher {code} is spent only by its contract's vendor {vendor}: there is nothing to authorise",
)
AUTHORISATION_NOT_FOUND = ErrorCode(
    "authorisation_not_found",
    404,
    "券 {code} 没有对供应商 {vendor} 的有效授权",
    "Voucher {code} has no standing authorisation for vendor {vendor}",
)

router = APIRouter(tags=["vouchers"])

#: The holder authorises and revokes; the bureau reads, and an officer may revoke.
Holder = Annotated[Principal, require(APPLICANT)]
Revoker = Annotated[Principal, require(APPLICANT, OFFICER, ADMIN)]
Reader = Annotated[Principal, require(APPLICANT, OFFICER, APPROVER, AUDITOR, ADMIN)]

COLUMNS = "id, vendor, basis, granted_by, granted_at, revoked_at, revoked_by, revoke_reason"


class AuthorisationRequest(Input):
    vendor: CreditCode = Field(description="The vendor (credit code) the holder lets spend this voucher")


class AuthorisationRead(BaseModel):
    id: int
    voucher_code: str
    vendor: str
    basis: str = Field(description="`holder` (the API), `application` (named on the M1 application), `migration`")
    granted_by: str
    granted_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    revoke_reason: str | None


async def _voucher(session: AsyncSession, code: str, principal: Principal) -> Any:
    """The voucher, if the caller may see its authorisations (its holder, or the bureau); else 404."""
    row = (
        (
            await session.execute(
                text("SELECT id, code, holder, vendor FROM vouchers.vouchers WHERE code = :code"), {"code": code}
            )
        )
        .mappings()
        .first()
    )
    if row is None or not (principal.has(OFFICER, APPROVER, AUDITOR, ADMIN) or principal.applicant == row["holder"]):
        raise ProblemError(VOUCHER_NOT_FOUND, code=code)
    return row


def _read(code: str, row: Any) -> AuthorisationRead:
    return AuthorisationRead.model_validate({**dict(row), "voucher_code": code})


async def authorise_named(
    session: AsyncSession, voucher_id: int, vendors: Iterable[str], basis: str, granted_by: str
) -> None:
    """Authorise vendors for a voucher (those already standing are left as they are)."""
    for vendor in sorted(set(vendors)):
        await session.execute(
            text(
                "INSERT INTO vouchers.vendor_authorisations (voucher_id, vendor, basis, granted_by, request_id) "
                "VALUES (:voucher, :vendor, :basis, :by, :request_id) "
                "ON CONFLICT (voucher_id, vendor) WHERE revoked_at IS NULL DO NOTHING"
            ),
            {
                "voucher": voucher_id,
                "vendor": vendor,
                "basis": basis,
                "by": granted_by,
                "request_id": request_id_var.get(),
            },
        )


def application_providers(decision: dict[str, Any]) -> list[str]:
    """The compute providers an M1 application named on its invoices: the holder's own choice."""
    evidence = decision.get("evidence") or {}
    invoices = evidence.get("invoices") if isinstance(evidence, dict) else None
    if not isinstance(invoices, list):
        return []
    return [
        str(invoice["provider_credit_code"])
        for invoice in invoices
        if isinstance(invoice, dict) and isinstance(invoice.get("provider_credit_code"), str)
    ]


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
    if not key:
        raise ProblemError(IDEMPOTENCY_KEY_REQUIRED)
    client = f"holder:{principal.applicant}"
    digest = request_hash("authorise", code, payload.model_dump(mode="json"))
    claimed = (
        await session.execute(
            text("SELECT fresh, status_code, body FROM vouchers.claim_key(:client, :key, :hash)"),
            {"client": client, "key": key, "hash": digest},
        )
    ).one()
    if not claimed.fresh:
        stored = json.loads(claimed.body)
        if stored.get("code") == IDEMPOTENCY_KEY_REUSED.code:
            raise ProblemError(IDEMPOTENCY_KEY_REUSED, key=key)
        return JSONResponse(stored, status_code=int(claimed.status_code))
    voucher = await _voucher(session, code, principal)
    if voucher["vendor"] is not None:
        raise ProblemError(VOUCHER_NAMES_ITS_VENDOR, code=code, vendor=voucher["vendor"])
    standing = (
        (
            await session.execute(
                text(
                    f"SELECT {COLUMNS} FROM vouchers.vendor_authorisations "
                    "WHERE voucher_id = :voucher AND vendor = :vendor AND revoked_at IS NULL"
                ),
                {"voucher": voucher["id"], "vendor": payload.vendor},
            )
        )
        .mappings()
        .first()
    )
    status = 200
    if standing is None:
        standing = (
            (
                await session.execute(
                    text(
                        "INSERT INTO vouchers.vendor_authorisations "
                        "(voucher_id, vendor, basis, granted_by, request_id) "
                        f"VALUES (:voucher, :vendor, 'holder', :by, :request_id) RETURNING {COLUMNS}"
                    ),
                    {
                        "voucher": voucher["id"],
                        "vendor": payload.vendor,
                        "by": principal.actor,
                        "request_id": request_id_var.get(),
                    },
                )
            )
            .mappings()
            .one()
        )
        status = 201
    body = _read(code, standing).model_dump(mode="json")
    await session.execute(
        text("SELECT vouchers.remember(:client, :key, :status, CAST(:body AS jsonb))"),
        {"client": client, "key": key, "status": status, "body": json.dumps(body)},
    )
    return JSONResponse(body, status_code=status)


@router.get(
    "/v1/vouchers/{code}/authorisations",
    response_model=list[AuthorisationRead],
    summary="The vendors a compute voucher's holder authorised, revoked ones included (its holder, the bureau)",
)
async def list_authorisations(session: SessionDep, principal: Reader, code: VoucherCode) -> list[AuthorisationRead]:
    voucher = await _voucher(session, code, principal)
    rows = (
        await session.execute(
            text(f"SELECT {COLUMNS} FROM vouchers.vendor_authorisations WHERE voucher_id = :voucher ORDER BY id"),
            {"voucher": voucher["id"]},
        )
    ).mappings()
    return [_read(code, row) for row in rows]


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
    voucher = await _voucher(session, code, principal)
    row = (
        (
            await session.execute(
                text(
                    "UPDATE vouchers.vendor_authorisations SET revoked_at = clock_timestamp(), revoked_by = :by, "
                    "revoke_reason = :reason "
                    "WHERE voucher_id = :voucher AND vendor = :vendor AND revoked_at IS NULL "
                    f"RETURNING {COLUMNS}"
                ),
                {"voucher": voucher["id"], "vendor": vendor, "by": principal.actor, "reason": reason},
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise ProblemError(AUTHORISATION_NOT_FOUND, code=code, vendor=vendor)
    return _read(code, row)
