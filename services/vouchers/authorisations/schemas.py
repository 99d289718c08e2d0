"""The authorisations' payloads."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shared.identifiers import CreditCode

from ..schemas import Input


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
