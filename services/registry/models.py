"""The registry's tables (schema `registry`).

Each record has a *current* row (typed columns, constraints, foreign keys by natural
key) and an append-only history in `versions`: one JSON snapshot per change with the
date it takes effect (`valid_from`) and when it was recorded. As-of reads use the
history; lists and filters use the current rows.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import service_metadata

SCHEMA = "registry"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


class RecordMixin:
    """Columns every current row has: an internal ordering key and version bookkeeping."""

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    valid_from: Mapped[date] = mapped_column(Date, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Organisation(RecordMixin, Base):
    __tablename__ = "organisations"
    __table_args__ = (
        CheckConstraint("kind IN ('enterprise', 'university', 'research_institute')", name="kind"),
        CheckConstraint(
            "four_above_category IS NULL OR four_above_category IN "
            "('above_scale_industrial', 'above_scale_services', 'qualified_construction', 'above_limit_trade')",
            name="four_above_category",
        ),
    )

    credit_code: Mapped[str] = mapped_column(String(18), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    division_code: Mapped[str] = mapped_column(String(6), nullable=False)
    registered_district: Mapped[str | None] = mapped_column(String(6))
    registered_on: Mapped[date | None] = mapped_column(Date)
    four_above_category: Mapped[str | None] = mapped_column(Text)
    industry: Mapped[str | None] = mapped_column(Text)
    is_software_internet: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    owns_district_industrial_housing: Mapped[bool | None] = mapped_column(Boolean)


class Revenue(RecordMixin, Base):
    """Audited annual revenue of an organisation (M1 classes, M9 growth, M11 area)."""

    __tablename__ = "revenues"
    __table_args__ = (
        UniqueConstraint("credit_code", "year"),
        CheckConstraint("revenue_fen >= 0", name="revenue_non_negative"),
    )

    credit_code: Mapped[str] = mapped_column(ForeignKey("organisations.credit_code"), nullable=False)
    year: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    revenue_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    audited: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    source: Mapped[str | None] = mapped_column(Text)


class Affiliation(RecordMixin, Base):
    """关联方: two organisations that are related parties (M1 excludes their compute)."""

    __tablename__ = "affiliations"
    __table_args__ = (
        UniqueConstraint("credit_code_a", "credit_code_b"),
        CheckConstraint("credit_code_a < credit_code_b", name="ordered_pair"),
    )

    uid: Mapped[uuid.UUID] = mapped_column(UUID, unique=True, nullable=False, default=uuid.uuid4)
    credit_code_a: Mapped[str] = mapped_column(ForeignKey("organisations.credit_code"), nullable=False)
    credit_code_b: Mapped[str] = mapped_column(ForeignKey("organisations.credit_code"), nullable=False, index=True)
    relation: Mapped[str] = mapped_column(Text, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)


class Vendor(RecordMixin, Base):
    """An organisation in the role of compute vendor (M1) and/or model vendor (M3)."""

    __tablename__ = "vendors"

    credit_code: Mapped[str] = mapped_column(ForeignKey("organisations.credit_code"), unique=True, nullable=False)
    is_compute_vendor: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    is_model_vendor: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    district_compute: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    domestic_compute: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)


class Model(RecordMixin, Base):
    """A large model of a model vendor; M2(b) reads its national filing date and rank."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("vendor_credit_code", "name"),)

    uid: Mapped[uuid.UUID] = mapped_column(UUID, unique=True, nullable=False, default=uuid.uuid4)
    vendor_credit_code: Mapped[str] = mapped_column(ForeignKey("vendors.credit_code"), nullable=False)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    national_filing_date: Mapped[date | None] = mapped_column(Date)
    national_filing_rank: Mapped[int | None] = mapped_column(Integer)


class Filing(RecordMixin, Base):
    """A CAC generative-AI service filing (备案) or registration (登记) of a model (M3)."""

    __tablename__ = "filings"
    __table_args__ = (
        CheckConstraint("kind IN ('filing', 'registration')", name="kind"),
        CheckConstraint("status IN ('filed', 'registered', 'revoked')", name="status"),
    )

    number: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.uid"), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    filed_on: Mapped[date] = mapped_column(Date, nullable=False)
    warnings: Mapped[list[str]] = mapped_column(JSONB, nullable=False, default=list)


class Recognition(RecordMixin, Base):
    """Catalogue entries and recognitions (M1 major projects, AI enterprises, M6 industry and diagnoses, M4–M12)."""

    __tablename__ = "recognitions"

    uid: Mapped[uuid.UUID] = mapped_column(UUID, unique=True, nullable=False, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    credit_code: Mapped[str] = mapped_column(ForeignKey("organisations.credit_code"), nullable=False, index=True)
    recognised_on: Mapped[date] = mapped_column(Date, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)


class Version(Base):
    """Append-only history of every record (UPDATE/DELETE refused by a trigger)."""

    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("entity", "entity_id", "version"),
        Index("ix_versions_as_of", "entity", "entity_id", "valid_from", "version"),
        # the snapshots containing a JSON fragment (POST /v1/facts: an organisation's records as of a date)
        Index(
            "ix_versions_data",
            "data",
            postgresql_using="gin",
            postgresql_ops={"data": "jsonb_path_ops"},
            postgresql_with={"fastupdate": "off"},
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    entity: Mapped[str] = mapped_column(Text, nullable=False)
    entity_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    valid_from: Mapped[date] = mapped_column(Date, nullable=False)
    # clock_timestamp(), not now(): successive versions in one transaction stay ordered
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()
    )
    request_id: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
