"""Vouchers settings: environment variables prefixed `VOUCHERS_` (DATABASE_URL as fallback)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import PostgresDsn
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, database_url_field


class VouchersSettings(ServiceSettings):
    service_name: ClassVar[str] = "vouchers"
    model_config = SettingsConfigDict(env_prefix="VOUCHERS_", extra="ignore", frozen=True)

    database_url: PostgresDsn = database_url_field("VOUCHERS_")
    port: int = 8003
