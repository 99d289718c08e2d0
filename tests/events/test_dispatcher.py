"""The dispatcher against real HTTP receivers: signed, in order, retried, isolated, redelivered, suspended."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from shared.auth import PLATFORM
from shared.feed.dispatcher import Dispatcher
from tests.auth import admin, as_applicant, as_vendor, auth
from tests.events.conftest import emit_committed, eventually, fast_settings, new_subject
from tests.events.receiver import Receiver
from tests.factories import new_credit_code

Connect = Callable[[], Awaitable[asyncpg.Connection]]


async def subscribe(client: httpx.AsyncClient, headers: dict[str, str], url: str, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/webhooks", json={"url": url, **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def deliveries(client: httpx.AsyncClient, headers: dict[str, str], webhook_id: int) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/webhooks/{webhook_id}/deliveries", params={"limit": 500}, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items[::-1]  # oldest first


def mine(receiver: Receiver, subjects: list[str]) -> list[str]:
    return [s for s in receiver.accepted_subjects() if s in set(subjects)]


async def test_signed_in_order_with_retries_after_failures(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver
) -> None:
    vendor = new_credit_code()
    headers = as_vendor(vendor)
    hook = await subscribe(client, headers, receiver.url, event_types=["vouchers.voucher.redeemed"])
    receiver.fail(3, status=500)
    connection = await connect()
    subjects = [new_subject("ORDER") for _ in range(6)]
    for subject in subjects:
        await emit_committed(connection, subject, vendor=vendor, amount_fen=100)
        # an event of another type in between: filtered out, never blocks the order
        await emit_committed(connection, subject, type="vouchers.voucher.voided", vendor=vendor)

    await eventually(lambda: len(receiver.accepted()) >= len(subjects))
    await asyncio.sleep(0.3)  # anything extra would have arrived by now
    assert receiver.accepted_subjects() == subjects, "each once, in feed order, after three failures"
    assert len({r.event_id for r in receiver.accepted()}) == len(subjects)
    for request in receiver.requests:
        assert request.verified(hook["secret"])
        assert request.headers["content-type"] == "application/json"
        assert request.event["type"] == "vouchers.voucher.redeemed"
        assert request.event_id == request.event["id"]
        assert set(request.event) == {"id", "type", "occurred_at", "subject", "data"}
    # the first event failed three times (the same event each time: no skipping ahead), then went through
    first = [r for r in receiver.requests if r.event["subject"] == subjects[0]]
    assert [r.status for r in first] == [500, 500, 500, 200]
    assert [r.headers["longgang-delivery-attempt"] for r in first] == ["1", "2", "3", "4"]

    log = await deliveries(client, headers, hook["id"])
    assert [(d["attempt"], d["delivered"], d["status_code"]) for d in log[:4]] == [
        (1, False, 500),
        (2, False, 500),
        (3, False, 500),
        (4, True, 200),
    ]
    assert log[0]["error"] == "HTTP 500"
    assert sum(d["delivered"] for d in log) == len(subjects)
    current = (await client.get(f"/v1/webhooks/{hook['id']}", headers=headers)).json()
    assert current["attempts"] == 0
    assert current["failing_since"] is None


async def test_vendors_and_applicants_get_only_their_own_events(
    client: httpx.AsyncClient, connect: Connect, receivers: Callable[[], Receiver]
) -> None:
    vendor_a, vendor_b, holder = new_credit_code(), new_credit_code(), new_credit_code()
    at_a, at_b, at_holder, at_platform = receivers(), receivers(), receivers(), receivers()
    await subscribe(client, as_vendor(vendor_a), at_a.url)
    await subscribe(client, as_vendor(vendor_b), at_b.url)
    await subscribe(client, as_applicant(holder), at_holder.url)
    await subscribe(client, auth(PLATFORM), at_platform.url)
    connection = await connect()
    a1, b1, a2, other = (new_subject(p) for p in ("A1", "B1", "A2", "OTHER"))
    await emit_committed(connection, a1, vendor=vendor_a, organisation=holder)
    await emit_committed(connection, b1, vendor=vendor_b, organisation=new_credit_code())
    await emit_committed(connection, a2, type="vouchers.settlement_batch.closed", vendor=vendor_a)
    await emit_committed(connection, other, type="vouchers.voucher.issued", organisation=holder)

    everything = [a1, b1, a2, other]
    await eventually(lambda: mine(at_platform, everything) == everything)
    await eventually(lambda: len(at_a.accepted()) >= 2 and len(at_b.accepted()) >= 1 and len(at_holder.accepted()) >= 2)
    await asyncio.sleep(0.3)
    assert at_a.accepted_subjects() == [a1, a2]
    assert at_b.accepted_subjects() == [b1]
    assert at_holder.accepted_subjects() == [a1, other]


async def test_a_receiver_that_is_down_gets_everything_in_order_once_back(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver
) -> None:
    vendor = new_credit_code()
    headers = as_vendor(vendor)
    hook = await subscribe(client, headers, receiver.url)
    connection = await connect()
    first = new_subject("UP")
    await emit_committed(connection, first, vendor=vendor)
    await eventually(lambda: receiver.accepted_subjects() == [first])

    receiver.stop()  # connection refused from now on
    missed = [new_subject("MISSED") for _ in range(5)]
    for subject in missed:
        await emit_committed(connection, subject, vendor=vendor)
    log = await eventually(lambda: _failures(client, headers, hook["id"], 3))
    assert log[-1]["status_code"] is None
    assert log[-1]["error"]
    receiver.start()

    await eventually(lambda: len(receiver.accepted()) >= 1 + len(missed))
    await asyncio.sleep(0.3)
    assert receiver.accepted_subjects() == [first, *missed]


async def _failures(client: httpx.AsyncClient, headers: dict[str, str], hook: int, count: int) -> Any:
    log = await deliveries(client, headers, hook)
    failed = [d for d in log if not d["delivered"]]
    return failed if len(failed) >= count else None


async def test_manual_redelivery(client: httpx.AsyncClient, connect: Connect, receiver: Receiver) -> None:
    vendor = new_credit_code()
    headers = as_vendor(vendor)
    hook = await subscribe(client, headers, receiver.url)
    connection = await connect()
    subject = new_subject("AGAIN")
    await emit_committed(connection, subject, vendor=vendor, amount_fen=5)
    await eventually(lambda: receiver.accepted_subjects() == [subject])

    async def logged() -> list[dict[str, Any]]:  # the log row commits after the receiver has answered
        return await deliveries(client, headers, hook["id"])

    (delivery,) = await eventually(logged)

    again = await client.post(f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver", headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["manual"] is True
    assert again.json()["delivered"] is True
    assert again.json()["attempt"] == 2
    assert again.json()["event_id"] == delivery["event_id"]
    original, repeated = receiver.accepted()
    assert repeated.event_id == original.event_id, "the same event: a receiver dedupes it by id"
    assert repeated.body == original.body
    assert repeated.verified(hook["secret"])

    missing = await client.post(f"/v1/webhooks/{hook['id']}/deliveries/999999999/redeliver", headers=headers)
    assert (missing.status_code, missing.json()["code"]) == (404, "webhook_delivery_not_found")
    other = await client.post(
        f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver", headers=as_vendor(new_credit_code())
    )
    assert other.status_code == 404


async def test_a_redelivery_retried_with_its_key_is_answered_not_sent_again(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver
) -> None:
    """A vendor's client whose reply was lost sends the redelivery again with its Idempotency-Key: the answer is the
    delivery made (replayed), the receiver gets the event once more only once, and the log has one manual row."""
    vendor = new_credit_code()
    headers = as_vendor(vendor)
    hook = await subscribe(client, headers, receiver.url)
    connection = await connect()
    first, second = new_subject("KEYED"), new_subject("KEYED")
    for subject in (first, second):
        await emit_committed(connection, subject, vendor=vendor, amount_fen=5)
    await eventually(lambda: receiver.accepted_subjects() == [first, second])

    async def logged() -> list[dict[str, Any]]:
        return [d for d in await deliveries(client, headers, hook["id"]) if d["delivered"]]

    one, two = await eventually(lambda: _two(logged))
    path = f"/v1/webhooks/{hook['id']}/deliveries"
    keyed = {**headers, "Idempotency-Key": f"again-{one['id']}"}
    made = await client.post(f"{path}/{one['id']}/redeliver", headers=keyed)
    assert made.status_code == 201, made.text
    assert "Idempotent-Replayed" not in made.headers
    retried = await client.post(f"{path}/{one['id']}/redeliver", headers=keyed)
    assert retried.status_code == 201, retried.text
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json() == made.json()
    assert receiver.accepted_subjects() == [first, second, first]  # sent again once, not twice
    manual = [d for d in await deliveries(client, headers, hook["id"]) if d["manual"]]
    assert [d["id"] for d in manual] == [made.json()["id"]]
    # the key with another event changes nothing; without a key each call sends
    reused = await client.post(f"{path}/{two['id']}/redeliver", headers=keyed)
    assert (reused.status_code, reused.json()["code"]) == (409, "idempotency_key_reused")
    assert receiver.accepted_subjects() == [first, second, first]
    for _ in range(2):
        assert (await client.post(f"{path}/{two['id']}/redeliver", headers=headers)).status_code == 201
    assert receiver.accepted_subjects() == [first, second, first, second, second]


async def _two(logged: Callable[[], Awaitable[list[dict[str, Any]]]]) -> list[dict[str, Any]] | None:
    found = await logged()
    return found if len(found) == 2 else None


async def test_suspended_after_the_retry_period_and_resumed_without_skipping(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver, events_app: FastAPI
) -> None:
    dispatcher: Dispatcher = events_app.state.dispatcher
    dispatcher.settings = fast_settings(retry_for_seconds=0.4)
    vendor = new_credit_code()
    headers = as_vendor(vendor)
    hook = await subscribe(client, headers, receiver.url)
    receiver.default_status = 503
    connection = await connect()
    subjects = [new_subject("SUSPEND") for _ in range(3)]
    for subject in subjects:
        await emit_committed(connection, subject, vendor=vendor)

    suspended = await eventually(lambda: _status(client, headers, hook["id"], "suspended"))
    assert suspended["attempts"] >= 2
    assert suspended["last_error"] == "HTTP 503"
    tried = len(receiver.requests)
    await asyncio.sleep(0.5)
    assert len(receiver.requests) == tried, "a suspended subscription is not tried"
    assert {r.event["subject"] for r in receiver.requests} == {subjects[0]}, "never skipped past the failing event"

    receiver.default_status = 204
    resumed = await client.post(f"/v1/webhooks/{hook['id']}/resume", headers=headers)
    assert resumed.json()["status"] == "active"
    await eventually(lambda: receiver.accepted_subjects() == subjects)


async def _status(client: httpx.AsyncClient, headers: dict[str, str], hook: int, status: str) -> Any:
    current = (await client.get(f"/v1/webhooks/{hook}", headers=headers)).json()
    return current if current["status"] == status else None


async def test_two_dispatchers_deliver_each_event_once_in_order(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver, events_database: str
) -> None:
    """Two processes of the same service: one subscription is served by one of them at a time."""
    second = Dispatcher(events_database, "vouchers", fast_settings(), role="vouchers_writer")
    await second.start()
    try:
        vendor = new_credit_code()
        await subscribe(client, as_vendor(vendor), receiver.url)
        receiver.fail(2, status=502)
        connection = await connect()
        subjects = [new_subject("TWO") for _ in range(40)]
        for subject in subjects:
            await emit_committed(connection, subject, vendor=vendor)
        await eventually(lambda: len(receiver.accepted()) >= len(subjects), within=30)
        await asyncio.sleep(0.3)
        assert receiver.accepted_subjects() == subjects
    finally:
        await second.stop()


async def test_a_deactivated_subscription_gets_nothing_more(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver
) -> None:
    hook = await subscribe(client, admin(), receiver.url, event_types=["vouchers.grant.disbursed"])
    connection = await connect()
    before = new_subject("BEFORE")
    await emit_committed(connection, before, type="vouchers.grant.disbursed")
    await eventually(lambda: receiver.accepted_subjects() == [before])
    assert (await client.delete(f"/v1/webhooks/{hook['id']}")).status_code == 204
    await emit_committed(connection, new_subject("AFTER"), type="vouchers.grant.disbursed")
    await asyncio.sleep(0.5)
    assert receiver.accepted_subjects() == [before]


async def test_a_private_address_is_not_called_when_not_allowed(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver, events_app: FastAPI
) -> None:
    """Checked again at delivery (a name may resolve elsewhere later): nothing is sent, the failure is logged."""
    vendor = new_credit_code()
    hook = await subscribe(client, as_vendor(vendor), receiver.url)
    dispatcher: Dispatcher = events_app.state.dispatcher
    dispatcher.settings = fast_settings(allow_private_networks=False)
    connection = await connect()
    await emit_committed(connection, new_subject("PRIVATE"), vendor=vendor)
    failures = await eventually(lambda: _failures(client, as_vendor(vendor), hook["id"], 1))
    assert failures[0]["error"] == "the URL's host is not a public address (not sent)"
    assert receiver.requests == []
