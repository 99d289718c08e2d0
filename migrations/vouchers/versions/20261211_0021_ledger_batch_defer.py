"""vouchers.ledger_batch() may defer the calls whose rows another process holds (issue #16)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-11 10:00:00

Version 2 (functions/ledger_batch.sql) takes one more argument, `p_defer`: with it, the batch locks its rows
with SKIP LOCKED and answers a call whose hold, voucher or ceiling row another transaction holds with status 0
(deferred, nothing written); the process sends it again in its next batch (services/vouchers/redemptions/
group_commit.py). Its vouchers are found through indexes instead of a scan of the table. The old signature is
dropped: only the vouchers service calls the function, and it is deployed with this migration.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

from shared.migrations import sql_functions

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUP = "vouchers_writer"
FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
ARRAYS = (
    "text[], text[], text[], text[], text[], bigint[], text[], text[], int[], bigint[], text[], timestamptz[], "
    "date[], text[]"
)
OLD = f"vouchers.ledger_batch({ARRAYS})"
NEW = f"vouchers.ledger_batch({ARRAYS}, boolean)"


def upgrade() -> None:
    op.execute(f"DROP FUNCTION {OLD}")
    for statement in sql_functions(FUNCTIONS, "ledger_batch", version=2):
        op.execute(statement)
    op.execute(f"GRANT EXECUTE ON FUNCTION {NEW} TO {GROUP}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {NEW}")
    for statement in sql_functions(FUNCTIONS, "ledger_batch", version=1):
        op.execute(statement)
    op.execute(f"GRANT EXECUTE ON FUNCTION {OLD} TO {GROUP}")
