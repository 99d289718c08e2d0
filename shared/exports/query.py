"""What is exported: columns, the query over them, formula neutralising and COPY options."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from shared.auth import ADMIN, AUDITOR, PLATFORM
from shared.errors import FieldError, validation_problem

#: Who may export: the data platform, auditors, administrators.
EXPORTERS: tuple[str, ...] = (PLATFORM, AUDITOR, ADMIN)

NDJSON_MEDIA_TYPE = "application/x-ndjson"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8; header=present"
UTF8_BOM = b"\xef\xbb\xbf"
TRAILER_KEY = "end"

ExportFormat = Literal["ndjson", "csv"]
ColumnKind = Literal["text", "int", "bool", "date", "timestamp", "json", "uuid"]

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_UTC_MICROSECONDS = '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\''
MAX_COLUMNS = 100


# --- what is exported -------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One exported field: its name (CSV header, JSON key), a SQL expression and how it is rendered.

    `csv_sql` / `json_sql` replace the expression derived from `kind` for one format.
    """

    name: str
    sql: str
    kind: ColumnKind = "text"
    csv_sql: str | None = None
    json_sql: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or self.name == TRAILER_KEY:
            raise ValueError(f"not a usable export column name: {self.name!r}")

    def csv_expression(self) -> str:
        if self.kind == "text":
            return _neutralised(self.csv_sql if self.csv_sql is not None else self.sql)
        if self.csv_sql is not None:
            return self.csv_sql
        if self.kind == "timestamp":
            return f"to_char(({self.sql}) AT TIME ZONE 'UTC', {_UTC_MICROSECONDS})"
        if self.kind in ("bool", "json", "date", "uuid"):
            return f"({self.sql})::text"
        return self.sql

    def json_expression(self) -> str:
        if self.json_sql is not None:
            return self.json_sql
        if self.kind == "timestamp":
            return f"to_char(({self.sql}) AT TIME ZONE 'UTC', {_UTC_MICROSECONDS})"
        return self.sql


#: What makes a spreadsheet read a cell as a formula: `=`, `+`, `-`, `@`, tab, carriage return (OWASP)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_STARTS_SQL = ", ".join(f"chr({ord(c)})" for c in FORMULA_STARTS)


def neutral_text(value: str) -> str:
    """A text cell written from Python, with the `'` the SQL exports put before a would-be formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _neutralised(sql: str) -> str:
    """A text cell for CSV, with a `'` in front when a spreadsheet would take it for a formula."""
    value = f"({sql})::text"
    return f"CASE WHEN left({value}, 1) IN ({_FORMULA_STARTS_SQL}) THEN '''' || {value} ELSE {value} END"


@dataclass(frozen=True)
class TimeRange:
    """[start, end) of an export's time column; None: unbounded on that side."""

    start: datetime | None = None
    end: datetime | None = None

    def echo(self) -> dict[str, str | None]:
        return {"from": utc_text(self.start), "to": utc_text(self.end)}


def utc_text(moment: datetime | None) -> str | None:
    """An instant as the exports write them: `2026-11-27T02:45:05.953712Z`."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@dataclass
class ExportQuery:
    """The SELECT behind one export: columns, source, order, and the conditions the request adds.

    Values only ever travel as parameters (`$n`): asyncpg has the server quote them
    into the COPY statement (COPY takes no bind parameters).
    """

    kind: str
    columns: Sequence[Column]
    source: str
    order_by: str
    time_column: str
    conditions: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)
    filters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [column.name for column in self.columns]
        if len(set(names)) != len(names) or not 0 < len(names) <= MAX_COLUMNS:
            raise ValueError(f"{self.kind}: 1 to {MAX_COLUMNS} columns with distinct names")

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def where(self, condition: str) -> None:
        self.conditions.append(condition)

    def filter(
        self, name: str, value: Any, condition: Callable[[str], str], *, bind: Callable[[Any], Any] | None = None
    ) -> None:
        """Add `condition(placeholder)` when a filter was given (the parameter is `bind(value)` if
        given, else the value); the filter is echoed in the NDJSON trailer."""
        if value is None:
            return
        if isinstance(value, str) and "\x00" in value:  # PostgreSQL text cannot hold it: a 422, not a 500
            raise validation_problem(
                [FieldError(f"query.{name}", "invalid_character", "不能包含空字符（NUL）", "must not contain NUL")]
            )
        self.filters[name] = value if isinstance(value, bool | int | str) else str(value)
        self.where(condition(self.param(value if bind is None else bind(value))))

    def within(self, span: TimeRange) -> None:
        if span.start is not None:
            self.where(f"{self.time_column} >= {self.param(span.start)}::timestamptz")
        if span.end is not None:
            self.where(f"{self.time_column} < {self.param(span.end)}::timestamptz")

    def select_sql(self, export_format: ExportFormat) -> str:
        """The SELECT that COPY runs. NDJSON: `row_to_json` of the ordered rows (compact JSON, keys
        in column order); a plain subquery scan keeps its subquery's order."""
        where = f" WHERE {' AND '.join(f'({c})' for c in self.conditions)}" if self.conditions else ""
        if export_format == "csv":
            values = ", ".join(f'{column.csv_expression()} AS "{column.name}"' for column in self.columns)
            return f"SELECT {values} FROM {self.source}{where} ORDER BY {self.order_by}"
        values = ", ".join(f'{column.json_expression()} AS "{column.name}"' for column in self.columns)
        return (
            f"SELECT row_to_json(r)::text FROM (SELECT {values} FROM {self.source}{where} ORDER BY {self.order_by}) r"
        )

    @property
    def header(self) -> list[str]:
        return [column.name for column in self.columns]


def copy_options(export_format: ExportFormat) -> dict[str, Any]:
    """COPY options. NDJSON is COPY's CSV mode with a quote and a delimiter that JSON text never
    contains (PostgreSQL escapes every control character in JSON as `\\u00XX`), so each
    one-column row comes out verbatim: the JSON text and a newline."""
    if export_format == "csv":
        return {"format": "csv", "header": True}
    return {"format": "csv", "header": False, "quote": "\x01", "delimiter": "\x02"}
