"""A vouchers service of its own for the read-side tests: its own database, its projector driven by hand.

The session's `vouchers_app` projects in the background every 0.5 s; these tests need to
say when projection happens (and to stop it half-way), so their app has the projector and
the reconciliation job off (interval 0) and the tests call `project()` themselves. Issuing
still goes through the live registry and eligibility processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from services.vouchers.reporting.projector import ProjectRun, project_run
from services.vouchers.reporting.repository import as_of
from shared.dbroles import login_url
from tests.auth import admin
from tests.conftest import DatabaseFactory, _settings_auth


@pytest.fixture(scope="session")
def agg_database(databases: DatabaseFactory) -> str:
    return databases.create("longgang_aggregates")


@pytest_asyncio.fixture(scope="session")
async def agg_app(
    agg_database: str, live_eligibility: str, live_registry: str, service_auth_env: dict[str, str]
) -> AsyncIterator[FastAPI]:
    from services.vouchers.app import create_app
    from services.vouchers.settings import VouchersSettings

    app = create_app(
        VouchersSettings(
            database_url=login_url(agg_database, "vouchers"),
            eligibility_url=live_eligibility,
            registry_url=live_registry,
            projector_interval_seconds=0,
            reconciliation_interval_seconds=0,
            **_settings_auth(service_auth_env, "vouchers"),  # type: ignore[arg-type]
        )
    )
    async with app.router.lifespan_context(app):
        yield app


@pytest_asyncio.fixture
async def agg(agg_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP client for that vouchers service (an administrator's token by default)."""
    transport = httpx.ASGITransport(app=agg_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://vouchers", timeout=30, headers=admin()) as c:
        yield c


@pytest.fixture
def agg_clock(agg_app: FastAPI) -> Iterator[Callable[[datetime], None]]:
    original = agg_app.state.clock

    def set_now(moment: datetime) -> None:
        agg_app.state.clock = lambda: moment

    yield set_now
    agg_app.state.clock = original


async def connect(dsn: str, *, as_service: bool = True) -> Any:
    """A connection as the service's login (as the projector has), or as the table owner."""
    return await asyncpg.connect(login_url(dsn, "vouchers") if as_service else dsn)


async def project(dsn: str, *, until_caught_up: bool = True, patience: float = 60, **options: Any) -> ProjectRun:
    """Run the projector; by default again until every committed entry is projected.

    The watermark is the oldest transaction in flight on the whole server: on a server shared
    with other test sessions, their open transactions hold projection back for a while.
    """
    connection = await connect(dsn)
    deadline = time.monotonic() + patience
    projected = batches = 0
    try:
        while True:
            run = await project_run(connection, **options)
            projected, batches = projected + run.projected, batches + run.batches
            if not until_caught_up or (await as_of(connection)).lag_entries == 0:
                return ProjectRun(projected, batches, run.watermark)
            if time.monotonic() > deadline:
                raise TimeoutError("the projector did not catch up: a transaction stays open on the server")
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await connect(dsn, as_service=False)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()
