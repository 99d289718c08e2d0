"""`WEBHOOK_*` settings of the dispatcher and the subscription endpoints."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebhookSettings(BaseSettings):
    """`WEBHOOK_*` environment variables, the same for the three services."""

    model_config = SettingsConfigDict(env_prefix="WEBHOOK_", extra="ignore", frozen=True)

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
