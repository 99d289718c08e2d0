"""The chain's payloads."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from ..schemas import Input
from .hashing import CANONICAL_VERSION, Mismatch


class ChainHead(BaseModel):
    seq: int
    entry_id: int
    chain_hash: str


class SignedCheckpointRead(BaseModel):
    line: int = Field(description="Its line in the sink")
    day: date
    entry_id: int
    chain_hash: str
    entries: int
    kid: str = Field(description="The key that signed it (/.well-known/ledger-checkpoint-keys.json)")


class ExternalCheckpoints(BaseModel):
    """The signed checkpoints kept outside the database (VOUCHERS_CHECKPOINT_SINK)."""

    sink_configured: bool
    lines: int = Field(description="Lines in the sink")
    verified: int = Field(description="Lines whose signature verified; each was compared with the chain")
    latest: SignedCheckpointRead | None = Field(description="The furthest signed head")
    problems: list[str] = Field(description="Lines whose signature does not verify (any makes `ok` false)")


class VerifyReport(BaseModel):
    ok: bool
    entries_verified: int = Field(description="Entries whose seal and chain link were recomputed and matched")
    head: ChainHead | None = Field(description="The last seal when verification started")
    unsealed: int = Field(description="Entries not (yet) in the chain after sealing")
    first_mismatch: Mismatch | None
    sealed_now: int = Field(description="Entries this verification sealed first")
    external: ExternalCheckpoints = Field(description="The signed checkpoints outside the database, checked too")
    canonical: str = CANONICAL_VERSION


class SealerStatus(BaseModel):
    enabled: bool
    interval_seconds: float
    runs: int
    sealed_total: int
    last_sealed: int
    last_run_at: datetime | None
    watermark: int | None = Field(description="Every committed entry of a transaction below this id is sealed")
    last_error: str | None


class SealLagRead(BaseModel):
    unsealed: int
    oldest_unsealed_at: datetime | None
    lag_seconds: float = Field(description="Age of the oldest entry without a seal (0 when none)")
    sealer: SealerStatus | None


class CheckpointRequest(Input):
    """The auditor who signs the checkpoint off is the caller (its token)."""

    day: date | None = Field(default=None, description="Default: today in Asia/Shanghai")


class CheckpointRead(BaseModel):
    id: int
    day: date
    entry_id: int
    chain_hash: str
    entries: int
    signed_off_by: str
    created_at: datetime


class PublishedCheckpoint(CheckpointRead):
    kid: str = Field(description="The key that signed it (/.well-known/ledger-checkpoint-keys.json)")
    signature: str = Field(description="Compact JWS (EdDSA) of the checkpoint: what the sink and the event carry")
