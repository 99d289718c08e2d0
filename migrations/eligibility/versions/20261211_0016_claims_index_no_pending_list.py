"""the claims index without a pending list: a submission's search for who holds its claim keys reads only the index

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-11 12:00:00

A GIN index with `fastupdate` (PostgreSQL's default) files new entries in a pending list that every search reads
from end to end until a vacuum merges it into the index. Every submission inserts a decision (its claims enter the
list) and searches the index (`submission_sql.claim_holders`): under a steady stream of submissions each search
read thousands of pending entries, most of PostgreSQL's CPU per submission (issue #16: 212 → 264 submissions/s,
the eligibility service's statements 2.5 → 1.4 ms of PostgreSQL's CPU each). Inserting into the index directly
costs each decision a little more.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER INDEX eligibility.ix_decisions_claims SET (fastupdate = off)")
    op.execute("SELECT gin_clean_pending_list('eligibility.ix_decisions_claims'::regclass)")  # what is pending now


def downgrade() -> None:
    op.execute("ALTER INDEX eligibility.ix_decisions_claims RESET (fastupdate)")
