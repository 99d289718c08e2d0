"""Settlement's payloads: batches, and the statements of vouchers, enterprises and vendors."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel

from shared.identifiers import CreditCode
from shared.pagination import Page

from ..schemas import AllowanceRead, GrantRead, Input, VoucherRead

BatchStatus = Literal["open", "closed"]
RedemptionStatus = Literal["captured", "held", "released", "expired"]


class BatchCreate(Input):
    """The officer who creates the batch is the caller (its token)."""

    vendor: CreditCode


class BatchRead(BaseModel):
    id: int
    vendor: str
    status: BatchStatus
    total_fen: int
    redemption_count: int
    created_by: str
    created_at: datetime
    closed_by: str | None
    closed_at: datetime | None
    entry_id: int | None


class BatchRedemption(BaseModel):
    id: int
    voucher_code: str
    amount_fen: int
    invoice_number: str
    contract_number: str | None
    year: int
    created_at: datetime
    updated_at: datetime


class BatchDetail(Page[BatchRedemption]):
    """The batch, and a page of its redemptions as `items`."""

    batch: BatchRead


class AccountRef(BaseModel):
    kind: str
    ref: str


class StatementLine(BaseModel):
    entry_id: int
    kind: str
    amount_fen: int
    from_account: AccountRef
    to_account: AccountRef
    created_at: datetime
    redemption_id: int | None
    invoice_number: str | None
    actor: str | None
    memo: str | None
    available_fen: int
    held_fen: int
    redeemed_fen: int
    returned_fen: int


class VoucherStatement(Page[StatementLine]):
    """The voucher now, and a page of its entries (oldest first) with the balances after each."""

    voucher: VoucherRead


class VoucherLine(BaseModel):
    code: str
    kind: Literal["M1", "M3"]
    state: str
    vendor: str | None
    amount_fen: int
    available_fen: int
    held_fen: int
    redeemed_fen: int
    returned_fen: int
    issued_at: datetime
    valid_until: date


class KindTotals(BaseModel):
    kind: Literal["M1", "M3"]
    vouchers: int
    claimed_fen: int
    available_fen: int
    held_fen: int
    redeemed_fen: int
    returned_fen: int
    #: redemptions made in the statement's calendar year, of vouchers of any year (M3-7)
    redeemed_in_year_fen: int
    held_in_year_fen: int


class EnterpriseStatement(Page[VoucherLine]):
    holder: str
    year: int
    claimed_fen: int
    redeemed_fen: int
    redeemed_in_year_fen: int
    by_kind: list[KindTotals]
    ceilings: list[AllowanceRead]
    grants: list[GrantRead]
    grants_fen: int


class VendorRedemption(BaseModel):
    id: int
    voucher_code: str
    voucher_kind: str
    amount_fen: int
    invoice_number: str
    contract_number: str | None
    status: RedemptionStatus
    year: int
    hold_expires_at: datetime | None
    settlement_batch_id: int | None
    created_at: datetime
    updated_at: datetime


class StatusTotal(BaseModel):
    count: int
    amount_fen: int


class VendorStatement(Page[VendorRedemption]):
    vendor: str
    redemptions: dict[RedemptionStatus, StatusTotal]
    #: captured, in no batch yet
    unbatched_fen: int
    receivable_fen: int
    settled_fen: int
    batches: dict[BatchStatus, StatusTotal]
