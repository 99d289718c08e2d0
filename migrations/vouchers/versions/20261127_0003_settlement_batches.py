"""settlement batches

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 10:52:04.867165
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

SERVICE_ROLE = "vouchers_writer"

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Enforced by the database for everyone, superusers included (unless triggers are disabled):
# - a batch is created open; an open batch may only be closed, with the one `settle` entry
#   for its total (vendor receivable → vendor settled) and redemptions that add up to it;
# - a closed batch never changes; no batch is ever deleted; the table is never truncated;
# - at commit, a new batch's redemptions add up to its total and count;
# - a redemption joins a batch once, when captured, and only an open batch of its own vendor;
#   after that the redemption row never changes.
TRIGGER_SQL = [
    """
    CREATE FUNCTION vouchers.settlement_batch_adds_up(p_batch bigint, p_total bigint, p_count bigint)
    RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        l_total bigint;
        l_count bigint;
    BEGIN
        SELECT coalesce(sum(amount_fen), 0), count(*) INTO l_total, l_count
          FROM vouchers.redemptions WHERE settlement_batch_id = p_batch;
        IF l_total <> p_total OR l_count <> p_count THEN
            RAISE EXCEPTION 'settlement batch %: its % redemptions add up to % fen, not % redemptions and % fen',
                p_batch, l_count, l_total, p_count, p_total USING ERRCODE = 'check_violation';
        END IF;
    END $$
    """,
    """
    CREATE FUNCTION vouchers.settlement_batch_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            IF NEW.status <> 'open' THEN
                RAISE EXCEPTION 'vouchers.settlement_batches: a batch is created open' USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END IF;
        IF TG_OP <> 'UPDATE' THEN
            RAISE EXCEPTION 'vouchers.settlement_batches are never deleted (% refused)', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF OLD.status = 'closed' THEN
            RAISE EXCEPTION 'vouchers.settlement_batches: batch % is closed and immutable (UPDATE refused)', OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NEW.id <> OLD.id OR NEW.vendor <> OLD.vendor OR NEW.total_fen <> OLD.total_fen
           OR NEW.redemption_count <> OLD.redemption_count OR NEW.created_by <> OLD.created_by
           OR NEW.created_at <> OLD.created_at THEN
            RAISE EXCEPTION 'vouchers.settlement_batches: batch % can only be closed (UPDATE refused)', OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NEW.status = 'closed' THEN
            PERFORM 1 FROM vouchers.entries e
              JOIN vouchers.accounts f ON f.id = e.from_account_id
              JOIN vouchers.accounts t ON t.id = e.to_account_id
             WHERE e.id = NEW.entry_id AND e.kind = 'settle' AND e.amount_fen = NEW.total_fen
               AND f.kind = 'vendor_receivable' AND f.ref = NEW.vendor
               AND t.kind = 'settled' AND t.ref = NEW.vendor;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'settlement batch %: entry % is not its settle entry of % fen', NEW.id, NEW.entry_id,
                    NEW.total_fen USING ERRCODE = 'check_violation';
            END IF;
            PERFORM vouchers.settlement_batch_adds_up(NEW.id, NEW.total_fen, NEW.redemption_count);
        END IF;
        RETURN NEW;
    END $$
    """,
    "CREATE TRIGGER settlement_batches_guard BEFORE INSERT OR UPDATE OR DELETE ON vouchers.settlement_batches "
    "FOR EACH ROW EXECUTE FUNCTION vouchers.settlement_batch_guard()",
    "CREATE TRIGGER settlement_batches_no_truncate BEFORE TRUNCATE ON vouchers.settlement_batches "
    "FOR EACH STATEMENT EXECUTE FUNCTION vouchers.settlement_batch_guard()",
    """
    CREATE FUNCTION vouchers.settlement_batch_check_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM vouchers.settlement_batch_adds_up(NEW.id, NEW.total_fen, NEW.redemption_count);
        RETURN NULL;
    END $$
    """,
    "CREATE CONSTRAINT TRIGGER settlement_batches_adds_up AFTER INSERT ON vouchers.settlement_batches "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION vouchers.settlement_batch_check_at_commit()",
    """
    CREATE FUNCTION vouchers.redemption_batched_once() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        b vouchers.settlement_batches%ROWTYPE;
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.settlement_batch_id IS NOT NULL THEN
            RAISE EXCEPTION 'redemption % is in settlement batch %: it never changes again (UPDATE refused)',
                OLD.id, OLD.settlement_batch_id USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF TG_OP = 'INSERT' OR NEW.status <> 'captured' THEN
            RAISE EXCEPTION 'redemption %: only a captured redemption joins a settlement batch', NEW.id
                USING ERRCODE = 'check_violation';
        END IF;
        SELECT * INTO b FROM vouchers.settlement_batches WHERE id = NEW.settlement_batch_id;
        IF NOT FOUND OR b.status <> 'open' OR b.vendor <> NEW.vendor THEN
            RAISE EXCEPTION 'redemption %: settlement batch % is not an open batch of vendor %',
                NEW.id, NEW.settlement_batch_id, NEW.vendor USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END $$
    """,
    # WHEN clauses: the redemption path (never batched rows) does not even call the function
    "CREATE TRIGGER redemptions_batched_once BEFORE UPDATE ON vouchers.redemptions FOR EACH ROW "
    "WHEN (OLD.settlement_batch_id IS NOT NULL OR NEW.settlement_batch_id IS NOT NULL) "
    "EXECUTE FUNCTION vouchers.redemption_batched_once()",
    "CREATE TRIGGER redemptions_batched_at_insert BEFORE INSERT ON vouchers.redemptions FOR EACH ROW "
    "WHEN (NEW.settlement_batch_id IS NOT NULL) EXECUTE FUNCTION vouchers.redemption_batched_once()",
]


def upgrade() -> None:
    op.create_table(
        "settlement_batches",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("vendor", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("total_fen", sa.BigInteger(), nullable=False),
        sa.Column("redemption_count", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("closed_by", sa.Text(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "(status = 'open' AND closed_by IS NULL AND closed_at IS NULL AND entry_id IS NULL) OR (status = 'closed' AND closed_by IS NOT NULL AND closed_at IS NOT NULL AND entry_id IS NOT NULL)",
            name=op.f("ck_settlement_batches_closed_fields"),
        ),
        sa.CheckConstraint("status IN ('open', 'closed')", name=op.f("ck_settlement_batches_status")),
        sa.CheckConstraint("total_fen > 0 AND redemption_count > 0", name=op.f("ck_settlement_batches_positive")),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["vouchers.entries.id"], name=op.f("fk_settlement_batches_entry_id_entries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_batches")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_settlement_batches_entry_id")),
        schema="vouchers",
    )
    op.create_index(
        "ix_settlement_batches_vendor", "settlement_batches", ["vendor", "id"], unique=False, schema="vouchers"
    )
    op.create_index(
        "ix_redemptions_settlement_batch",
        "redemptions",
        ["settlement_batch_id", "id"],
        unique=False,
        schema="vouchers",
        postgresql_where=sa.text("settlement_batch_id IS NOT NULL"),
    )
    for statement in TRIGGER_SQL:
        op.execute(statement)
    # the service role opens and closes batches; it cannot DELETE or TRUNCATE them (nor can anyone: triggers)
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON vouchers.settlement_batches TO {SERVICE_ROLE}")
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA vouchers TO {SERVICE_ROLE}")
    op.execute(
        "GRANT EXECUTE ON FUNCTION vouchers.settlement_batch_adds_up(bigint, bigint, bigint), "
        "vouchers.settlement_batch_guard(), vouchers.settlement_batch_check_at_commit(), "
        f"vouchers.redemption_batched_once() TO {SERVICE_ROLE}"
    )


def downgrade() -> None:
    op.execute(f"REVOKE ALL ON vouchers.settlement_batches FROM {SERVICE_ROLE}")
    op.execute("DROP TRIGGER redemptions_batched_at_insert ON vouchers.redemptions")
    op.execute("DROP TRIGGER redemptions_batched_once ON vouchers.redemptions")
    op.drop_index(
        "ix_redemptions_settlement_batch",
        table_name="redemptions",
        schema="vouchers",
        postgresql_where=sa.text("settlement_batch_id IS NOT NULL"),
    )
    op.drop_index("ix_settlement_batches_vendor", table_name="settlement_batches", schema="vouchers")
    op.drop_table("settlement_batches", schema="vouchers")  # its triggers go with it
    for function in (
        "redemption_batched_once()",
        "settlement_batch_check_at_commit()",
        "settlement_batch_guard()",
        "settlement_batch_adds_up(bigint, bigint, bigint)",
    ):
        op.execute(f"DROP FUNCTION vouchers.{function}")
