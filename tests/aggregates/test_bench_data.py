"""The aggregates benchmark's ledger, built small: valid, over three years, and projected exactly.

`bench/aggregates_bench.py` writes its 10,000,000 entries by SQL, bypassing triggers; this
builds the same shape at a few thousand entries and checks that the ledger's invariants
hold, that the projections equal plain SQL over it (entries from October 2024 to now, so
several years and every kind of entry), and that reconciliation finds nothing.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from bench.aggregates_bench import Shape, build_ledger
from services.vouchers.invariants import check_database
from services.vouchers.reporting.projector import reconcile
from tests.aggregates.conftest import connect, fetch, project
from tests.aggregates.test_projections import assert_answers_match_the_ledger
from tests.auth import admin
from tests.conftest import DatabaseFactory


@pytest.fixture(scope="module")
def bench_database(databases: DatabaseFactory) -> str:
    return databases.create("longgang_agg_bench")


async def test_the_benchmark_ledger_is_valid_and_projected_exactly(bench_database: str, agg_app: FastAPI) -> None:
    shape = Shape(entries=6_000, vouchers=120, holders=31, compute_vendors=7, model_vendors=3, grants=300)
    await build_ledger(bench_database, shape, seed=7)
    assert await check_database(bench_database) == []
    kinds = {row[0] for row in await fetch(bench_database, "SELECT DISTINCT kind FROM vouchers.entries")}
    assert kinds == {"issue", "redeem", "hold", "capture", "release", "void", "expire", "settle", "grant", "reversal"}
    years = {
        int(row[0])
        for row in await fetch(
            bench_database,
            "SELECT DISTINCT extract(year FROM created_at AT TIME ZONE 'Asia/Shanghai') FROM vouchers.entries",
        )
    }
    assert {2024, 2025} <= years
    await project(bench_database)
    connection = await connect(bench_database)
    try:
        result = await reconcile(connection)
    finally:
        await connection.close()
    assert (result.ok, result.differences) == (True, [])

    # the aggregates API over that database answers as plain SQL does, year by year
    from services.vouchers.app import create_app

    url = bench_database.replace("postgresql://", "postgresql+asyncpg://")
    app = create_app(agg_app.state.settings.model_copy(update={"database_url": url}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://vouchers", headers=admin()) as client:
            for year in sorted(years):
                await assert_answers_match_the_ledger(client, bench_database, year)
