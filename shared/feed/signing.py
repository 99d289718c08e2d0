"""Signatures, delivery envelopes and retry backoff (pure functions).

Deliveries are signed per the Standard Webhooks specification (https://www.standardwebhooks.com/):
`webhook-id` (the event id, the same on every retry), `webhook-timestamp` (unix seconds of this
attempt) and `webhook-signature`, `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>` (one
per valid secret, space-separated). The key of a `whsec_<base64>` secret is its decoded bytes; a
secret issued before (`whsec_` and 43 URL-safe characters, which is not padded base64) keys with
its UTF-8 bytes, as the house signature always did (`signing_key`). The house header
`Longgang-Signature` is deprecated: sent alongside until release 0.3.0 (docs/webhooks.md).
"""

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

SIGNATURE_HEADER = "Longgang-Signature"  # deprecated: removed in release 0.3.0
EVENT_ID_HEADER = "Longgang-Event-Id"
WEBHOOK_ID_HEADER = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
DEFAULT_TOLERANCE_SECONDS = 300


class Fields(Protocol):
    """A row's fields by name: a mapping, or an asyncpg Record (the dispatcher's rows)."""

    def __getitem__(self, name: str, /) -> Any: ...


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `"<timestamp>.<body>"` under the subscription's secret."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secrets_: Sequence[str], timestamp: int, body: bytes) -> str:
    """`t=<timestamp>,v1=<hex>` with one `v1` per secret (during a rotation: the new secret's, then the replaced
    one's); `verify_signature` accepts the header if any `v1` matches."""
    return f"t={timestamp}," + ",".join(f"v1={sign(secret, timestamp, body)}" for secret in secrets_)


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True if `header` signs `body` with `secret` and its timestamp is within the tolerance."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


def backoff_delay(attempt: int, base: float, cap: float, fraction: float) -> float:
    """Seconds to wait after the `attempt`-th failure in a row: exponential, capped, jittered.

    The ceiling is `min(cap, base · 2^(attempt-1))`; the delay is between half of it and
    all of it (`fraction` in [0, 1) picks where), so retries of many subscriptions spread out.
    """
    ceiling = min(cap, base * 2.0 ** min(max(attempt, 1) - 1, 60))
    return ceiling / 2 + ceiling / 2 * min(max(fraction, 0.0), 1.0)


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and the standard (padded) base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def signing_key(secret: str) -> bytes:
    """The HMAC key of the Standard Webhooks signature for a subscription's secret.

    `whsec_<standard padded base64>` (every secret issued since release 0.2.0): the decoded bytes,
    as the Standard Webhooks libraries derive it. Anything else — the secrets issued before,
    `whsec_` and `secrets.token_urlsafe(32)` (43 characters, never valid padded base64) — keys with
    the secret's UTF-8 bytes, the key the house signature used: such a receiver passes
    `secret.encode()` (bytes) to its library instead of the string.
    """
    if secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX) :]
        if encoded and len(encoded) % 4 == 0:
            try:
                return base64.b64decode(encoded, validate=True)
            except binascii.Error:
                pass
    return secret.encode("utf-8")


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` under the secret's key (Standard Webhooks)."""
    message = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def standard_headers(secrets_: Sequence[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` and `webhook-signature` (one signature per secret, space-separated)."""
    return {
        WEBHOOK_ID_HEADER: message_id,
        WEBHOOK_TIMESTAMP_HEADER: str(timestamp),
        WEBHOOK_SIGNATURE_HEADER: " ".join(standard_signature(s, message_id, timestamp, body) for s in secrets_),
    }


def event_id(schema: str, row_id: int) -> str:
    """Event ids are unique across the three services: `vouchers-42`."""
    return f"{schema}-{row_id}"


def envelope(schema: str, row: Fields) -> bytes:
    """The body of a delivery: `{id, type, occurred_at, subject, data}` as compact UTF-8 JSON."""
    payload = row["payload"]
    data = json.loads(payload) if isinstance(payload, str) else payload
    occurred: datetime = row["occurred_at"]
    document = {
        "id": event_id(schema, int(row["id"])),
        "type": row["type"],
        "occurred_at": occurred.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "subject": row["subject"],
        "data": data,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
