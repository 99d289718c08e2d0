"""Eligibility settings: environment variables prefixed `ELIGIBILITY_` (DATABASE_URL as fallback)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import PostgresDsn
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, database_url_field


class EligibilitySettings(ServiceSettings):
    service_name: ClassVar[str] = "eligibility"
    model_config = SettingsConfigDict(env_prefix="ELIGIBILITY_", extra="ignore", frozen=True)

    database_url: PostgresDsn = database_url_field("ELIGIBILITY_")
    port: int = 8002
