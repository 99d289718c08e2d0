"""The eligibility service's tables (schema `eligibility`).

Applications carry a `status` projection for the review queue; decisions, reviews and
administrator parameter versions are immutable (triggers refuse UPDATE/DELETE/TRUNCATE):
an approval or a correction is always a new record that references the old one.
`application_counts` is the dashboard's projection of applications, kept by triggers in
the same transaction (migration 0006 says what a consistent row set is).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import service_metadata

SCHEMA = "eligibility"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


class Application(Base):
    __tablename__ = "applications"
    __table_args__ = (
        Index("ix_applications_queue", "status", "priority", "seq"),
        Index("ix_applications_applicant_measure", "applicant", "measure"),
        # the review queue's ages (GET /v1/aggregates/review-queue): only the waiting applications
        Index(
            "ix_applications_waiting",
            "measure",
            "submitted_at",
            postgresql_where=text("status IN ('in_review', 'reviewed')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), unique=True, nullable=False)
    measure: Mapped[str] = mapped_column(Text, nullable=False)
    applicant: Mapped[str] = mapped_column(Text, nullable=False)
    as_of: Mapped[date] = mapped_column(Date, nullable=False)
    #: an earlier date recorded by an officer (a late-registered paper application): why, and who
    as_of_reason: Mapped[str | None] = mapped_column(Text)
    as_of_recorded_by: Mapped[str | None] = mapped_column(Text)
    benefit_year: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    submitted_by: Mapped[str | None] = mapped_column(Text)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    #: in_review → reviewed → approved | rejected; or ineligible (automatic)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    priority: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    current_decision_id: Mapped[uuid.UUID | None] = mapped_column(UUID)


class Decision(Base):
    __tablename__ = "decisions"
    __table_args__ = (
        # no pending list (eligibility 0016): each submission's claims search would read it all
        Index("ix_decisions_claims", "claims", postgresql_using="gin", postgresql_with={"fastupdate": "off"}),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    application_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("applications.id"), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(Text, nullable=False)  # automatic | manual_a1
    outcome: Mapped[str] = mapped_column(Text, nullable=False)  # eligible | ineligible | needs_review
    amount_fen: Mapped[int | None] = mapped_column(BigInteger)
    failures: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    review_reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    components: Mapped[dict[str, int]] = mapped_column(JSONB, nullable=False)
    trace: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    facts: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    policy_version: Mapped[str] = mapped_column(Text, nullable=False)
    parameters_digest: Mapped[str] = mapped_column(Text, nullable=False)
    engine_version: Mapped[str] = mapped_column(Text, nullable=False)
    decided_by: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    #: A1 decisions: the deciding client and the request (its audit row has the same request id)
    client_id: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(Text)
    #: the award register (rules/claims.py): keys this decision pays for, annual caps it uses, year-total basis
    claims: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default=text("'{}'"))
    caps: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'"))
    basis: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'"))


class Award(Base):
    """The award register: one row per claim key an approved award pays for (append-only).

    A key can be awarded once (partial unique index on `claim_key` where `overrides_id` is
    null); an A1 decision that deliberately pays again names the award it overrides and
    why, and each award can be overridden once (unique `overrides_id`), so two concurrent
    approvals or overrides on one key can never both succeed.
    """

    __tablename__ = "awards"
    __table_args__ = (
        Index("uq_awards_claim_key", "claim_key", unique=True, postgresql_where=text("overrides_id IS NULL")),
        UniqueConstraint("overrides_id"),
        CheckConstraint("(overrides_id IS NULL) = (override_reason IS NULL)", name="override_has_reason"),
        Index("ix_awards_claim_key", "claim_key"),  # every row of a key: who holds it (submission_sql)
        Index("ix_awards_application", "application_id"),
        Index("ix_awards_applicant_measure", "applicant", "measure"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    claim_key: Mapped[str] = mapped_column(Text, nullable=False)
    clause: Mapped[str] = mapped_column(Text, nullable=False)
    measure: Mapped[str] = mapped_column(Text, nullable=False)
    applicant: Mapped[str] = mapped_column(Text, nullable=False)
    benefit_year: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    application_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("applications.id"), nullable=False)
    decision_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("decisions.id"), nullable=False)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    #: automatic (review + approval) | manual_a1 | history (built by migration 0007 from earlier approvals)
    path: Mapped[str] = mapped_column(Text, nullable=False)
    overrides_id: Mapped[int | None] = mapped_column(ForeignKey("awards.id"))
    override_reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()
    )


class YearCap(Base):
    """An annual cap of one enterprise's year (M1 class cap, M5, M7, M10 …): awards take it atomically."""

    __tablename__ = "year_caps"
    __table_args__ = (CheckConstraint("used_fen >= 0 AND used_fen <= limit_fen", name="within_limit"),)

    applicant: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    year: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    limit_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    used_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    clause: Mapped[str] = mapped_column(Text, nullable=False)
    parameter: Mapped[str] = mapped_column(Text, nullable=False)


class Review(Base):
    """An officer's review (step `review`) or an approver's decision on it (step `approval`)."""

    __tablename__ = "reviews"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, default=uuid.uuid4)
    application_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("applications.id"), nullable=False, index=True)
    decision_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("decisions.id"), nullable=False)
    step: Mapped[str] = mapped_column(Text, nullable=False)  # review | approval
    review_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("reviews.id"))
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    verdict: Mapped[str] = mapped_column(Text, nullable=False)  # approve | reject
    amount_fen: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    # clock_timestamp(): a review and its approval in one transaction stay in order
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()
    )
    #: the acting client (four eyes compare these) and the request (its audit row has the same request id)
    client_id: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(Text)
    #: A2: the programme budget this approval reserved in the vouchers service (null before reservations)
    budget_reservation_id: Mapped[uuid.UUID | None] = mapped_column(UUID)


class ParameterVersion(Base):
    """A parameter value loaded by an administrator, effective from a future date (audited)."""

    __tablename__ = "parameter_versions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    parameter_id: Mapped[str] = mapped_column(Text, nullable=False, index=True)
    effective_from: Mapped[date] = mapped_column(Date, nullable=False)
    value: Mapped[Any] = mapped_column(JSONB, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    created_by: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    request_id: Mapped[str | None] = mapped_column(Text)
    client_id: Mapped[str | None] = mapped_column(Text)


class ApplicationCount(Base):
    """Applications per submission year (Shenzhen time), measure and status or automatic outcome.

    Written only by triggers on `applications` and `decisions` (migrations 0006, 0018), in the
    transaction of the change; `eligibility.rebuild_application_counts()` recounts it.
    """

    __tablename__ = "application_counts"

    year: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    measure: Mapped[str] = mapped_column(Text, primary_key=True)
    #: `status` (the application's current status) or `outcome` (of its automatic decision)
    dimension: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text, primary_key=True)
    #: a count is the sum of its shards: each connection adds to its own (`eligibility.count_shard()`, migration
    #: 0018), so concurrent submissions of a measure do not wait for one row
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True, server_default=text("0"))
    count: Mapped[int] = mapped_column(BigInteger, nullable=False)
