"""The parameters every export takes: format, byte order mark, date range (a FastAPI dependency)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from fastapi import Query

from shared.errors import FieldError, ProblemError, validation_problem
from shared.exports.query import NDJSON_MEDIA_TYPE, ExportFormat, TimeRange
from shared.instants import SHENZHEN

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# --- request parameters -------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportOptions:
    format: ExportFormat
    bom: bool
    span: TimeRange


_BOUND_HELP = (
    "a date YYYY-MM-DD (the start of that day in Asia/Shanghai) or an ISO 8601 instant with a UTC offset "
    "(2026-11-01T08:00:00+08:00, 2026-11-01T00:00:00Z)"
)


def parse_bound(name: str, text: str) -> datetime:
    """A range bound: a Shenzhen date (its midnight) or an instant with an offset; else a 422."""
    value = text.strip()

    def invalid(code: str, zh: str, en: str) -> ProblemError:
        return validation_problem([FieldError(f"query.{name}", code, zh, en, {"value": text})])

    try:
        if _DATE.match(value):
            moment = datetime.combine(date.fromisoformat(value), time(), tzinfo=SHENZHEN)
        else:
            moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid(
            "invalid_bound",
            "应为日期（YYYY-MM-DD，即上海时间当日零时）或带时区偏移的 ISO 8601 时间",
            f"must be {_BOUND_HELP}",
        ) from None
    if moment.utcoffset() is None:
        raise invalid(
            "instant_without_offset",
            "时间须带时区偏移（如 +08:00 或 Z）",
            "an instant needs a UTC offset (e.g. +08:00 or Z)",
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise invalid("invalid_bound", "时间超出范围", "out of range") from None


def parse_range(start: str | None, end: str | None) -> TimeRange:
    span = TimeRange(
        None if start is None else parse_bound("from", start), None if end is None else parse_bound("to", end)
    )
    if span.start is not None and span.end is not None and span.end <= span.start:
        raise validation_problem(
            [
                FieldError(
                    "query.to",
                    "empty_range",
                    "结束时间（to，不含）须晚于开始时间（from）",
                    "`to` (exclusive) must be after `from`",
                    {"from": start, "to": end},
                )
            ]
        )
    return span


async def export_options(
    start: Annotated[
        str | None,
        Query(alias="from", max_length=64, description=f"Inclusive lower bound: {_BOUND_HELP}"),
    ] = None,
    end: Annotated[
        str | None,
        Query(alias="to", max_length=64, description=f"Exclusive upper bound: {_BOUND_HELP}"),
    ] = None,
    export_format: Annotated[
        ExportFormat, Query(alias="format", description="ndjson (with a trailer line) or csv (with a header row)")
    ] = "ndjson",
    bom: Annotated[bool, Query(description="CSV only: start with a UTF-8 byte order mark (for Excel)")] = False,
) -> ExportOptions:
    """The parameters every export takes (a FastAPI dependency)."""
    return ExportOptions(export_format, bom, parse_range(start, end))


#: OpenAPI for an export route's 200 answer.
EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The records, streamed: NDJSON ending with a trailer line, or CSV with a header row",
        "content": {
            NDJSON_MEDIA_TYPE: {
                "schema": {
                    "type": "string",
                    "description": "`format=ndjson`: UTF-8, one JSON object per line (a record, its columns as keys), "
                    'then the trailer line `{"end": {"rows": N}}`; a file without the trailer is incomplete',
                }
            },
            "text/csv": {
                "schema": {
                    "type": "string",
                    "description": "`format=csv` (`text/csv; charset=utf-8; header=present`): UTF-8 (with a byte "
                    "order mark if `bom=true`), a header row with the column names, then one row per record; a text "
                    "cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is written with a `'` in "
                    "front (CSV injection), numbers, dates and JSON cells never are",
                }
            },
        },
        "headers": {
            "Content-Disposition": {"description": "`attachment` and the file's name", "schema": {"type": "string"}}
        },
    },
    429: {"description": "Too many exports running in this process; retry after `Retry-After` seconds"},
}
