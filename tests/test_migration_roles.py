"""Roles are the cluster's, not a database's: two migrations of two databases on one server (two deployments, two
test workers) may create and alter the same role at once. Every role a migration creates goes through
`shared.dbroles.create_role_sql`, which takes the loser of that race as done, and the logins' set-up
(`ensure_logins`) runs again when another session's change made it fail (`again_if_raced`)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from shared.dbroles import again_if_raced, create_role_sql

ROOT = Path(__file__).resolve().parents[1]

#: what vouchers migration 0002 ran before it used create_role_sql: a check, then the CREATE, no handler
UNGUARDED = """DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN CREATE ROLE {name} NOLOGIN; END IF;
END $$"""

Second = Callable[[asyncpg.Connection], Awaitable[object]]


async def race(database_url: str, name: str, first: str, second: Second) -> BaseException | None:
    """`first` in a transaction left open, `second` at once on another connection, which waits for the first's
    catalogue row; then the first commits. The second's error, if any. Role `name` is dropped at the end."""
    one, other = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        transaction = one.transaction()
        await transaction.start()
        await one.execute(first)
        racing = asyncio.create_task(second(other))
        pid = other.get_server_pid()
        for _ in range(1000):  # the second saw nothing (the first's row is uncommitted): it waits on that row
            if await one.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the second session did not wait for the first")
        await transaction.commit()
        try:
            await racing
        except asyncpg.PostgresError as exc:
            return exc
        return None
    finally:
        await one.execute(f"DROP ROLE IF EXISTS {name}")
        await one.close()
        await other.close()


def fresh_name() -> str:
    return f"race_{uuid.uuid4().hex[:12]}"


async def test_two_creators_of_one_role_at_once_are_no_error(database_url: str) -> None:
    name = fresh_name()
    block = f"DO $$ BEGIN {create_role_sql(name, 'NOLOGIN')} END $$"
    assert await race(database_url, name, block, lambda connection: connection.execute(block)) is None


async def test_without_the_handler_the_second_creator_fails(database_url: str) -> None:
    """The race is real: the check alone lets both through, and the second CREATE fails."""
    name = fresh_name()
    block = UNGUARDED.format(name=name)
    error = await race(database_url, name, block, lambda connection: connection.execute(block))
    assert isinstance(error, asyncpg.UniqueViolationError | asyncpg.DuplicateObjectError)


async def settings_race(database_url: str, retried: bool) -> tuple[BaseException | None, list[str]]:
    """Two sessions setting a role's first default at once (`ensure_logins`' `ALTER ROLE … SET`); the role's
    settings after."""
    name = fresh_name()
    setup = await asyncpg.connect(database_url)
    try:
        await setup.execute(f"CREATE ROLE {name} NOLOGIN")
        settings: list[str] = []

        async def second(connection: asyncpg.Connection) -> None:
            async def alter() -> None:
                await connection.execute(f"ALTER ROLE {name} SET lock_timeout = '1000ms'")

            await (again_if_raced(alter) if retried else alter())
            settings.extend(
                await connection.fetchval(
                    "SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
                    "WHERE r.rolname = $1 AND s.setdatabase = 0",
                    name,
                )
            )

        error = await race(database_url, name, f"ALTER ROLE {name} SET statement_timeout = '2000ms'", second)
        return error, settings
    finally:
        await setup.close()


async def test_a_default_set_at_once_by_another_session_is_set_again(database_url: str) -> None:
    assert await settings_race(database_url, retried=True) == (
        None,
        ["statement_timeout=2000ms", "lock_timeout=1000ms"],
    )


async def test_without_again_the_second_default_fails(database_url: str) -> None:
    error, _ = await settings_race(database_url, retried=False)
    assert isinstance(error, asyncpg.UniqueViolationError)


@pytest.mark.parametrize("tree", ["registry", "eligibility", "vouchers"])
def test_no_migration_creates_a_role_but_through_create_role_sql(tree: str) -> None:
    found = [
        path.name
        for path in sorted((ROOT / "migrations" / tree / "versions").glob("*.py"))
        if re.search(r"CREATE\s+ROLE", path.read_text(), re.IGNORECASE)
    ]
    assert found == []
