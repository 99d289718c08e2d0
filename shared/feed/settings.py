"""`WEBHOOK_*` settings of the dispatcher and the subscription endpoints."""

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.feed.secretbox import SecretBox


class WebhookSettings(BaseSettings):
    """`WEBHOOK_*` environment variables, the same for the three services."""

    model_config = SettingsConfigDict(env_prefix="WEBHOOK_", extra="ignore", frozen=True, hide_input_in_errors=True)

    backoff_base_seconds: float = Field(default=5.0, gt=0, description="First retry after about this long")
    backoff_cap_seconds: float = Field(default=600.0, gt=0, description="Retries at least this often")
    retry_for_seconds: float = Field(
        default=24 * 3600, ge=0, description="How long an event is retried before the subscription is suspended"
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=120, description="Per delivery (connect to last byte)")
    poll_seconds: float = Field(default=1.0, ge=0, description="How often the dispatcher looks for work (0: off)")
    concurrency: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Subscriptions served at once per process, each in its own task (a slow receiver holds one)",
    )
    batch: int = Field(default=100, ge=1, le=1000, description="Events sent to one subscription per claim")
    max_per_client: int = Field(default=25, ge=1, description="Subscriptions a client may have (not deactivated)")
    allow_private_networks: bool = Field(
        default=False,
        description="Deliver to loopback, private and link-local addresses too (local development and tests only: "
        "otherwise a subscriber could make the service call its internal network)",
    )
    retention_days: int = Field(
        default=90,
        ge=0,
        description="Events and delivery-log rows are kept this long (at least 1; 0: forever); an event is "
        "deleted only once every subscription not deactivated has passed it",
    )
    retention_interval_seconds: float = Field(default=3600.0, ge=0, description="How often retention runs (0: off)")
    retention_batch: int = Field(default=1000, ge=1, le=10000, description="Rows deleted per short transaction")
    secret_key: SecretStr = Field(
        default=SecretStr(""),
        description="Encrypts webhook secrets at rest (AES-256-GCM): 32 bytes in base64 "
        "(python -m shared.feed.secretbox generate); required, a service refuses to start without it",
    )
    secret_old_keys: SecretStr = Field(
        default=SecretStr(""),
        description="Earlier keys, comma-separated: they only decrypt (rotation; re-encrypted at start-up)",
    )

    def secret_box(self) -> SecretBox:
        """The keys as a SecretBox; raises SecretKeyError when `WEBHOOK_SECRET_KEY` is unset or malformed."""
        return SecretBox(self.secret_key.get_secret_value(), self.secret_old_keys.get_secret_value())
