"""Roles are the cluster's, not a database's: two migrations of two databases on one server (two deployments, two
test workers) may create the same role at once. Every role a migration creates goes through
`shared.dbroles.create_role_sql`, which takes the loser of that race as done."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import asyncpg
import pytest

from shared.dbroles import create_role_sql

ROOT = Path(__file__).resolve().parents[1]

#: what vouchers migration 0002 ran before it used create_role_sql: a check, then the CREATE, no handler
UNGUARDED = """DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN CREATE ROLE {name} NOLOGIN; END IF;
END $$"""


async def race(database_url: str, block: str, name: str) -> BaseException | None:
    """`block` in a transaction that has created role `name` but not committed, and at once on a second connection,
    which waits for the first's row; the first commits. The second's error, if any."""
    first, second = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        transaction = first.transaction()
        await transaction.start()
        await first.execute(block)
        racing = asyncio.create_task(second.execute(block))
        pid = second.get_server_pid()
        for _ in range(1000):  # the second saw no role (the first's is uncommitted): it waits on the first's row
            if await first.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the second creator did not wait for the first")
        await transaction.commit()
        try:
            await racing
        except asyncpg.PostgresError as exc:
            return exc
        return None
    finally:
        await first.execute(f"DROP ROLE IF EXISTS {name}")
        await first.close()
        await second.close()


async def test_two_creators_of_one_role_at_once_are_no_error(database_url: str) -> None:
    name = f"race_{uuid.uuid4().hex[:12]}"
    assert await race(database_url, f"DO $$ BEGIN {create_role_sql(name, 'NOLOGIN')} END $$", name) is None


async def test_without_the_handler_the_second_creator_fails(database_url: str) -> None:
    """The race is real: the check alone lets both through, and the second CREATE fails."""
    name = f"race_{uuid.uuid4().hex[:12]}"
    error = await race(database_url, UNGUARDED.format(name=name), name)
    assert isinstance(error, asyncpg.UniqueViolationError | asyncpg.DuplicateObjectError)


@pytest.mark.parametrize("tree", ["registry", "eligibility", "vouchers"])
def test_no_migration_creates_a_role_but_through_create_role_sql(tree: str) -> None:
    found = [
        path.name
        for path in sorted((ROOT / "migrations" / tree / "versions").glob("*.py"))
        if re.search(r"CREATE\s+ROLE", path.read_text(), re.IGNORECASE)
    ]
    assert found == []
