"""Vouchers settings: environment variables prefixed `VOUCHERS_` (DATABASE_URL as fallback)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, PostgresDsn, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, database_url_field, peer_url_field

from .policy.budgets import DEFAULT_FILE as BUDGET_FILE


class VouchersSettings(ServiceSettings):
    service_name: ClassVar[str] = "vouchers"
    model_config = SettingsConfigDict(env_prefix="VOUCHERS_", extra="ignore", frozen=True)

    database_url: PostgresDsn = database_url_field("VOUCHERS_")
    port: int = 8003
    # vendors' redemptions are the hot path: successes are counted (ledger, metrics), not logged
    access_log: Literal["all", "errors_and_slow"] = "errors_and_slow"
    eligibility_url: str = peer_url_field("VOUCHERS_", "ELIGIBILITY", "http://127.0.0.1:8002")
    registry_url: str = peer_url_field("VOUCHERS_", "REGISTRY", "http://127.0.0.1:8001")
    db_role: str = Field(
        default="",
        description="A role to switch to by startup parameter (empty: none; the login itself is the "
        "least-privileged role, `vouchers_app`: docs/security.md)",
    )
    hot_pool_size: int = Field(
        default=10, ge=1, le=200, description="Connections of the redemption path (about 5 per core is best)"
    )
    group_commit: bool = Field(
        default=True,
        description="Vendor calls that wait for a busy ledger go to PostgreSQL as one batch (issue #16); "
        "off: one transaction per call",
    )
    fast_path: bool = Field(
        default=True,
        description="Vendors' redemptions go from the request guard straight to their route, past the routing "
        "layers (issue #16; the same answers); off: routed like every other request",
    )
    group_commit_in_flight: int = Field(
        default=1,
        ge=1,
        le=200,
        description="Lanes of ledger calls one process runs: a call goes to its voucher holder's lane, one call or "
        "batch in flight per lane (on 2 cores one lane per process does best: docs/benchmarks.md)",
    )
    group_commit_max_batch: int = Field(default=64, ge=2, le=1000, description="Most vendor calls in one batch")
    group_commit_defer: bool = Field(
        default=False,
        description="A batch skips the rows another transaction (another process's batch) holds and sends the "
        "calls that need them in its lane's next batch, instead of waiting for that transaction's commit (off: "
        "two processes measured in rounds ran 0.97 of one process's rate with it off, 0.80 with it on; issue #16)",
    )
    hold_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600, description="Default lifetime of a hold")
    hold_max_seconds: int = Field(
        default=24 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description="Longest hold a vendor may ask for (longer: 422 hold_too_long); issue #12, finding 7",
    )

    @model_validator(mode="after")
    def _no_role_switch_behind_a_pooler(self) -> VouchersSettings:
        if self.db_role and self.db_pooler != "none":
            raise ValueError("VOUCHERS_DB_ROLE must be empty behind PgBouncer (VOUCHERS_DB_POOLER): it refuses `role`")
        return self

    @model_validator(mode="after")
    def _default_hold_within_maximum(self) -> VouchersSettings:
        if self.hold_seconds > self.hold_max_seconds:
            raise ValueError("VOUCHERS_HOLD_SECONDS must not exceed VOUCHERS_HOLD_MAX_SECONDS")
        return self

    vendor_check_ttl_seconds: float = Field(
        default=60.0, ge=0, description="How long a compute vendor's registry check is reused"
    )
    reservation_grace_seconds: float = Field(
        default=120.0,
        ge=0,
        description="A2: how old an unconfirmed budget reservation must be before the reconciler asks eligibility "
        "whether an approval recorded it (longer than any approval takes)",
    )
    reservation_reconcile_seconds: float = Field(
        default=60.0, ge=0, le=3600, description="How often the budget-reservation reconciler runs (0: never)"
    )
    sealer_interval_seconds: float = Field(
        default=0.5, ge=0, le=3600, description="How often the background sealer hashes new entries (0: never)"
    )
    # checkpoints anchored outside the database (issue #12, finding 3; services/vouchers/chain/anchor.py)
    checkpoint_keys_dir: Path | None = Field(
        default=None,
        description="Ed25519 keys (<kid>.pem) that sign ledger checkpoints; the newest signs. Unset: no checkpoints",
    )
    checkpoint_sink: Path | None = Field(
        default=None,
        description="Append-only file (one signed JSON line per checkpoint, fsynced) outside the database's reach",
    )
    # the read side (issue #6): projections, reconciliation, budgets
    projector_interval_seconds: float = Field(
        default=0.5, ge=0, le=3600, description="How often new entries are folded into the projections (0: never)"
    )
    projector_batch_size: int = Field(default=20_000, ge=1, le=1_000_000, description="Entries per projector batch")
    reconciliation_interval_seconds: float = Field(
        default=3600, ge=0, description="How often the projections are checked against the ledger (0: never)"
    )
    budget_file: Path = Field(default=BUDGET_FILE, description="Budgets per measure and year (clause A2)")
