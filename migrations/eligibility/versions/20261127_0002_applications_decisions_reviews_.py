"""applications, decisions, reviews, parameter versions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:37:40.406633
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.migrations import append_only_sql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "applications",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("measure", sa.Text(), nullable=False),
        sa.Column("applicant", sa.Text(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("benefit_year", sa.SmallInteger(), nullable=False),
        sa.Column("evidence", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("submitted_by", sa.Text(), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("current_decision_id", sa.UUID(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_applications")),
        sa.UniqueConstraint("seq", name=op.f("uq_applications_seq")),
        schema="eligibility",
    )
    op.create_index(
        "ix_applications_applicant_measure",
        "applications",
        ["applicant", "measure"],
        unique=False,
        schema="eligibility",
    )
    op.create_index(
        "ix_applications_queue", "applications", ["status", "priority", "seq"], unique=False, schema="eligibility"
    )
    op.create_table(
        "parameter_versions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("parameter_id", sa.Text(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parameter_versions")),
        schema="eligibility",
    )
    op.create_index(
        op.f("ix_parameter_versions_parameter_id"),
        "parameter_versions",
        ["parameter_id"],
        unique=False,
        schema="eligibility",
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("application_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("failures", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("review_reasons", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("components", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("trace", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("facts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("policy_version", sa.Text(), nullable=False),
        sa.Column("parameters_digest", sa.Text(), nullable=False),
        sa.Column("engine_version", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"], ["eligibility.applications.id"], name=op.f("fk_decisions_application_id_applications")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
        schema="eligibility",
    )
    op.create_index(
        op.f("ix_decisions_application_id"), "decisions", ["application_id"], unique=False, schema="eligibility"
    )
    op.create_table(
        "reviews",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("application_id", sa.UUID(), nullable=False),
        sa.Column("decision_id", sa.UUID(), nullable=False),
        sa.Column("step", sa.Text(), nullable=False),
        sa.Column("review_id", sa.UUID(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["application_id"], ["eligibility.applications.id"], name=op.f("fk_reviews_application_id_applications")
        ),
        sa.ForeignKeyConstraint(
            ["decision_id"], ["eligibility.decisions.id"], name=op.f("fk_reviews_decision_id_decisions")
        ),
        sa.ForeignKeyConstraint(["review_id"], ["eligibility.reviews.id"], name=op.f("fk_reviews_review_id_reviews")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        schema="eligibility",
    )
    op.create_index(
        op.f("ix_reviews_application_id"), "reviews", ["application_id"], unique=False, schema="eligibility"
    )
    # decisions, reviews and administrator parameter versions are never rewritten
    for table in ("decisions", "reviews", "parameter_versions"):
        for statement in append_only_sql("eligibility", table):
            op.execute(statement)


def downgrade() -> None:
    for table in ("decisions", "reviews", "parameter_versions"):
        op.execute(f"DROP FUNCTION eligibility.refuse_change_{table}() CASCADE")
    op.drop_index(op.f("ix_reviews_application_id"), table_name="reviews", schema="eligibility")
    op.drop_table("reviews", schema="eligibility")
    op.drop_index(op.f("ix_decisions_application_id"), table_name="decisions", schema="eligibility")
    op.drop_table("decisions", schema="eligibility")
    op.drop_index(op.f("ix_parameter_versions_parameter_id"), table_name="parameter_versions", schema="eligibility")
    op.drop_table("parameter_versions", schema="eligibility")
    op.drop_index("ix_applications_queue", table_name="applications", schema="eligibility")
    op.drop_index("ix_applications_applicant_measure", table_name="applications", schema="eligibility")
    op.drop_table("applications", schema="eligibility")
