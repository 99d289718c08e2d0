"""clients administered over HTTP, and private_key_jwt (issue #15)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 20:30:00

`registry.clients` gains its public keys (`jwks`, RFC 7517), how it must authenticate at the token
endpoint (`token_endpoint_auth_method`) and an ordering key for listing (`seq`). Two tables:
`client_requests`, the Idempotency-Keys of the admin API's creates and rotations (append-only),
and `client_assertions`, the `jti` of each private_key_jwt assertion until it expires (replays).

The service's login may do what the API does and no more: on `clients`, INSERT and UPDATE of the
columns a rotation, a revocation or new keys change (no DELETE; never the id, scopes, organisation
or name); and a trigger refuses to any role but the schema owner (or a superuser) a new admin
client or any change of one but its revocation, so neither a stolen admin token nor the service's
own login can mint an admin credential: admins are made with the CLI, as the owner.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUP = "registry_writer"
#: What a rotation, a revocation and new keys change (services/registry/identity.py).
CHANGEABLE = (
    "secret_sha256",
    "previous_secret_sha256",
    "previous_secret_expires_at",
    "secret_rotated_at",
    "revoked_at",
    "jwks",
    "token_endpoint_auth_method",
)


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE registry.clients
            ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY,
            ADD COLUMN jwks jsonb CHECK (jwks IS NULL OR jsonb_typeof(jwks -> 'keys') = 'array'),
            ADD COLUMN token_endpoint_auth_method text NOT NULL DEFAULT 'client_secret_basic'
                CHECK (token_endpoint_auth_method IN ('client_secret_basic', 'private_key_jwt')),
            ADD CONSTRAINT key_only_has_keys CHECK (
                token_endpoint_auth_method <> 'private_key_jwt' OR jsonb_array_length(jwks -> 'keys') > 0
            )
        """
    )
    op.execute("CREATE UNIQUE INDEX ix_clients_seq ON registry.clients (seq)")
    op.execute(
        """
        CREATE TABLE registry.client_requests (
            requested_by text NOT NULL,
            idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 200),
            action text NOT NULL CHECK (action IN ('create', 'rotate')),
            target text NOT NULL,
            request_hash text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (requested_by, idempotency_key)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE registry.client_assertions (
            client_id text NOT NULL,
            jti text NOT NULL,
            expires_at timestamptz NOT NULL,
            PRIMARY KEY (client_id, jti)
        )
        """
    )
    op.execute(
        """
        CREATE FUNCTION registry.admin_clients_by_owner() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF 'admin' = ANY(NEW.scopes) AND NOT EXISTS (
                SELECT 1 FROM pg_roles r WHERE r.rolname = current_user AND (
                    r.rolsuper OR r.oid = (SELECT nspowner FROM pg_namespace WHERE nspname = 'registry')
                )
            ) AND (
                TG_OP = 'INSERT' OR OLD.revoked_at IS NOT NULL OR NEW.revoked_at IS NULL
                OR to_jsonb(NEW) - 'revoked_at' <> to_jsonb(OLD) - 'revoked_at'
            ) THEN
                RAISE EXCEPTION 'admin clients are made and changed by the schema owner (the admin CLI); '
                    'others may only revoke one' USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER clients_admin_by_owner BEFORE INSERT OR UPDATE ON registry.clients "
        "FOR EACH ROW EXECUTE FUNCTION registry.admin_clients_by_owner()"
    )
    # least privilege (the group got SELECT, INSERT, UPDATE, DELETE on every table from 0006 and by default)
    op.execute(f"REVOKE UPDATE, DELETE ON registry.clients FROM {GROUP}")
    op.execute(f"GRANT UPDATE ({', '.join(CHANGEABLE)}) ON registry.clients TO {GROUP}")
    op.execute(f"REVOKE UPDATE, DELETE ON registry.client_requests FROM {GROUP}")
    op.execute(f"REVOKE UPDATE ON registry.client_assertions FROM {GROUP}")


def downgrade() -> None:
    op.execute(f"REVOKE UPDATE ({', '.join(CHANGEABLE)}) ON registry.clients FROM {GROUP}")
    op.execute(f"GRANT UPDATE, DELETE ON registry.clients TO {GROUP}")
    op.execute("DROP TRIGGER clients_admin_by_owner ON registry.clients")
    op.execute("DROP FUNCTION registry.admin_clients_by_owner()")
    op.execute("DROP TABLE registry.client_assertions")
    op.execute("DROP TABLE registry.client_requests")
    op.execute(
        "ALTER TABLE registry.clients DROP CONSTRAINT key_only_has_keys, DROP COLUMN token_endpoint_auth_method, "
        "DROP COLUMN jwks, DROP COLUMN seq"
    )
