"""/healthz is liveness; /readyz says whether the database is reachable and migrated to head."""

from __future__ import annotations

import httpx

from services.registry.app import create_app
from services.registry.settings import RegistrySettings
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
