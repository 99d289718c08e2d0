"""The audit log: every mutating request (who, which client, what, when, outcome).

Each service keeps `<schema>.audit_log`, append-only in the database (the same triggers
as the ledger). Rows are written by an ASGI middleware once the response status is
known, refused and unauthenticated attempts included, and buffered: a background task
copies them in batches (one `COPY` per 200 ms or 500 rows), so the vendors' redemption
path pays for a list append, not a round trip. The price: a process killed with SIGKILL
loses at most the last batch of audit rows (never ledger entries: a redemption's vendor,
key and outcome are stored with the redemption itself). A clean shutdown flushes.

Decisions made by officers (reviews, approvals, A1 manual decisions) store the request
id; `GET /v1/audit?request_id=` finds the audit row for one (role `auditor`). The request id is
the server's (shared/logs.py); what the caller sent to follow its request is the row's
`correlation_id` (`?correlation_id=` finds it), which is the caller's word only.

The token endpoint has no bearer token to name its caller: it records the client it
authenticated (as the principal), or, when it refuses, the client id as presented
(`note_presented_client`; an unknown id is kept as sent, never the secret). Clients
administered outside HTTP (the CLI, `make run`) are audited by `services.registry.identity`
itself, in the same transaction as the change: method `CLI`, path `/clients/<id>/<action>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import ADMIN, AUDITOR, Principal, require
from shared.context import correlation_id_var, request_id_var
from shared.db import SessionDep
from shared.dbconnect import connect_options, libpq_url
from shared.instants import Instant
from shared.migrations import append_only_sql
from shared.pagination import Page, decode_cursor, make_page
from shared.periodic import Periodic

logger = logging.getLogger("shared.audit")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Request-state key of the client id a refused token request presented (not authenticated).
PRESENTED_CLIENT = "audit_presented_client_id"
COLUMNS = (
    "at",
    "request_id",
    "correlation_id",
    "client_id",
    "actor",
    "roles",
    "organisation",
    "method",
    "path",
    "status",
    "outcome",
    "duration_ms",
)


def storable(text: str, limit: int) -> str:
    """What an audit row can hold of a caller's text: PostgreSQL stores no U+0000 (one such row would
    fail every COPY of its batch, retried forever), and a caller's text is cut to `limit` characters."""
    return text[:limit].replace("\x00", "\ufffd")


def note_presented_client(request: Request, client_id: str | None) -> None:
    """Record who a refused request claimed to be, in its audit row (`client_id`; no actor, no roles)."""
    if client_id:
        request.scope.setdefault("state", {})[PRESENTED_CLIENT] = storable(client_id, 200)


def audit_table_sql(schema: str, grant_to: str | None = None) -> list[str]:
    """Migration statements creating `<schema>.audit_log` (append-only)."""
    statements = [
        f"""
        CREATE TABLE "{schema}".audit_log (
            id bigserial PRIMARY KEY,
            at timestamptz NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            request_id text NOT NULL,
            client_id text,
            actor text,
            roles text[] NOT NULL DEFAULT '{{}}',
            organisation text,
            method text NOT NULL,
            path text NOT NULL,
            status integer NOT NULL,
            outcome text NOT NULL CHECK (outcome IN ('ok', 'refused', 'error')),
            duration_ms integer NOT NULL
        )
        """,
        f'CREATE INDEX ix_audit_log_request_id ON "{schema}".audit_log (request_id)',
        f'CREATE INDEX ix_audit_log_client_id ON "{schema}".audit_log (client_id, id)',
        *append_only_sql(schema, "audit_log"),
    ]
    if grant_to:
        statements += [
            f'GRANT SELECT, INSERT ON "{schema}".audit_log TO {grant_to}',
            f'GRANT USAGE ON SEQUENCE "{schema}".audit_log_id_seq TO {grant_to}',
        ]
    return statements


def audit_correlation_sql(schema: str) -> list[str]:
    """Migration statements adding `correlation_id` (the caller's own id for its request, issue #12)."""
    return [
        f'ALTER TABLE "{schema}".audit_log ADD COLUMN correlation_id text',
        f'CREATE INDEX ix_audit_log_correlation_id ON "{schema}".audit_log (correlation_id) '
        "WHERE correlation_id IS NOT NULL",
    ]


def drop_audit_correlation_sql(schema: str) -> list[str]:
    return [f'ALTER TABLE "{schema}".audit_log DROP COLUMN correlation_id']


class AuditWriter(Periodic):
    """Buffers audit rows and copies them into the table in batches (a round: one COPY of what is buffered).

    A round comes every `interval` seconds, or at once when `batch` rows wait. `stop()` lets the loop
    finish the copy it is in (a copy cancelled half-way leaves the connection in an unknown protocol
    state) and flushes what is left; if the database hangs it gives up on the loop after 10 s, and
    the rows stay buffered.
    """

    delay_first = True
    drain_seconds = 10.0

    def __init__(
        self, dsn: str, schema: str, *, role: str | None = None, interval: float = 0.2, batch: int = 500
    ) -> None:
        super().__init__(interval)
        self.name = f"audit-writer-{schema}"
        self.dsn = libpq_url(dsn)
        self.schema = schema
        self.role = role
        self.batch = batch
        self.max_buffer = 200_000
        self._rows: list[tuple[Any, ...]] = []
        self._connection: asyncpg.Connection | None = None
        #: one flush at a time: a reader's flush (`GET /v1/audit`) waits for the round's COPY in flight, whose rows
        #: it would otherwise not see, and the one connection never carries two COPYs at once
        self._flushing = asyncio.Lock()
        self.dropped = 0

    def record(self, row: tuple[Any, ...]) -> None:
        if len(self._rows) >= self.max_buffer:
            self.dropped += 1  # the database has been away for long: keep the process alive
            return
        self._rows.append(row)
        if len(self._rows) >= self.batch:
            self.wake()

    async def _connect(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            options = connect_options(self.dsn, f"{self.schema}-audit", role=self.role)
            self._connection = await asyncpg.connect(self.dsn, timeout=5, **options)
        return self._connection

    async def flush(self) -> int:
        """Copy what is buffered; when it returns, every row recorded before the call is in the table (or, if the
        database is away, still buffered)."""
        async with self._flushing:
            return await self._copy()

    async def _copy(self) -> int:
        if not self._rows:
            return 0
        rows, self._rows = self._rows, []
        try:
            connection = await self._connect()
            await connection.copy_records_to_table(
                "audit_log", schema_name=self.schema, records=rows, columns=list(COLUMNS)
            )
        except (
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            TimeoutError,
        ) as exc:
            self._rows[:0] = rows  # keep them for the next try, in order
            logger.warning("audit rows not written yet: %s", type(exc).__name__, extra={"pending": len(self._rows)})
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close()
                self._connection = None
            return 0
        return len(rows)

    async def round(self) -> None:
        await self.flush()

    async def stop(self) -> None:
        """The loop finishes the copy it is in (`drain_seconds`), then what is left is flushed."""
        await super().stop()
        await self.flush()
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()


class AuditMiddleware:
    """Records every mutating request once its status is known."""

    def __init__(self, app: ASGIApp, writer: AuditWriter) -> None:
        self.app = app
        self.writer = writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        at = datetime.now(UTC)
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            state = scope.get("state", {})
            principal: Principal | None = state.get("principal")
            outcome = "ok" if status < 400 else "refused" if status < 500 else "error"
            self.writer.record(
                (
                    at,
                    request_id_var.get(),
                    correlation_id_var.get(),
                    principal.client_id if principal else state.get(PRESENTED_CLIENT),
                    principal.actor if principal else None,
                    sorted(principal.scopes) if principal else [],
                    principal.organisation if principal else None,
                    scope["method"],
                    storable(scope["path"], 500),  # a path may carry U+0000 (percent-encoded)
                    status,
                    outcome,
                    int((time.perf_counter() - started) * 1000),
                )
            )


# --- reading it -----------------------------------------------------------------------------


class AuditRead(BaseModel):
    id: int
    at: datetime
    recorded_at: datetime
    request_id: str = Field(description="The id this service assigned to the request")
    correlation_id: str | None = Field(
        description="What the caller sent to follow its request (X-Correlation-ID or X-Request-ID): its word only"
    )
    client_id: str | None
    actor: str | None
    roles: list[str]
    organisation: str | None
    method: str
    path: str
    status: int
    outcome: str
    duration_ms: int


router = APIRouter(tags=["audit"])


@router.get("/v1/audit", response_model=Page[AuditRead], summary="The audit log of this service (auditors)")
async def list_audit(
    request: Request,
    session: SessionDep,
    _: Annotated[Principal, require(AUDITOR, ADMIN)],
    request_id: Annotated[str | None, Query(max_length=128)] = None,
    correlation_id: Annotated[str | None, Query(max_length=128)] = None,
    client_id: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[Instant | None, Query(description="From this instant (ISO 8601 with a UTC offset)")] = None,
    until: Annotated[Instant | None, Query(description="Before this instant (ISO 8601 with a UTC offset)")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[AuditRead]:
    writer: AuditWriter = request.app.state.audit
    await writer.flush()  # what this process has buffered is visible to the reader at once
    after = decode_cursor("audit", cursor) if cursor else 0
    clauses = ["id > :after"]
    args: dict[str, Any] = {"after": after, "limit": limit + 1}
    for name, column, value, operator in (
        ("request_id", "request_id", request_id, "="),
        ("correlation_id", "correlation_id", correlation_id, "="),
        ("client_id", "client_id", client_id, "="),
        ("since", "at", since, ">="),
        ("until", "at", until, "<"),
    ):
        if value is not None:
            args[name] = value
            clauses.append(f"{column} {operator} :{name}")
    sql = (
        f'SELECT {", ".join(("id", "recorded_at", *COLUMNS))} FROM "{writer.schema}".audit_log '
        f"WHERE {' AND '.join(clauses)} ORDER BY id LIMIT :limit"
    )
    rows = (await session.execute(text(sql), args)).mappings().all()
    items = [AuditRead(**dict(row)) for row in rows]
    return make_page("audit", items, limit, lambda item: item.id)


def install_audit(app: FastAPI, dsn: str, schema: str, role: str | None = None) -> AuditWriter:
    writer = AuditWriter(dsn, schema, role=role)
    app.state.audit = writer
    app.add_middleware(AuditMiddleware, writer=writer)
    app.include_router(router)
    return writer
