"""The redemption path's payloads: a redemption or hold asked for, the ledger's answers, a bureau release."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from shared.money import PositiveFenAmount

from ..schemas import Input


class RedemptionRequest(Input):
    amount_fen: PositiveFenAmount
    invoice_number: Annotated[str, Field(min_length=1, max_length=64)]
    contract_number: Annotated[str, Field(min_length=1, max_length=100)] | None = None


class HoldRequest(RedemptionRequest):
    hold_seconds: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] | None = Field(
        default=None, description="How long the amount stays reserved (default: the service setting)"
    )


class VoucherBalances(BaseModel):
    """A voucher's balances just after the call."""

    amount_fen: int
    available_fen: int
    held_fen: int
    redeemed_fen: int


class RedemptionRead(BaseModel):
    """A redemption, or a hold (`status` held), as the ledger answers it (migrations/vouchers/functions/redeem.sql);
    a call sent again with its Idempotency-Key answers the same."""

    id: int = Field(description="The redemption's id; a hold's is what capture and release take")
    voucher_code: str
    vendor: str = Field(description="The vendor's credit code (the token's organisation)")
    amount_fen: int
    invoice_number: str
    contract_number: str | None
    status: Literal["held", "captured"] = Field(description="held: a hold; captured: redeemed")
    hold_expires_at: datetime | None = Field(description="When a hold ends if not captured; null for a redemption")
    entry_id: int = Field(description="The ledger entry written")
    voucher: VoucherBalances


class HoldFinished(BaseModel):
    """A hold captured (it is a redemption now) or released (the amount is available again), as the ledger answers
    it (migrations/vouchers/functions/finish_hold.sql); a call sent again with its Idempotency-Key answers the same."""

    id: int = Field(description="The hold's id")
    status: Literal["captured", "released"]
    amount_fen: int
    entry_id: int | None = Field(default=None, description="Capture: the ledger entry written")
    voucher_code: str | None = Field(default=None, description="Capture: the voucher")
    voucher: VoucherBalances | None = Field(default=None, description="Capture: the voucher's balances after it")


class BureauRelease(Input):
    reason: Annotated[str, Field(min_length=2, max_length=2000)]


class ReleasedHold(BaseModel):
    id: int
    status: str
    amount_fen: int
    voucher_code: str
    vendor: str
    entry_id: int
    released_by: str
    reason: str
