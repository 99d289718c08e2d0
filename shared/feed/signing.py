"""Signatures, delivery envelopes and retry backoff (pure functions)."""

import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any, Protocol

SIGNATURE_HEADER = "Longgang-Signature"
EVENT_ID_HEADER = "Longgang-Event-Id"
DEFAULT_TOLERANCE_SECONDS = 300


class Fields(Protocol):
    """A row's fields by name: a mapping, or an asyncpg Record (the dispatcher's rows)."""

    def __getitem__(self, name: str, /) -> Any: ...


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `"<timestamp>.<body>"` under the subscription's secret."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


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
    return "whsec_" + secrets.token_urlsafe(32)


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
