"""vouchers.expire_holds() takes the holder filters of the sandbox's expiry run

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-13 09:00:00

vouchers.expire_holds() version 2 (`p_only`, `p_exclude`: the holders whose holds end, or whose do not). In
sandbox mode a test enterprise's holds end by its own clock, so the expiry run releases them apart from
everyone else's; that run had its own statement repeating the function's loop with a holder filter. Now both
go through the one ledger function. With neither filter it does what version 1 did.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

from shared.migrations import sql_functions

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUP = "vouchers_writer"
FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
SIGNATURES = {1: "vouchers.expire_holds(timestamptz)", 2: "vouchers.expire_holds(timestamptz, text[], text[])"}


def _replace(old: int, new: int) -> None:
    """Version `old` dropped (its signature differs, so CREATE OR REPLACE would add an overload), `new` loaded."""
    op.execute(f"DROP FUNCTION {SIGNATURES[old]}")
    for statement in sql_functions(FUNCTIONS, "expire_holds", version=new):
        op.execute(statement)
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURES[new]} TO {GROUP}")


def upgrade() -> None:
    _replace(old=1, new=2)


def downgrade() -> None:
    _replace(old=2, new=1)
