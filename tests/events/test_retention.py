"""Retention of the outbox and the delivery log (issue #15), over HTTP and against the database.

Old events are deleted only once every subscription not deactivated has passed them; old
delivery-log rows go too; a change-feed cursor before what was deleted is answered 410
`cursor_expired`; recent events and the append-only triggers stay as they were.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from shared.dbconnect import libpq_url
from shared.dbroles import login_url
from shared.feed.retention import FeedRetention
from tests.auth import admin
from tests.events.conftest import emit_committed, eventually, fast_settings, new_subject
from tests.events.receiver import Receiver
from tests.events.test_dispatcher import subscribe

Connect = Callable[[], Awaitable[asyncpg.Connection]]
TYPE = "vouchers.voucher.voided"


async def old_event(connection: asyncpg.Connection, subject: str) -> int:
    """An event as written 100 days ago."""
    event_id: int = await connection.fetchval(
        "INSERT INTO vouchers.outbox (type, subject, occurred_at) VALUES ($1, $2, now() - interval '100 days') "
        "RETURNING id",
        TYPE,
        subject,
    )
    return event_id


async def test_old_events_go_once_no_subscription_needs_them(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver, events_app: FastAPI, events_database: str
) -> None:
    owner = await connect()
    old = [await old_event(owner, new_subject("OLD")) for _ in range(3)]
    await emit_committed(owner, new_subject("NEW"), type=TYPE)
    first = await client.get("/v1/events", params={"limit": 1})
    assert first.status_code == 200
    stale_cursor = first.json()["next_cursor"]
    # a subscription that cannot deliver yet (its receiver fails) still needs every event from the beginning
    receiver.fail(10_000, status=503)
    hook = await subscribe(client, admin(), receiver.url, event_types=[TYPE], after="beginning")
    await eventually(lambda: receiver.requests)
    retention = FeedRetention(login_url(events_database, "vouchers"), "vouchers", fast_settings(retention_days=1))
    login = await asyncpg.connect(libpq_url(login_url(events_database, "vouchers")))
    try:
        await retention.trim(login)
        assert await owner.fetchval("SELECT count(*) FROM vouchers.outbox WHERE id = ANY($1)", old) == 3
        # an old delivery-log row goes whatever its subscription
        await owner.execute(
            "INSERT INTO vouchers.webhook_deliveries (subscription_id, event_id, event_type, attempt, delivered, "
            "duration_ms, at) VALUES ($1, $2, $3, 1, true, 5, now() - interval '100 days')",
            hook["id"],
            old[0],
            TYPE,
        )
        assert (await client.delete(f"/v1/webhooks/{hook['id']}")).status_code == 204
        events, deliveries = await retention.trim(login)
    finally:
        await login.close()
    assert events >= 3
    assert deliveries >= 1
    assert await owner.fetchval("SELECT count(*) FROM vouchers.outbox WHERE id = ANY($1)", old) == 0
    assert await owner.fetchval("SELECT count(*) FROM vouchers.outbox WHERE occurred_at > now() - interval '1 day'")
    assert (
        await owner.fetchval("SELECT count(*) FROM vouchers.webhook_deliveries WHERE at < now() - interval '1 day'")
        == 0
    )

    expired = await client.get("/v1/events", params={"after": stale_cursor})
    assert expired.status_code == 410
    assert expired.headers["content-type"].startswith("application/problem+json")
    assert expired.json()["code"] == "cursor_expired"
    # starting over works, and serves what is left
    again = await client.get("/v1/events", params={"limit": 500})
    assert again.status_code == 200
    assert not {item["id"] for item in again.json()["items"]} & {f"vouchers-{i}" for i in old}
    assert (await client.get("/v1/events", params={"after": again.json()["next_cursor"]})).status_code == 200
    # a subscription may not start before the horizon either
    refused = await client.post("/v1/webhooks", json={"url": receiver.url, "after": stale_cursor}, headers=admin())
    assert refused.status_code == 410
    # the triggers still refuse any other delete, the owner's included
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await owner.execute("DELETE FROM vouchers.outbox")


def test_retention_zero_keeps_everything() -> None:
    job = FeedRetention("postgresql://x@y/z", "vouchers", fast_settings(retention_days=0))
    assert not job.enabled


async def test_a_redelivery_of_a_deleted_event_is_410(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver, events_database: str
) -> None:
    owner = await connect()
    gone = await old_event(owner, new_subject("GONE"))
    hook = await subscribe(client, admin(), receiver.url, event_types=[TYPE], after="beginning")
    await eventually(lambda: f"vouchers-{gone}" in receiver.accepted_ids())
    log = (await client.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"limit": 500})).json()["items"]
    delivery = next(d for d in log if d["event_id"] == f"vouchers-{gone}")
    await eventually(lambda: _passed(owner, hook["id"], gone))
    retention = FeedRetention(login_url(events_database, "vouchers"), "vouchers", fast_settings(retention_days=1))
    login = await asyncpg.connect(libpq_url(login_url(events_database, "vouchers")))
    try:
        await retention.trim(login)
    finally:
        await login.close()
    assert await owner.fetchval("SELECT count(*) FROM vouchers.outbox WHERE id = $1", gone) == 0
    answer = await client.post(f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver")
    assert answer.status_code == 410
    assert answer.json()["code"] == "event_expired"


async def _passed(owner: asyncpg.Connection, webhook_id: int, event_id: int) -> bool:
    cursor = await owner.fetchval("SELECT cursor_id FROM vouchers.webhook_subscriptions WHERE id = $1", webhook_id)
    return bool(cursor is not None and cursor >= event_id)
