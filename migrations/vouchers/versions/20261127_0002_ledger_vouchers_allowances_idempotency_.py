"""ledger, vouchers, allowances, idempotency, seals

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:45:05.953712
"""

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.dbroles import create_role_sql
from shared.migrations import append_only_sql, sql_functions

SERVICE_ROLE = "vouchers_writer"
#: the redemption path's SQL functions, one file each beside this tree (their first versions)
FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
LEDGER_FUNCTIONS = ("vendor_account", "claim_key", "remember", "redeem", "finish_hold", "release_hold", "expire_holds")


revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "kind IN ('budget', 'voucher', 'hold', 'vendor_receivable', 'settled', 'grant_paid')",
            name=op.f("ck_accounts_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("kind", "ref", name=op.f("uq_accounts_kind_ref")),
        schema="vouchers",
    )
    op.create_table(
        "allowances",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("limit_fen", sa.BigInteger(), nullable=False),
        sa.Column("used_fen", sa.BigInteger(), nullable=False),
        sa.Column("clause", sa.Text(), nullable=False),
        sa.Column("parameter", sa.Text(), nullable=True),
        sa.CheckConstraint("used_fen >= 0 AND used_fen <= limit_fen", name=op.f("ck_allowances_within_limit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allowances")),
        sa.UniqueConstraint("holder", "year", "kind", name=op.f("uq_allowances_holder_year_kind")),
        schema="vouchers",
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("chain_hash", sa.Text(), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("signed_off_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
        sa.UniqueConstraint("day", name=op.f("uq_checkpoints_day")),
        schema="vouchers",
    )
    op.create_table(
        "idempotency",
        sa.Column("client", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("client", "key", name=op.f("pk_idempotency")),
        schema="vouchers",
    )
    op.create_table(
        "entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column(
            "txid", sa.BigInteger(), server_default=sa.text("pg_current_xact_id()::text::bigint"), nullable=False
        ),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("from_account_id", sa.BigInteger(), nullable=False),
        sa.Column("to_account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("voucher_id", sa.BigInteger(), nullable=True),
        sa.Column("redemption_id", sa.BigInteger(), nullable=True),
        sa.Column("decision_id", sa.UUID(), nullable=True),
        sa.Column("contract_ref", sa.Text(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("parameters_digest", sa.Text(), nullable=True),
        sa.Column("reverses_entry_id", sa.BigInteger(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_entries_positive")),
        sa.CheckConstraint("from_account_id <> to_account_id", name=op.f("ck_entries_two_accounts")),
        sa.ForeignKeyConstraint(
            ["from_account_id"], ["vouchers.accounts.id"], name=op.f("fk_entries_from_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["reverses_entry_id"], ["vouchers.entries.id"], name=op.f("fk_entries_reverses_entry_id_entries")
        ),
        sa.ForeignKeyConstraint(
            ["to_account_id"], ["vouchers.accounts.id"], name=op.f("fk_entries_to_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entries")),
        schema="vouchers",
    )
    op.create_index("ix_entries_from_account", "entries", ["from_account_id"], unique=False, schema="vouchers")
    op.create_index("ix_entries_to_account", "entries", ["to_account_id"], unique=False, schema="vouchers")
    op.create_index("ix_entries_voucher", "entries", ["voucher_id"], unique=False, schema="vouchers")
    op.create_table(
        "vouchers",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("vendor", sa.Text(), nullable=True),
        sa.Column("contract_key", sa.Text(), nullable=True),
        sa.Column("decision_id", sa.UUID(), nullable=False),
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("available_fen", sa.BigInteger(), nullable=False),
        sa.Column("held_fen", sa.BigInteger(), nullable=False),
        sa.Column("redeemed_fen", sa.BigInteger(), nullable=False),
        sa.Column("returned_fen", sa.BigInteger(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("hold_account_id", sa.BigInteger(), nullable=False),
        sa.Column("budget_account_id", sa.BigInteger(), nullable=False),
        sa.Column("parameters_digest", sa.Text(), nullable=True),
        sa.Column("issued_by", sa.Text(), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("kind IN ('M1', 'M3')", name=op.f("ck_vouchers_kind")),
        sa.CheckConstraint(
            "available_fen + held_fen + redeemed_fen + returned_fen = amount_fen", name=op.f("ck_vouchers_adds_up")
        ),
        sa.CheckConstraint(
            "available_fen >= 0 AND held_fen >= 0 AND redeemed_fen >= 0 AND returned_fen >= 0",
            name=op.f("ck_vouchers_non_negative"),
        ),
        sa.ForeignKeyConstraint(["account_id"], ["vouchers.accounts.id"], name=op.f("fk_vouchers_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["budget_account_id"], ["vouchers.accounts.id"], name=op.f("fk_vouchers_budget_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["hold_account_id"], ["vouchers.accounts.id"], name=op.f("fk_vouchers_hold_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vouchers")),
        sa.UniqueConstraint("code", name=op.f("uq_vouchers_code")),
        sa.UniqueConstraint("decision_id", name=op.f("uq_vouchers_decision_id")),
        schema="vouchers",
    )
    op.create_index("ix_vouchers_holder_year", "vouchers", ["holder", "year"], unique=False, schema="vouchers")
    op.create_index(
        "uq_vouchers_contract_key",
        "vouchers",
        ["contract_key"],
        unique=True,
        schema="vouchers",
        postgresql_where=sa.text("contract_key IS NOT NULL"),
    )
    op.create_table(
        "grants",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("decision_id", sa.UUID(), nullable=False),
        sa.Column("measure", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("issued_by", sa.Text(), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["vouchers.entries.id"], name=op.f("fk_grants_entry_id_entries")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants")),
        sa.UniqueConstraint("decision_id", name=op.f("uq_grants_decision_id")),
        schema="vouchers",
    )
    op.create_table(
        "redemptions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("voucher_id", sa.BigInteger(), nullable=False),
        sa.Column("vendor", sa.Text(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("invoice_number", sa.Text(), nullable=False),
        sa.Column("contract_number", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("hold_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settlement_batch_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('captured', 'held', 'released', 'expired')", name=op.f("ck_redemptions_status")),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_redemptions_positive")),
        sa.ForeignKeyConstraint(
            ["voucher_id"], ["vouchers.vouchers.id"], name=op.f("fk_redemptions_voucher_id_vouchers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemptions")),
        schema="vouchers",
    )
    op.create_index(
        "ix_redemptions_held_until",
        "redemptions",
        ["hold_expires_at"],
        unique=False,
        schema="vouchers",
        postgresql_where=sa.text("status = 'held'"),
    )
    op.create_index("ix_redemptions_vendor", "redemptions", ["vendor", "id"], unique=False, schema="vouchers")
    op.create_index(op.f("ix_redemptions_voucher_id"), "redemptions", ["voucher_id"], unique=False, schema="vouchers")
    op.create_table(
        "seals",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.Text(), nullable=False),
        sa.Column("chain_hash", sa.Text(), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["vouchers.entries.id"], name=op.f("fk_seals_entry_id_entries")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_seals")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_seals_entry_id")),
        schema="vouchers",
    )
    for name in LEDGER_FUNCTIONS:
        for statement in sql_functions(FUNCTIONS, name, version=1):
            op.execute(statement)
    # the ledger and its chain are never rewritten, by anyone: triggers (TRUNCATE has its own)
    for table in ("entries", "seals", "checkpoints"):
        for statement in append_only_sql("vouchers", table):
            op.execute(statement)
    # the service runs as this role, which cannot UPDATE, DELETE or TRUNCATE the ledger
    # the role is the cluster's: another database's migration creating it at once is no error
    op.execute(f"DO $$ BEGIN {create_role_sql(SERVICE_ROLE, 'NOLOGIN')} END $$")
    op.execute(f"GRANT {SERVICE_ROLE} TO CURRENT_USER")
    op.execute(f"GRANT USAGE ON SCHEMA vouchers TO {SERVICE_ROLE}")
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA vouchers TO {SERVICE_ROLE}")
    op.execute(f"GRANT INSERT ON ALL TABLES IN SCHEMA vouchers TO {SERVICE_ROLE}")
    op.execute(
        "GRANT UPDATE ON vouchers.accounts, vouchers.vouchers, vouchers.allowances, vouchers.redemptions, "
        f"vouchers.idempotency TO {SERVICE_ROLE}"
    )
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA vouchers TO {SERVICE_ROLE}")
    op.execute(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA vouchers TO {SERVICE_ROLE}")


def downgrade() -> None:
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA vouchers FROM {SERVICE_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA vouchers FROM {SERVICE_ROLE}")
    op.execute(f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA vouchers FROM {SERVICE_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA vouchers FROM {SERVICE_ROLE}")
    for table in ("entries", "seals", "checkpoints"):
        op.execute(f"DROP FUNCTION vouchers.refuse_change_{table}() CASCADE")
    for function in (
        "expire_holds(timestamptz)",
        "release_hold(bigint, text, timestamptz, text)",
        "finish_hold(text, text, text, bigint, text, text, timestamptz, text)",
        "redeem(text, text, text, text, text, bigint, text, text, integer, timestamptz, date, text)",
        "remember(text, text, integer, jsonb)",
        "claim_key(text, text, text)",
        "vendor_account(text)",
    ):
        op.execute(f"DROP FUNCTION vouchers.{function}")
    op.drop_table("seals", schema="vouchers")
    op.drop_index(op.f("ix_redemptions_voucher_id"), table_name="redemptions", schema="vouchers")
    op.drop_index("ix_redemptions_vendor", table_name="redemptions", schema="vouchers")
    op.drop_index(
        "ix_redemptions_held_until",
        table_name="redemptions",
        schema="vouchers",
        postgresql_where=sa.text("status = 'held'"),
    )
    op.drop_table("redemptions", schema="vouchers")
    op.drop_table("grants", schema="vouchers")
    op.drop_index(
        "uq_vouchers_contract_key",
        table_name="vouchers",
        schema="vouchers",
        postgresql_where=sa.text("contract_key IS NOT NULL"),
    )
    op.drop_index("ix_vouchers_holder_year", table_name="vouchers", schema="vouchers")
    op.drop_table("vouchers", schema="vouchers")
    op.drop_index("ix_entries_voucher", table_name="entries", schema="vouchers")
    op.drop_index("ix_entries_to_account", table_name="entries", schema="vouchers")
    op.drop_index("ix_entries_from_account", table_name="entries", schema="vouchers")
    op.drop_table("entries", schema="vouchers")
    op.drop_table("idempotency", schema="vouchers")
    op.drop_table("checkpoints", schema="vouchers")
    op.drop_table("allowances", schema="vouchers")
    op.drop_table("accounts", schema="vouchers")
