"""A database that is restarting answers 503 database_unavailable, never 500 (found by test_history.py).

During `pg_ctl stop` and crash recovery the server refuses connections with SQLSTATE 57P03
("the database system is starting up"), ends them with 57P01, or a connection dies in the middle
of a query. The redemption path talks to asyncpg directly, so these arrived as asyncpg's own
exceptions and fell through to the 500 handler; through SQLAlchemy, an error on connect is
wrapped without being marked as a disconnect. Fast: no database, part of `make test`.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError

from shared.errors import install_error_handlers

STARTING_UP = asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
RAISED: dict[str, Exception] = {
    "starting-up": STARTING_UP,
    "shutting-down": asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    "crashed": asyncpg.exceptions.CrashShutdownError("terminating connection because of crash of another process"),
    "closed-mid-query": asyncpg.exceptions.ConnectionDoesNotExistError(
        "connection was closed in the middle of operation"
    ),
    "too-many": asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    # a session the server ended while the connection was idle in the pool (MagicStack/asyncpg#1069)
    "ended-while-idle": asyncpg.exceptions.InternalClientError(
        "cannot switch to state 12; another operation (2) is in progress"
    ),
}


class _AdaptedError(Exception):
    """What SQLAlchemy's asyncpg adapter raises (its dbapi `Error`), caused by asyncpg's exception."""


def _wrapped() -> DBAPIError:
    adapted = _AdaptedError("the database system is starting up")
    adapted.__cause__ = STARTING_UP
    return DBAPIError("SELECT 1", None, adapted, connection_invalidated=False)


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{name}")
    async def fail(name: str) -> None:
        if name == "sqlalchemy-on-connect":
            raise _wrapped()
        if name == "a-bug":
            raise asyncpg.exceptions.UndefinedColumnError('column "nope" does not exist')
        if name == "a-client-bug":
            raise asyncpg.exceptions.InternalClientError("no decoder for OID 16385")
        raise RAISED[name]

    return app


@pytest.mark.parametrize("name", [*RAISED, "sqlalchemy-on-connect"])
async def test_an_unavailable_database_is_a_503_with_retry_after(name: str) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://test") as client:
        response = await client.get(f"/raise/{name}")
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "database_unavailable"
    assert response.headers["retry-after"] == "2"


@pytest.mark.parametrize("name", ["a-bug", "a-client-bug"])
async def test_a_database_error_that_is_a_bug_is_still_a_500(name: str) -> None:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get(f"/raise/{name}")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
