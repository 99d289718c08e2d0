"""Test clocks' error codes (stable; clients match on `code`)."""

from __future__ import annotations

from shared.errors import ErrorCode

TEST_CLOCK_NOT_FOUND = ErrorCode(
    "test_clock_not_found", 404, "测试时钟不存在：{clock_id}", "No such test clock: {clock_id}"
)
TEST_CLOCK_BACKWARDS = ErrorCode(
    "test_clock_backwards",
    409,
    "测试时钟只能向前拨：当前为 {frozen_time}，请求的 {requested} 不晚于它",
    "A test clock only moves forward: it is at {frozen_time}, and {requested} is not later",
)
TEST_CLOCK_ORGANISATION_NOT_FOUND = ErrorCode(
    "test_clock_organisation_not_found",
    404,
    "组织不存在，不能绑定测试时钟：{credit_code}",
    "No such organisation to bind to a test clock: {credit_code}",
)
TEST_CLOCK_BOUND_ELSEWHERE = ErrorCode(
    "test_clock_bound_elsewhere",
    409,
    "企业 {credit_code} 已绑定另一个测试时钟（{clock_id}）：先解除绑定",
    "Enterprise {credit_code} is bound to another test clock ({clock_id}): unbind it first",
)
TEST_CLOCK_NOT_BOUND = ErrorCode(
    "test_clock_not_bound",
    404,
    "企业 {credit_code} 未绑定测试时钟 {clock_id}",
    "Enterprise {credit_code} is not bound to test clock {clock_id}",
)
TEST_CLOCK_FULL = ErrorCode(
    "test_clock_full",
    409,
    "一个测试时钟最多绑定 {limit} 家企业",
    "A test clock binds at most {limit} enterprises",
)
