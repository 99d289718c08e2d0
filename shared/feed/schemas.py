"""The change feed's and the webhook endpoints' payloads, and how a row becomes one."""

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.feed.signing import event_id
from shared.pagination import encode_cursor

SubscriptionStatus = Literal["active", "suspended", "deactivated"]


class EventRead(BaseModel):
    id: str = Field(description="Unique across the three services, e.g. `vouchers-42`")
    type: str
    occurred_at: datetime
    subject: str = Field(description="What changed: a voucher code, an application id, a registry key")
    organisation: str | None = Field(description="The organisation (credit code) the event is about")
    vendor: str | None = Field(description="The vendor (credit code) the event is about")
    data: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventRead]
    next_cursor: str = Field(description="Pass as `after` to continue; stays put while nothing new has committed")
    has_more: bool = Field(description="True if the next page is already waiting")


class EventType(BaseModel):
    type: str
    description: str


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: str = Field(max_length=2000, description="http(s) URL that receives a POST per event")
    event_types: list[Annotated[str, Field(min_length=3, max_length=100)]] = Field(
        default_factory=list,
        max_length=50,
        description="Types (or prefixes ending in `.*`); empty: every type of this service",
    )
    description: str | None = Field(default=None, max_length=200)
    after: str | None = Field(
        default=None,
        max_length=512,
        description="Start after this change-feed cursor, or `beginning`; default: events from now on",
    )


class ObjectFilter(BaseModel):
    all_objects: bool = Field(description="Bureau clients: events about every organisation")
    vendor: str | None = Field(description="Vendor clients: events whose vendor is this one")
    organisation: str | None = Field(description="Applicant clients: events about this organisation")


class WebhookRead(BaseModel):
    id: int
    url: str
    description: str | None
    event_types: list[str]
    status: SubscriptionStatus
    client_id: str
    created_by: str
    filter: ObjectFilter
    delivered_up_to: str = Field(description="Change-feed cursor of the last event passed (delivered or filtered)")
    next_attempt_at: datetime
    attempts: int = Field(description="Failed attempts in a row at the current event")
    failing_since: datetime | None
    last_error: str | None
    suspended_at: datetime | None
    deactivated_at: datetime | None
    created_at: datetime
    secret_rotated_at: datetime | None = Field(description="When the signing secret was last rotated")
    previous_secret_valid_until: datetime | None = Field(
        description="Until then the secret the last rotation replaced signs each delivery too (a second signature)"
    )


class WebhookCreated(WebhookRead):
    secret: str = Field(
        description="Signs every delivery (Standard Webhooks `webhook-signature`, `whsec_<base64>`); shown only here"
    )


#: how long a replaced secret keeps signing by default (one day), and at most (seven)
PREVIOUS_SECRET_DEFAULT_SECONDS = 86_400
PREVIOUS_SECRET_MAX_SECONDS = 7 * 86_400


class WebhookSecretRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: int = Field(
        default=PREVIOUS_SECRET_DEFAULT_SECONDS,
        ge=0,
        le=PREVIOUS_SECRET_MAX_SECONDS,
        description="How long the replaced secret keeps signing each delivery beside the new one, so receivers can "
        "switch without refusing a delivery (0: it stops at once); default one day, at most seven",
    )


class WebhookSecretRotated(WebhookRead):
    secret: str = Field(
        description="The new signing secret (`whsec_<base64>`); shown only here, and to a retry of this rotation with "
        "the same Idempotency-Key"
    )


class WebhookPage(BaseModel):
    items: list[WebhookRead]
    next_cursor: str | None


class DeliveryRead(BaseModel):
    id: int
    subscription_id: int
    event_id: str
    event_type: str
    attempt: int
    manual: bool
    delivered: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    at: datetime


class DeliveryPage(BaseModel):
    items: list[DeliveryRead] = Field(description="Newest first")
    next_cursor: str | None


SUBSCRIPTION_COLUMNS = (
    "id, client_id, created_by, url, description, event_types, all_objects, vendor, organisation, status, "
    "cursor_txid::text::bigint AS cursor_txid, cursor_id, next_attempt_at, attempts, failing_since, last_error, "
    "suspended_at, deactivated_at, created_at, secret_rotated_at, previous_secret_valid_until"
)
DELIVERY_COLUMNS = (
    "id, subscription_id, event_id, event_type, attempt, manual, delivered, status_code, error, duration_ms, at"
)
EVENT_COLUMNS = "id, txid::text::bigint AS txid, occurred_at, type, subject, organisation, vendor, payload"


def feed_listing(service: str) -> str:
    return f"{service}-events"


def feed_cursor(service: str, position: tuple[int, int]) -> str:
    return encode_cursor(feed_listing(service), list(position))


def event_read(service: str, row: Mapping[str, Any]) -> EventRead:
    payload = row["payload"]
    return EventRead(
        id=event_id(service, int(row["id"])),
        type=row["type"],
        occurred_at=row["occurred_at"],
        subject=row["subject"],
        organisation=row["organisation"],
        vendor=row["vendor"],
        data=json.loads(payload) if isinstance(payload, str) else dict(payload),
    )


def webhook_read(service: str, row: Mapping[str, Any]) -> WebhookRead:
    return WebhookRead(
        id=row["id"],
        url=row["url"],
        description=row["description"],
        event_types=list(row["event_types"] or []),
        status=row["status"],
        client_id=row["client_id"],
        created_by=row["created_by"],
        filter=ObjectFilter(all_objects=row["all_objects"], vendor=row["vendor"], organisation=row["organisation"]),
        delivered_up_to=feed_cursor(service, (int(row["cursor_txid"]), int(row["cursor_id"]))),
        next_attempt_at=row["next_attempt_at"],
        attempts=row["attempts"],
        failing_since=row["failing_since"],
        last_error=row["last_error"],
        suspended_at=row["suspended_at"],
        deactivated_at=row["deactivated_at"],
        created_at=row["created_at"],
        secret_rotated_at=row["secret_rotated_at"],
        previous_secret_valid_until=row["previous_secret_valid_until"],
    )


def delivery_read(service: str, row: Mapping[str, Any]) -> DeliveryRead:
    return DeliveryRead(**{**dict(row), "event_id": event_id(service, int(row["event_id"]))})
