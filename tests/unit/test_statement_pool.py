"""The raw connections a submission's fixed SQL runs on (`shared.db.StatementPool`, issue #16): lent for a block,
JSON as the engine's connections have it, a busy pool answered like SQLAlchemy's (503 `service_busy`), nothing a
caller left open carried to the next one."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from shared.db import Database


async def test_connections_are_lent_for_a_block_and_a_busy_pool_times_out_as_sqlalchemys_does(
    database_url: str,
) -> None:
    database = Database(
        database_url.replace("postgresql://", "postgresql+asyncpg://", 1),
        application_name="t",
        pool_size=1,
        pool_timeout=0.2,
    )
    pool = database.statements
    try:
        async with pool.acquire() as connection:
            assert await connection.fetchval("SELECT current_setting('application_name')") == "t"
            assert await connection.fetchval("SELECT $1::jsonb", '{"申请": [1, 2]}') == {"申请": [1, 2]}
            assert await connection.fetchval("SELECT '[true]'::json") == [True]
            with pytest.raises(PoolTimeoutError):  # the one connection is lent
                async with pool.acquire():
                    pass
            await connection.execute("BEGIN")  # left open: rolled back when it goes back
        async with pool.acquire() as again:
            assert again.is_in_transaction() is False
    finally:
        await database.dispose()
