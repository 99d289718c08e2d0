"""The programme budget's error codes (clause A2; stable)."""

from __future__ import annotations

from shared.errors import ErrorCode

#: A2: the programme budget of a measure and year is a ceiling (budgets/service.py).
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
