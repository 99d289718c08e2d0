"""The aggregates API's payloads."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class AsOfRead(BaseModel):
    entry_id: int = Field(description="The last ledger entry projected (in commit-safe (txid, id) order)")
    projected_at: datetime = Field(description="When the projector last advanced")
    lag_entries: int = Field(description="Entries written after it, not yet projected (estimated above 10,000)")


class Totals(BaseModel):
    issued_fen: int
    redeemed_fen: int
    held_fen: int = Field(description="Still reserved by holds at the end of the year (a stock)")
    settled_fen: int
    expired_fen: int
    voided_fen: int
    granted_fen: int = Field(description="Grants disbursed, net of reversed grants")
    remaining_fen: int = Field(description="Still in vouchers at the end of the year (a stock)")


class MeasureTotals(Totals):
    measure: str


class SummaryRead(BaseModel):
    year: int
    totals: Totals
    by_measure: list[MeasureTotals]
    as_of: AsOfRead


class MonthRead(BaseModel):
    month: int
    issued_fen: int
    redeemed_fen: int
    settled_fen: int
    expired_fen: int
    granted_fen: int


class MonthlyRead(BaseModel):
    year: int
    measure: str | None
    months: list[MonthRead]
    as_of: AsOfRead


class RevenueClassRead(BaseModel):
    revenue_class: str = Field(description="M1 revenue class (C1…C5), `unknown` when the voucher did not record it")
    issued_fen: int
    redeemed_fen: int
    vouchers: int


class RevenueClassesRead(BaseModel):
    year: int
    classes: list[RevenueClassRead]
    as_of: AsOfRead


class ShareRead(BaseModel):
    share: str = Field(description="district (incl. district and domestic), domestic (only), other; unknown if any")
    redeemed_fen: int
    issued_fen: int


class ComputeShareRead(BaseModel):
    year: int
    shares: list[ShareRead]
    as_of: AsOfRead


class VendorRead(BaseModel):
    vendor: str
    redeemed_fen: int
    settled_fen: int
    redemptions: int


class VendorsRead(BaseModel):
    year: int
    measure: str | None
    vendors: list[VendorRead]
    as_of: AsOfRead


class BudgetLine(BaseModel):
    measure: str
    budget_fen: int | None = Field(description="None: no budget stands for this measure and year")
    used_fen: int = Field(
        description="issued + granted − returned (voided, expired, reversed) on the budget account, as projected"
    )
    committed_fen: int = Field(
        description="What the budget's ceiling row (A2) has committed, live: issued + granted − returned, plus "
        "reserved_fen. Equals used_fen + reserved_fen once the projection has caught up; before the year's first "
        "commitment since migration 0009 (no row yet) it is used_fen"
    )
    reserved_fen: int = Field(
        default=0,
        description="Reserved by approvals whose voucher or grant is not issued yet (A2; part of committed_fen)",
    )
    remaining_fen: int | None = Field(description="budget − committed, never below 0 (None: no budget)")
    over_budget: bool = Field(
        description="More committed than the budget standing today (a figure lowered below what was already "
        "committed, or history from before the budget was a ceiling); new commitments are refused (A2)"
    )
    used_ratio: str | None = Field(description="used ÷ budget, rounded down to 4 places")
    budget_source: str | None
    budget_status: str | None = Field(description="given, provisional or interpretation")


class BudgetRead(BaseModel):
    year: int
    budget_file_version: str
    measures: list[BudgetLine]
    as_of: AsOfRead


class Bucket(BaseModel):
    from_fen: int
    to_fen: int = Field(description="Exclusive, except for the last bucket")
    enterprises: int


class HeadroomRead(BaseModel):
    year: int
    limit_fen: int | None = Field(description="The ceiling (the highest, if it changed during the year)")
    buckets: list[Bucket]
    enterprises: int
    at_ceiling: int
    as_of: AsOfRead


class EnterpriseRead(BaseModel):
    credit_code: str
    issued_fen: int
    redeemed_fen: int
    granted_fen: int


class TopEnterprisesRead(BaseModel):
    year: int
    enterprises: list[EnterpriseRead]
    as_of: AsOfRead


class DifferenceRead(BaseModel):
    projection: str = Field(description="table.column (counts for entries, redemptions, vouchers)")
    key: str
    projected_fen: int | None
    ledger_fen: int | None


class ReconciliationRead(BaseModel):
    ok: bool
    checked_through_entry_id: int
    differences: list[DifferenceRead] = Field(description="At most 1,000")
    differences_total: int
    checked_at: datetime
    seconds: float
