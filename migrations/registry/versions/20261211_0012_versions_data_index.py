"""record snapshots indexed by their content: `POST /v1/facts` finds an organisation's records as of a date without
reading every snapshot of their kind

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-11 12:00:00

A kind's list as of a date (an organisation's revenues, affiliations, recognitions; a model's filings) is each
record's latest snapshot on the date, then the filter on that snapshot. Computed over every snapshot of the kind,
it cost each submission a sort of all the registry's revenues and recognitions (issue #16: most of PostgreSQL's
CPU per submission, and growing with the registry). `services/registry/facts/reads.py` now first takes the records
of which some snapshot contains the filter (this index), then their latest snapshots, then the filter again.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # no pending list (fastupdate): every search would read it all until a vacuum merged it (eligibility 0016)
    op.execute(
        "CREATE INDEX ix_versions_data ON registry.versions USING gin (data jsonb_path_ops) WITH (fastupdate = off)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX registry.ix_versions_data")
