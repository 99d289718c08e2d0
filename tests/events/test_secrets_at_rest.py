"""Webhook secrets encrypted at rest (issue #15): AES-256-GCM under WEBHOOK_SECRET_KEY, old keys for rotation.

Over HTTP and against the database as its owner sees it: a new subscription's secret is stored only
encrypted (the answer's secret, a replay's and the deliveries' signatures agree with it); a
plaintext secret from before is encrypted at the dispatcher's first round and keeps signing; a
secret an old key sealed is re-encrypted with the new key; a service without a key refuses to start.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from shared.auth import PLATFORM
from shared.feed.dispatcher import NOT_SENT_UNREADABLE_KEY
from shared.feed.secretbox import SecretBox, SecretKeyError, generate_key
from shared.feed.signing import new_secret
from tests.auth import auth
from tests.events.conftest import emit_committed, eventually, fast_settings, make_events_app, new_subject
from tests.events.receiver import Receiver
from tests.events.test_dispatcher import subscribe

Connect = Callable[[], Awaitable[asyncpg.Connection]]
TYPE = "vouchers.grant.disbursed"  # one type these tests alone emit to their own subscriptions


async def stored(connection: asyncpg.Connection, webhook_id: int) -> asyncpg.Record:
    row = await connection.fetchrow(
        "SELECT secret, secret_encrypted, previous_secret_encrypted FROM vouchers.webhook_subscriptions WHERE id = $1",
        webhook_id,
    )
    assert row is not None
    return row


async def test_a_new_secret_is_stored_only_encrypted(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver
) -> None:
    headers = {**auth(PLATFORM), "Idempotency-Key": new_subject("KEY")}
    hook = await subscribe(client, headers, receiver.url, event_types=[TYPE])
    connection = await connect()
    row = await stored(connection, hook["id"])
    assert row["secret"] is None
    assert row["secret_encrypted"].startswith("v1.")
    assert hook["secret"] not in row["secret_encrypted"]
    assert base64.b64decode(hook["secret"][6:]) not in base64.urlsafe_b64decode(row["secret_encrypted"].split(".")[2])
    # the database alone does not give it away; the key does
    assert SecretBox(generate_key()).is_current(row["secret_encrypted"]) is False
    # a retry with the same Idempotency-Key answers the same secret, decrypted
    again = await client.post("/v1/webhooks", json={"url": receiver.url, "event_types": [TYPE]}, headers=headers)
    assert again.status_code == 201
    assert again.json()["secret"] == hook["secret"]
    await emit_committed(connection, new_subject("ENC"), type=TYPE)
    request = (await eventually(receiver.accepted))[0]
    assert request.standard_verified(hook["secret"])


async def legacy_subscription(connection: asyncpg.Connection, url: str, secret: str) -> int:
    """A subscription as stored before encryption at rest: the secret in plaintext."""
    webhook_id: int = await connection.fetchval(
        "INSERT INTO vouchers.webhook_subscriptions (client_id, created_by, url, event_types, all_objects, secret, "
        "cursor_txid, cursor_id) SELECT 'legacy-client', 'legacy', $1, ARRAY[$2], true, $3, "
        "coalesce(max(txid), '0'), coalesce(max(id), 0) FROM vouchers.outbox RETURNING id",
        url,
        TYPE,
        secret,
    )
    return webhook_id


async def test_plaintext_secrets_are_encrypted_at_the_first_round_and_keep_signing(
    events_database: str, connect: Connect, receiver: Receiver
) -> None:
    connection = await connect()
    old_format = "whsec_" + "Zq-_" * 10 + "abc"  # as secrets were issued before 0.2.0
    webhook_id = await legacy_subscription(connection, receiver.url, old_format)
    app = make_events_app(events_database, fast_settings())
    async with app.router.lifespan_context(app):
        row = await eventually(lambda: _sealed(connection, webhook_id))
        assert SecretBox(fast_settings().secret_key.get_secret_value()).decrypt(row, "vouchers") == old_format
        await emit_committed(connection, new_subject("LEGACY"), type=TYPE)
        request = (await eventually(receiver.accepted))[0]
    assert request.verified(old_format)  # the deprecated house header, unchanged
    assert request.standard_verified(old_format.encode())  # the old format keys with its bytes
    assert app.state.dispatcher.sealed >= 1  # this process's first round sealed it


async def _sealed(connection: asyncpg.Connection, webhook_id: int) -> Any:
    row = await stored(connection, webhook_id)
    return row["secret_encrypted"] if row["secret"] is None else None


async def test_a_rotated_key_re_encrypts_and_old_keys_still_decrypt(
    events_database: str, connect: Connect, receiver: Receiver
) -> None:
    connection = await connect()
    secret = new_secret()
    webhook_id = await legacy_subscription(connection, receiver.url, secret)
    old_key, new_key = generate_key(), generate_key()
    await connection.execute(
        "UPDATE vouchers.webhook_subscriptions SET secret = NULL, secret_encrypted = $2 WHERE id = $1",
        webhook_id,
        SecretBox(old_key).encrypt(secret, "vouchers"),
    )
    session_key = fast_settings().secret_key.get_secret_value()  # what the other tests' rows are sealed with
    settings = fast_settings(secret_key=new_key, secret_old_keys=f"{generate_key()}, {old_key},{session_key}")
    app = make_events_app(events_database, settings)
    async with app.router.lifespan_context(app):
        row = await eventually(
            lambda: _current(connection, webhook_id, SecretBox(new_key)),
        )
        assert SecretBox(new_key).decrypt(row, "vouchers") == secret
        with pytest.raises(SecretKeyError):
            SecretBox(old_key).decrypt(row, "vouchers")
        await emit_committed(connection, new_subject("ROTATED"), type=TYPE)
        request = (await eventually(receiver.accepted))[0]
    assert request.standard_verified(secret)
    # sealed for the vouchers schema: the same value does not decrypt as another service's
    with pytest.raises(SecretKeyError):
        SecretBox(new_key).decrypt(row, "registry")


async def test_a_rotated_key_re_encrypts_a_replaced_secret_while_it_still_signs(
    events_database: str, connect: Connect, receiver: Receiver
) -> None:
    """A subscription mid-rotation (its replaced secret still signing) and one whose replaced secret has expired,
    both sealed by an old key: the new key re-seals the current secrets and the live replaced one, and leaves the
    expired one as it was (it is never read again); deliveries carry both live signatures."""
    connection = await connect()
    current, previous, expired = new_secret(), new_secret(), new_secret()
    old_key, new_key = generate_key(), generate_key()
    old = SecretBox(old_key)
    live_id = await legacy_subscription(connection, receiver.url, current)
    gone_id = await legacy_subscription(connection, "http://127.0.0.1:9/hooks", new_secret())
    for webhook_id, replaced, seconds in ((live_id, previous, 3600), (gone_id, expired, -60)):
        await connection.execute(
            "UPDATE vouchers.webhook_subscriptions SET secret_encrypted = $2, secret = NULL, "
            "previous_secret_encrypted = $3, "
            "previous_secret_valid_until = clock_timestamp() + make_interval(secs => $4) WHERE id = $1",
            webhook_id,
            old.encrypt(current, "vouchers"),
            old.encrypt(replaced, "vouchers"),
            seconds,
        )
    sealed_expired = (await stored(connection, gone_id))["previous_secret_encrypted"]
    session_key = fast_settings().secret_key.get_secret_value()  # what the other tests' rows are sealed with
    settings = fast_settings(secret_key=new_key, secret_old_keys=f"{old_key},{session_key}")
    app = make_events_app(events_database, settings)
    box = SecretBox(new_key)
    async with app.router.lifespan_context(app):
        await eventually(lambda: _current(connection, live_id, box))
        await emit_committed(connection, new_subject("MID-ROTATION"), type=TYPE)
        request = (await eventually(receiver.accepted))[0]
    live = await stored(connection, live_id)
    assert box.decrypt(live["previous_secret_encrypted"], "vouchers") == previous
    assert (await stored(connection, gone_id))["previous_secret_encrypted"] == sealed_expired
    assert request.standard_verified(current)
    assert request.standard_verified(previous)


async def test_a_secret_no_configured_key_opens_fails_its_deliveries_visibly(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver
) -> None:
    """A subscription whose secret a key configured nowhere sealed: nothing is sent, and each attempt is a failure
    the subscriber sees (`last_error`, the delivery log), retried with backoff like any other, not only a log line
    of the service's (the key's id stays in that log)."""
    connection = await connect()
    webhook_id = await legacy_subscription(connection, receiver.url, new_secret())
    await connection.execute(
        "UPDATE vouchers.webhook_subscriptions SET secret = NULL, secret_encrypted = $2 WHERE id = $1",
        webhook_id,
        SecretBox(generate_key()).encrypt(new_secret(), "vouchers"),
    )
    await emit_committed(connection, new_subject("LOST-KEY"), type=TYPE)

    async def failed() -> Any:
        return await connection.fetchrow(
            "SELECT attempts, last_error, failing_since FROM vouchers.webhook_subscriptions "
            "WHERE id = $1 AND attempts > 0",
            webhook_id,
        )

    row = await eventually(failed)
    assert row["last_error"] == NOT_SENT_UNREADABLE_KEY
    assert row["failing_since"] is not None
    logged = await connection.fetch(
        "SELECT delivered, status_code, error FROM vouchers.webhook_deliveries WHERE subscription_id = $1", webhook_id
    )
    assert logged
    assert all((r["delivered"], r["status_code"], r["error"]) == (False, None, NOT_SENT_UNREADABLE_KEY) for r in logged)
    assert receiver.requests == []


async def _current(connection: asyncpg.Connection, webhook_id: int, box: SecretBox) -> Any:
    row = await stored(connection, webhook_id)
    value = row["secret_encrypted"]
    return value if value and box.is_current(value) else None


@pytest.mark.parametrize("key", ["", "not base64!", base64.b64encode(b"short").decode()])
async def test_a_service_without_a_usable_key_refuses_to_start(events_database: str, key: str) -> None:
    app = make_events_app(events_database, fast_settings(secret_key=key))
    with pytest.raises(SecretKeyError, match="WEBHOOK_SECRET_KEY") as refused:
        async with app.router.lifespan_context(app):
            pass
    assert key not in str(refused.value) or not key
