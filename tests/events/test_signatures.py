"""Pure parts: signing and verifying deliveries, the backoff schedule, the envelope, type filters."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.feed.catalogue import type_matches
from shared.feed.dispatcher import subscription_matches
from shared.feed.signing import (
    backoff_delay,
    envelope,
    new_secret,
    sign,
    signature_header,
    standard_headers,
    verify_signature,
)

SECRET = "whsec_test-secret"
BODY = b'{"id":"vouchers-7","type":"vouchers.voucher.redeemed","data":{"amount_fen":100}}'
NOW = 1_790_000_000


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == expected
    assert signature_header([SECRET], NOW, BODY) == f"t={NOW},v1={expected}"


def test_a_good_signature_verifies() -> None:
    header = signature_header([SECRET], NOW, BODY)
    assert verify_signature(SECRET, header, BODY, now=NOW)
    assert verify_signature(SECRET, header, BODY, now=NOW + 299)
    # a receiver rotating secrets may be sent several v1 values: one match is enough
    assert verify_signature(SECRET, f"t={NOW},v1={'0' * 64},v1={sign(SECRET, NOW, BODY)}", BODY, now=NOW)


@pytest.mark.parametrize(
    ("secret", "header", "body", "now"),
    [
        ("whsec_other", signature_header([SECRET], NOW, BODY), BODY, NOW),  # another secret
        (SECRET, signature_header([SECRET], NOW, BODY), BODY.replace(b"100", b"900"), NOW),  # body changed
        (SECRET, signature_header([SECRET], NOW, BODY), BODY, NOW + 301),  # too old: a replay
        (SECRET, signature_header([SECRET], NOW, BODY), BODY, NOW - 301),  # from the future
        (SECRET, signature_header([SECRET], NOW, BODY).replace(f"t={NOW}", f"t={NOW + 1}"), BODY, NOW),  # t changed
        (SECRET, f"v1={sign(SECRET, NOW, BODY)}", BODY, NOW),  # no timestamp
        (SECRET, f"t={NOW}", BODY, NOW),  # no signature
        (SECRET, f"t=soon,v1={sign(SECRET, NOW, BODY)}", BODY, NOW),  # malformed
        (SECRET, "", BODY, NOW),
    ],
)
def test_a_bad_or_old_signature_does_not(secret: str, header: str, body: bytes, now: int) -> None:
    assert not verify_signature(secret, header, body, now=now)


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    base, cap = 5.0, 600.0
    ceilings = [backoff_delay(attempt, base, cap, 1.0) for attempt in range(1, 12)]
    assert ceilings[:8] == [5, 10, 20, 40, 80, 160, 320, 600]
    assert all(value == cap for value in ceilings[7:])
    for attempt in range(1, 40):
        low, high = backoff_delay(attempt, base, cap, 0.0), backoff_delay(attempt, base, cap, 1.0)
        assert low == high / 2, "jitter spreads retries between half the delay and all of it"
        assert low <= backoff_delay(attempt, base, cap, 0.37) <= high
    assert backoff_delay(10_000, base, cap, 0.5) <= cap  # no overflow however long it fails
    assert backoff_delay(0, base, cap, 1.0) == base


def test_a_day_of_retries_at_the_default_schedule() -> None:
    """With the defaults (5 s, capped at 10 min) a day of failures is ~150 attempts, never a gap over 10 min."""
    elapsed, attempts = 0.0, 0
    while elapsed < 24 * 3600:
        attempts += 1
        elapsed += backoff_delay(attempts, 5.0, 600.0, 1.0)
    assert 140 <= attempts <= 160
    assert sum(backoff_delay(a, 0.05, 0.5, 1.0) for a in range(1, 6)) < 2  # the tests' schedule is quick


def test_the_envelope_is_compact_json_with_a_global_id() -> None:
    row = {
        "id": 42,
        "type": "vouchers.voucher.redeemed",
        "occurred_at": datetime(2026, 11, 27, 2, 45, 5, 953712, tzinfo=UTC),
        "subject": "M3-ABCDE",
        "payload": '{"amount_fen": 100, "note": "兑付"}',
    }
    body = envelope("vouchers", row)
    assert json.loads(body) == {
        "id": "vouchers-42",
        "type": "vouchers.voucher.redeemed",
        "occurred_at": "2026-11-27T02:45:05.953712Z",
        "subject": "M3-ABCDE",
        "data": {"amount_fen": 100, "note": "兑付"},
    }
    assert b" " not in body
    assert "兑付".encode() in body


def test_type_and_object_filters() -> None:
    assert type_matches([], "vouchers.hold.expired")
    assert type_matches(["vouchers.hold.*"], "vouchers.hold.expired")
    assert not type_matches(["vouchers.hold.*"], "vouchers.holder.x")
    assert not type_matches(["vouchers.voucher.redeemed"], "vouchers.voucher.redeemed_twice")
    vendor_a = {"event_types": [], "all_objects": False, "vendor": "A", "organisation": None}
    holder_x = {"event_types": [], "all_objects": False, "vendor": None, "organisation": "X"}
    bureau = {"event_types": ["vouchers.voucher.issued"], "all_objects": True, "vendor": None, "organisation": None}
    event = {"type": "vouchers.voucher.redeemed", "vendor": "A", "organisation": "X"}
    assert subscription_matches(vendor_a, event)
    assert subscription_matches(holder_x, event)
    assert not subscription_matches(vendor_a, {**event, "vendor": "B"})
    assert not subscription_matches(holder_x, {**event, "organisation": "Y"})
    assert not subscription_matches(vendor_a, {**event, "vendor": None})
    assert not subscription_matches(bureau, event)
    assert subscription_matches(bureau, {**event, "type": "vouchers.voucher.issued"})


def test_the_verification_snippet_in_the_docs_agrees() -> None:
    """docs/webhooks.md shows receivers how to verify (the Standard Webhooks library): that code must accept
    ours and refuse the rest."""
    document = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(.*?)```", document, re.DOTALL)
    assert snippet is not None
    secret = new_secret()
    stored: list[str] = []

    @dataclass
    class Response:
        status_code: int

    @dataclass
    class Request:
        raw: bytes
        headers: dict[str, str]

        async def body(self) -> bytes:
            return self.raw

    namespace: dict[str, object] = {
        "SECRET": secret,
        "Response": Response,
        "store_once": lambda event_id, event: stored.append(event_id),
    }
    exec(snippet.group(1), namespace)  # noqa: S102 - our own documentation
    receive = namespace["receive"]
    assert callable(receive)
    now = int(time.time())

    def answer(secret_used: str, body: bytes, timestamp: int = now, sent: bytes = BODY) -> int:
        headers = standard_headers([secret_used], "vouchers-7", timestamp, sent)
        response = asyncio.run(receive(Request(body, headers)))
        return int(response.status_code)

    assert answer(secret, BODY) == 204
    assert stored == ["vouchers-7"]
    assert answer(new_secret(), BODY) == 401
    assert answer(secret, BODY + b" ") == 401
    assert answer(secret, BODY, now - 301) == 401
    assert stored == ["vouchers-7"]
