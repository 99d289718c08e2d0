"""events: outbox, webhook subscriptions and deliveries

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 15:00:00

The outbox every eligibility change writes its event to, in the same transaction (append-only),
and the webhook subscriptions and delivery log (shared/feed/tables.py, docs/webhooks.md).
"""

from collections.abc import Sequence

from alembic import op

from shared.feed.tables import drop_events_tables_sql, events_tables_sql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in events_tables_sql("eligibility"):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_events_tables_sql("eligibility"):
        op.execute(statement)
