"""The vouchers service's error codes (stable; vendors' systems match on `code`)."""

from __future__ import annotations

from shared.errors import ErrorCode

IDEMPOTENCY_KEY_REQUIRED = ErrorCode(
    "idempotency_key_required",
    400,
    "该操作须带 Idempotency-Key 请求头（重试时使用同一个值）",
    "This call needs an Idempotency-Key header (reuse the same value when retrying)",
)
IDEMPOTENCY_KEY_REUSED = ErrorCode(
    "idempotency_key_reused",
    409,
    "Idempotency-Key {key} 已用于另一内容不同的请求，未做任何更改",
    "Idempotency-Key {key} was already used for a different request; nothing was changed",
)
VOUCHER_NOT_FOUND = ErrorCode("voucher_not_found", 404, "券不存在：{code}", "No such voucher: {code}")
#: A compute voucher's holder has not authorised the vendor (issue #12, finding 7; authorisations.py).
VENDOR_NOT_AUTHORISED = ErrorCode(
    "vendor_not_authorised",
    403,
    "券 {code} 的持有企业未授权供应商 {vendor} 使用该券，未做任何更改",
    "The holder of voucher {code} has not authorised vendor {vendor} to spend it; nothing was changed",
)
#: An enterprise's or vendor's statement asked for by a client bound to another organisation.
STATEMENT_NOT_FOUND = ErrorCode(
    "statement_not_found", 404, "没有该单位的对账单：{credit_code}", "No statement for {credit_code}"
)
VENDOR_NOT_COMPUTE_VENDOR = ErrorCode(
    "vendor_not_compute_vendor",
    403,
    "算力券只能由登记的算力供应商兑付",
    "Compute vouchers are redeemed only by registered compute vendors",
    clause="M1",
)
VENDOR_AFFILIATED = ErrorCode(
    "vendor_affiliated",
    403,
    "供应商与持券企业为关联方，不能兑付算力券",
    "The vendor is affiliated with the holder: it cannot redeem compute vouchers",
    clause="M1",
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
DECISION_NOT_APPROVED = ErrorCode(
    "decision_not_approved",
    409,
    "资格审核系统中没有已核准的决定 {decision_id}，不能发券",
    "The eligibility service has no approved decision {decision_id}: nothing can be issued",
)
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
VOUCHER_HAS_HOLDS = ErrorCode(
    "voucher_has_holds",
    409,
    "券尚有未完成的预留（{held_yuan} 元），请先确认或释放",
    "The voucher has open holds ({held_yuan} yuan): capture or release them first",
)
VOUCHER_NOT_ACTIVE = ErrorCode(
    "voucher_not_active", 409, "券已{state_zh}，不能作废", "The voucher is {state}: it cannot be voided"
)
PARAMETER_MISSING = ErrorCode(
    "parameter_missing",
    503,
    "政策参数 {parameter} 在 {day} 没有取值，未做任何更改",
    "Policy parameter {parameter} has no value on {day}; nothing was changed",
)
GRANT_NOT_FOUND = ErrorCode("grant_not_found", 404, "拨付记录不存在：{id}", "No such grant: {id}")
ALREADY_REVERSED = ErrorCode(
    "already_reversed",
    409,
    "该笔已被冲正（冲正分录 {entry_id}）",
    "This was already reversed (reversing entry {entry_id})",
)
#: A2: the programme budget of a measure and year is a ceiling (services/vouchers/budget_ceilings.py).
BUDGET_EXHAUSTED = ErrorCode(
    "budget_exhausted",
    409,
    "超出 {measure}（{_label_zh}）{year} 年度专项资金预算 {budget_yuan} 元（A2）：尚余 {remaining_yuan} 元，"
    "本次需 {requested_yuan} 元，未做任何更改",
    "Over the {year} programme budget of {measure} ({_label_en}), {budget_yuan} yuan (clause A2): "
    "{remaining_yuan} yuan remains, {requested_yuan} requested; nothing was changed",
    clause="A2",
)
NO_BUDGET = ErrorCode(
    "no_budget",
    409,
    "{measure}（{_label_zh}）{year} 年度尚无专项资金预算（A2，预算文件 {budget_file_version}），不能发放，未做任何更改",
    "No programme budget stands for {measure} ({_label_en}) in {year} (clause A2, budget file "
    "{budget_file_version}): nothing can be issued; nothing was changed",
    clause="A2",
)
RESERVATION_NOT_FOUND = ErrorCode(
    "reservation_not_found", 404, "预算预留不存在：{id}", "No such budget reservation: {id}", clause="A2"
)
RESERVATION_CONFLICT = ErrorCode(
    "reservation_conflict",
    409,
    "预算预留 {id} 已以不同内容存在（决定、措施或金额不同），未做任何更改",
    "Budget reservation {id} already exists with a different decision, measure or amount; nothing was changed",
    clause="A2",
)
BUDGET_ALREADY_RESERVED = ErrorCode(
    "budget_already_reserved",
    409,
    "决定 {decision_id} 已有预算预留（{reservation_state}，{reserved_at}）：同一决定的另一审批正在进行或已完成，"
    "请稍后重试",
    "Decision {decision_id} already holds a budget reservation ({reservation_state}, {reserved_at}): another "
    "approval of it is in progress or done; retry later",
    clause="A2",
)
RESERVATION_CONSUMED = ErrorCode(
    "reservation_consumed",
    409,
    "预算预留 {id} 已用于发放，不能释放",
    "Budget reservation {id} was consumed by an issuance or grant; it cannot be released",
    clause="A2",
)
