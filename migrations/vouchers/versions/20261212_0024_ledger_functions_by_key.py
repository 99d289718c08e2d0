"""the ledger's hot functions run with enable_seqscan off: their cached plans reach rows by key (issue #16)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-12 08:00:00

vouchers.redeem() version 5, vouchers.finish_hold() version 3, vouchers.ledger_batch() version 5 and
vouchers.ledger_captures() version 2 carry `SET enable_seqscan = off`. Their statements reach rows by key
only, and PL/pgSQL keeps each statement's plan for the session: a plan made while a table was small (a fresh
database) scanned it whole and went on doing so as it grew. In a benchmark run the batch check's plan read all
of vouchers.idempotency on every batch (a hashed subplan), 2.8 of a batch's 6.3 ms; with the setting, 0.2 ms.
"""

from collections.abc import Sequence
from pathlib import Path

from shared.migrations import load_functions

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
VERSIONS = {"redeem": 5, "finish_hold": 3, "ledger_captures": 2, "ledger_batch": 5}


def upgrade() -> None:
    load_functions(FUNCTIONS, VERSIONS)


def downgrade() -> None:
    load_functions(FUNCTIONS, {name: version - 1 for name, version in VERSIONS.items()})
