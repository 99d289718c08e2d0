"""audit log: the caller's correlation id beside the server's request id

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 10:00:00

The server assigns every request's id (shared/logs.py, issue #12): what a caller sends in
`X-Correlation-ID` (or, as before, `X-Request-ID`) is kept in this column, never as the request
id. Existing rows keep their request ids (some chosen by callers) and have no correlation id.
A nullable column without a default: no table rewrite.
"""

from collections.abc import Sequence

from alembic import op

from shared.audit import audit_correlation_sql, drop_audit_correlation_sql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in audit_correlation_sql("eligibility"):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_audit_correlation_sql("eligibility"):
        op.execute(statement)
