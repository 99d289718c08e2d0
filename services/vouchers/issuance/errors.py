"""Issuance's error codes: the ceilings an issuance takes (M1, M3), a voucher's void, a grant's reversal (stable)."""

from __future__ import annotations

from shared.errors import ErrorCode

WRONG_INSTRUMENT = ErrorCode(
    "wrong_instrument",
    422,
    "{measure} 的决定应通过 {endpoint} 处理",
    "Decisions of {measure} go through {endpoint}",
)
ALREADY_ISSUED = ErrorCode(
    "already_issued",
    409,
    "该决定已发放：{reference}",
    "This decision was already issued: {reference}",
)
CONTRACT_ALREADY_CLAIMED = ErrorCode(
    "contract_already_claimed",
    409,
    "同一合同仅能申领一次模型券：合同 {contract} 已申领",
    "A contract can be claimed only once: contract {contract} was already claimed",
    clause="M3",
)
OVER_CONTRACT_SHARE = ErrorCode(
    "over_contract_share",
    409,
    "申领金额 {claim_yuan} 元超过合同金额的 {ratio} 上限 {maximum_yuan} 元",
    "The claim of {claim_yuan} yuan exceeds {ratio} of the contract: at most {maximum_yuan} yuan",
    clause="M3",
)
CLAIM_CEILING = ErrorCode(
    "claim_ceiling",
    409,
    "超过 {year} 年度模型券累计申领上限 {limit_yuan} 元：已申领 {used_yuan} 元，尚余 {headroom_yuan} 元",
    "Over the {year} model-voucher claim ceiling of {limit_yuan} yuan: {used_yuan} claimed, "
    "{headroom_yuan} remains for {year}",
    clause="M3",
)
CLASS_CAP = ErrorCode(
    "class_cap",
    409,
    "超过 {year} 年度算力券企业类别上限 {limit_yuan} 元：尚余 {headroom_yuan} 元",
    "Over the {year} compute-voucher class cap of {limit_yuan} yuan: {headroom_yuan} remains",
    clause="M1",
)
VOUCHER_NOT_ACTIVE = ErrorCode(
    "voucher_not_active", 409, "券已{state_zh}，不能作废", "The voucher is {state}: it cannot be voided"
)
GRANT_NOT_FOUND = ErrorCode("grant_not_found", 404, "拨付记录不存在：{id}", "No such grant: {id}")
ALREADY_REVERSED = ErrorCode(
    "already_reversed",
    409,
    "该笔已被冲正（冲正分录 {entry_id}）",
    "This was already reversed (reversing entry {entry_id})",
)
