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


def rotation_and_redelivery_sql(schema: str) -> list[str]:
    """A subscription's signing secret rotated (`POST /v1/webhooks/{id}/rotate`, docs/webhooks.md): the
    secret it replaced, sealed as the current one is (secretbox.py), which signs each delivery beside the new one
    until `previous_secret_valid_until`; and the last rotation's Idempotency-Key and request digest, so that a retry
    of that rotation answers the same new secret instead of replacing it. And a manual redelivery's Idempotency-Key
    (`POST …/deliveries/{id}/redeliver`), so that its retry answers the delivery made instead of sending again."""
    s = f'"{schema}".webhook_subscriptions'
    deliveries = f'"{schema}".webhook_deliveries'
    return [
        # a manual redelivery sent with an Idempotency-Key: its retry answers this row instead of sending again
        f"ALTER TABLE {deliveries} ADD COLUMN idempotency_key text",
        f"CREATE UNIQUE INDEX ux_webhook_deliveries_key ON {deliveries} (subscription_id, idempotency_key) "
        "WHERE idempotency_key IS NOT NULL",
        f"ALTER TABLE {s} ADD COLUMN previous_secret_encrypted text, "
        "ADD COLUMN previous_secret_valid_until timestamptz, ADD COLUMN secret_rotated_at timestamptz, "
        "ADD COLUMN rotation_key text, ADD COLUMN rotation_hash text",
        f"ALTER TABLE {s} ADD CONSTRAINT webhook_subscriptions_previous_secret "
        "CHECK ((previous_secret_encrypted IS NULL) = (previous_secret_valid_until IS NULL))",
        f"ALTER TABLE {s} ADD CONSTRAINT webhook_subscriptions_rotation "
        "CHECK (num_nulls(secret_rotated_at, rotation_key, rotation_hash) IN (0, 3))",
    ]


def rotation_and_redelivery_downgrade_sql(schema: str) -> list[str]:
    """Drops the rotation's columns: a previous secret still signing stops (its receivers must use the new one)."""
    s = f'"{schema}".webhook_subscriptions'
    return [
        f'ALTER TABLE "{schema}".webhook_deliveries DROP COLUMN idempotency_key',
        f"ALTER TABLE {s} DROP CONSTRAINT webhook_subscriptions_rotation, "
        "DROP CONSTRAINT webhook_subscriptions_previous_secret, DROP COLUMN previous_secret_encrypted, "
        "DROP COLUMN previous_secret_valid_until, DROP COLUMN secret_rotated_at, DROP COLUMN rotation_key, "
        "DROP COLUMN rotation_hash",
    ]


#: The shortest retention `trim_feed` accepts, whoever calls it: the service's login cannot empty the feed.
MIN_RETENTION = "1 day"


def retention_sql(schema: str, group: str) -> list[str]:
    """`<schema>.trim_feed(retention, batch)`: the one way rows leave the outbox and the delivery log.

    The outbox and `webhook_deliveries` stay append-only (their triggers refuse UPDATE, DELETE and
    TRUNCATE) except for a DELETE inside `trim_feed`, which sets a transaction-local flag the
    triggers let through. It runs with the schema owner's rights (SECURITY DEFINER; the service's
    group may only EXECUTE it, and has no DELETE on either table) and deletes, at most `batch` of each:
    events older than `retention` (at least MIN_RETENTION) that every subscription not deactivated
    has passed (its cursor is at or after them), and delivery-log rows older than `retention`. It
    records in `feed_horizon` the last event position it deleted: a change-feed cursor before it
    has lost events (410 `cursor_expired`).
    """
    s = f'"{schema}"'
    statements = [
        f"""
        CREATE TABLE {s}.feed_horizon (
            one boolean PRIMARY KEY DEFAULT true CHECK (one),
            trimmed_txid xid8 NOT NULL DEFAULT '0',
            trimmed_id bigint NOT NULL DEFAULT 0,
            trimmed_at timestamptz
        )
        """,
        f"INSERT INTO {s}.feed_horizon DEFAULT VALUES",
        f"REVOKE INSERT, UPDATE, DELETE ON {s}.feed_horizon FROM {group}",
        f"GRANT SELECT ON {s}.feed_horizon TO {group}",
        f"CREATE INDEX ix_webhook_deliveries_at ON {s}.webhook_deliveries (at)",
    ]
    for table in ("outbox", "webhook_deliveries"):
        statements.append(
            f"""
            CREATE OR REPLACE FUNCTION {s}.refuse_change_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW'
                   AND current_setting('longgang.feed_trim', true) = '{schema}' THEN
                    RETURN OLD;  -- trim_feed's own delete (retention)
                END IF;
                RAISE EXCEPTION '{schema}.{table} is append-only (% refused)', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$
            """
        )
    statements += [
        trim_feed_sql(schema, "pg_snapshot_xmin(pg_current_snapshot())"),
        f"REVOKE ALL ON FUNCTION {s}.trim_feed(interval, integer) FROM PUBLIC",
        f"GRANT EXECUTE ON FUNCTION {s}.trim_feed(interval, integer) TO {group}",
    ]
    return statements


def trim_feed_sql(schema: str, watermark: str, *, replace: bool = False) -> str:
    """`<schema>.trim_feed()` (retention_sql), deleting only events below `watermark`: before the feed's own
    transaction ids (feed_epoch_sql) the cluster's oldest running transaction, since then the feed's."""
    s = f'"{schema}"'
    create = "CREATE OR REPLACE FUNCTION" if replace else "CREATE FUNCTION"
    return f"""
        {create} {s}.trim_feed(retention interval, batch integer)
        RETURNS TABLE (events bigint, deliveries bigint)
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            bound timestamptz := clock_timestamp() - greatest(retention, interval '{MIN_RETENTION}');
            floor_txid xid8;
            floor_id bigint;
            last_txid xid8;
            last_id bigint;
        BEGIN
            IF batch IS NULL OR batch < 1 OR batch > 10000 THEN
                RAISE EXCEPTION 'batch must be 1 to 10000' USING ERRCODE = 'invalid_parameter_value';
            END IF;
            -- the oldest position a subscription that may still deliver has not passed
            SELECT w.cursor_txid, w.cursor_id INTO floor_txid, floor_id
              FROM {s}.webhook_subscriptions w WHERE w.status <> 'deactivated'
             ORDER BY w.cursor_txid, w.cursor_id LIMIT 1;
            PERFORM set_config('longgang.feed_trim', '{schema}', true);
            WITH doomed AS (
                SELECT o.id, o.txid FROM {s}.outbox o
                 WHERE o.occurred_at < bound
                   AND o.txid < {watermark}
                   AND (floor_txid IS NULL OR (o.txid, o.id) <= (floor_txid, floor_id))
                 ORDER BY o.txid, o.id LIMIT batch
            ), gone AS (
                DELETE FROM {s}.outbox o USING doomed WHERE o.id = doomed.id RETURNING o.txid, o.id
            )
            SELECT (SELECT count(*) FROM gone), g.txid, g.id INTO events, last_txid, last_id
              FROM (SELECT 1) one
              LEFT JOIN LATERAL (SELECT gone.txid, gone.id FROM gone ORDER BY gone.txid DESC, gone.id DESC LIMIT 1) g
                ON true;
            IF events > 0 THEN
                UPDATE {s}.feed_horizon h
                   SET trimmed_txid = last_txid, trimmed_id = last_id, trimmed_at = clock_timestamp()
                 WHERE (h.trimmed_txid, h.trimmed_id) < (last_txid, last_id);
            END IF;
            WITH doomed AS (
                SELECT d.id FROM {s}.webhook_deliveries d WHERE d.at < bound ORDER BY d.at LIMIT batch
            ), gone AS (
                DELETE FROM {s}.webhook_deliveries d USING doomed WHERE d.id = doomed.id RETURNING 1
            )
            SELECT count(*) INTO deliveries FROM gone;
            PERFORM set_config('longgang.feed_trim', '', true);
            RETURN NEXT;
        END $$
        """


def retention_downgrade_sql(schema: str) -> list[str]:
    s = f'"{schema}"'
    statements = [
        f"DROP FUNCTION {s}.trim_feed(interval, integer)",
        f"DROP INDEX {s}.ix_webhook_deliveries_at",
        f"DROP TABLE {s}.feed_horizon",
    ]
    for table in ("outbox", "webhook_deliveries"):  # the triggers' functions as append_only_sql made them
        statements.append(append_only_sql(schema, table)[0].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    return statements


def feed_epoch_sql(schema: str, group: str) -> list[str]:
    """The change feed's own transaction ids, independent of the cluster's counter (issue #15).

    Events are served, delivered and trimmed in (txid, id) order below a watermark (the oldest
    transaction still running): that order is what makes a cursor safe. Restored into a new
    cluster, whose counter starts far below the restored events' ids, new events sorted before
    every cursor and were never served until the counter caught up. As the ledger does
    (migrations/vouchers/functions/ledger_epoch.sql), the feed now counts in its own epoch: the
    cluster's id plus `<schema>.feed_epoch.offset_xid` (0 until a restore), and
    `<schema>.bridge_feed_epoch()`, run by the owner after every migration and restore, raises the
    offset above every position the schema holds (events, subscriptions' cursors, the retention
    horizon). The service's group reads the offset and may not change it or run the bridge.
    """
    s = f'"{schema}"'
    return [
        f"""
        CREATE TABLE {s}.feed_epoch (
            one boolean PRIMARY KEY DEFAULT true CHECK (one),
            offset_xid bigint NOT NULL DEFAULT 0 CHECK (offset_xid >= 0),
            bridged_from bigint,
            bridged_at timestamptz
        )
        """,
        f"INSERT INTO {s}.feed_epoch DEFAULT VALUES",
        f"GRANT SELECT ON {s}.feed_epoch TO {group}",
        f"""
        CREATE FUNCTION {s}.feed_txid() RETURNS xid8 LANGUAGE sql STABLE AS $$
            SELECT (pg_current_xact_id()::text::bigint + (SELECT offset_xid FROM {s}.feed_epoch))::text::xid8
        $$
        """,
        f"""
        CREATE FUNCTION {s}.feed_watermark() RETURNS xid8 LANGUAGE sql STABLE AS $$
            SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint
                    + (SELECT offset_xid FROM {s}.feed_epoch))::text::xid8
        $$
        """,
        f"""
        CREATE FUNCTION {s}.bridge_feed_epoch() RETURNS bigint LANGUAGE plpgsql AS $$
        DECLARE
            l_offset bigint;
            l_last bigint;
            l_next bigint;
        BEGIN
            SELECT offset_xid INTO l_offset FROM {s}.feed_epoch FOR UPDATE;
            SELECT greatest((SELECT max(txid) FROM {s}.outbox),
                            (SELECT max(cursor_txid) FROM {s}.webhook_subscriptions),
                            (SELECT trimmed_txid FROM {s}.feed_horizon))::text::bigint
              INTO l_last;
            l_next := pg_current_xact_id()::text::bigint + l_offset;
            IF l_last IS NULL OR l_last < l_next THEN
                RETURN 0;  -- the cluster's counter is ahead of the feed: nothing to bridge
            END IF;
            l_offset := l_offset + (l_last - l_next) + 1;
            UPDATE {s}.feed_epoch SET offset_xid = l_offset, bridged_from = l_last, bridged_at = now();
            RETURN l_offset;
        END $$
        """,
        f"REVOKE EXECUTE ON FUNCTION {s}.bridge_feed_epoch() FROM PUBLIC",
        f"GRANT EXECUTE ON FUNCTION {s}.feed_txid(), {s}.feed_watermark() TO {group}",
        f"ALTER TABLE {s}.outbox ALTER COLUMN txid SET DEFAULT {s}.feed_txid()",
        trim_feed_sql(schema, f"{s}.feed_watermark()", replace=True),
    ]


def feed_epoch_downgrade_sql(schema: str) -> list[str]:
    s = f'"{schema}"'
    return [
        trim_feed_sql(schema, "pg_snapshot_xmin(pg_current_snapshot())", replace=True),
        f"ALTER TABLE {s}.outbox ALTER COLUMN txid SET DEFAULT pg_current_xact_id()",
        f"DROP FUNCTION {s}.bridge_feed_epoch()",
        f"DROP FUNCTION {s}.feed_watermark()",
        f"DROP FUNCTION {s}.feed_txid()",
        f"DROP TABLE {s}.feed_epoch",
    ]


#: run by the owner after every migration and restore (migrations/<service>/env.py, devtools/backup.py)
def bridge_feed_epoch_sql(schema: str) -> str:
    """The bridge, if this schema's migrations have created it (a no-op before)."""
    s = f'"{schema}"'
    return f"""
DO $$ BEGIN
    IF to_regprocedure('{s}.bridge_feed_epoch()') IS NOT NULL THEN
        PERFORM {s}.bridge_feed_epoch();
    END IF;
END $$
"""
