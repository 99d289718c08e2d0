"""The chain's error codes."""

from __future__ import annotations

from shared.errors import ErrorCode

CHECKPOINT_EXISTS = ErrorCode(
    "checkpoint_exists",
    409,
    "{day} 的检查点已发布（每天一个），未做任何更改",
    "A checkpoint for {day} was already published (one a day); nothing was changed",
)
CHECKPOINT_OUT_OF_ORDER = ErrorCode(
    "checkpoint_out_of_order",
    409,
    "已有更晚日期（{latest}）的检查点，不能再发布 {day} 的检查点",
    "A checkpoint for a later day ({latest}) exists: one for {day} can no longer be published",
)
CHECKPOINT_DAY_IN_FUTURE = ErrorCode(
    "checkpoint_day_in_future",
    422,
    "检查点日期 {day} 晚于今天（{today}）",
    "The checkpoint day {day} is after today ({today})",
)
LEDGER_EMPTY = ErrorCode(
    "ledger_empty",
    409,
    "账本尚无已封存的条目，没有可发布的链头",
    "The ledger has no sealed entries yet: there is no head to publish",
)
CHAIN_BROKEN = ErrorCode(
    "chain_broken",
    409,
    "哈希链校验未通过（条目 {entry_id}：{reason}），未发布检查点",
    "The hash chain does not verify (entry {entry_id}: {reason}); no checkpoint was published",
)
CHECKPOINT_KEY_MISSING = ErrorCode(
    "checkpoint_key_missing",
    409,
    "未配置检查点签名密钥（VOUCHERS_CHECKPOINT_KEYS_DIR），未发布检查点",
    "No checkpoint signing key is configured (VOUCHERS_CHECKPOINT_KEYS_DIR); no checkpoint was published",
)
CHECKPOINT_SINK_INVALID = ErrorCode(
    "checkpoint_sink_invalid",
    409,
    "检查点存证文件第 {line} 行无法验证（{problem}），未发布检查点",
    "Line {line} of the checkpoint sink does not verify ({problem}); no checkpoint was published",
)
CHECKPOINT_SINK_UNAVAILABLE = ErrorCode(
    "checkpoint_sink_unavailable",
    503,
    "无法写入检查点存证文件，未发布检查点，请稍后重试",
    "The checkpoint could not be written to its sink; nothing was published, try again later",
)
