"""the batch function's statements planned once per connection: the M3 ceilings' search was planned on every batch

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-14 12:00:00

vouchers.ledger_batch() version 6 carries `SET plan_cache_mode = force_generic_plan`. PL/pgSQL keeps a plan per
statement and connection, but a statement with parameters is planned for its values for its first five runs, and
after that again whenever the plan for any values looks dearer than those: the search for the batch's M3
redemption ceilings (`l_ceilings`, over the batch's arrays) was planned on every call, 4,638 plans for 4,635 calls
in a benchmark run, 0.28 ms of PostgreSQL's CPU per batch against 0.09 ms to run it (issue #16). The function's
other statements already ran on plans for any values; with `enable_seqscan` off (version 5) those reach rows by
key.
"""

from collections.abc import Sequence
from pathlib import Path

from shared.migrations import load_functions

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
VERSIONS = {"ledger_batch": 6}


def upgrade() -> None:
    load_functions(FUNCTIONS, VERSIONS)


def downgrade() -> None:
    load_functions(FUNCTIONS, {name: version - 1 for name, version in VERSIONS.items()})
