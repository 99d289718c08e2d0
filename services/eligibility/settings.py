"""Eligibility settings: environment variables prefixed `ELIGIBILITY_` (DATABASE_URL as fallback)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, PostgresDsn
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, database_url_field, peer_url_field

from .parameters import DEFAULT_FILE
from .priority import DEFAULT_RUBRIC


class EligibilitySettings(ServiceSettings):
    service_name: ClassVar[str] = "eligibility"
    model_config = SettingsConfigDict(env_prefix="ELIGIBILITY_", extra="ignore", frozen=True)

    database_url: PostgresDsn = database_url_field("ELIGIBILITY_")
    port: int = 8002
    registry_url: str = peer_url_field("ELIGIBILITY_", "REGISTRY", "http://127.0.0.1:8001")
    #: A2: approvals reserve the programme budget in the vouchers service before they commit
    vouchers_url: str = peer_url_field("ELIGIBILITY_", "VOUCHERS", "http://127.0.0.1:8003")
    facts_batch: bool = Field(
        default=True,
        description="Submissions that need the registry's facts while a call to it is in flight go together in the "
        "next call (POST /v1/facts/batch; issue #16); off: one call per submission",
    )
    facts_max_batch: int = Field(default=16, ge=2, le=64, description="Most submissions' questions in one call")
    facts_in_flight: int = Field(
        default=2,
        ge=1,
        le=8,
        description="Facts calls to the registry in flight at once; questions arriving while all are busy wait and "
        "go together in the next (issue #16: 2 measured best; each call takes ~15 ms under load)",
    )
    policy_file: Path = Field(default=DEFAULT_FILE, description="The dated parameter file (YAML)")
    priority_file: Path = Field(default=DEFAULT_RUBRIC, description="The review-queue priority rubric (YAML)")
