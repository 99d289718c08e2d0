"""entries (txid, id) index for the sealer

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 11:20:00

The sealer and the seal-lag metric read unsealed entries by (txid, id); without this
index each run scans the whole ledger (32 ms at 500k entries with nothing to seal, 1 ms
with it).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_entries_txid_id", "entries", ["txid", "id"], unique=False, schema="vouchers")


def downgrade() -> None:
    op.drop_index("ix_entries_txid_id", table_name="entries", schema="vouchers")
