"""The outbox and webhook tables of a service's schema: the statements its migrations run."""

from shared.migrations import append_only_sql


def events_tables_sql(schema: str, grant_to: str | None = None) -> list[str]:
    """Statements creating `<schema>.outbox`, `webhook_subscriptions` and `webhook_deliveries`."""
    s = f'"{schema}"'
    statements = [
        f"""
        CREATE TABLE {s}.outbox (
            id bigserial PRIMARY KEY,
            txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            type text NOT NULL CHECK (type ~ '^[a-z0-9_]+(\\.[a-z0-9_]+)+$'),
            subject text NOT NULL,
            organisation text,
            vendor text,
            payload jsonb NOT NULL DEFAULT '{{}}'
        )
        """,
        f"CREATE INDEX ix_outbox_txid_id ON {s}.outbox (txid, id)",
        *append_only_sql(schema, "outbox"),
        f"""
        CREATE TABLE {s}.webhook_subscriptions (
            id bigserial PRIMARY KEY,
            client_id text NOT NULL,
            created_by text NOT NULL,
            url text NOT NULL CHECK (url ~* '^https?://'),
            description text,
            event_types text[] NOT NULL DEFAULT '{{}}',
            all_objects boolean NOT NULL,
            vendor text,
            organisation text,
            secret text NOT NULL,
            status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deactivated')),
            cursor_txid xid8 NOT NULL DEFAULT '0',
            cursor_id bigint NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            attempts integer NOT NULL DEFAULT 0,
            failing_since timestamptz,
            last_error text,
            lease_token uuid,
            lease_until timestamptz,
            suspended_at timestamptz,
            deactivated_at timestamptz,
            idempotency_key text,
            request_hash text,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            CHECK (all_objects OR vendor IS NOT NULL OR organisation IS NOT NULL),
            UNIQUE (client_id, idempotency_key)
        )
        """,
        f"CREATE INDEX ix_webhook_subscriptions_due ON {s}.webhook_subscriptions (next_attempt_at, id) "
        "WHERE status = 'active'",
        f"CREATE INDEX ix_webhook_subscriptions_client ON {s}.webhook_subscriptions (client_id, id)",
        f"""
        CREATE TABLE {s}.webhook_deliveries (
            id bigserial PRIMARY KEY,
            subscription_id bigint NOT NULL REFERENCES {s}.webhook_subscriptions (id),
            event_id bigint NOT NULL,
            event_type text NOT NULL,
            attempt integer NOT NULL,
            manual boolean NOT NULL DEFAULT false,
            delivered boolean NOT NULL,
            status_code integer,
            error text,
            duration_ms integer NOT NULL,
            at timestamptz NOT NULL DEFAULT clock_timestamp()
        )
        """,
        f"CREATE INDEX ix_webhook_deliveries_subscription ON {s}.webhook_deliveries (subscription_id, id)",
        *append_only_sql(schema, "webhook_deliveries"),
    ]
    if grant_to:
        statements += [
            f"GRANT SELECT, INSERT ON {s}.outbox, {s}.webhook_deliveries TO {grant_to}",
            f"GRANT SELECT, INSERT, UPDATE ON {s}.webhook_subscriptions TO {grant_to}",
            f"GRANT USAGE ON SEQUENCE {s}.outbox_id_seq, {s}.webhook_subscriptions_id_seq, "
            f"{s}.webhook_deliveries_id_seq TO {grant_to}",
        ]
    return statements


def drop_events_tables_sql(schema: str) -> list[str]:
    s = f'"{schema}"'
    return [
        f"DROP TABLE {s}.webhook_deliveries",
        f"DROP TABLE {s}.webhook_subscriptions",
        f"DROP TABLE {s}.outbox",
        f"DROP FUNCTION {s}.refuse_change_webhook_deliveries()",
        f"DROP FUNCTION {s}.refuse_change_outbox()",
    ]


def secrets_at_rest_sql(schema: str) -> list[str]:
    """`webhook_subscriptions.secret_encrypted` (shared/feed/secretbox.py): each row holds its secret either
    encrypted or, until the dispatcher's first round with a key seals it, in plaintext; never both.

    The migration needs no key: the service encrypts the plaintext secrets stored before at its
    dispatcher's first round with `WEBHOOK_SECRET_KEY` and sets `secret` to NULL; new subscriptions
    are stored encrypted from the start (docs/webhooks.md, "Secrets at rest").
    """
    s = f'"{schema}".webhook_subscriptions'
    return [
        f"ALTER TABLE {s} ADD COLUMN secret_encrypted text",
        f"ALTER TABLE {s} ALTER COLUMN secret DROP NOT NULL",
        f"ALTER TABLE {s} ADD CONSTRAINT webhook_subscriptions_one_secret "
        "CHECK (num_nonnulls(secret, secret_encrypted) = 1)",
        f"COMMENT ON COLUMN {s}.secret IS 'plaintext, before encryption at rest (NULL once sealed: secretbox.py)'",
    ]


def secrets_at_rest_downgrade_sql(schema: str) -> list[str]:
    """Back to a plaintext column: only while nothing is encrypted (a downgrade cannot decrypt)."""
    s = f'"{schema}".webhook_subscriptions'
    return [
        f"""
        DO $$ BEGIN
            IF EXISTS (SELECT 1 FROM {s} WHERE secret_encrypted IS NOT NULL) THEN
                RAISE EXCEPTION 'webhook secrets are encrypted: a downgrade would lose them';
            END IF;
        END $$
        """,
        f"ALTER TABLE {s} DROP CONSTRAINT webhook_subscriptions_one_secret",
        f"ALTER TABLE {s} DROP COLUMN secret_encrypted",
        f"ALTER TABLE {s} ALTER COLUMN secret SET NOT NULL",
    ]
