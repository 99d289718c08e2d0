"""`make backup` / `make restore`: pg_dump and pg_restore of the three services' schemas.

    python -m devtools.backup dump [FILE]        # default: backups/longgang-<UTC time>.dump (owner-only)
    python -m devtools.backup restore FILE       # into DATABASE_URL, which must not hold the schemas yet

The dump is PostgreSQL's custom format (compressed, restorable table by table) of the
schemas `registry`, `eligibility` and `vouchers` — data, indexes, triggers (the ledger's
append-only triggers come back with it), functions and grants. Roles are cluster-wide and
not in a dump: restore creates the services' group roles (`registry_writer`,
`eligibility_writer`, `vouchers_writer`, NOLOGIN) if the target server lacks them, and their
logins afterwards (shared/dbroles.py; passwords from `<SERVICE>_DB_PASSWORD`). The binaries
are the embedded PostgreSQL 18's, which read servers from PostgreSQL 9.2 on.

Without `DATABASE_URL` both work on the local stack's database (`make run`'s, under `.data/`);
for any other server set it. `backups/` is ignored by git: a dump never belongs in the repository.
A restore into a new cluster continues the ledger's transaction ids above the restored ones
(`vouchers.bridge_epoch()`), so new entries are sealed after them, and each change feed's above its
restored events and cursors (`<schema>.bridge_feed_epoch()`), so consumers and webhooks go on.

After a restore, prove the ledger is the one that was backed up: `GET /v1/ledger/verify`
recomputes the hash chain from genesis and checks every checkpoint, and the chain hash at
the last *published* checkpoint (kept outside the database by the auditors) must be the
same (docs/operations.md, restore drill).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from devtools import devdb
from shared.dbconnect import libpq_url
from shared.dbroles import GROUP_ROLES, ensure_logins
from shared.migrations import ROOT, SERVICES

SERVICE_ROLE = "vouchers_writer"  # the vouchers tree grants it to the owner (migration 0002)


def dump(database_url: str, target: Path) -> Path:
    """The dump holds the ledger and every applicant's data: readable by its owner only (created so, before
    pg_dump writes into it), in a directory only the owner may list."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    target.chmod(0o600)  # an existing file keeps its mode through O_CREAT
    command = [devdb.binary("pg_dump"), "--format=custom", "--no-owner", f"--file={target}"]
    command += [f"--schema={schema}" for schema in SERVICES]
    subprocess.run([*command, libpq_url(database_url)], check=True)
    return target


async def _prepare_target(url: str) -> int:
    """Refuse a target that already has the schemas; make sure the service role exists. The server's version."""
    connection = await asyncpg.connect(url)
    try:
        present = await connection.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[])", list(SERVICES)
        )
        if present:
            names = ", ".join(row["nspname"] for row in present)
            raise RuntimeError(f"the target database already has the schemas {names}: restore into a fresh one")
        for role in GROUP_ROLES.values():
            if not await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                await connection.execute(f"CREATE ROLE {role} NOLOGIN")
        await connection.execute(f"GRANT {SERVICE_ROLE} TO CURRENT_USER")
        version: int = await connection.fetchval("SELECT current_setting('server_version_num')::int")
        return version
    finally:
        await connection.close()


#: Settings pg_restore 18 emits that older servers do not know (a server older than the tools).
_NEWER_SETTINGS = ("SET transaction_timeout",)


def restore(database_url: str, source: Path) -> None:
    """All or nothing (one transaction). Onto an older server, through psql without the settings it lacks."""
    url = libpq_url(database_url)
    version = asyncio.run(_prepare_target(url))
    _restore(url, version, source)
    bridged = asyncio.run(_bridge_epoch(url))
    if bridged:
        print(f"the ledger's transaction ids continue above the restored ones (offset {bridged})")
    for schema, offset in asyncio.run(_bridge_feeds(url)).items():
        print(f"{schema}'s change feed continues above the restored events and cursors (offset {offset})")
    ensure_logins(url)


async def _bridge_epoch(url: str) -> int:
    """A fresh cluster counts transactions from far below the restored ledger's: new entries continue above
    them, or the sealer would never reach them (migrations/vouchers/functions/ledger_epoch.sql). 0: not needed."""
    connection = await asyncpg.connect(url)
    try:
        if not await connection.fetchval("SELECT to_regprocedure('vouchers.bridge_epoch()') IS NOT NULL"):
            return 0  # a dump older than the ledger's own ids: migrating it bridges
        return int(await connection.fetchval("SELECT vouchers.bridge_epoch()"))
    finally:
        await connection.close()


async def _bridge_feeds(url: str) -> dict[str, int]:
    """The same for each service's change feed (shared/feed/tables.py `feed_epoch_sql`): the schemas bridged."""
    connection = await asyncpg.connect(url)
    bridged: dict[str, int] = {}
    try:
        for schema in ("registry", "eligibility", "vouchers"):
            if await connection.fetchval(f"SELECT to_regprocedure('\"{schema}\".bridge_feed_epoch()') IS NOT NULL"):
                offset = int(await connection.fetchval(f'SELECT "{schema}".bridge_feed_epoch()'))
                if offset:
                    bridged[schema] = offset
    finally:
        await connection.close()
    return bridged


def _restore(url: str, version: int, source: Path) -> None:
    if version >= 170000:
        command = [
            devdb.binary("pg_restore"),
            "--exit-on-error",
            "--no-owner",
            "--single-transaction",
            f"--dbname={url}",
        ]
        subprocess.run([*command, str(source)], check=True)
        return
    script = subprocess.run(
        [devdb.binary("pg_restore"), "--no-owner", "--file=-", str(source)], check=True, capture_output=True
    ).stdout
    kept = b"\n".join(
        line for line in script.split(b"\n") if not line.startswith(tuple(s.encode() for s in _NEWER_SETTINGS))
    )
    psql = [devdb.binary("psql"), "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "--single-transaction", url]
    subprocess.run(psql, input=kept, check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    url = os.environ.get("DATABASE_URL")
    started: list[devdb.EmbeddedPostgres] = []
    try:
        if not url:  # the local stack's database, as `make run` uses it
            from devtools.devrun import resolve_database

            url = resolve_database(started)
        if args[:1] == ["dump"]:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            target = Path(args[1]) if len(args) > 1 else ROOT / "backups" / f"longgang-{stamp}.dump"
            print(dump(url, target))
            return 0
        if args[:1] == ["restore"] and len(args) == 2:
            restore(url, Path(args[1]))
            print(f"restored {args[1]}; now check the ledger: GET /v1/ledger/verify (docs/operations.md)")
            return 0
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for server in started:
            server.stop()
    print("usage: python -m devtools.backup dump [FILE] | restore FILE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
