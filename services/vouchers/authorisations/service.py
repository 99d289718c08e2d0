"""Authorising, listing and revoking the vendors that may spend a compute voucher (issue #12, finding 7)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import ADMIN, APPROVER, AUDITOR, OFFICER, Principal
from shared.errors import ProblemError

from .. import idempotency
from ..errors import IDEMPOTENCY_KEY_REUSED, VOUCHER_NOT_FOUND
from . import repository
from .errors import AUTHORISATION_NOT_FOUND, VOUCHER_NAMES_ITS_VENDOR
from .schemas import AuthorisationRead, AuthorisationRequest


async def _voucher(session: AsyncSession, code: str, principal: Principal) -> RowMapping:
    """The voucher, if the caller may see its authorisations (its holder, or the bureau); else 404."""
    row = await repository.voucher(session, code)
    if row is None or not (principal.has(OFFICER, APPROVER, AUDITOR, ADMIN) or principal.applicant == row["holder"]):
        raise ProblemError(VOUCHER_NOT_FOUND, code=code)
    return row


def _read(code: str, row: RowMapping) -> AuthorisationRead:
    return AuthorisationRead.model_validate({**dict(row), "voucher_code": code})


async def authorise_named(
    session: AsyncSession, voucher_id: int, vendors: Iterable[str], basis: str, granted_by: str
) -> None:
    """Authorise vendors for a voucher (those already standing are left as they are)."""
    await repository.authorise(session, voucher_id, vendors, basis, granted_by)


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


async def authorise(
    session: AsyncSession, principal: Principal, code: str, payload: AuthorisationRequest, key: str
) -> JSONResponse:
    """The holder authorises a vendor, once per Idempotency-Key: 201 new, 200 standing, a retry the same."""
    client = f"holder:{principal.applicant}"
    digest = idempotency.request_hash("authorise", code, payload.model_dump(mode="json"))
    claimed = await idempotency.claim_key(session, client, key, digest)
    if not claimed.fresh:
        stored = json.loads(claimed.body)
        if stored.get("code") == IDEMPOTENCY_KEY_REUSED.code:
            raise ProblemError(IDEMPOTENCY_KEY_REUSED, key=key)
        return JSONResponse(stored, status_code=int(claimed.status_code))
    voucher = await _voucher(session, code, principal)
    if voucher["vendor"] is not None:
        raise ProblemError(VOUCHER_NAMES_ITS_VENDOR, code=code, vendor=voucher["vendor"])
    standing = await repository.standing(session, voucher["id"], payload.vendor)
    status = 200
    if standing is None:
        standing = await repository.add_by_holder(session, voucher["id"], payload.vendor, principal.actor)
        status = 201
    body = _read(code, standing).model_dump(mode="json")
    await idempotency.remember(session, client, key, status, json.dumps(body))
    return JSONResponse(body, status_code=status)


async def list_for(session: AsyncSession, principal: Principal, code: str) -> list[AuthorisationRead]:
    voucher = await _voucher(session, code, principal)
    return [_read(code, row) for row in await repository.of_voucher(session, voucher["id"])]


async def revoke(
    session: AsyncSession, principal: Principal, code: str, vendor: str, reason: str | None
) -> AuthorisationRead:
    voucher = await _voucher(session, code, principal)
    row = await repository.revoke(session, voucher["id"], vendor, principal.actor, reason)
    if row is None:
        raise ProblemError(AUTHORISATION_NOT_FOUND, code=code, vendor=vendor)
    return _read(code, row)
