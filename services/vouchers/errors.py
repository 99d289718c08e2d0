"""The vouchers service's error codes that several of its packages answer (stable; vendors' systems match on `code`)."""

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
DECISION_NOT_APPROVED = ErrorCode(
    "decision_not_approved",
    409,
    "资格审核系统中没有已核准的决定 {decision_id}，不能发券",
    "The eligibility service has no approved decision {decision_id}: nothing can be issued",
)
PARAMETER_MISSING = ErrorCode(
    "parameter_missing",
    503,
    "政策参数 {parameter} 在 {day} 没有取值，未做任何更改",
    "Policy parameter {parameter} has no value on {day}; nothing was changed",
)
