"""Payloads several of the vouchers service's packages share: a voucher, a grant, a ceiling, and the input base."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

VoucherState = Literal["active", "partly_redeemed", "redeemed", "expired", "voided"]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class VoucherRead(BaseModel):
    code: str
    kind: Literal["M1", "M3"]
    state: VoucherState
    holder: str
    vendor: str | None
    contract_key: str | None
    decision_id: uuid.UUID
    year: int
    amount_fen: int
    available_fen: int
    held_fen: int
    redeemed_fen: int
    returned_fen: int
    valid_until: date
    issued_at: datetime
    issued_by: str | None
    voided_at: datetime | None
    expired_at: datetime | None
    parameters_digest: str | None


class GrantRead(BaseModel):
    id: int
    decision_id: uuid.UUID
    measure: str
    holder: str
    year: int
    amount_fen: int
    entry_id: int
    issued_by: str | None
    issued_at: datetime
    reversed_by_entry_id: int | None = Field(default=None, description="The reversing entry, if reversed")


class AllowanceRead(BaseModel):
    holder: str
    year: int
    kind: str
    clause: str
    limit_fen: int
    used_fen: int
    headroom_fen: int
