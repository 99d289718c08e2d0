"""no planner statistics for the JSON a decision, an application or an event carries: ANALYZE skips them

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-15 12:00:00

No query filters, joins or sorts on the contents of these columns: they are what a row says (a decision's trace,
facts, reasons and amounts by component; an application's evidence; an event's payload), read whole by key. Their
statistics were never used, and gathering them was most of what ANALYZE did on these tables: it reads every
sampled row's JSON, several KB of trace for each decision (issue #16: while the tables grow, autovacuum analyses
them at every tenth of growth; in a benchmark's fresh database that landed in some runs and not others, and
PostgreSQL spent 1.9–2.0 ms of CPU per submission in those against 1.3 ms in the rest). A statistics target of 0
leaves the column out; the other columns keep theirs.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: table → its JSON columns that carry what a row says
PAYLOADS = {
    "decisions": ("trace", "facts", "failures", "review_reasons", "components", "caps", "basis"),
    "applications": ("evidence",),
    "outbox": ("payload",),
}


def _statistics(target: int) -> None:
    for table, columns in PAYLOADS.items():
        changes = ", ".join(f"ALTER COLUMN {column} SET STATISTICS {target}" for column in columns)
        op.execute(f"ALTER TABLE eligibility.{table} {changes}")


def upgrade() -> None:
    _statistics(0)


def downgrade() -> None:
    _statistics(-1)  # the server's default_statistics_target again
