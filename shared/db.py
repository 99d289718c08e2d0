"""Async engine and sessions. The request owns the transaction.

A request handler receives an `AsyncSession` from `get_session`; services and
repositories only `flush()`. The dependency commits once the handler has returned,
*before* the response is sent (FastAPI's `scope="function"`), so a client is never
told "created" about something that did not commit, and rolls back on any error.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, Protocol, TypeAlias, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from fastapi import Depends, Request
from sqlalchemy import MetaData
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from shared.dbconnect import connect_options, libpq_url, pooler_of, timeouts

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: A raw asyncpg connection: one of its own (`asyncpg.connect`, or the one under a SQLAlchemy session)
#: or one lent by a pool (`Pool.acquire()` lends a proxy, which is not a `Connection` subclass).
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy


def service_metadata(schema: str) -> MetaData:
    """Each service owns one PostgreSQL schema; its tables live there and nowhere else."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def _statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


async def no_session_reset(connection: asyncpg.Connection) -> None:
    """What a connection goes back to an asyncpg pool with: asyncpg's own reset still rolls back a transaction left
    open and drops listeners; the reset *query* (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`)
    is not sent. It is one more round trip per call (on the redemption path: per redemption, a fifth of the
    process's CPU, docs/benchmarks.md), and such a pool's callers leave nothing for it to undo: each runs
    statements (`fetchrow`/`fetch`/`fetchval`) whose locks are transaction-level (`pg_advisory_xact_lock`), with no
    SET, LISTEN or cursor; the session's settings are the login's (startup parameters), which RESET ALL would
    restore anyway. A caller that needs session state acquires a connection of its own."""


async def _json_codecs(connection: asyncpg.Connection) -> None:
    """JSON and JSONB as SQLAlchemy's asyncpg dialect has them: JSON text in, Python objects out (the statements
    written for asyncpg run on either kind of connection and see the same values)."""
    await connection.set_type_codec(
        "jsonb",
        encoder=lambda text: b"\x01" + text.encode(),
        decoder=lambda value: json.loads(value[1:].decode()),
        schema="pg_catalog",
        format="binary",
    )
    await connection.set_type_codec(
        "json",
        encoder=str.encode,
        decoder=lambda value: json.loads(value.decode()),
        schema="pg_catalog",
        format="binary",
    )


class Connections(Protocol):
    """Where a route gets a raw connection for fixed SQL whose statements are each their own transaction."""

    def acquire(self) -> AbstractAsyncContextManager[Connection]:
        """One connection for as long as the block runs (`async with connections.acquire() as connection`)."""


async def lend(pool: asyncpg.Pool, seconds: float) -> PoolConnectionProxy:
    """A connection of `pool` within `seconds`, else SQLAlchemy's pool `TimeoutError` (503 `service_busy`, as
    for every route on the engine's pool); the caller releases it. The bound is a timer around the wait, not
    asyncpg's `acquire(timeout=…)`, which on Python 3.11 makes a task per call (`asyncio.wait_for`)."""
    try:
        async with asyncio.timeout(seconds):
            return await pool.acquire()
    except TimeoutError as exc:
        raise PoolTimeoutError(f"no database connection free within {seconds} s") from exc


class StatementPool:
    """A service's raw asyncpg connections for fixed SQL that needs no ORM (issue #16): a submission's two
    statements, the registry's facts read. Lending one through a session (`get_session`, then `raw_connection`)
    cost ~0.25 ms of the process's CPU per request against ~0.05 ms here (the session, its transaction object,
    SQLAlchemy's pool and its reset, each step through a greenlet). Opened at the first use, at most `size`
    connections, with the same login, settings and pooler handling as the engine's (plus the `Database`'s
    `statement_settings`, if any); closed with the `Database`."""

    def __init__(self, url: str, connect_args: dict[str, Any], size: int, timeout: float) -> None:
        self.dsn = libpq_url(url)
        self.connect_args = connect_args
        self.size = size
        self.timeout = timeout
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _opened(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=0,
                    max_size=self.size,
                    reset=no_session_reset,
                    init=_json_codecs,
                    **self.connect_args,
                )
        return self._pool

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Connection]:
        """One connection for as long as the block runs; none free within the pool timeout: SQLAlchemy's pool
        timeout (503 `service_busy`, as for every other route)."""
        pool = self._pool if self._pool is not None else await self._opened()
        connection = await lend(pool, self.timeout)
        try:
            yield connection
        finally:
            await pool.release(connection)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


class Database:
    def __init__(
        self,
        url: str,
        *,
        application_name: str,
        pool_size: int = 10,
        statement_timeout_ms: int = 30_000,
        server_settings: dict[str, str] | None = None,
        pool_timeout: float = 30.0,
        statement_settings: dict[str, str] | None = None,
        **engine_options: Any,
    ) -> None:
        """`statement_settings`: more startup parameters for the statement pool's connections alone (planner settings
        its fixed SQL needs); with a pooler there are none (PgBouncer forwards only the settings it tracks)."""
        settings = {**timeouts(statement_timeout_ms), **(server_settings or {})}
        connect_args = connect_options(url, application_name, settings=settings)
        pooler = pooler_of(url)
        statement_args = dict(connect_args)
        if statement_settings and pooler == "none":
            statement_args["server_settings"] = {**connect_args["server_settings"], **statement_settings}
        self.statements = StatementPool(url, statement_args, pool_size, pool_timeout)
        if pooler == "transaction":
            # SQLAlchemy prepares every statement by name: unique names, none kept (its PgBouncer advice)
            connect_args |= {"prepared_statement_cache_size": 0, "prepared_statement_name_func": _statement_name}
        # at most 2 × pool_size connections, each opened when first needed and then kept: SQLAlchemy closes an
        # "overflow" connection as soon as it is returned, so a steady load above pool_size opened and closed one
        # per request, and each new server process warms its caches again (issue #16: submissions 161/s → 206/s)
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=2 * pool_size,
            max_overflow=0,
            pool_recycle=1800,
            pool_timeout=pool_timeout,  # SQLAlchemy's own default, unless the service sets its own
            connect_args=connect_args,
            **engine_options,
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)

    async def dispose(self) -> None:
        await self.statements.close()
        await self.engine.dispose()


@asynccontextmanager
async def committed_session(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session of `sessions` that commits when the block ends, and rolls back if it raises."""
    async with sessions() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The transaction of one request (tests override this dependency)."""
    database: Database = request.app.state.database
    async with committed_session(database.sessionmaker) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_connections(request: Request) -> Connections:
    """Raw connections for fixed SQL, each statement its own transaction (tests override this dependency: their
    statements then run in the test's transaction, `SessionConnections`). A coroutine: FastAPI runs a plain
    function dependency in its thread pool, a hand-off that cost more than the lending it serves."""
    database: Database = request.app.state.database
    return database.statements


ConnectionsDep = Annotated[Connections, Depends(get_connections)]


class SessionConnections:
    """Connections lent through sessions of `sessions`, each committed when its block ends and rolled back on an
    error, as `get_session` does (the tests' savepoints of one transaction)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        async with committed_session(self.sessions) as session:
            yield await raw_connection(session)


async def raw_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under a session's transaction (for SQL written for asyncpg)."""
    raw = await (await session.connection()).get_raw_connection()
    # SQLAlchemy types the driver's connection as Any (None once detached); with the asyncpg dialect
    # and the session's connection open, it is an asyncpg.Connection
    return cast(asyncpg.Connection, raw.driver_connection)
