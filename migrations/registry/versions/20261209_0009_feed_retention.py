"""registry's outbox and delivery log trimmed by retention (issue #15): trim_feed, feed_horizon

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09 11:00:00

What it allows and what it still refuses (the service's login may run `trim_feed` and delete
nothing itself): shared/feed/tables.py (`retention_sql`), docs/webhooks.md ("Retention").
"""

from collections.abc import Sequence

from alembic import op

from shared.feed.tables import retention_downgrade_sql, retention_sql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in retention_sql("registry", "registry_writer"):
        op.execute(statement)


def downgrade() -> None:
    for statement in retention_downgrade_sql("registry"):
        op.execute(statement)
