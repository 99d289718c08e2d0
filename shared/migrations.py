"""One Alembic migration tree per service, one `alembic.ini` with a section each.

    alembic -n registry upgrade head      # or: python -m shared.migrate

Each tree keeps its version table inside its own schema, so the services' histories
never touch. `run_env` is the whole of every tree's env.py.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

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


def upgrade_all(database_url: str) -> None:
    for service in SERVICES:
        upgrade(service, database_url)


def _configured_url(service: str) -> str:
    url = context.config.attributes.get("database_url")
    if url:
        return str(url)
    for name in (f"{service.upper()}_DATABASE_URL", "DATABASE_URL"):
        if os.environ.get(name):
            return async_url(os.environ[name])
    raise RuntimeError(f"set {service.upper()}_DATABASE_URL or DATABASE_URL to migrate {service}")


def run_env(service: str, schema: str, metadata: MetaData) -> None:
    """The body of `migrations/<service>/env.py` (online mode only: we always have a database)."""

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

    async def run() -> None:
        engine = create_async_engine(_configured_url(service), poolclass=pool.NullPool)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(migrate)
        finally:
            await engine.dispose()

    asyncio.run(run())


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
