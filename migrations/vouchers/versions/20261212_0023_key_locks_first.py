"""Idempotency-Keys locked before rows on every ledger path: a retry no longer deadlocks with a batch (issue #16)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-12 07:30:00

vouchers.claim_key() version 2 takes the key's transaction-level advisory lock before it claims the key, and
vouchers.ledger_batch() version 4 takes every call's key lock, in the locks' order, before any row. A single
call claimed its key before its rows and a batch after them, so a vendor's retry of a call sitting in another
process's batch could deadlock with that batch (PostgreSQL broke it after deadlock_timeout; the batch was then
answered call by call). Now every path takes keys first, then rows, each in one order.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

from shared.migrations import sql_functions

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


def upgrade() -> None:
    for name, version in (("claim_key", 2), ("ledger_batch", 4)):
        for statement in sql_functions(FUNCTIONS, name, version=version):
            op.execute(statement)


def downgrade() -> None:
    for name, version in (("ledger_batch", 3), ("claim_key", 1)):
        for statement in sql_functions(FUNCTIONS, name, version=version):
            op.execute(statement)
