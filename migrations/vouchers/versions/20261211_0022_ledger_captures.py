"""a batch of plain M3 redemptions written set by set: vouchers.ledger_captures() (issue #16)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-11 11:00:00

vouchers.ledger_batch() version 3 hands a batch whose calls are all plain M3 redemptions, each sure to be
answered 201, to vouchers.ledger_captures() (functions/ledger_captures.sql): one statement per table for
the whole batch instead of about nine per call, with the same rows, ids, answers, events and stored
replies. Any other batch is answered call by call, as before.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

from shared.migrations import sql_functions

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUP = "vouchers_writer"
FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
CAPTURES = (
    "vouchers.ledger_captures(text[], text[], text[], text[], text[], bigint[], text[], text[], int[], date[], text[])"
)


def upgrade() -> None:
    for statement in sql_functions(FUNCTIONS, "ledger_captures", version=1):
        op.execute(statement)
    op.execute(f"GRANT EXECUTE ON FUNCTION {CAPTURES} TO {GROUP}")
    for statement in sql_functions(FUNCTIONS, "ledger_batch", version=3):
        op.execute(statement)


def downgrade() -> None:
    for statement in sql_functions(FUNCTIONS, "ledger_batch", version=2):
        op.execute(statement)
    op.execute(f"DROP FUNCTION {CAPTURES}")
