"""The services' own database logins cannot rewrite what is append-only (issue #12, findings 2 and 4).

The services used to log in as the schema owner (a superuser locally) and switch to
`vouchers_writer` by a startup parameter: any SQL on that connection could `RESET ROLE`,
disable the ledger's triggers and rewrite entries. Now each logs in as its own role
(shared/dbroles.py), which these tests use exactly as the services do: the URL `make run` and
the test fixtures give them (`login_url`). And `vouchers_writer` may no longer UPDATE a
voucher's `amount_fen` (raising it paid a vendor more than was issued, verify still green).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from shared.dbconnect import libpq_url
from shared.dbroles import GROUP_ROLES, LOGIN_ROLES, login_url
from shared.migrations import SERVICES
from tests.conftest import DatabaseFactory

#: What each service may only read and append (its triggers refuse the rest even to the owner;
#: the login must not get as far as them, nor be able to switch them off).
APPEND_ONLY = {
    "registry": ("versions", "audit_log", "outbox", "webhook_deliveries"),
    "eligibility": (
        "decisions",
        "reviews",
        "parameter_versions",
        "awards",
        "audit_log",
        "outbox",
        "webhook_deliveries",
    ),
    "vouchers": ("entries", "seals", "checkpoints", "audit_log", "outbox", "webhook_deliveries"),
}
CASES = [(service, table) for service in SERVICES for table in APPEND_ONLY[service]]

INSERT_VOUCHER = (
    "INSERT INTO vouchers.vouchers (code, kind, holder, decision_id, year, amount_fen, available_fen, held_fen, "
    "redeemed_fen, returned_fen, valid_until, account_id, hold_account_id, budget_account_id) "
    "VALUES ($1, 'M3', '9144030071526726XG', $2, 2026, $3, $3, 0, 0, 0, '2027-12-31', $4, $5, $6) RETURNING id"
)


@pytest.fixture(scope="module")
def logins_database(databases: DatabaseFactory) -> str:
    """A database of this module's own: the tests below commit rows the other tests should not see."""
    return databases.create("longgang_logins")


async def _as_login(url: str, service: str) -> Any:
    return await asyncpg.connect(libpq_url(login_url(url, service)))


@pytest_asyncio.fixture
async def owner(logins_database: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(libpq_url(logins_database))
    try:
        yield connection
    finally:
        await connection.close()


async def _column(owner: Any, schema: str, table: str) -> str:
    name: str = await owner.fetchval(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 "
        "AND is_identity = 'NO' AND is_generated = 'NEVER' ORDER BY ordinal_position LIMIT 1",
        schema,
        table,
    )
    return name


@pytest.mark.parametrize(("service", "table"), CASES)
@pytest.mark.parametrize("statement", ["UPDATE", "DELETE", "TRUNCATE", "DISABLE TRIGGER", "DROP TRIGGER", "OWNER"])
async def test_a_service_login_cannot_rewrite_an_append_only_table(
    service: str, table: str, statement: str, logins_database: str, owner: Any
) -> None:
    column = await _column(owner, service, table)
    trigger = f"{table}_append_only"
    sql = {
        "UPDATE": f"UPDATE {service}.{table} SET {column} = {column}",
        "DELETE": f"DELETE FROM {service}.{table}",
        "TRUNCATE": f"TRUNCATE {service}.{table}",
        "DISABLE TRIGGER": f"ALTER TABLE {service}.{table} DISABLE TRIGGER ALL",
        "DROP TRIGGER": f"DROP TRIGGER {trigger} ON {service}.{table}",
        "OWNER": f"ALTER TABLE {service}.{table} OWNER TO {LOGIN_ROLES[service]}",
    }[statement]
    connection = await _as_login(logins_database, service)
    try:
        assert await connection.fetchval("SELECT current_user") == LOGIN_ROLES[service]
        # refused for want of privilege, before any trigger could (the triggers raise the same SQLSTATE)
        expected = "permission denied" if statement in ("UPDATE", "DELETE", "TRUNCATE") else "must be owner"
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=expected):
            await connection.execute(sql)
    finally:
        await connection.close()


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_login_has_no_way_back_to_the_owner(service: str, logins_database: str, owner: Any) -> None:
    schema_owner = await owner.fetchval("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1", service)
    login = LOGIN_ROLES[service]
    attributes = await owner.fetchrow(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = $1",
        login,
    )
    assert not any(attributes.values())
    # member of its group and of nothing else; the group is a member of nothing
    assert await owner.fetchval(
        "SELECT array_agg(m.roleid::regrole::text) FROM pg_auth_members m WHERE m.member = $1::regrole", login
    ) == [GROUP_ROLES[service]]
    assert (
        await owner.fetchval("SELECT count(*) FROM pg_auth_members WHERE member = $1::regrole", GROUP_ROLES[service])
        == 0
    )
    assert not await owner.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", login, schema_owner)

    connection = await _as_login(logins_database, service)
    try:
        for attempt in (f'SET ROLE "{schema_owner}"', "SET SESSION AUTHORIZATION postgres", "SET ROLE postgres"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute(attempt)
        for back in ("RESET ROLE", "SET ROLE NONE", "RESET SESSION AUTHORIZATION"):
            await connection.execute(back)
            assert await connection.fetchval("SELECT current_user") == login
        # what a `role` startup parameter would have led back to is gone: the login is all there is
        assert not await connection.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute(f"CREATE TABLE {service}.hijack (x int)")
    finally:
        await connection.close()


async def _voucher(owner: Any, amount: int = 10_000) -> str:
    """A voucher as the service issues it: its account, hold account, and the issue entry from a budget."""
    code = f"LOGIN-{uuid.uuid4().hex[:8]}"
    async with owner.transaction():
        budget = await owner.fetchval(
            "INSERT INTO vouchers.accounts (kind, ref) VALUES ('budget', $1) RETURNING id", f"M3:{code}"
        )
        holding = await owner.fetchval(
            "INSERT INTO vouchers.accounts (kind, ref) VALUES ('voucher', $1) RETURNING id", code
        )
        hold = await owner.fetchval("INSERT INTO vouchers.accounts (kind, ref) VALUES ('hold', $1) RETURNING id", code)
        voucher = await owner.fetchval(INSERT_VOUCHER, code, uuid.uuid4(), amount, holding, hold, budget)
        await owner.execute(
            "INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, voucher_id) "
            "VALUES ('issue', $1, $2, $3, $4)",
            budget,
            holding,
            amount,
            voucher,
        )
    return code


async def test_the_vouchers_login_cannot_raise_a_vouchers_amount(logins_database: str, owner: Any) -> None:
    """Finding 4: amount and balance raised together passed every CHECK; the column is now not the service's."""
    code = await _voucher(owner)
    connection = await _as_login(logins_database, "vouchers")
    try:
        for statement in (
            "UPDATE vouchers.vouchers SET amount_fen = amount_fen + 100000, available_fen = available_fen + 100000 "
            "WHERE code = $1",
            "UPDATE vouchers.vouchers SET account_id = budget_account_id WHERE code = $1",
            "UPDATE vouchers.vouchers SET holder = '91440300708461136T' WHERE code = $1",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for table vouchers"):
                await connection.execute(statement, code)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("UPDATE vouchers.accounts SET ref = ref")
        # what the ledger does move, it still may
        assert await connection.execute("UPDATE vouchers.vouchers SET held_fen = held_fen WHERE code = $1", code) == (
            "UPDATE 1"
        )
    finally:
        await connection.close()
    assert await owner.fetchval("SELECT amount_fen FROM vouchers.vouchers WHERE code = $1", code) == 10_000


@pytest.mark.parametrize(
    "change",
    [
        "available_fen = available_fen + 1",  # above what was issued
        "available_fen = amount_fen + 1, redeemed_fen = -1",
        "available_fen = -1, returned_fen = amount_fen + 1",  # below zero
        "available_fen = available_fen - 1",  # money vanishing
    ],
)
async def test_a_vouchers_balance_stays_between_zero_and_its_issue(
    change: str, logins_database: str, owner: Any
) -> None:
    code = await _voucher(owner)
    connection = await _as_login(logins_database, "vouchers")
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await connection.execute(f"UPDATE vouchers.vouchers SET {change} WHERE code = $1", code)
    finally:
        await connection.close()


async def test_a_voucher_commits_only_with_an_issue_entry_of_its_amount(logins_database: str, owner: Any) -> None:
    connection = await _as_login(logins_database, "vouchers")
    code = f"LOGIN-{uuid.uuid4().hex[:8]}"
    transaction = connection.transaction()
    await transaction.start()
    try:
        budget, holding, hold = [
            await connection.fetchval(
                "INSERT INTO vouchers.accounts (kind, ref) VALUES ($1, $2) RETURNING id", kind, f"{code}-{kind}"
            )
            for kind in ("budget", "voucher", "hold")
        ]
        voucher = await connection.fetchval(INSERT_VOUCHER, code, uuid.uuid4(), 10_000, holding, hold, budget)
        # the entry gives less than the voucher claims: refused when the transaction commits
        await connection.execute(
            "INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, voucher_id) "
            "VALUES ('issue', $1, $2, 100, $3)",
            budget,
            holding,
            voucher,
        )
        with pytest.raises(asyncpg.CheckViolationError, match="no issue entry of 10000 fen"):
            await transaction.commit()
    finally:
        await connection.close()
    assert await owner.fetchval("SELECT count(*) FROM vouchers.vouchers WHERE code = $1", code) == 0


async def test_the_services_really_log_in_as_their_own_roles(
    vouchers_app: FastAPI, vouchers: httpx.AsyncClient, live_registry: str, live_registry_database: str
) -> None:
    """The in-process app (every pool: requests, hot path) and a service process as `make run` starts it."""
    async with vouchers_app.state.database.engine.connect() as connection:
        assert (await connection.exec_driver_sql("SELECT current_user")).scalar_one() == "vouchers_app"
    pool = vouchers_app.state.ledger_pool.pool
    assert await pool.fetchval("SELECT current_user") == "vouchers_app"
    assert await pool.fetchval("SELECT session_user") == "vouchers_app"

    async with httpx.AsyncClient(base_url=live_registry, timeout=10) as client:
        assert (await client.get("/readyz")).status_code == 200
    owner = await asyncpg.connect(libpq_url(live_registry_database))
    try:
        users = await owner.fetch(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND application_name LIKE 'registry%'"
        )
    finally:
        await owner.close()
    assert {row["usename"] for row in users} == {"registry_app"}


@pytest.mark.parametrize("service", SERVICES)
async def test_retention_is_the_only_delete_and_a_login_cannot_widen_it(
    service: str, logins_database: str, owner: Any
) -> None:
    """trim_feed (issue #15) runs as the owner and deletes only events older than a day that no subscription
    still needs: the login may run it, but not delete outbox or delivery rows itself, move the horizon, or
    get the trigger's leave by setting its flag."""
    fresh = await owner.fetchval(
        f"INSERT INTO {service}.outbox (type, subject) VALUES ('{service}.retention.probe', 'fresh') RETURNING id"
    )
    connection = await _as_login(logins_database, service)
    try:
        # a zero retention is raised to the minimum (a day): the fresh event stays
        await connection.fetchrow(f"SELECT * FROM {service}.trim_feed('0', 10000)")
        await connection.execute(f"SET longgang.feed_trim = '{service}'")  # the trigger's flag: no privilege
        for sql in (
            f"DELETE FROM {service}.outbox WHERE id = {fresh}",
            f"DELETE FROM {service}.webhook_deliveries",
            f"UPDATE {service}.feed_horizon SET trimmed_id = 2^62",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await connection.execute(sql)
    finally:
        await connection.close()
    assert await owner.fetchval(f"SELECT count(*) FROM {service}.outbox WHERE id = $1", fresh) == 1
    # and the owner itself is refused by the trigger outside trim_feed
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await owner.execute(f"DELETE FROM {service}.outbox WHERE id = $1", fresh)
