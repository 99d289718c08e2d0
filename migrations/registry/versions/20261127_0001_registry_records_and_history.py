"""registry records and history

Revision ID: 0001
Revises:
Create Date: 2026-11-27 10:21:44.698806
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("credit_code", sa.String(length=18), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("division_code", sa.String(length=6), nullable=False),
        sa.Column("registered_district", sa.String(length=6), nullable=True),
        sa.Column("registered_on", sa.Date(), nullable=True),
        sa.Column("four_above_category", sa.Text(), nullable=True),
        sa.Column("industry", sa.Text(), nullable=True),
        sa.Column("is_software_internet", sa.Boolean(), nullable=False),
        sa.Column("owns_district_industrial_housing", sa.Boolean(), nullable=True),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "four_above_category IS NULL OR four_above_category IN ('above_scale_industrial', 'above_scale_services', 'qualified_construction', 'above_limit_trade')",
            name=op.f("ck_organisations_four_above_category"),
        ),
        sa.CheckConstraint(
            "kind IN ('enterprise', 'university', 'research_institute')", name=op.f("ck_organisations_kind")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisations")),
        sa.UniqueConstraint("credit_code", name=op.f("uq_organisations_credit_code")),
        schema="registry",
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("entity", sa.Text(), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_versions")),
        sa.UniqueConstraint("entity", "entity_id", "version", name=op.f("uq_versions_entity_entity_id_version")),
        schema="registry",
    )
    op.create_index(
        "ix_versions_as_of",
        "versions",
        ["entity", "entity_id", "valid_from", "version"],
        unique=False,
        schema="registry",
    )
    op.create_table(
        "affiliations",
        sa.Column("uid", sa.UUID(), nullable=False),
        sa.Column("credit_code_a", sa.String(length=18), nullable=False),
        sa.Column("credit_code_b", sa.String(length=18), nullable=False),
        sa.Column("relation", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("credit_code_a < credit_code_b", name=op.f("ck_affiliations_ordered_pair")),
        sa.ForeignKeyConstraint(
            ["credit_code_a"],
            ["registry.organisations.credit_code"],
            name=op.f("fk_affiliations_credit_code_a_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["credit_code_b"],
            ["registry.organisations.credit_code"],
            name=op.f("fk_affiliations_credit_code_b_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_affiliations")),
        sa.UniqueConstraint("credit_code_a", "credit_code_b", name=op.f("uq_affiliations_credit_code_a_credit_code_b")),
        sa.UniqueConstraint("uid", name=op.f("uq_affiliations_uid")),
        schema="registry",
    )
    op.create_index(
        op.f("ix_affiliations_credit_code_b"), "affiliations", ["credit_code_b"], unique=False, schema="registry"
    )
    op.create_table(
        "recognitions",
        sa.Column("uid", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("credit_code", sa.String(length=18), nullable=False),
        sa.Column("recognised_on", sa.Date(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["credit_code"],
            ["registry.organisations.credit_code"],
            name=op.f("fk_recognitions_credit_code_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recognitions")),
        sa.UniqueConstraint("uid", name=op.f("uq_recognitions_uid")),
        schema="registry",
    )
    op.create_index(
        op.f("ix_recognitions_credit_code"), "recognitions", ["credit_code"], unique=False, schema="registry"
    )
    op.create_table(
        "revenues",
        sa.Column("credit_code", sa.String(length=18), nullable=False),
        sa.Column("year", sa.SmallInteger(), nullable=False),
        sa.Column("revenue_fen", sa.BigInteger(), nullable=False),
        sa.Column("audited", sa.Boolean(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("revenue_fen >= 0", name=op.f("ck_revenues_revenue_non_negative")),
        sa.ForeignKeyConstraint(
            ["credit_code"], ["registry.organisations.credit_code"], name=op.f("fk_revenues_credit_code_organisations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revenues")),
        sa.UniqueConstraint("credit_code", "year", name=op.f("uq_revenues_credit_code_year")),
        schema="registry",
    )
    op.create_table(
        "vendors",
        sa.Column("credit_code", sa.String(length=18), nullable=False),
        sa.Column("is_compute_vendor", sa.Boolean(), nullable=False),
        sa.Column("is_model_vendor", sa.Boolean(), nullable=False),
        sa.Column("district_compute", sa.Boolean(), nullable=False),
        sa.Column("domestic_compute", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["credit_code"], ["registry.organisations.credit_code"], name=op.f("fk_vendors_credit_code_organisations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendors")),
        sa.UniqueConstraint("credit_code", name=op.f("uq_vendors_credit_code")),
        schema="registry",
    )
    op.create_table(
        "models",
        sa.Column("uid", sa.UUID(), nullable=False),
        sa.Column("vendor_credit_code", sa.String(length=18), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("national_filing_date", sa.Date(), nullable=True),
        sa.Column("national_filing_rank", sa.Integer(), nullable=True),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["vendor_credit_code"], ["registry.vendors.credit_code"], name=op.f("fk_models_vendor_credit_code_vendors")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("uid", name=op.f("uq_models_uid")),
        sa.UniqueConstraint("vendor_credit_code", "name", name=op.f("uq_models_vendor_credit_code_name")),
        schema="registry",
    )
    op.create_table(
        "filings",
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("model_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("filed_on", sa.Date(), nullable=False),
        sa.Column("warnings", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("kind IN ('filing', 'registration')", name=op.f("ck_filings_kind")),
        sa.CheckConstraint("status IN ('filed', 'registered', 'revoked')", name=op.f("ck_filings_status")),
        sa.ForeignKeyConstraint(["model_id"], ["registry.models.uid"], name=op.f("fk_filings_model_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_filings")),
        sa.UniqueConstraint("number", name=op.f("uq_filings_number")),
        schema="registry",
    )
    op.create_index(op.f("ix_filings_model_id"), "filings", ["model_id"], unique=False, schema="registry")
    # History is append-only: the database itself refuses to rewrite or erase it.
    op.execute(
        """
        CREATE FUNCTION registry.refuse_history_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'registry.versions is append-only (% refused)', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER versions_append_only BEFORE UPDATE OR DELETE ON registry.versions "
        "FOR EACH ROW EXECUTE FUNCTION registry.refuse_history_change()"
    )
    op.execute(
        "CREATE TRIGGER versions_no_truncate BEFORE TRUNCATE ON registry.versions "
        "FOR EACH STATEMENT EXECUTE FUNCTION registry.refuse_history_change()"
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION registry.refuse_history_change() CASCADE")
    op.drop_index(op.f("ix_filings_model_id"), table_name="filings", schema="registry")
    op.drop_table("filings", schema="registry")
    op.drop_table("models", schema="registry")
    op.drop_table("vendors", schema="registry")
    op.drop_table("revenues", schema="registry")
    op.drop_index(op.f("ix_recognitions_credit_code"), table_name="recognitions", schema="registry")
    op.drop_table("recognitions", schema="registry")
    op.drop_index(op.f("ix_affiliations_credit_code_b"), table_name="affiliations", schema="registry")
    op.drop_table("affiliations", schema="registry")
    op.drop_index("ix_versions_as_of", table_name="versions", schema="registry")
    op.drop_table("versions", schema="registry")
    op.drop_table("organisations", schema="registry")
