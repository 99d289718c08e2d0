"""a settlement batch records the client that created it, for the four-eyes rule on closing it

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-17 11:00:00

Closing a batch pays the vendor; the officer who created it may not close it (403 `self_settlement`). Batches kept
only the creator's name (`created_by`, the token's `name`), so the rule compared names: two clients of one name were
one officer, one officer with two names two. `created_by_client` is the creating client's id, compared as approvals
compare their reviewers'; a batch created before it has none, and its names are compared as before.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE vouchers.settlement_batches ADD COLUMN created_by_client text")
    op.execute(
        "COMMENT ON COLUMN vouchers.settlement_batches.created_by_client IS "
        "'the client that created the batch (four eyes: it may not close it); NULL before migration 0029'"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE vouchers.settlement_batches DROP COLUMN created_by_client")
