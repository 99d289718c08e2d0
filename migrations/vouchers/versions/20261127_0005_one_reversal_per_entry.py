"""one reversal per entry

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 12:00:00

A mistake is corrected by a reversing entry that references the original; an entry can
be reversed once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "uq_entries_reverses_entry_id",
        "entries",
        ["reverses_entry_id"],
        unique=True,
        schema="vouchers",
        postgresql_where=sa.text("reverses_entry_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_entries_reverses_entry_id", table_name="entries", schema="vouchers")
