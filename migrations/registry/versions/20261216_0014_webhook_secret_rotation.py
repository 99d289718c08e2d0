"""registry's webhook signing secrets can be rotated: the previous secret signs beside the new one for a while

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-16 10:00:00

`POST /v1/webhooks/{id}/rotate` (docs/webhooks.md, "Rotating the signing secret"); the columns and their
checks: shared/feed/tables.py (`secret_rotation_sql`). A downgrade drops them: a previous secret still signing stops.
"""

from collections.abc import Sequence

from alembic import op

from shared.feed.tables import secret_rotation_downgrade_sql, secret_rotation_sql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in secret_rotation_sql("registry"):
        op.execute(statement)


def downgrade() -> None:
    for statement in secret_rotation_downgrade_sql("registry"):
        op.execute(statement)
