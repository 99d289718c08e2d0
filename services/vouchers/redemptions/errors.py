"""The redemption path's error codes: the refusals `vouchers.redeem()` and `vouchers.finish_hold()` return,
and the holds' (stable; vendors' systems match on `code`)."""

from __future__ import annotations

from shared.errors import ErrorCode

#: A compute voucher's holder has not authorised the vendor (issue #12, finding 7; authorisations/).
VENDOR_NOT_AUTHORISED = ErrorCode(
    "vendor_not_authorised",
    403,
    "券 {code} 的持有企业未授权供应商 {vendor} 使用该券，未做任何更改",
    "The holder of voucher {code} has not authorised vendor {vendor} to spend it; nothing was changed",
)
VOUCHER_VOIDED = ErrorCode("voucher_voided", 409, "券已作废：{code}", "The voucher was voided: {code}")
VOUCHER_EXPIRED = ErrorCode(
    "voucher_expired", 409, "券已于 {valid_until} 过期：{code}", "The voucher expired on {valid_until}: {code}"
)
INSUFFICIENT_BALANCE = ErrorCode(
    "insufficient_balance",
    409,
    "余额不足：可用 {available_yuan} 元，申请 {requested_yuan} 元",
    "Insufficient balance: {available_yuan} yuan available, {requested_yuan} requested",
)
REDEMPTION_CEILING = ErrorCode(
    "redemption_ceiling",
    409,
    "超过 {year} 年度模型券累计兑付上限 {limit_yuan} 元：尚余 {headroom_yuan} 元",
    "Over the {year} model-voucher redemption ceiling of {limit_yuan} yuan: {headroom_yuan} remains for {year}",
    clause="M3",
)
HOLD_NOT_FOUND = ErrorCode("hold_not_found", 404, "预留不存在：{id}", "No such hold: {id}")
HOLD_NOT_ACTIVE = ErrorCode(
    "hold_not_active", 409, "预留 {id} 已不可用（{hold_status}）", "Hold {id} is no longer active ({hold_status})"
)
VOUCHER_HAS_HOLDS = ErrorCode(
    "voucher_has_holds",
    409,
    "券尚有未完成的预留（{held_yuan} 元），请先确认或释放",
    "The voucher has open holds ({held_yuan} yuan): capture or release them first",
)
HOLD_TOO_LONG = ErrorCode(
    "hold_too_long",
    422,
    "预留时长 {hold_seconds} 秒超过上限 {max_seconds} 秒，未做任何更改",
    "A hold may last at most {max_seconds} seconds, not {hold_seconds}; nothing was changed",
)
