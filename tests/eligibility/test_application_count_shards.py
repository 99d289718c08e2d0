"""The dashboard's application counts split over shards (migration 0018): concurrent submissions of one measure do
not queue for one counter row, and every count is still the sum the rows give.

Each connection adds to its own shard (`eligibility.count_shard()`, the backend's pid modulo 32). Before, every
submission of a measure locked the same two `application_counts` rows until it committed, so the next one waited.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from services.eligibility import aggregates
from tests.conftest import DatabaseFactory
from tests.eligibility.test_aggregates import _insert_by_sql


@pytest_asyncio.fixture
async def engine(databases: DatabaseFactory) -> AsyncIterator[AsyncEngine]:
    url = databases.create("longgang_count_shards")
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    yield engine
    await engine.dispose()


async def _shard(connection: AsyncConnection) -> int:
    shard = int((await connection.execute(text("SELECT eligibility.count_shard()"))).scalar_one())
    await connection.commit()
    return shard


async def _counts(connection: AsyncConnection, measure: str) -> dict[tuple[int, str, str], int]:
    """(shard, dimension, value) → count, for one measure."""
    rows = await connection.execute(
        text("SELECT shard, dimension, value, count FROM eligibility.application_counts WHERE measure = :m"),
        {"m": measure},
    )
    counts = {(row.shard, row.dimension, row.value): int(row.count) for row in rows}
    await connection.commit()
    return counts


async def test_a_submission_does_not_wait_for_another_connections_uncommitted_counts(engine: AsyncEngine) -> None:
    opened = [await engine.connect(), await engine.connect()]
    try:
        first, second = opened
        shard_a = await _shard(first)
        while (shard_b := await _shard(second)) == shard_a:  # until a connection falls in another shard
            assert len(opened) < 8, "eight connections (eight backends' pids), all in one shard"
            second = await engine.connect()
            opened.append(second)
        await second.execute(text("SET lock_timeout = '2s'"))  # a wait for the first's rows fails the test
        await second.commit()
        async with first.begin():
            await _insert_by_sql(first, "M6", 60, "in_review", "needs_review")
            # the first's counts are written and locked until it commits; the second adds to its own shard
            async with second.begin():
                await _insert_by_sql(second, "M6", 30, "in_review", "needs_review")
        counts = await _counts(second, "M6")
        assert counts[(shard_a, "status", "in_review")] == 1
        assert counts[(shard_b, "status", "in_review")] == 1
        assert counts[(shard_a, "outcome", "needs_review")] == 1
        assert counts[(shard_b, "outcome", "needs_review")] == 1

        # the first's application rejected from the second's connection: its shard goes below zero for
        # `in_review`, the sum is right
        async with second.begin():
            application = (
                await second.execute(
                    text("SELECT id FROM eligibility.applications WHERE measure = 'M6' ORDER BY seq LIMIT 1")
                )
            ).scalar_one()
            await second.execute(
                text("UPDATE eligibility.applications SET status = 'rejected' WHERE id = :id"), {"id": application}
            )
        counts = await _counts(second, "M6")
        assert counts[(shard_b, "status", "in_review")] == 0
        assert counts[(shard_b, "status", "rejected")] == 1
        async with second.begin():
            assert await aggregates.differences(second) == []
            year = int((await second.execute(text("SELECT eligibility.local_year(now())"))).scalar_one())
            # what GET /v1/aggregates/applications answers: each count the sum of its shards
            answer = await aggregates.applications(AsyncSession(bind=second), year)
        [m6] = [row for row in answer.by_measure if row.measure == "M6"]
        assert (m6.submitted, m6.in_review, m6.rejected, m6.needs_review) == (2, 1, 1, 2)

        # rebuilt, the counts are the same, each in shard 0
        async with second.begin():
            await aggregates.rebuild_application_counts(second)
        assert {shard for shard, _, _ in await _counts(second, "M6")} == {0}
        async with second.begin():
            assert await aggregates.differences(second) == []
    finally:
        for connection in opened:
            await connection.close()
