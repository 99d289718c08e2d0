"""The change feed: (txid, id) order below the watermark, resumable, never losing or repeating an event."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from shared.auth import DASHBOARD, PLATFORM, VENDOR
from shared.feed.outbox import emit
from tests.auth import auth
from tests.events.conftest import emit_committed, eventually, new_subject

Connect = Callable[[], Awaitable[asyncpg.Connection]]


async def read_feed(
    client: httpx.AsyncClient, after: str | None = None, limit: int = 500, **params: Any
) -> tuple[list[dict[str, Any]], str]:
    """Every page from `after` to the end of what is served now; the items and the last cursor."""
    items: list[dict[str, Any]] = []
    cursor = after
    while True:
        query: dict[str, Any] = {"limit": limit, **params}
        if cursor:
            query["after"] = cursor
        response = await client.get("/v1/events", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        assert page["next_cursor"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return items, cursor


def subjects(items: list[dict[str, Any]], mine: set[str]) -> list[str]:
    return [item["subject"] for item in items if item["subject"] in mine]


async def test_pages_in_order_and_resumes_from_the_cursor(client: httpx.AsyncClient, connect: Connect) -> None:
    connection = await connect()
    first = [new_subject() for _ in range(5)]
    for subject in first:
        await emit_committed(connection, subject, vendor="914403001922038216", amount_fen=100)

    items, cursor = await eventually(lambda: _all_present(client, None, set(first)))
    assert subjects(items, set(first)) == first
    # small pages see the same events, in the same order, each once
    paged, _ = await read_feed(client, limit=2)
    assert subjects(paged, set(first)) == first
    event = next(item for item in items if item["subject"] == first[0])
    assert event["type"] == "vouchers.voucher.redeemed"
    assert event["id"].startswith("vouchers-")
    assert event["vendor"] == "914403001922038216"
    assert event["data"] == {"subject": first[0], "amount_fen": 100}

    # resuming after the cursor: only what came later, nothing seen before
    second = [new_subject() for _ in range(3)]
    for subject in second:
        await emit_committed(connection, subject)
    later, _ = await eventually(lambda: _all_present(client, cursor, set(second)))
    assert subjects(later, set(first) | set(second)) == second


async def _all_present(
    client: httpx.AsyncClient, after: str | None, wanted: set[str]
) -> tuple[list[dict[str, Any]], str] | None:
    items, cursor = await read_feed(client, after)
    return (items, cursor) if wanted <= {item["subject"] for item in items} else None


async def test_an_event_of_a_rolled_back_transaction_never_appears(client: httpx.AsyncClient, connect: Connect) -> None:
    connection = await connect()
    undone, marker = new_subject("UNDONE"), new_subject("MARKER")
    transaction = connection.transaction()
    await transaction.start()
    await emit(connection, "vouchers.voucher.voided", undone, {"why": "rolled back"})
    await transaction.rollback()
    await emit_committed(connection, marker)

    items, _ = await eventually(lambda: _all_present(client, None, {marker}))
    assert undone not in {item["subject"] for item in items}


async def test_an_open_transaction_holds_the_feed_back_and_its_event_comes_after_the_cursor(
    client: httpx.AsyncClient, connect: Connect
) -> None:
    """Sequence order is not commit order: the feed never passes a transaction that may still commit."""
    slow, fast, before = await connect(), await connect(), await connect()
    early = new_subject("BEFORE")
    await emit_committed(before, early)
    _, start = await eventually(lambda: _all_present(client, None, {early}))

    transaction = slow.transaction()
    await transaction.start()
    await slow.fetchval("SELECT pg_current_xact_id()")  # the slow transaction's id is now the older one
    quick, late = new_subject("QUICK"), new_subject("LATE")
    await emit_committed(fast, quick)  # a smaller event id, a larger transaction id, committed first
    await emit(slow, "vouchers.voucher.redeemed", late, {})  # a larger event id, still uncommitted

    held, cursor = await read_feed(client, start)
    assert {quick, late}.isdisjoint(item["subject"] for item in held), "nothing after an open transaction is served"
    # the cursor did not move past the open transaction: what it writes can still come after it
    await transaction.commit()

    items, _ = await eventually(lambda: _all_present(client, cursor, {quick, late}))
    assert subjects(items, {quick, late, early}) == [late, quick], "(txid, id) order, after the cursor"
    ids = {item["subject"]: int(item["id"].removeprefix("vouchers-")) for item in items}
    assert ids[late] > ids[quick], "sequence order differs from the feed's order"


async def test_a_type_filter_moves_the_cursor_past_what_it_skips(client: httpx.AsyncClient, connect: Connect) -> None:
    connection = await connect()
    skipped = [new_subject("SKIP") for _ in range(3)]
    for subject in skipped:
        await emit_committed(connection, subject, type="vouchers.voucher.issued")
    wanted = new_subject("HOLD")
    await emit_committed(connection, wanted, type="vouchers.hold.released")

    await eventually(lambda: _all_present(client, None, {wanted}))
    only, filtered_cursor = await read_feed(client, types="vouchers.hold.*,vouchers.voucher.expired")
    assert wanted in {item["subject"] for item in only}
    assert not set(skipped) & {item["subject"] for item in only}
    assert all(
        item["type"]
        in ("vouchers.hold.released", "vouchers.hold.expired", "vouchers.hold.captured", "vouchers.voucher.expired")
        for item in only
    )
    # the filtered cursor is past the skipped events too: the unfiltered feed from it starts later
    rest, _ = await read_feed(client, filtered_cursor)
    assert not (set(skipped) | {wanted}) & {item["subject"] for item in rest}


async def test_who_may_read_the_feed_and_bad_input(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/events", headers=auth(PLATFORM))).status_code == 200
    for role in (VENDOR, DASHBOARD):
        org = "914403001922038216" if role == VENDOR else None
        refused = await client.get("/v1/events", headers=auth(role, org=org))
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "forbidden"
    anonymous = await client.get("/v1/events", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    bad_cursor = await client.get("/v1/events", params={"after": "not-a-cursor"})
    assert (bad_cursor.status_code, bad_cursor.json()["code"]) == (400, "invalid_cursor")
    other_listing = await client.get("/v1/events", params={"after": "eyJsIjoiYXVkaXQiLCJhIjo1fQ"})
    assert other_listing.status_code == 400
    unknown = await client.get("/v1/events", params={"types": "vouchers.voucher.teleported"})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["code"] == "unknown_event_type"
    too_big = await client.get("/v1/events", params={"limit": 501})
    assert too_big.status_code == 422


async def test_the_outbox_and_the_delivery_log_are_append_only(connect: Connect) -> None:
    connection = await connect()
    subject = new_subject("KEEP")
    await emit_committed(connection, subject)
    for statement in (
        "UPDATE vouchers.outbox SET subject = 'changed' WHERE subject = $1",
        "DELETE FROM vouchers.outbox WHERE subject = $1",
        "TRUNCATE vouchers.outbox",
        "TRUNCATE vouchers.webhook_deliveries",  # (rows of it: UPDATE and DELETE refused alike)
    ):
        args = (subject,) if "$1" in statement else ()
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await connection.execute(statement, *args)
    assert await connection.fetchval("SELECT count(*) FROM vouchers.outbox WHERE subject = $1", subject) == 1
