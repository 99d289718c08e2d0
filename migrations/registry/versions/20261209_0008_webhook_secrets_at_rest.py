"""registry's webhook secrets encrypted at rest (issue #15): `secret_encrypted`, no key needed here

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09 10:00:00

What the statements do, and why the service encrypts the existing secrets itself:
shared/feed/tables.py (`secrets_at_rest_sql`), docs/webhooks.md ("Secrets at rest").
"""

from collections.abc import Sequence

from alembic import op

from shared.feed.tables import secrets_at_rest_downgrade_sql, secrets_at_rest_sql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in secrets_at_rest_sql("registry"):
        op.execute(statement)


def downgrade() -> None:
    for statement in secrets_at_rest_downgrade_sql("registry"):
        op.execute(statement)
