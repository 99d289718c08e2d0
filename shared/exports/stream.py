"""The COPY streamed as the response: trailer, errors before and after the first byte, concurrent exports."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from shared.context import request_id_var
from shared.dbconnect import TIMEOUTS, connect_options, libpq_url, pooler_of
from shared.errors import DATABASE_UNAVAILABLE, ErrorCode, FieldError, ProblemError, validation_problem
from shared.exports.params import ExportOptions
from shared.exports.query import (
    CSV_MEDIA_TYPE,
    NDJSON_MEDIA_TYPE,
    TRAILER_KEY,
    UTF8_BOM,
    ExportQuery,
    copy_options,
    utc_text,
)

logger = logging.getLogger("shared.exports")

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
    dsn = libpq_url(str(settings.async_read_database_url))
    return dsn, server_settings


async def open_connection(app: FastAPI) -> asyncpg.Connection:
    """Behind PgBouncer its settings are `SET LOCAL` in a read-only transaction the export runs in."""
    dsn, server_settings = connection_settings(app)
    role = str(getattr(app.state.settings, "db_role", "") or "")
    try:
        options = connect_options(dsn, server_settings.pop("application_name"), role=role, settings=server_settings)
        connection: asyncpg.Connection = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_SECONDS, **options)
        if pooler_of(dsn) != "none":
            local = "; ".join(f"SET LOCAL {name} = '{server_settings[name]}'" for name in TIMEOUTS)
            try:
                await connection.execute(f"BEGIN READ ONLY; {local}")
            except BaseException:
                connection.terminate()
                raise
        return connection
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


async def _copy(
    connection: asyncpg.Connection,
    sql: str,
    args: Sequence[Any],
    options: dict[str, Any],
    queue: asyncio.Queue[Item],
) -> None:
    """Run the COPY into the queue; its last item says how it ended (finished, or the error)."""

    async def sink(data: bytes | bytearray) -> None:  # asyncpg passes bytearray; its stubs say bytes
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

    connection: asyncpg.Connection
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
