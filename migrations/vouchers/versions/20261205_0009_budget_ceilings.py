"""programme budgets become ceilings (clause A2): what a budget account has committed, from the ledger

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 10:00:00

The budget per measure and year is one `allowances` row (holder `programme`, kind
`budget.<measure>`, the budget year), like the M3 and M1 ceilings: `CHECK (used_fen <= limit_fen)`
and a conditional UPDATE (services/vouchers/budget.py). The figures live in budgets.yaml, which a
migration cannot read reliably, so the rows are not backfilled here: each is created at the first
commitment (or return) on its budget account, race-safe (INSERT … ON CONFLICT DO NOTHING), with
`used_fen` from this function: what the account has committed so far (issued + granted − voided,
expired, reversed), in entries of other transactions (the caller's own entries are counted by
its own UPDATE). History that already exceeds the budget is kept: the row's limit is then what
was used, and the aggregates report it over budget.

The service role already has SELECT, INSERT and UPDATE on `allowances` (0002); it gets EXECUTE
on the function. The redemption path's functions are not touched: redemptions move money from
a voucher to a vendor, never from a budget.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

from shared.migrations import sql_functions

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE_ROLE = "vouchers_writer"

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


def upgrade() -> None:
    for statement in sql_functions(FUNCTIONS, "budget_committed", version=1):
        op.execute(statement)
    op.execute(
        "COMMENT ON FUNCTION vouchers.budget_committed(text) IS "
        "'A2: issued + granted - returned on a budget account (measure:year), other transactions only'"
    )
    op.execute(f"GRANT EXECUTE ON FUNCTION vouchers.budget_committed(text) TO {SERVICE_ROLE}")


def downgrade() -> None:
    op.execute("DELETE FROM vouchers.allowances WHERE holder = 'programme' AND kind LIKE 'budget.%'")
    op.execute("DROP FUNCTION vouchers.budget_committed(text)")
