"""The vouchers service's tables (schema `vouchers`): a double-entry, append-only ledger.

- `accounts`: the programme budget per measure and year, each voucher's holding and
  hold (reserved) account, each vendor's receivable, settled funds, grants paid.
- `entries`: each moves a positive amount from one account to another; never updated,
  deleted or truncated (triggers, and the service's role lacks the privilege). A balance
  is Σ in − Σ out, so the sum over all accounts is zero by construction.
- `vouchers`, `allowances`: projections updated in the same transaction as the entries
  and checkable against them. Every ceiling is one `allowances` row with a CHECK
  `used_fen <= limit_fen`, changed by a conditional UPDATE: no ceiling can be exceeded
  even by a buggy caller.
- `idempotency`: the first answer to each (client, key), stored in the same transaction
  as the effect it protects, refusals included.
- `seals`, `checkpoints`: the hash chain over entries, written by the sealer off the hot path.
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
    Integer,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import service_metadata

SCHEMA = "vouchers"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("kind", "ref"),
        CheckConstraint(
            "kind IN ('budget', 'voucher', 'hold', 'vendor_receivable', 'settled', 'grant_paid')", name="kind"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    ref: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Entry(Base):
    __tablename__ = "entries"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="positive"),
        CheckConstraint("from_account_id <> to_account_id", name="two_accounts"),
        Index("ix_entries_from_account", "from_account_id"),
        Index("ix_entries_to_account", "to_account_id"),
        Index("ix_entries_voucher", "voucher_id"),
        Index("ix_entries_txid_id", "txid", "id"),
        Index(
            "uq_entries_reverses_entry_id",
            "reverses_entry_id",
            unique=True,
            postgresql_where=text("reverses_entry_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()
    )
    #: the writing transaction, so the sealer never seals past one still in flight
    txid: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("vouchers.ledger_txid()"))
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    from_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    to_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    voucher_id: Mapped[int | None] = mapped_column(BigInteger)
    redemption_id: Mapped[int | None] = mapped_column(BigInteger)
    decision_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    contract_ref: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(Text)
    parameters_digest: Mapped[str | None] = mapped_column(Text)
    reverses_entry_id: Mapped[int | None] = mapped_column(ForeignKey("entries.id"))
    request_id: Mapped[str | None] = mapped_column(Text)
    memo: Mapped[str | None] = mapped_column(Text)


class Voucher(Base):
    __tablename__ = "vouchers"
    __table_args__ = (
        CheckConstraint("kind IN ('M1', 'M3')", name="kind"),
        CheckConstraint(
            "available_fen >= 0 AND held_fen >= 0 AND redeemed_fen >= 0 AND returned_fen >= 0", name="non_negative"
        ),
        CheckConstraint("available_fen + held_fen + redeemed_fen + returned_fen = amount_fen", name="adds_up"),
        Index(
            "uq_vouchers_contract_key", "contract_key", unique=True, postgresql_where=text("contract_key IS NOT NULL")
        ),
        Index("ix_vouchers_holder_year", "holder", "year"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    code: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    holder: Mapped[str] = mapped_column(Text, nullable=False)
    vendor: Mapped[str | None] = mapped_column(Text)
    contract_key: Mapped[str | None] = mapped_column(Text)
    decision_id: Mapped[uuid.UUID] = mapped_column(UUID, unique=True, nullable=False)
    year: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    available_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    held_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    redeemed_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    returned_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    valid_until: Mapped[date] = mapped_column(Date, nullable=False)
    voided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    hold_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    budget_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    parameters_digest: Mapped[str | None] = mapped_column(Text)
    issued_by: Mapped[str | None] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    # M1, from the decision's trace, for reporting (issue #6; NULL before migration 0008: "unknown"):
    #: the revenue class (C1…C5) that set the class cap
    revenue_class: Mapped[str | None] = mapped_column(Text)
    #: the compute base and the parts of it paid to district compute (including compute that is
    #: both district and domestic) and to domestic-only compute; the rest is "other"
    compute_base_fen: Mapped[int | None] = mapped_column(BigInteger)
    compute_district_fen: Mapped[int | None] = mapped_column(BigInteger)
    compute_domestic_fen: Mapped[int | None] = mapped_column(BigInteger)


class Allowance(Base):
    """One ceiling: per holder, year and kind (M3.claims, M3.redemptions, M1.class_cap)."""

    __tablename__ = "allowances"
    __table_args__ = (
        UniqueConstraint("holder", "year", "kind"),
        CheckConstraint("used_fen >= 0 AND used_fen <= limit_fen", name="within_limit"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    holder: Mapped[str] = mapped_column(Text, nullable=False)
    year: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    limit_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    used_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    clause: Mapped[str] = mapped_column(Text, nullable=False)
    parameter: Mapped[str | None] = mapped_column(Text)


class Redemption(Base):
    __tablename__ = "redemptions"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="positive"),
        CheckConstraint("status IN ('captured', 'held', 'released', 'expired')", name="status"),
        Index("ix_redemptions_vendor", "vendor", "id"),
        Index("ix_redemptions_held_until", "hold_expires_at", postgresql_where=text("status = 'held'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    voucher_id: Mapped[int] = mapped_column(ForeignKey("vouchers.id"), nullable=False, index=True)
    vendor: Mapped[str] = mapped_column(Text, nullable=False)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    invoice_number: Mapped[str] = mapped_column(Text, nullable=False)
    contract_number: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    year: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    hold_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    settlement_batch_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Idempotency(Base):
    __tablename__ = "idempotency"

    client: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    request_hash: Mapped[str] = mapped_column(Text, nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[Any | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Grant(Base):
    """A disbursement of another measure (M2, M4–M13) from the budget, once per decision."""

    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    decision_id: Mapped[uuid.UUID] = mapped_column(UUID, unique=True, nullable=False)
    measure: Mapped[str] = mapped_column(Text, nullable=False)
    holder: Mapped[str] = mapped_column(Text, nullable=False)
    year: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id"), nullable=False)
    issued_by: Mapped[str | None] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Seal(Base):
    """The hash chain: one row per sealed entry, in seal order, written only by the sealer.

    Entries are sealed in (transaction id, entry id) order, only once every transaction
    older than the oldest one in flight has ended: that set can never grow, so the chain's
    order is final even though sequence order is not commit order.
    """

    __tablename__ = "seals"

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id"), unique=True, nullable=False)
    entry_hash: Mapped[str] = mapped_column(Text, nullable=False)
    chain_hash: Mapped[str] = mapped_column(Text, nullable=False)
    sealed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Checkpoint(Base):
    """A published head of the chain (one per day, signed off by who published it)."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    day: Mapped[date] = mapped_column(Date, unique=True, nullable=False)
    entry_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    chain_hash: Mapped[str] = mapped_column(Text, nullable=False)
    entries: Mapped[int] = mapped_column(BigInteger, nullable=False)
    signed_off_by: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class SettlementBatch(Base):
    """A vendor's captured redemptions, gathered to be paid out (issue #4, settlement).

    Open, then closed once: closing writes the one `settle` entry (receivable → settled) for
    `total_fen`. Triggers (migration 0003) keep a closed batch immutable, refuse DELETE and
    TRUNCATE, and set a redemption's `settlement_batch_id` once, to an open batch of its vendor.
    """

    __tablename__ = "settlement_batches"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'closed')", name="status"),
        CheckConstraint("total_fen > 0 AND redemption_count > 0", name="positive"),
        CheckConstraint(
            "(status = 'open' AND closed_by IS NULL AND closed_at IS NULL AND entry_id IS NULL)"
            " OR (status = 'closed' AND closed_by IS NOT NULL AND closed_at IS NOT NULL AND entry_id IS NOT NULL)",
            name="closed_fields",
        ),
        Index("ix_settlement_batches_vendor", "vendor", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    vendor: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    total_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    redemption_count: Mapped[int] = mapped_column(Integer, nullable=False)
    created_by: Mapped[str] = mapped_column(Text, nullable=False)
    #: the creating client's id (the four-eyes rule on closing compares it); None for batches before migration 0029
    created_by_client: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    closed_by: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: the `settle` entry written when the batch was closed
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("entries.id"), unique=True)


#: a batch's redemptions (only batched rows are indexed: the redemption path never writes here)
Index(
    "ix_redemptions_settlement_batch",
    Redemption.settlement_batch_id,
    Redemption.id,
    postgresql_where=Redemption.settlement_batch_id.isnot(None),
)


class BudgetReservation(Base):
    """A2: the budget an approval reserved for its decision, until issuance consumes it or it is released.

    One row per approval attempt (its id is recorded with the approval); a decision has at most
    one live reservation (reserved or consumed). States move one way (reserved → consumed |
    released): a trigger holds it (vouchers migration 0011).
    """

    __tablename__ = "budget_reservations"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True)
    decision_id: Mapped[uuid.UUID] = mapped_column(UUID, nullable=False)
    measure: Mapped[str] = mapped_column(Text, nullable=False)
    year: Mapped[int] = mapped_column(Integer, nullable=False)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False)
    reserved_by: Mapped[str] = mapped_column(Text, nullable=False)
    reserved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    request_id: Mapped[str | None] = mapped_column(Text)
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    settled_by: Mapped[str | None] = mapped_column(Text)
    settled_reason: Mapped[str | None] = mapped_column(Text)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
