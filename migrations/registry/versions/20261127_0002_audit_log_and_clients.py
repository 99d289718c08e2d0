"""audit log and OAuth2 clients

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 13:00:00

The audit log of mutating requests (append-only, shared/audit.py) and the OAuth2
clients of the token endpoint the registry hosts (services/registry/identity.py):
secrets are stored as SHA-256 digests, never in clear.
"""

from collections.abc import Sequence

from alembic import op

from shared.audit import audit_table_sql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in audit_table_sql("registry"):
        op.execute(statement)
    op.execute(
        """
        CREATE TABLE registry.clients (
            client_id text PRIMARY KEY CHECK (client_id ~ '^[A-Za-z0-9._:-]{3,100}$'),
            name text NOT NULL,
            scopes text[] NOT NULL CHECK (cardinality(scopes) > 0),
            organisation text,
            secret_sha256 text NOT NULL,
            previous_secret_sha256 text,
            previous_secret_expires_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            secret_rotated_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz,
            CHECK (NOT (scopes && ARRAY['applicant', 'vendor']) OR organisation IS NOT NULL)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE registry.clients")
    op.execute("DROP TABLE registry.audit_log")
    op.execute("DROP FUNCTION registry.refuse_change_audit_log()")
