"""One Alembic migration tree per service, one `alembic.ini` with a section each.

    alembic -n registry upgrade head      # or: python -m shared.migrate

Each tree keeps its version table inside its own schema, so the services' histories
never touch. `run_env` is the whole of every tree's env.py.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.dbroles import create_role_sql

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("registry", "eligibility", "vouchers")


def async_url(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def alembic_config(service: str, database_url: str | None = None) -> Config:
    config = Config(str(ROOT / "alembic.ini"), ini_section=service)
    if database_url:
        config.attributes["database_url"] = async_url(database_url)
    return config


def head_revision(service: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(service)).get_current_head()


def known_revisions(service: str) -> frozenset[str]:
    """Every revision of the service's tree this code knows (a database at another one is newer)."""
    return frozenset(
        script.revision for script in ScriptDirectory.from_config(alembic_config(service)).walk_revisions()
    )


def upgrade(service: str, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, database_url), revision)


def upgrade_all(database_url: str, *, logins: bool = True) -> None:
    """Every tree to head, as the owner; then the services' logins exist (shared/dbroles.py)."""
    for service in SERVICES:
        upgrade(service, database_url)
    if logins:
        from shared.dbroles import ensure_logins

        ensure_logins(database_url)


def _configured_url(service: str) -> str:
    """The owner's URL: `<SERVICE>_DATABASE_URL` is the service's own login, which may not migrate."""
    url = context.config.attributes.get("database_url")
    if url:
        return str(url)
    names = (f"{service.upper()}_MIGRATION_DATABASE_URL", "MIGRATION_DATABASE_URL", "DATABASE_URL")
    for name in (*names, f"{service.upper()}_DATABASE_URL"):
        if os.environ.get(name):
            return async_url(os.environ[name])
    raise RuntimeError(f"set MIGRATION_DATABASE_URL or DATABASE_URL (the schema owner's) to migrate {service}")


def run_env(service: str, schema: str, metadata: MetaData, after: Sequence[str] = ()) -> None:
    """The body of `migrations/<service>/env.py` (online mode only: we always have a database).

    `after`: statements run after the migrations, in their transaction, on every run (even with
    nothing to migrate): upkeep that must follow any change of the database under the service.
    """

    def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
        if type_ == "table":
            return getattr(obj, "schema", None) == schema
        return True

    def migrate(connection: Connection) -> None:
        # one migrator at a time per service, even when several processes start at once
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"migrate:{schema}"})
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_object=include_object,
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            context.run_migrations()
            for statement in after:
                connection.execute(text(statement))

    async def run() -> None:
        engine = create_async_engine(_configured_url(service), poolclass=pool.NullPool)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(migrate)
        finally:
            await engine.dispose()

    asyncio.run(run())


_VERSION = re.compile(r"^-- version: (\d+)$", re.MULTILINE)
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@")


def sql_functions(directory: Path, name: str, version: int) -> list[str]:
    """The statements that define SQL function `name` as of `version` (for migrations).

    `<directory>/<name>.sql` holds today's definition and says which version it is (`-- version: N`): the
    latest migration loads N. An older version is that text with the reverse diffs
    `<directory>/history/<name>.<k>.diff` (from version k + 1 back to k) applied, N - 1 down to `version`: a
    definition is written once, and each earlier one is kept as what changed. Statements are separated by
    lines holding only `-- ;;`.
    """
    text = (directory / f"{name}.sql").read_text(encoding="utf-8")
    found = _VERSION.search(text)
    if found is None:
        raise ValueError(f"{name}.sql: no `-- version: N` line")
    current = int(found.group(1))
    if not 1 <= version <= current:
        raise ValueError(f"{name}.sql: version {version} unknown (current: {current})")
    for older in range(current - 1, version - 1, -1):
        text = apply_diff(text, (directory / "history" / f"{name}.{older}.diff").read_text(encoding="utf-8"))
    parts = [part.strip() for part in text.split("\n-- ;;\n")]
    return [part for part in parts if any(not line.startswith("--") for line in part.splitlines() if line.strip())]


def load_functions(directory: Path, versions: Mapping[str, int]) -> None:
    """Inside a migration: (re)define each SQL function of `versions` as of its version (`sql_functions`), in order.

    A migration that moves functions to new versions loads `{name: new}` on upgrade and `{name: new - 1}` on
    downgrade."""
    from alembic import op

    for name, version in versions.items():
        for statement in sql_functions(directory, name, version=version):
            op.execute(statement)


def apply_diff(text: str, diff: str) -> str:
    """`text` changed by a unified diff (`diff -u`); every context and removed line must be found as written."""
    lines = text.splitlines(keepends=True)
    result: list[str] = []
    at = 0
    in_hunks = False
    for line in diff.splitlines(keepends=True):
        hunk = _HUNK.match(line)
        if hunk is not None:
            start = int(hunk.group(1))
            begin = start - 1 if hunk.group(2) != "0" else start
            result += lines[at:begin]
            at = begin
            in_hunks = True
            continue
        if not in_hunks or line.startswith("\\"):  # the file names; "\ No newline at end of file"
            continue
        tag, body = (" ", "\n") if line == "\n" else (line[0], line[1:])  # an empty context line, trimmed
        if tag in " -":
            if at >= len(lines) or lines[at] != body:
                raise ValueError(f"the diff does not apply at line {at + 1}: {body!r}")
            at += 1
            if tag == " ":
                result.append(body)
        elif tag == "+":
            result.append(body)
        else:
            raise ValueError(f"not a line of a unified diff: {line!r}")
    return "".join(result + lines[at:])


def append_only_sql(schema: str, table: str) -> list[str]:
    """Statements that make `schema.table` refuse UPDATE, DELETE and TRUNCATE (for migrations).

    TRUNCATE fires no row trigger, hence the separate statement trigger.
    """
    function = f'"{schema}".refuse_change_{table}'
    return [
        f"""
        CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{schema}.{table} is append-only (% refused)', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """,
        f'CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON "{schema}"."{table}" '
        f"FOR EACH ROW EXECUTE FUNCTION {function}()",
        f'CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON "{schema}"."{table}" '
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
    ]


def writer_grants_sql(schema: str, group: str, append_only: tuple[str, ...]) -> list[str]:
    """The service's NOLOGIN group role and its privileges on the schema (issue #12, finding 2).

    Read, insert, update and delete rows: no TRUNCATE, no DDL, no trigger (only the owner may
    `ALTER TABLE`); append-only tables get SELECT and INSERT only, `alembic_version` SELECT.
    Tables later migrations create get the same by default (the owner runs every migration);
    an append-only one must REVOKE UPDATE, DELETE itself. The role is created here only when
    missing (CREATEROLE: the superuser locally; deploy/k8s creates it at initdb).
    """
    statements = [
        f"DO $$ BEGIN {create_role_sql(group, 'NOLOGIN')} END $$",
        f'GRANT USAGE ON SCHEMA "{schema}" TO {group}',
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO {group}',
        f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO {group}',
        f'REVOKE INSERT, UPDATE, DELETE ON "{schema}".alembic_version FROM {group}',
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {group}',
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" GRANT USAGE, SELECT ON SEQUENCES TO {group}',
    ]
    statements += [f'REVOKE UPDATE, DELETE ON "{schema}"."{table}" FROM {group}' for table in append_only]
    return statements


def writer_grants_downgrade_sql(schema: str, group: str) -> list[str]:
    return [
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" REVOKE ALL ON TABLES FROM {group}',
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{schema}" REVOKE ALL ON SEQUENCES FROM {group}',
        f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM {group}',
        f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA "{schema}" FROM {group}',
        f'REVOKE USAGE ON SCHEMA "{schema}" FROM {group}',
    ]
