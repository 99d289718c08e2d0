"""group commit for the redemption path: vouchers.ledger_batch() (issue #16)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-10 09:00:00

Concurrent vendor calls of one process go to PostgreSQL as one call and one transaction, each
answered by the function its own call would run (functions/ledger_batch.sql). Nothing else
changes: the per-call functions stay, and answer a call alone or when a batch fails.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

from shared.migrations import sql_functions

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUP = "vouchers_writer"
FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
SIGNATURE = (
    "vouchers.ledger_batch(text[], text[], text[], text[], text[], bigint[], text[], text[], int[], bigint[], "
    "text[], timestamptz[], date[], text[])"
)


def upgrade() -> None:
    for statement in sql_functions(FUNCTIONS, "ledger_batch", version=1):
        op.execute(statement)
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {GROUP}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
