"""Rotating a subscription's signing secret (`POST /v1/webhooks/{id}/rotate`).

A receiver switches secrets without refusing a delivery: after a rotation each delivery carries two signatures (the
new secret's and the replaced one's, in `webhook-signature` and in the deprecated `Longgang-Signature`), each
verified by the Standard Webhooks library, until the replaced secret expires; then only the new one signs. The
rotation needs an Idempotency-Key: a retry answers the same new secret and changes nothing (a rotation sent twice
without one would replace the secret it had just made, which the receiver never saw). Another client's subscription
is not found; a deactivated one is refused; bad input changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx

from shared.auth import PLATFORM
from shared.feed.signing import new_secret
from tests.auth import as_vendor, auth
from tests.events.conftest import emit_committed, eventually, new_subject
from tests.events.receiver import Received, Receiver
from tests.events.test_dispatcher import subscribe
from tests.factories import new_credit_code

Connect = Callable[[], Awaitable[asyncpg.Connection]]
HOOK = "http://127.0.0.1:9/hooks"  # nothing listens there: the API tests never emit an event


async def rotate(
    client: httpx.AsyncClient, webhook_id: int, headers: dict[str, str], key: str | None, **body: Any
) -> httpx.Response:
    extra = {"Idempotency-Key": key} if key is not None else {}
    return await client.post(f"/v1/webhooks/{webhook_id}/rotate", json=body or None, headers={**headers, **extra})


async def stored(connect: Connect, webhook_id: int) -> asyncpg.Record:
    connection = await connect()
    row = await connection.fetchrow(
        "SELECT secret, secret_encrypted, previous_secret_encrypted, previous_secret_valid_until, rotation_key "
        "FROM vouchers.webhook_subscriptions WHERE id = $1",
        webhook_id,
    )
    assert row is not None
    return row


async def delivered(connection: asyncpg.Connection, receiver: Receiver, vendor: str) -> Received:
    """An event of the vendor's emitted and committed, as the receiver got it."""
    subject = new_subject("ROT")
    await emit_committed(connection, subject, vendor=vendor, amount_fen=1)
    await eventually(lambda: subject in receiver.accepted_subjects())
    return next(r for r in receiver.requests if r.event["subject"] == subject)


async def test_a_rotation_answers_a_new_secret_once_and_its_retry_the_same(
    client: httpx.AsyncClient, connect: Connect
) -> None:
    platform = auth(PLATFORM, name="platform-rotation-test")
    hook = await subscribe(client, platform, HOOK)
    rotated = await rotate(client, hook["id"], platform, "rotate-1")
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["secret"].startswith("whsec_")
    assert body["secret"] != hook["secret"]
    assert body["secret_rotated_at"] is not None
    assert body["previous_secret_valid_until"] is not None  # one day by default
    assert "Idempotent-Replayed" not in rotated.headers
    row = await stored(connect, hook["id"])
    assert row["secret"] is None  # both secrets sealed at rest, neither in clear
    assert hook["secret"] not in str(row["secret_encrypted"]) + str(row["previous_secret_encrypted"])
    assert body["secret"] not in str(row["secret_encrypted"])

    again = await rotate(client, hook["id"], platform, "rotate-1")
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == body  # the same new secret: the reply was lost, the retry gets it
    assert await stored(connect, hook["id"]) == row  # and nothing changed
    read = (await client.get(f"/v1/webhooks/{hook['id']}", headers=platform)).json()
    assert "secret" not in read
    assert read["secret_rotated_at"] == body["secret_rotated_at"]
    assert read["previous_secret_valid_until"] == body["previous_secret_valid_until"]

    # the key with another body changes nothing; a new key rotates again, the latest secret becoming the previous
    reused = await rotate(client, hook["id"], platform, "rotate-1", grace_seconds=60)
    assert (reused.status_code, reused.json()["code"]) == (409, "idempotency_key_reused")
    assert await stored(connect, hook["id"]) == row
    second = await rotate(client, hook["id"], platform, "rotate-2", grace_seconds=0)
    assert second.status_code == 200, second.text
    assert second.json()["secret"] not in (hook["secret"], body["secret"])
    assert second.json()["previous_secret_valid_until"] is None  # 0: the replaced secret stops at once
    assert (await stored(connect, hook["id"]))["previous_secret_encrypted"] is None


async def test_a_rotation_needs_a_key_and_good_input_and_is_the_owners_alone(
    client: httpx.AsyncClient, connect: Connect
) -> None:
    vendor = as_vendor(new_credit_code())
    hook = await subscribe(client, vendor, HOOK)
    before = await stored(connect, hook["id"])
    keyless = await rotate(client, hook["id"], vendor, None)
    assert (keyless.status_code, keyless.json()["code"]) == (400, "idempotency_key_required")
    assert keyless.headers["content-type"].startswith("application/problem+json")
    for bad in ({"grace_seconds": -1}, {"grace_seconds": 7 * 86_400 + 1}, {"other": 1}):
        refused = await rotate(client, hook["id"], vendor, "rotate-bad", **bad)
        assert refused.status_code == 422, (bad, refused.text)
    stranger = await rotate(client, hook["id"], as_vendor(new_credit_code()), "rotate-stranger")
    assert (stranger.status_code, stranger.json()["code"]) == (404, "webhook_not_found")
    assert await stored(connect, hook["id"]) == before  # none of these changed anything

    assert (await client.delete(f"/v1/webhooks/{hook['id']}", headers=vendor)).status_code == 204
    gone = await rotate(client, hook["id"], vendor, "rotate-deactivated")
    assert (gone.status_code, gone.json()["code"]) == (409, "webhook_deactivated")
    assert (await stored(connect, hook["id"]))["rotation_key"] is None


async def test_deliveries_carry_both_signatures_until_the_replaced_secret_expires(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver
) -> None:
    vendor = new_credit_code()
    headers = as_vendor(vendor)
    hook = await subscribe(client, headers, receiver.url, event_types=["vouchers.voucher.redeemed"])
    old = hook["secret"]
    rotated = await rotate(client, hook["id"], headers, "rotate-deliveries", grace_seconds=2)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    connection = await connect()

    request = await delivered(connection, receiver, vendor)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    # a receiver on either secret accepts it, with the maintained library and with the deprecated header
    assert request.standard_verified(new)
    assert request.standard_verified(old)
    assert request.verified(new)
    assert request.verified(old)
    assert not request.standard_verified(new_secret())

    await asyncio.sleep(2.5)  # the replaced secret has expired
    request = await delivered(connection, receiver, vendor)
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    assert request.standard_verified(new)
    assert request.verified(new)
    assert not request.standard_verified(old)
    assert not request.verified(old)
