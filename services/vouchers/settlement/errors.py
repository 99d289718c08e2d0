"""Settlement's error codes (stable; vendors' and the treasury's systems match on `code`)."""

from __future__ import annotations

from shared.errors import ErrorCode

SETTLEMENT_BATCH_NOT_FOUND = ErrorCode(
    "settlement_batch_not_found", 404, "结算批次不存在：{id}", "No such settlement batch: {id}"
)
NOTHING_TO_SETTLE = ErrorCode(
    "nothing_to_settle",
    409,
    "供应商 {vendor} 没有待结算的已确认兑付，未创建结算批次",
    "Vendor {vendor} has no captured redemptions awaiting settlement: no batch was created",
)
SETTLEMENT_BATCH_CLOSED = ErrorCode(
    "settlement_batch_closed",
    409,
    "结算批次 {id} 已由 {closed_by} 于 {closed_at} 关闭，不能再更改",
    "Settlement batch {id} was closed by {closed_by} at {closed_at}: it cannot change",
)
#: Four eyes on paying a vendor: the officer who gathered a batch does not also close it (pay it out).
SELF_SETTLEMENT = ErrorCode(
    "self_settlement",
    403,
    "结算批次 {id} 由 {actor} 创建，须由另一名经办人关闭",
    "Settlement batch {id} was created by {actor}: another officer must close it",
)
#: An enterprise's or vendor's statement asked for by a client bound to another organisation.
STATEMENT_NOT_FOUND = ErrorCode(
    "statement_not_found", 404, "没有该单位的对账单：{credit_code}", "No statement for {credit_code}"
)
