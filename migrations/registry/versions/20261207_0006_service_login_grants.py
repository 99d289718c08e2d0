"""the registry's privileges on a group role its login belongs to, not the owner's (issue #12, finding 2)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 17:30:00

The service logs in as `registry_app` (shared/dbroles.py), a member of `registry_writer` only:
rows may be read, inserted, updated and deleted, but the history, the audit log, the outbox and
the webhook deliveries only read and appended; no TRUNCATE, no DDL, no trigger switched off.
Migrations keep running as the owner.
"""

from collections.abc import Sequence

from alembic import op

from shared.migrations import writer_grants_downgrade_sql, writer_grants_sql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUP = "registry_writer"
APPEND_ONLY = ("versions", "audit_log", "outbox", "webhook_deliveries")


def upgrade() -> None:
    for statement in writer_grants_sql("registry", GROUP, APPEND_ONLY):
        op.execute(statement)


def downgrade() -> None:
    for statement in writer_grants_downgrade_sql("registry", GROUP):
        op.execute(statement)
