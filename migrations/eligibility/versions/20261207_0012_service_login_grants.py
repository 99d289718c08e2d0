"""the eligibility service's privileges on a group role its login belongs to, not the owner's (issue #12, finding 2)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 17:30:00

The service logs in as `eligibility_app` (shared/dbroles.py), a member of `eligibility_writer`
only: rows may be read, inserted, updated and deleted, but decisions, reviews, parameter
versions, the award register, the audit log, the outbox and the webhook deliveries only read
and appended; no TRUNCATE, no DDL, no trigger switched off. Migrations keep running as the owner.

`rebuild_application_counts()` locks the applications and the decisions (SHARE), which takes
UPDATE on the decisions: it runs as its owner (SECURITY DEFINER, fixed search_path) so the
service may still recount its projection, and nothing else gains from it.
"""

from collections.abc import Sequence

from alembic import op

from shared.migrations import writer_grants_downgrade_sql, writer_grants_sql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUP = "eligibility_writer"
APPEND_ONLY = (
    "decisions",
    "reviews",
    "parameter_versions",
    "awards",
    "audit_log",
    "outbox",
    "webhook_deliveries",
)


REBUILD = "eligibility.rebuild_application_counts()"


def upgrade() -> None:
    for statement in writer_grants_sql("eligibility", GROUP, APPEND_ONLY):
        op.execute(statement)
    op.execute(f"ALTER FUNCTION {REBUILD} SECURITY DEFINER SET search_path = pg_catalog, pg_temp")
    op.execute(f"REVOKE EXECUTE ON FUNCTION {REBUILD} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {REBUILD} TO {GROUP}")


def downgrade() -> None:
    op.execute(f"GRANT EXECUTE ON FUNCTION {REBUILD} TO PUBLIC")
    op.execute(f"ALTER FUNCTION {REBUILD} SECURITY INVOKER RESET search_path")
    for statement in writer_grants_downgrade_sql("eligibility", GROUP):
        op.execute(statement)
