"""applications: an earlier application date recorded by an officer keeps its reason and the officer

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 15:00:00

An application is dated the day the service receives it; only an officer may record an
earlier day (a paper application registered late), with a written reason (A4).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE eligibility.applications ADD COLUMN as_of_reason text")
    op.execute("ALTER TABLE eligibility.applications ADD COLUMN as_of_recorded_by text")


def downgrade() -> None:
    op.execute("ALTER TABLE eligibility.applications DROP COLUMN as_of_recorded_by")
    op.execute("ALTER TABLE eligibility.applications DROP COLUMN as_of_reason")
