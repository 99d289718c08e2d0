"""decisions' traces stored out of line without compression: a submission no longer compresses several KB

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-14 12:00:00

A decision's trace is the largest value a submission writes (6–7 KB of JSON for most measures, much of it Chinese
labels and the parameters each step used). PostgreSQL's default storage for it (`EXTENDED`) compresses a row's
largest values with pglz before moving them out of line, on every insert; measured on this stack's decisions,
compression was about half of what the insert spent on the trace (~0.12 ms of the server's CPU per submission,
issue #16). `EXTERNAL` moves it out of line as it is: about twice the trace's bytes on disk, none of its CPU, and a
read no longer decompresses it. Rows already written keep their compressed trace; both read the same.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE eligibility.decisions ALTER COLUMN trace SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.execute("ALTER TABLE eligibility.decisions ALTER COLUMN trace SET STORAGE EXTENDED")
