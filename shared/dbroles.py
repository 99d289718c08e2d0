"""The database logins the services run as (issue #12, finding 2; docs/security.md).

Migrations run as the schema owner (`MIGRATION_DATABASE_URL`, else `DATABASE_URL`) and grant
each service's privileges to a NOLOGIN group role (`registry_writer`, `eligibility_writer`,
`vouchers_writer`). A service logs in as its own role (`registry_app`, `eligibility_app`,
`vouchers_app`): not a superuser, not the owner, a member of its group only, so nothing it can
run — `SET ROLE`, `RESET ROLE`, `ALTER TABLE` — leads to more than the group's grants. No
startup parameter switches roles (PgBouncer may drop those).

The logins are the tooling's business, never a migration's (their passwords would be in the
repository): `ensure_logins` creates a missing one (the owner needs CREATEROLE: true locally
and in compose; in deploy/k8s CloudNativePG's managed roles create them) and sets the
password from `<SERVICE>_DB_PASSWORD` when one is given, and gives each login its timeouts as role
defaults (`statement_timeout`, `idle_in_transaction_session_timeout`: `role_defaults`), which every
connection gets whatever is between it and the server (PgBouncer passes no such startup
parameter: shared/dbconnect.py; issue #15). `login_url` is the owner's URL with
the login's name and password: what `make run` and the tests give each service.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from shared.dbconnect import libpq_url

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger("shared.dbroles")

SERVICES = ("registry", "eligibility", "vouchers")
#: The NOLOGIN role each service's privileges are granted to (by its migrations).
GROUP_ROLES = {service: f"{service}_writer" for service in SERVICES}
#: The role each service logs in as: a member of its group and of nothing else.
LOGIN_ROLES = {service: f"{service}_app" for service in SERVICES}


def password_variable(service: str) -> str:
    return f"{service.upper()}_DB_PASSWORD"


def passwords_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`<SERVICE>_DB_PASSWORD` of each service that has one (local trust authentication needs none)."""
    environ = os.environ if environ is None else environ
    return {s: environ[password_variable(s)] for s in SERVICES if environ.get(password_variable(s))}


def login_url(owner_url: str, service: str, password: str | None = None) -> str:
    """`owner_url` with the service's login (and its password, if any) instead of the owner's."""
    parts = urlsplit(owner_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = LOGIN_ROLES[service]
    credentials = f"{user}:{quote(password, safe='')}" if password else user
    return urlunsplit((parts.scheme, f"{credentials}@{host}", parts.path, parts.query, parts.fragment))


def login_sql(service: str) -> str:
    """Create the login if it is missing, least-privileged; a concurrent creator is no error."""
    login, group = LOGIN_ROLES[service], GROUP_ROLES[service]
    return f"""
    DO $$ BEGIN
        {create_role_sql(login, "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT")}
        {create_role_sql(group, "NOLOGIN")}
        IF NOT pg_has_role('{login}', '{group}', 'MEMBER') THEN
            GRANT {group} TO {login};
        END IF;
    END $$
    """


def create_role_sql(name: str, attributes: str) -> str:
    """PL/pgSQL that creates role `name` if it is missing; a concurrent creator is no error."""
    return f"""IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN
            BEGIN
                CREATE ROLE {name} {attributes};
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END;
        END IF;"""


def statement_timeout_ms(service: str, environ: Mapping[str, str] | None = None) -> int:
    """The service's `<SERVICE>_DB_STATEMENT_TIMEOUT_MS` (its settings' default: 30 s)."""
    environ = os.environ if environ is None else environ
    return int(environ.get(f"{service.upper()}_DB_STATEMENT_TIMEOUT_MS") or 30_000)


def role_defaults(service: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The login's own settings: the service's timeouts, as `ALTER ROLE … SET` stores them."""
    from shared.dbconnect import timeouts

    return {name: f"{value}ms" for name, value in timeouts(statement_timeout_ms(service, environ)).items()}


async def _set_role_defaults(connection: asyncpg.Connection, service: str) -> None:
    """`ALTER ROLE <login> SET …` for each default that differs (none written when all are in place)."""
    login = LOGIN_ROLES[service]
    current = await connection.fetchval(
        "SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
        "WHERE r.rolname = $1 AND s.setdatabase = 0",
        login,
    )
    present = set(current or ())
    import asyncpg

    for name, value in role_defaults(service).items():
        if f"{name}={value}" not in present:
            try:
                await connection.execute(f"ALTER ROLE {login} SET {name} = '{value}'")
            except asyncpg.InsufficientPrivilegeError:  # deploy/k8s: the Cluster's bootstrap SQL sets them
                logger.warning(
                    "cannot set %s's %s (%s); a service behind PgBouncer refuses to start without it",
                    login,
                    name,
                    value,
                )
                return


async def _login(connection: asyncpg.Connection, service: str) -> None:
    """The service's login and group, and the login's defaults."""
    await connection.execute(login_sql(service))
    await _set_role_defaults(connection, service)


async def again_if_raced(work: Callable[[], Awaitable[None]], attempts: int = 5) -> None:
    """`work` on roles, which are the cluster's; again when another session changing the same roles at once made it
    fail ("tuple concurrently updated", or a unique violation in a catalogue such as the first `ALTER ROLE … SET`'s
    row in pg_db_role_setting): the next attempt finds that session's work done (two migrations of two databases
    on one server, a fresh cluster)."""
    import asyncpg

    for attempt in range(1, attempts + 1):
        try:
            await work()
            return
        except asyncpg.PostgresError as exc:
            raced = isinstance(exc, asyncpg.UniqueViolationError) or "concurrently" in str(exc)
            if attempt == attempts or not raced:
                raise
            await asyncio.sleep(0.1 * attempt)


async def ensure_logins_async(owner_url: str, passwords: Mapping[str, str] | None = None) -> None:
    import asyncpg

    passwords = passwords_from_environment() if passwords is None else passwords
    connection = await asyncpg.connect(libpq_url(owner_url))
    try:
        for service in SERVICES:
            await again_if_raced(functools.partial(_login, connection, service))
            if passwords.get(service):
                # a parameter cannot carry a role's password: quote it as a literal
                literal = await connection.fetchval("SELECT quote_literal($1::text)", passwords[service])
                await connection.execute(f"ALTER ROLE {LOGIN_ROLES[service]} PASSWORD {literal}")
    finally:
        await connection.close()


def ensure_logins(owner_url: str, passwords: Mapping[str, str] | None = None) -> None:
    """Blocking: the services' logins exist and are members of their groups (see the module doc)."""
    asyncio.run(ensure_logins_async(owner_url, passwords))
