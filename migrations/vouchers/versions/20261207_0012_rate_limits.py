"""rate limits shared by the service's processes: one global token bucket per client and route class

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 12:00:00

Issue #12 (finding 9): each process keeps local buckets and, every RATE_LIMIT_SYNC_SECONDS,
reports what it took in one upsert of this table, which holds the global bucket
(shared/ratelimit.py). UNLOGGED: no WAL on the hot path's side, and a crash only refills
every bucket.
"""

from collections.abc import Sequence

from alembic import op

from shared.ratelimit import drop_rate_limit_tables_sql, rate_limit_tables_sql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in rate_limit_tables_sql("vouchers", grant_to="vouchers_writer"):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_rate_limit_tables_sql("vouchers"):
        op.execute(statement)
