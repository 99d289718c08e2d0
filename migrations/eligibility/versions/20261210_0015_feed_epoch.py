"""eligibility's change feed counts in its own transaction ids: a restore into a new cluster keeps every cursor valid

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-10 12:00:00

Events are served and delivered in (txid, id) order below the oldest running transaction. Restored into a
new PostgreSQL cluster, whose counter starts far below the restored events' ids, new events sorted before
every consumer's cursor and every webhook subscription's, and were not served until the counter caught up.
The outbox's ids are now the cluster's plus `eligibility.feed_epoch.offset_xid`, which `eligibility.bridge_feed_epoch()`
(run by the owner after every migration and by `make restore`) raises above every position the schema holds:
shared/feed/tables.py (`feed_epoch_sql`), as migrations/vouchers/functions/ledger_epoch.sql does for the ledger.
"""

from collections.abc import Sequence

from alembic import op

from shared.feed.tables import feed_epoch_downgrade_sql, feed_epoch_sql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in feed_epoch_sql("eligibility", "eligibility_writer"):
        op.execute(statement)


def downgrade() -> None:
    for statement in feed_epoch_downgrade_sql("eligibility"):
        op.execute(statement)
