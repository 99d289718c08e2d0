"""Bulk exports for the municipal data platform: NDJSON and CSV, streamed from PostgreSQL's COPY.

Each service offers `GET /v1/exports/<kind>` (roles `platform`, `auditor`, `admin`) for its
own records: the registry's record kinds, eligibility's decisions and applications, the
vouchers ledger's entries. This module is what they share.

**How the bytes are made.** Rows never become Python objects. The export runs one
`COPY (SELECT …) TO STDOUT` on a connection of its own (as the service's database role,
read-only) and PostgreSQL formats every row itself: CSV with its own quoting, NDJSON as
one `row_to_json(…)` text per row. The bytes go from the database socket to the
HTTP response through a bounded queue (`QUEUE_CHUNKS` of asyncpg's socket reads, sent on in
pieces of up to `CHUNK_BYTES`). When the client reads slowly the queue fills, asyncpg
stops reading the socket and PostgreSQL waits: an export holds a few MiB of the process's
memory whatever its row count (`bench/export_bench.py` prints the peak resident memory at
10k, 100k and 1M rows, and with a slow client). One statement is one snapshot: an export
is consistent as of its start, even while rows are being written. Each export has its own
database connection (not one of the request pool's); at most 4 run at a time per process
and one may last an hour (its statement timeout). A service's settings may change both
with the fields `export_max_concurrent` and `export_timeout_seconds`.

**Formats** (`format=ndjson`, the default, or `format=csv`):

- Values: money in integer fen; instants in UTC with microseconds,
  `2026-11-27T02:45:05.953712Z`; dates `YYYY-MM-DD`; booleans `true` / `false`; UUIDs
  in lower case; JSON columns as JSON (in CSV: their JSON text, in one quoted field).
- NDJSON (`application/x-ndjson`): UTF-8, one JSON object per line, each line ending in
  `\\n`, in a stable order (each export says which). The **last line is the trailer**
  `{"end": {"kind": …, "rows": N, "from": …, "to": …, "filters": {…}, "exported_at": …}}`
  (no record has a top-level key `end`). A file is complete only if its last line is
  the trailer and `rows` equals the number of lines before it.
- CSV (`text/csv; charset=utf-8; header=present`): a header row with the column names,
  then one row per record, RFC 4180 quoting (a field with a comma, a double quote, CR or
  LF is enclosed in double quotes, double quotes inside it are doubled), lines ending
  in LF (as PostgreSQL writes them; RFC 4180 readers accept it). NULL is an empty field,
  an empty string is `""`. `bom=true` starts the file with a UTF-8 byte order mark, for
  Excel, which otherwise reads a CSV file in the local code page and garbles Chinese.
  CSV has no trailer: completeness is the HTTP transfer's (below). **Formula injection**: a
  spreadsheet opening the file would run a text cell starting with `=`, `+`, `-`, `@`, a tab or
  a carriage return as a formula (`=HYPERLINK(…)` in a vendor's contract number), so in CSV
  such a *text* cell gets a single quote in front (`'=HYPERLINK(…)`, the OWASP advice); a
  consumer that wants the stored text removes the leading `'` of a text cell that starts with
  `'` followed by one of those characters. Numbers, dates, instants, booleans, UUIDs and JSON
  cells are never changed (a negative number stays a number); NDJSON is never altered.

**Date ranges** (`from`, `to`, both optional): the half-open interval [from, to) of the
export's time column (each export names it). A bound is either a date, `2026-11-01`,
meaning the start of that day in Asia/Shanghai (the programme's dates are Shenzhen
dates), or an ISO 8601 instant with a UTC offset, `2026-11-01T08:00:00+08:00` or
`2026-11-01T00:00:00Z`. So `from=2026-11-01&to=2026-12-01` is November in Shenzhen, and
`to=2026-11-30` does *not* include the 30th. An instant without an offset, an
unparseable bound or `to` not after `from` is a 422.

**Errors.** Before the first byte: problem+json as everywhere (401, 403, 422 for bad
parameters, 429 `exports_busy` when the maximum of exports already run in this process,
503 when the database cannot be reached). The first byte is sent once
PostgreSQL has produced output (the CSV header, or the first row, or the end of an empty
export), so a query that fails to start is still a problem+json answer. After that a
failure aborts the connection without the final chunk of the chunked encoding (HTTP/1.1):
clients see a truncated transfer (curl exits with code 18, httpx raises
`RemoteProtocolError`), and an NDJSON body also lacks its trailer. A failed export never
looks like a complete file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import FastAPI, Query, Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from shared.auth import ADMIN, AUDITOR, PLATFORM
from shared.context import request_id_var
from shared.errors import DATABASE_UNAVAILABLE, ErrorCode, FieldError, ProblemError, validation_problem
from shared.instants import SHENZHEN

logger = logging.getLogger("shared.exports")

#: Who may export: the data platform, auditors, administrators.
EXPORTERS: tuple[str, ...] = (PLATFORM, AUDITOR, ADMIN)

NDJSON_MEDIA_TYPE = "application/x-ndjson"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8; header=present"
UTF8_BOM = b"\xef\xbb\xbf"
TRAILER_KEY = "end"

#: Chunks (asyncpg's reads of the COPY stream) between the database and the response.
QUEUE_CHUNKS = 16
#: A piece of the HTTP body: what is queued is joined up to this size before it is sent.
CHUNK_BYTES = 256 * 1024
DEFAULT_MAX_CONCURRENT = 4
DEFAULT_TIMEOUT_SECONDS = 3600
CONNECT_TIMEOUT_SECONDS = 10

EXPORTS_BUSY = ErrorCode(
    "exports_busy",
    429,
    "已有 {limit} 个导出正在进行，请在 {retry_after} 秒后重试",
    "{limit} exports are already running; retry in {retry_after} s",
)

ExportFormat = Literal["ndjson", "csv"]
ColumnKind = Literal["text", "int", "bool", "date", "timestamp", "json", "uuid"]

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
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
        "content": {NDJSON_MEDIA_TYPE: {}, "text/csv": {}},
    },
    429: {"description": "Too many exports running in this process; retry after `Retry-After` seconds"},
}


# --- streaming ---------------------------------------------------------------------------------


class ExportSlots:
    """At most `limit` exports at a time in one process (each holds a database connection)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0

    def acquire(self) -> bool:
        if self.running >= self.limit:
            return False
        self.running += 1
        return True

    def release(self) -> None:
        self.running = max(0, self.running - 1)


def _slots(app: FastAPI) -> ExportSlots:
    slots: ExportSlots | None = getattr(app.state, "export_slots", None)
    if slots is None:
        limit = int(getattr(app.state.settings, "export_max_concurrent", DEFAULT_MAX_CONCURRENT))
        slots = app.state.export_slots = ExportSlots(limit)
    return slots


def connection_settings(app: FastAPI) -> tuple[str, dict[str, str]]:
    """The service's database as its role, read-only, in UTC, with a statement timeout for long exports."""
    settings = app.state.settings
    timeout_ms = int(getattr(settings, "export_timeout_seconds", DEFAULT_TIMEOUT_SECONDS)) * 1000
    server_settings = {
        "application_name": f"{app.state.service_name}-export",
        "statement_timeout": str(timeout_ms),
        "idle_in_transaction_session_timeout": "60000",
        "default_transaction_read_only": "on",
        "TimeZone": "UTC",
        "DateStyle": "ISO, YMD",
        "client_encoding": "UTF8",
    }
    role = getattr(settings, "db_role", None)
    if role:
        server_settings["role"] = str(role)
    dsn = str(settings.async_read_database_url).replace("postgresql+asyncpg://", "postgresql://")
    return dsn, server_settings


async def open_connection(app: FastAPI) -> Any:
    dsn, server_settings = connection_settings(app)
    try:
        return await asyncpg.connect(dsn, server_settings=server_settings, timeout=CONNECT_TIMEOUT_SECONDS)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        logger.error("export: cannot connect to the database: %s", type(exc).__name__)
        raise ProblemError(DATABASE_UNAVAILABLE, headers={"Retry-After": "2"}) from exc


@dataclass(frozen=True)
class _Finished:
    status: str


Item = bytes | bytearray | _Finished | BaseException


class ExportInterrupted(RuntimeError):
    """The export failed after its first byte: the response is aborted, never completed."""


def _rows(status: str) -> int:
    """`COPY 1000000` → 1000000."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return -1


async def _copy(connection: Any, sql: str, args: Sequence[Any], options: dict[str, Any], queue: Any) -> None:
    """Run the COPY into the queue; its last item says how it ended (finished, or the error)."""

    async def sink(data: bytearray) -> None:
        await queue.put(data)  # a new bytearray each time (asyncpg's consume_messages): no copy needed

    try:
        status = await connection.copy_from_query(sql, *args, output=sink, **options)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        await queue.put(exc)
    else:
        await queue.put(_Finished(str(status)))


@dataclass
class _Stream:
    """One running export: its connection, the COPY task and the queue between them."""

    connection: Any
    task: asyncio.Task[None]
    queue: asyncio.Queue[Item]
    slots: ExportSlots
    closed: bool = False
    released: bool = False

    def cleanup(self) -> None:
        """Synchronous, idempotent: whatever happened, stop the COPY and give everything back."""
        if not self.task.done():
            self.task.cancel()
        if not self.closed:
            self.closed = True
            self.connection.terminate()  # the server ends the COPY when it next writes
        if not self.released:
            self.released = True
            self.slots.release()


class ExportResponse(StreamingResponse):
    """A StreamingResponse that always cleans its export up, even if the body is never iterated
    (a client gone before the first chunk is sent)."""

    def __init__(self, body: AsyncIterator[bytes], stream: _Stream, **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._stream.cleanup()


def _translate_early(exc: BaseException) -> BaseException:
    """A COPY that failed before its first byte: a problem+json answer where one fits. The
    query is ours, so a data exception (SQLSTATE class 22, or asyncpg refusing to encode an
    argument) comes from a parameter's value: a 422."""
    if isinstance(exc, asyncpg.DataError):
        return validation_problem(
            [FieldError("query", "invalid_value", "参数取值无法使用", "a parameter's value cannot be used")]
        )
    if isinstance(exc, OSError | TimeoutError | asyncpg.PostgresConnectionError | asyncpg.InterfaceError):
        return ProblemError(DATABASE_UNAVAILABLE, headers={"Retry-After": "2"})
    if isinstance(exc, asyncpg.QueryCanceledError | asyncpg.AdminShutdownError | asyncpg.CannotConnectNowError):
        return ProblemError(DATABASE_UNAVAILABLE, headers={"Retry-After": "2"})
    return exc


async def export_response(
    request: Request, query: ExportQuery, options: ExportOptions, *, filename_stem: str
) -> StreamingResponse:
    """Start the export; answer once PostgreSQL has produced its first output (see the module doc)."""
    app: FastAPI = request.app
    slots = _slots(app)
    if not slots.acquire():
        raise ProblemError(EXPORTS_BUSY, headers={"Retry-After": "10"}, limit=slots.limit, retry_after=10)
    try:
        connection = await open_connection(app)
    except BaseException:
        slots.release()
        raise
    query.within(options.span)
    exported_at = datetime.now(UTC)
    queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
    task = asyncio.create_task(
        _copy(connection, query.select_sql(options.format), list(query.args), copy_options(options.format), queue)
    )
    stream = _Stream(connection, task, queue, slots)
    try:
        first = await queue.get()
    except BaseException:
        stream.cleanup()
        raise
    if isinstance(first, BaseException):
        stream.cleanup()
        logger.error("export %s failed before its first byte: %s", query.kind, first)
        raise _translate_early(first) from first

    def trailer(rows: int) -> bytes:
        document = {
            TRAILER_KEY: {
                "kind": query.kind,
                "rows": rows,
                **options.span.echo(),
                "filters": query.filters,
                "exported_at": utc_text(exported_at),
            }
        }
        return (json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n").encode()

    prefix = UTF8_BOM if options.format == "csv" and options.bom else b""
    body = _body(stream, first, prefix, trailer if options.format == "ndjson" else None, query.kind)
    extension = "csv" if options.format == "csv" else "ndjson"
    stamp = exported_at.strftime("%Y%m%dT%H%M%SZ")
    return ExportResponse(
        body,
        stream,
        media_type=CSV_MEDIA_TYPE if options.format == "csv" else NDJSON_MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{filename_stem}-{stamp}.{extension}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def _body(
    stream: _Stream, first: Item, prefix: bytes, trailer: Callable[[int], bytes] | None, kind: str
) -> AsyncIterator[bytes]:
    """The response body: what COPY sends, joined into pieces of up to CHUNK_BYTES; then the trailer."""
    pieces: list[bytes | bytearray] = [prefix] if prefix else []
    pending = len(prefix)
    sent = 0
    item = first
    while isinstance(item, bytes | bytearray):
        pieces.append(item)
        pending += len(item)
        if pending >= CHUNK_BYTES or stream.queue.empty():
            sent += pending
            yield b"".join(pieces)
            pieces.clear()
            pending = 0
        item = await stream.queue.get()
    if isinstance(item, BaseException):
        logger.error(
            "export %s interrupted after %d bytes: %s: %s (request %s); the response is aborted",
            kind,
            sent,
            type(item).__name__,
            item,
            request_id_var.get(),
        )
        raise ExportInterrupted(f"export {kind} interrupted after {sent} bytes") from item
    assert isinstance(item, _Finished)
    stream.closed = True
    try:
        await asyncio.wait_for(stream.connection.close(), timeout=5)
    except Exception:
        stream.connection.terminate()
    if trailer is not None:
        pieces.append(trailer(_rows(item.status)))
    if pieces:
        yield b"".join(pieces)
