"""Standard Webhooks (issue #15): deliveries verified by that project's maintained Python library.

A real receiver and the dispatcher: each delivery carries `webhook-id` (the event id, the same on
every retry), `webhook-timestamp` and `webhook-signature`, and `standardwebhooks.Webhook(secret)`
accepts it with the secret the subscription's creation answered; a changed body, an old timestamp
or another secret are refused. A secret issued before (the house format) still verifies, as bytes.
The deprecated `Longgang-Signature` is still sent beside.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.feed.signing import new_secret, signing_key, standard_headers, standard_signature
from tests.auth import as_vendor
from tests.events.conftest import emit_committed, eventually, new_subject
from tests.events.receiver import Receiver
from tests.events.test_dispatcher import subscribe
from tests.factories import new_credit_code

Connect = Callable[[], Awaitable[asyncpg.Connection]]


async def test_deliveries_verify_with_the_standard_webhooks_library(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver
) -> None:
    vendor = new_credit_code()
    secret = (await subscribe(client, as_vendor(vendor), receiver.url, event_types=["vouchers.voucher.redeemed"]))[
        "secret"
    ]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:], validate=True)) == 32
    receiver.fail(2, status=503)
    connection = await connect()
    subjects = [new_subject("STD") for _ in range(3)]
    for subject in subjects:
        await emit_committed(connection, subject, vendor=vendor, amount_fen=100)

    await eventually(lambda: len(receiver.accepted()) >= len(subjects))
    await asyncio.sleep(0.2)
    assert receiver.accepted_subjects() == subjects
    for request in receiver.requests:
        assert request.standard_verified(secret), request.headers
        assert request.headers["webhook-id"] == request.event["id"] == request.headers["longgang-event-id"]
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
        assert request.verified(secret), "the deprecated house signature is still sent (until 0.3.0)"
        # what a receiver does: the library hands back the parsed event only when the signature holds
        assert Webhook(secret).verify(request.body, request.headers) == request.event
        # a changed body, another secret: refused
        tampered = request.body.replace(b'"amount_fen":100', b'"amount_fen":900')
        assert tampered != request.body
        assert not request.standard_verified(secret, tampered)
        assert not request.standard_verified(new_secret())
    # retries of one event keep its webhook-id (receivers deduplicate by it), each signed afresh
    first = [r for r in receiver.requests if r.event["subject"] == subjects[0]]
    assert [r.status for r in first] == [503, 503, 200]
    assert len({r.headers["webhook-id"] for r in first}) == 1


async def test_an_old_timestamp_or_a_replayed_signature_is_refused(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver
) -> None:
    vendor = new_credit_code()
    hook = await subscribe(client, as_vendor(vendor), receiver.url, event_types=["vouchers.voucher.redeemed"])
    await emit_committed(await connect(), new_subject("OLD"), vendor=vendor, amount_fen=1)
    request = (await eventually(receiver.accepted))[0]
    secret = hook["secret"]
    assert request.standard_verified(secret)
    # the same delivery replayed ten minutes later: the library's five-minute tolerance refuses it
    old = int(request.headers["webhook-timestamp"]) - 600
    replayed = {**request.headers, **standard_headers([secret], request.headers["webhook-id"], old, request.body)}
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(request.body, replayed)
    # a new timestamp on the old signature: it no longer signs what is sent
    moved = {**request.headers, "webhook-timestamp": str(int(request.headers["webhook-timestamp"]) + 1)}
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(secret).verify(request.body, moved)
    # another event's id on this body and signature
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(request.body, {**request.headers, "webhook-id": "vouchers-1"})


def test_secrets_of_the_house_format_key_with_their_bytes() -> None:
    """Secrets issued before 0.2.0 (`whsec_` + token_urlsafe(32)) are not padded base64: their key is the
    secret's UTF-8 bytes, and a receiver gives the library those bytes."""
    old = "whsec_" + "Ab-_" * 10 + "xyz"  # 43 URL-safe characters, as secrets.token_urlsafe(32)
    assert signing_key(old) == old.encode()
    body = b'{"id":"vouchers-9"}'
    now = int(time.time())
    headers = standard_headers([old], "vouchers-9", now, body)
    assert Webhook(old.encode()).verify(body, headers) == {"id": "vouchers-9"}
    fresh = new_secret()
    assert signing_key(fresh) == base64.b64decode(fresh[6:])
    # two valid secrets (a rotation): space-separated, either verifies
    both = standard_headers([fresh, old], "vouchers-9", now, body)
    assert both["webhook-signature"] == (
        f"{standard_signature(fresh, 'vouchers-9', now, body)} {standard_signature(old, 'vouchers-9', now, body)}"
    )
    assert Webhook(fresh).verify(body, both)
    assert Webhook(old.encode()).verify(body, both)
