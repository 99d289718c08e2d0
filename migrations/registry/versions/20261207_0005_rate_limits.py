"""rate limits shared by the service's processes: one global token bucket per client and route class

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 12:00:00

Issue #12 (finding 9): each process keeps local buckets and, every RATE_LIMIT_SYNC_SECONDS,
reports what it took in one upsert of this table, which holds the global bucket
(shared/ratelimit.py). UNLOGGED: no WAL on the hot path's side, and a crash only refills
every bucket.
"""

from collections.abc import Sequence

from alembic import op

from shared.ratelimit import drop_rate_limit_tables_sql, rate_limit_tables_sql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in rate_limit_tables_sql("registry", grant_to=None):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_rate_limit_tables_sql("registry"):
        op.execute(statement)
