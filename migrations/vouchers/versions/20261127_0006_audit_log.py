"""audit log

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 13:00:00

The audit log of mutating requests (append-only, shared/audit.py); the service role
may insert and read it, never change it.
"""

from collections.abc import Sequence

from alembic import op

from shared.audit import audit_table_sql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in audit_table_sql("vouchers", grant_to="vouchers_writer"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE vouchers.audit_log")
    op.execute("DROP FUNCTION vouchers.refuse_change_audit_log()")
