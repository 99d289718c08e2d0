"""Issue #14: what the vouchers migrations leave in the database's functions is fixed.

The ledger's SQL functions (migrations/vouchers/functions/) are loaded by the migrations that
create or replace them, each a named version. This test migrates a fresh database one revision
at a time, up to head and back down to the first, and compares `pg_get_functiondef` of every
function in the `vouchers` schema after each step with the digests committed in
`ledger_functions.json` (one SHA-256 per function and revision): a change to a function, or to
what a migration loads, fails here. After an intended change, regenerate the digests with
`LEDGER_FUNCTIONS_WRITE=1 .venv/bin/pytest tests/vouchers/test_ledger_functions.py` and commit them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import asyncpg
from alembic import command
from alembic.script import ScriptDirectory

from shared.migrations import alembic_config
from tests.conftest import DatabaseFactory

EXPECTED = Path(__file__).with_name("ledger_functions.json")
WRITE = "LEDGER_FUNCTIONS_WRITE"

FUNCTIONS = """
SELECT p.oid::regprocedure::text AS signature, pg_get_functiondef(p.oid) AS definition
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'vouchers' AND p.prokind = 'f'
 ORDER BY 1
"""


async def _digests(url: str) -> dict[str, str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(FUNCTIONS)
    finally:
        await connection.close()
    return {row["signature"]: hashlib.sha256(row["definition"].encode()).hexdigest() for row in rows}


def _observed(url: str) -> dict[str, dict[str, str]]:
    config = alembic_config("vouchers", url)
    revisions = [script.revision for script in ScriptDirectory.from_config(config).walk_revisions()][::-1]
    seen: dict[str, dict[str, str]] = {}
    for revision in revisions:
        command.upgrade(config, revision)
        seen[f"up {revision}"] = asyncio.run(_digests(url))
    for revision in revisions[-2::-1]:
        command.downgrade(config, revision)
        seen[f"down to {revision}"] = asyncio.run(_digests(url))
    return seen


def test_every_revision_leaves_the_same_functions(databases: DatabaseFactory) -> None:
    url = databases.create("longgang_ledger_functions", migrate=False)
    observed = _observed(url)
    if os.environ.get(WRITE) == "1":
        EXPECTED.write_text(json.dumps(observed, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    regenerate = f"if intended: {WRITE}=1 .venv/bin/pytest tests/vouchers/test_ledger_functions.py"
    assert observed.keys() == expected.keys(), f"other migration steps; {regenerate}"
    changed = [step for step in expected if observed[step] != expected[step]]
    assert not changed, f"the vouchers functions differ after {changed}; {regenerate}"
