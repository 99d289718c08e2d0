"""Async engine and sessions. The request owns the transaction.

A request handler receives an `AsyncSession` from `get_session`; services and
repositories only `flush()`. The dependency commits once the handler has returned,
*before* the response is sent (FastAPI's `scope="function"`), so a client is never
told "created" about something that did not commit, and rolls back on any error.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypeAlias, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from fastapi import Depends, Request
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from shared.dbconnect import connect_options, pooler_of, timeouts

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


class Database:
    def __init__(
        self,
        url: str,
        *,
        application_name: str,
        pool_size: int = 10,
        statement_timeout_ms: int = 30_000,
        server_settings: dict[str, str] | None = None,
        **engine_options: Any,
    ) -> None:
        settings = {**timeouts(statement_timeout_ms), **(server_settings or {})}
        connect_args = connect_options(url, application_name, settings=settings)
        if pooler_of(url) == "transaction":
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
            connect_args=connect_args,
            **engine_options,
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)

    async def dispose(self) -> None:
        await self.engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The transaction of one request (tests override this dependency)."""
    database: Database = request.app.state.database
    async with database.sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def raw_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under a session's transaction (for SQL written for asyncpg)."""
    raw = await (await session.connection()).get_raw_connection()
    # SQLAlchemy types the driver's connection as Any (None once detached); with the asyncpg dialect
    # and the session's connection open, it is an asyncpg.Connection
    return cast(asyncpg.Connection, raw.driver_connection)
