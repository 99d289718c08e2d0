"""audit log

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 13:00:00

The audit log of mutating requests (append-only, shared/audit.py).
"""

from collections.abc import Sequence

from alembic import op

from shared.audit import audit_table_sql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in audit_table_sql("eligibility"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE eligibility.audit_log")
    op.execute("DROP FUNCTION eligibility.refuse_change_audit_log()")
