"""The eligibility service's error codes (stable; clients match on `code`)."""

from __future__ import annotations

from shared.errors import ErrorCode

APPLICATION_NOT_FOUND = ErrorCode("application_not_found", 404, "申请不存在：{id}", "No such application: {id}")
DECISION_NOT_FOUND = ErrorCode("decision_not_found", 404, "决定不存在：{id}", "No such decision: {id}")
DECISION_NOT_APPROVED = ErrorCode(
    "decision_not_approved",
    404,
    "没有已核准的决定：{id}（不存在、未核准或已被取代）",
    "No approved decision {id} (unknown, not approved, or superseded)",
)
AS_OF_IN_FUTURE = ErrorCode(
    "as_of_in_future", 422, "申请日期 {as_of} 晚于今天", "The application date {as_of} is in the future"
)
AS_OF_OFFICER_ONLY = ErrorCode(
    "as_of_officer_only",
    403,
    "申请日期为收件当日（{today}）；只有工作人员可登记更早的日期（{as_of}）",
    "The application date is the day it is received ({today}); only an officer may record an earlier one ({as_of})",
    clause="A4",
)
AS_OF_REASON_REQUIRED = ErrorCode(
    "as_of_reason_required",
    422,
    "登记早于今天（{today}）的申请日期 {as_of} 须写明理由（as_of_reason）",
    "Recording an application date ({as_of}) before today ({today}) needs a written reason (as_of_reason)",
    clause="A4",
)
AS_OF_BEFORE_POLICY = ErrorCode(
    "as_of_before_policy",
    422,
    "申请日期 {as_of} 早于政策参数的起始日期 {first}",
    "The application date {as_of} is before the policy's parameters begin ({first})",
    clause="A4",
)
SUBMISSION_CONTENDED = ErrorCode(
    "submission_contended",
    409,
    "企业 {applicant} 的 {measure} 申请正被连续提交：本申请未保存，请稍后重试",
    "Applications of {applicant} for {measure} are arriving without pause: this one was not stored, retry later",
)
INVALID_STATE = ErrorCode(
    "invalid_state",
    409,
    "申请当前状态为 {status}，不能{action_zh}",
    "The application is {status}: cannot {action}",
)
SELF_APPROVAL = ErrorCode(
    "self_approval",
    403,
    "审核人不能核准自己的审核（{actor}）",
    "A reviewer cannot approve their own review ({actor})",
)
AMOUNT_REQUIRED = ErrorCode(
    "amount_required",
    422,
    "该决定需人工复核：请给出建议金额",
    "This decision needs review: give the recommended amount",
)
AMOUNT_NOT_ALLOWED = ErrorCode(
    "amount_not_allowed",
    422,
    "建议金额 {amount_fen} 分不符合规则结果（{allowed}）；规则之外的金额请走“一事一议”（A1）",
    "Recommended amount {amount_fen} fen does not fit the rule's result ({allowed}); "
    "amounts outside the formulas go through A1",
    clause="A1",
)
APPROVE_REJECTED_REVIEW = ErrorCode(
    "review_recommended_rejection",
    409,
    "审核意见为不予支持，不能核准支持",
    "The review recommended rejection: it cannot be approved as a grant",
)
PARAMETER_NOT_FOUND = ErrorCode("parameter_not_found", 404, "参数不存在：{id}", "No such parameter: {id}")
PARAMETER_NOT_FUTURE = ErrorCode(
    "parameter_effective_date_not_future",
    422,
    "新参数版本的生效日期须晚于今天（{today}）：已作出的决定不受影响",
    "A new parameter version must take effect after today ({today}): decisions already made never change",
)
PARAMETER_INVALID = ErrorCode("parameter_invalid", 422, "参数值无效：{problem}", "Invalid parameter value: {problem}")
SIMULATION_SCOPE = ErrorCode(
    "simulation_scope",
    422,
    "请给出 application_ids，或 measure 与 year",
    "Give application_ids, or measure and year",
)
SIMULATION_TRACE = ErrorCode(
    "simulation_trace_scope",
    422,
    "trace_of 须为本次模拟范围内的申请（{id}）；include_trace 只用于恰好一个 application_ids",
    "trace_of must name an application of the simulation's scope ({id}); include_trace needs exactly one "
    "application id",
)
ALREADY_AWARDED = ErrorCode(
    "already_awarded",
    409,
    "{claim_key} 已由申请 {holder} 获得扶持（{clause}：一次性）；"
    "如确需再次扶持，须经一事一议（A1）写明所覆盖的键及理由",
    "{claim_key} was already awarded to application {holder} ({clause}: once only); paying it again needs an A1 "
    "decision that names the key it overrides and why",
)
ANNUAL_CAP_REACHED = ErrorCode(
    "annual_cap_reached",
    409,
    "{clause} {year} 年度上限 {limit_yuan} 元：已用 {used_yuan} 元，尚余 {remaining_yuan} 元，本次需 {amount_yuan} 元",
    "The {clause} cap for {year} is {limit_yuan} yuan: {used_yuan} used, {remaining_yuan} remaining, "
    "{amount_yuan} needed",
)
OVERRIDE_NOT_CLAIMED = ErrorCode(
    "override_not_claimed",
    422,
    "一事一议只能覆盖本决定所扶持的键：{claim_key} 不在其中",
    "An A1 decision can only override keys it pays for: {claim_key} is not one of them",
    clause="A1",
)
#: A2: an approval reserves its amount from the programme budget (vouchers service) before it commits
BUDGET_EXHAUSTED = ErrorCode(
    "budget_exhausted",
    409,
    "超出 {measure} {year} 年度专项资金预算 {budget_yuan} 元（A2）：尚余 {remaining_yuan} 元，"
    "本次需 {requested_yuan} 元；未批准，未做任何更改",
    "Over the {year} programme budget of {measure}, {budget_yuan} yuan (clause A2): {remaining_yuan} yuan remains, "
    "{requested_yuan} requested; not approved, nothing was changed",
    clause="A2",
)
NO_BUDGET = ErrorCode(
    "no_budget",
    409,
    "{measure} {year} 年度尚无专项资金预算（A2）：未批准，未做任何更改",
    "No programme budget stands for {measure} in {year} (clause A2): not approved, nothing was changed",
    clause="A2",
)
BUDGET_ALREADY_RESERVED = ErrorCode(
    "budget_already_reserved",
    409,
    "该决定的另一审批正在进行或已完成（预算预留 {reservation_state}，{reserved_at}）：请稍后重试",
    "Another approval of this decision is in progress or done (budget reservation {reservation_state}, "
    "{reserved_at}): retry later",
    clause="A2",
)
