"""Registry settings: environment variables prefixed `REGISTRY_` (DATABASE_URL as fallback)."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, PostgresDsn, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, database_url_field


class RegistrySettings(ServiceSettings):
    service_name: ClassVar[str] = "registry"
    model_config = SettingsConfigDict(env_prefix="REGISTRY_", extra="ignore", frozen=True)

    database_url: PostgresDsn = database_url_field("REGISTRY_")
    port: int = 8001
    # the token endpoint (services/registry/token_endpoint.py); unset: this registry issues no tokens
    signing_keys_dir: str = Field(default="", description="Directory of Ed25519 signing keys (<kid>.pem)")
    signing_kid: str | None = Field(default=None, description="The key that signs (default: the newest file)")
    token_lifetime_seconds: int = Field(default=600, ge=60, le=3600)
    token_endpoint_url: str = Field(
        default="",
        max_length=500,
        description="The token endpoint's public URL, the `aud` a private_key_jwt assertion names "
        "(default: the URL the request reached, which a proxy in front may change)",
    )

    @model_validator(mode="after")
    def _tokens_outlive_no_verifier(self) -> Self:
        """Tokens the services would refuse as too long-lived (AUTH_MAX_TOKEN_LIFETIME_SECONDS) are not issued."""
        if self.token_lifetime_seconds > self.auth_max_token_lifetime_seconds:
            raise ValueError(
                f"REGISTRY_TOKEN_LIFETIME_SECONDS ({self.token_lifetime_seconds}) is above "
                f"AUTH_MAX_TOKEN_LIFETIME_SECONDS ({self.auth_max_token_lifetime_seconds}): "
                "the services would refuse every token issued"
            )
        return self
