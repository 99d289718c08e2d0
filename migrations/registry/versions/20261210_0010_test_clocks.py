"""test clocks and the enterprises bound to them (issue #15, sandbox mode: docs/sandbox.md)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10 00:00:00

`registry.test_clocks`: a clock frozen at `frozen_time` until advanced; a trigger refuses to move one
backwards, whoever asks (the API refuses first, 409 test_clock_backwards). `registry.test_clock_bindings`:
one clock per enterprise (its credit code is the key, an organisation of the registry), dropped with
its clock. The tables exist in every deployment; only a service in sandbox mode serves them, and a
production one refuses sandbox mode (shared/settings.py). The service's login reads and writes both
(the schema's default privileges, 0006).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE registry.test_clocks (
            id uuid PRIMARY KEY,
            seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            name text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
            frozen_time timestamptz NOT NULL,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            advanced_at timestamptz
        )
        """
    )
    op.execute(
        """
        CREATE FUNCTION registry.test_clock_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.frozen_time < OLD.frozen_time THEN
                RAISE EXCEPTION 'a test clock only moves forward' USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER test_clocks_forward_only BEFORE UPDATE OF frozen_time ON registry.test_clocks "
        "FOR EACH ROW EXECUTE FUNCTION registry.test_clock_forward_only()"
    )
    op.execute(
        """
        CREATE TABLE registry.test_clock_bindings (
            credit_code text PRIMARY KEY REFERENCES registry.organisations (credit_code),
            seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            clock_id uuid NOT NULL REFERENCES registry.test_clocks (id) ON DELETE CASCADE,
            bound_by text NOT NULL,
            bound_at timestamptz NOT NULL DEFAULT clock_timestamp()
        )
        """
    )
    op.execute("CREATE INDEX ix_test_clock_bindings_clock ON registry.test_clock_bindings (clock_id)")


def downgrade() -> None:
    op.execute("DROP TABLE registry.test_clock_bindings")
    op.execute("DROP TRIGGER test_clocks_forward_only ON registry.test_clocks")
    op.execute("DROP FUNCTION registry.test_clock_forward_only()")
    op.execute("DROP TABLE registry.test_clocks")
