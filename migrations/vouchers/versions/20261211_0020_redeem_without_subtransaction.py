"""vouchers.redeem() without a subtransaction (issue #16)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-11 09:00:00

An M3 redemption beyond its holder's annual ceiling was refused by raising inside a BEGIN … EXCEPTION
block, so every redemption ran in a subtransaction of its own: one more transaction id per call, and a
group-commit batch of more than 64 calls overflowed the server's per-backend cache of them, after which
every snapshot on the server looks them up in pg_subtrans. Version 4 undoes the voucher's change with
the opposite UPDATE of the row it holds locked instead (functions/redeem.sql). Same answers, same
effects.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

from shared.migrations import sql_functions

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


def upgrade() -> None:
    for statement in sql_functions(FUNCTIONS, "redeem", version=4):
        op.execute(statement)


def downgrade() -> None:
    for statement in sql_functions(FUNCTIONS, "redeem", version=3):
        op.execute(statement)
