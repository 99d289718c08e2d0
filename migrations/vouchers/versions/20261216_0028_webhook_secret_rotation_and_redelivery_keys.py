"""vouchers's webhook signing secrets can be rotated (the previous one signs beside the new for a while); redeliveries take an Idempotency-Key

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-16 10:00:00

`POST /v1/webhooks/{id}/rotate` (docs/webhooks.md, "Rotating the signing secret") and `POST
/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver` with an Idempotency-Key; the columns, their checks and the
index: shared/feed/tables.py (`rotation_and_redelivery_sql`). A downgrade drops them: a previous secret still
signing stops.
"""

from collections.abc import Sequence

from alembic import op

from shared.feed.tables import rotation_and_redelivery_downgrade_sql, rotation_and_redelivery_sql

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in rotation_and_redelivery_sql("vouchers"):
        op.execute(statement)


def downgrade() -> None:
    for statement in rotation_and_redelivery_downgrade_sql("vouchers"):
        op.execute(statement)
