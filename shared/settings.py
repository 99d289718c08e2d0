"""Settings from the environment, one prefix per service (REGISTRY_, ELIGIBILITY_, VOUCHERS_).

Secrets have no defaults: a service without a database URL refuses to start. The bare
`DATABASE_URL` is accepted as a fallback so one variable can serve a whole local stack.

Secrets never appear in errors or logs (issue #12): a settings error names the variables that
are wrong, never a value (`hide_input_in_errors`: pydantic would otherwise print every variable
it read, `<PREFIX>CLIENT_SECRET` included, in one "missing field" message); the client secret is a
`SecretStr` (`**********` in any repr), and the database URLs, which carry a password, are left
out of the settings' repr.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

from pydantic import AliasChoices, Field, PostgresDsn, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The longest token lifetime the verifier accepts by default: the longest the registry's token
#: endpoint may be configured to issue (REGISTRY_TOKEN_LIFETIME_SECONDS ≤ 3600). Clock skew is the
#: leeway's business (AUTH_LEEWAY_SECONDS), added where `now` is compared.
MAX_TOKEN_LIFETIME_SECONDS = 3600


def database_url_field(prefix: str) -> Any:
    """`<PREFIX>DATABASE_URL`, or the shared `DATABASE_URL` when that is unset."""
    return Field(validation_alias=AliasChoices(f"{prefix}DATABASE_URL", "DATABASE_URL"), repr=False)


def peer_url_field(prefix: str, peer: str, default: str) -> Any:
    """`<PREFIX><PEER>_URL`, or the shared `<PEER>_URL` that `make run` sets."""
    return Field(
        default=default,
        validation_alias=AliasChoices(f"{prefix}{peer}_URL", f"{peer}_URL"),
        description=f"Where the {peer.lower()} service answers",
    )


class ServiceSettings(BaseSettings):
    """What every service needs; subclasses set the prefix and add their own."""

    service_name: ClassVar[str] = "service"
    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True, hide_input_in_errors=True)

    database_url: PostgresDsn = Field(repr=False)
    read_database_url: PostgresDsn | None = Field(
        default=None,
        repr=False,
        description="A read-only replica for exports and dashboards (<PREFIX>READ_DATABASE_URL); default: the primary",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    access_log: Literal["all", "errors_and_slow"] = Field(
        default="all", description="Log every request, or only 4xx/5xx and slow ones"
    )
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_statement_timeout_ms: int = Field(default=30_000, ge=100)
    db_pool_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Wait for a free connection this long, then answer 503 service_busy"
    )
    peer_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    peer_http_client: Literal["aiohttp", "httpcore"] = Field(
        default="aiohttp",
        description="What carries the httpx peer clients' requests: aiohttp's pool (faster) or httpx's own "
        "(shared/peer_transport.py)",
    )
    db_pooler: Literal["none", "session", "transaction"] = Field(
        default="none",
        description="PgBouncer's pool_mode between the service and its database (none: direct; shared/dbconnect.py)",
    )

    # authentication (shared/auth.py): the same for every service, hence no prefix
    auth_jwks: str = Field(
        default="",
        validation_alias="AUTH_JWKS",
        description="Public keys that sign access tokens: a JWKS file path or inline JSON (required)",
    )
    auth_issuer: str = Field(default="longgang-ai-identity", validation_alias="AUTH_ISSUER")
    auth_audience: str = Field(default="longgang-ai", validation_alias="AUTH_AUDIENCE")
    auth_leeway_seconds: int = Field(default=30, ge=0, le=300, validation_alias="AUTH_LEEWAY_SECONDS")
    auth_max_token_lifetime_seconds: int = Field(
        default=MAX_TOKEN_LIFETIME_SECONDS,
        ge=60,
        le=24 * 3600,
        validation_alias="AUTH_MAX_TOKEN_LIFETIME_SECONDS",
        description="Tokens that live longer (exp − iat, or exp − now beyond the leeway) are refused",
    )
    auth_token_url: str = Field(
        default="", validation_alias="AUTH_TOKEN_URL", description="Where this service gets its own tokens"
    )
    # this service's own client identity when it calls peers (<PREFIX>CLIENT_ID / _SECRET)
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    auth_clients_file: str = Field(
        default="", validation_alias="AUTH_CLIENTS_FILE", description="JSON file of client secrets (local stacks)"
    )
    # bulk exports (shared/exports/)
    export_max_concurrent: int = Field(default=4, ge=1, le=64, description="Exports streaming at once, per process")
    export_timeout_seconds: int = Field(default=3600, ge=10, description="Longest one export may run")
    # rate limits per client and route class, shared by the service's processes (shared/ratelimit.py; 0: off)
    rate_limit_per_second: float = Field(default=200.0, ge=0, description="Vendor writes (redemptions, holds…)")
    rate_limit_burst: int = Field(default=400, ge=1)
    rate_limit_read_per_second: float = Field(default=100.0, ge=0, description="Vendor reads (statements…)")
    rate_limit_read_burst: int = Field(default=200, ge=1)
    rate_limit_applicant_per_second: float = Field(default=50.0, ge=0)
    rate_limit_applicant_burst: int = Field(default=100, ge=1)
    rate_limit_platform_per_second: float = Field(default=50.0, ge=0, description="Imports, exports, change feed")
    rate_limit_platform_burst: int = Field(default=100, ge=1)
    rate_limit_bureau_per_second: float = Field(
        default=500.0, ge=0, description="Officers, approvers, administrators, auditors, dashboards"
    )
    rate_limit_bureau_burst: int = Field(default=1000, ge=1)
    rate_limit_max_in_flight: int = Field(
        default=16,
        ge=0,
        description="Requests one vendor (reads), applicant or platform client may have at once (0: any)",
    )
    rate_limit_write_max_in_flight: int = Field(
        default=64, ge=0, description="Vendor writes one client may have at once (redemptions use their own pool)"
    )
    rate_limit_bureau_max_in_flight: int = Field(default=64, ge=0)
    rate_limit_sync_seconds: float = Field(
        default=0.2, ge=0, le=10, description="How often processes share their counts (0: each process alone)"
    )

    # where the stack runs, and test clocks (issue #15; docs/sandbox.md): the same for every service, no prefix
    deployment_environment: Literal["development", "test", "staging", "production"] = Field(
        default="development",
        validation_alias="DEPLOYMENT_ENVIRONMENT",
        description="Where this stack runs; deploy/k8s says production (sandbox mode is refused there)",
    )
    sandbox_mode: bool = Field(
        default=False,
        validation_alias="SANDBOX_MODE",
        description="Test clocks (docs/sandbox.md): the registry serves /v1/test-clocks, and the time of an "
        "enterprise bound to a clock is that clock's. Never in production: refused at start-up",
    )

    @model_validator(mode="after")
    def _no_sandbox_in_production(self) -> Self:
        """Test clocks move time: a production stack refuses to start with them (shared/testclocks.py)."""
        if self.sandbox_mode and self.deployment_environment == "production":
            raise ValueError(
                "SANDBOX_MODE is on with DEPLOYMENT_ENVIRONMENT=production: test clocks are refused in production"
            )
        return self

    @field_validator("database_url", "read_database_url", mode="before")
    @classmethod
    def _normalise_scheme(cls, value: object) -> object:
        """Accept postgres:// and postgresql:// as well as the asyncpg form."""
        if isinstance(value, str):
            for prefix in ("postgres://", "postgresql://"):
                if value.startswith(prefix):
                    return "postgresql+asyncpg://" + value[len(prefix) :]
        return value

    @property
    def async_database_url(self) -> str:
        return str(self.database_url)

    @property
    def async_read_database_url(self) -> str:
        """Where bulk reads go: the replica when one is configured (they tolerate its small lag)."""
        return str(self.read_database_url or self.database_url)
