"""The registry's error codes (stable; clients match on `code`)."""

from __future__ import annotations

from shared.errors import ErrorCode, register_field_messages

RECORD_NOT_FOUND = ErrorCode("record_not_found", 404, "{entity_zh}不存在：{key}", "No such {entity}: {key}")
RECORD_NOT_FOUND_AS_OF = ErrorCode(
    "record_not_found_as_of",
    404,
    "{entity_zh} {key} 在 {as_of} 尚无记录",
    "{entity} {key} had no record as of {as_of}",
)
RECORD_EXISTS = ErrorCode("record_exists", 409, "{entity_zh}已存在：{key}", "{entity} already exists: {key}")
REFERENCE_NOT_FOUND = ErrorCode(
    "reference_not_found",
    422,
    "引用的{target_zh}不存在：{value}",
    "The referenced {target} does not exist: {value}",
)
EFFECTIVE_DATE_IN_FUTURE = ErrorCode(
    "effective_date_in_future",
    422,
    "生效日期 {effective_from} 晚于今天：登记簿只记录已发生的事实",
    "effective_from {effective_from} is in the future: the registry records facts that have happened",
)
BEFORE_RECORD_EXISTED = ErrorCode(
    "effective_date_before_record",
    422,
    "生效日期 {effective_from} 早于该记录的首个版本（{first}）",
    "effective_from {effective_from} is before the record's first version ({first})",
)
CONCURRENT_CHANGE = ErrorCode(
    "concurrent_change", 409, "数据已被并发修改，请重试", "The data was changed concurrently; retry"
)
IMPORT_REJECTED = ErrorCode(
    "import_rejected",
    422,
    "导入未执行：{failed} 行有错误（全部成功或全部不写入模式），未写入任何数据",
    "Import not applied: {failed} row(s) have errors (all-or-nothing mode); nothing was written",
)
IMPORT_UNKNOWN_COLUMNS = ErrorCode(
    "import_unknown_columns",
    422,
    "导入文件含未知列：{columns}",
    "The import file has unknown columns: {columns}",
)
IMPORT_UNREADABLE = ErrorCode(
    "import_unreadable",
    422,
    "无法读取导入文件：{reason}",
    "The import file cannot be read: {reason}",
)
IMPORT_EMPTY = ErrorCode("import_empty", 422, "导入文件没有数据行", "The import file has no data rows")
IMPORT_TOO_MANY_ROWS = ErrorCode(
    "import_too_many_rows",
    413,
    "导入文件行数过多（上限 {limit} 行），请分批导入",
    "Too many rows (limit {limit}); split the import",
)

register_field_messages(
    {
        "invalid_credit_code": "统一社会信用代码无效：{reason_zh}",
        "duplicate_in_file": "与第 {first_row} 行的键重复",
        "reference_not_found": "引用的{target_zh}不存在：{value}",
        "same_organisation": "关联方不能是同一组织",
        "kind_status_mismatch": "备案类型与状态不符",
    }
)
