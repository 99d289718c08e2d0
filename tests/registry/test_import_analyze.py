"""A bulk import that writes many records has its tables analysed right after it (registry migration 0015).

The facts function is planned once per connection from the statistics of that moment; a registry filled by its
first imports would otherwise be read with the statistics of empty tables until autovacuum comes by. On a database
of its own (its imports commit), as the service's login: an import of fewer than `ANALYZE_AFTER_ROWS` records leaves
the tables as they were; one of that many has the imported table and the snapshots' table analysed (`last_analyze`,
which only a manual ANALYZE sets; autovacuum sets `last_autoanalyze`). The function analyses record tables only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from services.registry.imports import ANALYZE_AFTER_ROWS
from shared.dbroles import login_url
from tests.auth import admin
from tests.conftest import DatabaseFactory
from tests.registry.test_imports import _csv, _rows


@pytest.fixture(scope="module")
def import_database(databases: DatabaseFactory) -> str:
    return databases.create("longgang_import_analyze")


@pytest_asyncio.fixture(scope="module")
async def committing(import_database: str) -> AsyncIterator[httpx.AsyncClient]:
    """The registry as the service's login, its requests committed (no rollback)."""
    from services.registry.app import create_app
    from services.registry.settings import RegistrySettings

    app: FastAPI = create_app(RegistrySettings(database_url=login_url(import_database, "registry")))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry", headers=admin(), timeout=120) as c:
        yield c
    await app.state.database.dispose()


async def last_analyze(database: str) -> dict[str, datetime | None]:
    connection = await asyncpg.connect(database)
    try:
        rows = await connection.fetch(
            "SELECT relname, last_analyze FROM pg_stat_user_tables WHERE schemaname = 'registry' "
            "AND relname IN ('organisations', 'versions', 'revenues')"
        )
    finally:
        await connection.close()
    return {row["relname"]: row["last_analyze"] for row in rows}


async def test_a_large_import_has_its_tables_analysed_and_a_small_one_not(
    committing: httpx.AsyncClient, import_database: str
) -> None:
    headers = {"Content-Type": "text/csv"}
    before = await last_analyze(import_database)
    small = await committing.post(
        "/v1/imports/organisations", content=_csv(_rows(ANALYZE_AFTER_ROWS - 1)), headers=headers
    )
    assert small.status_code == 200, small.text
    assert small.json()["created"] == ANALYZE_AFTER_ROWS - 1
    assert await last_analyze(import_database) == before

    rows = _csv(_rows(ANALYZE_AFTER_ROWS))
    large = await committing.post("/v1/imports/organisations", content=rows, headers=headers)
    assert large.status_code == 200, large.text
    after = await last_analyze(import_database)
    assert after["organisations"] is not None
    assert after["organisations"] != before["organisations"]
    assert after["versions"] is not None
    assert after["versions"] != before["versions"]
    assert after["revenues"] == before["revenues"]  # not imported into: left to autovacuum


async def test_the_function_analyses_record_tables_only(import_database: str) -> None:
    """The service's login cannot ANALYZE a table it does not own (PostgreSQL skips it with a warning); through the
    function it can, a record table and nothing else."""
    connection = await asyncpg.connect(login_url(import_database, "registry"))
    try:
        before = (await last_analyze(import_database))["revenues"]
        await connection.execute("ANALYZE registry.revenues")  # skipped: not the owner
        assert (await last_analyze(import_database))["revenues"] == before
        await connection.execute("SELECT registry.analyze_after_import('revenues')")
        assert (await last_analyze(import_database))["revenues"] not in (None, before)
        with pytest.raises(asyncpg.InvalidParameterValueError):
            await connection.execute("SELECT registry.analyze_after_import('audit_log')")
    finally:
        await connection.close()
