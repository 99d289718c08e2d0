"""/healthz is liveness; /readyz says whether the database is reachable and migrated to head."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from services.registry.app import create_app
from services.registry.settings import RegistrySettings
from shared.dbconnect import libpq_url
from shared.migrations import head_revision
from tests.conftest import DatabaseFactory


async def test_ready_when_migrated(registry: httpx.AsyncClient) -> None:
    assert (await registry.get("/healthz")).json() == {"status": "ok", "service": "registry"}
    ready = await registry.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["migration"] == head_revision("registry")


async def _readyz(database_url: str) -> httpx.Response:
    app = create_app(RegistrySettings(database_url=database_url))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as client:
            return await client.get("/readyz")
    finally:
        await app.state.database.dispose()


async def test_not_ready_on_an_unmigrated_database(databases: DatabaseFactory) -> None:
    response = await _readyz(databases.create("longgang_empty", migrate=False))
    assert response.status_code == 503
    assert response.json()["code"] == "not_ready"
    assert response.headers["retry-after"] == "2"


async def test_not_ready_when_the_database_is_unreachable() -> None:
    response = await _readyz("postgresql://postgres@127.0.0.1:9/nowhere")
    assert response.status_code == 503
    assert response.json()["code"] == "not_ready"


async def test_not_ready_behind_the_code_but_ready_ahead_of_it(databases: DatabaseFactory) -> None:
    """A rolling upgrade migrates first: the old release stays ready on the newer schema; a database
    behind the code is not ready."""
    from shared.migrations import upgrade

    url = databases.create("longgang_versions", migrate=False)
    await asyncio.to_thread(upgrade, "registry", url, "0001")
    behind = await _readyz(url)
    assert behind.status_code == 503
    assert "0001" in behind.json()["detail"]

    await asyncio.to_thread(upgrade, "registry", url)
    connection = await asyncpg.connect(libpq_url(url))
    try:
        await connection.execute("UPDATE registry.alembic_version SET version_num = 'zz_from_the_future'")
    finally:
        await connection.close()
    ahead = await _readyz(url)
    assert ahead.status_code == 200
    assert ahead.json()["migration"] == "zz_from_the_future"
