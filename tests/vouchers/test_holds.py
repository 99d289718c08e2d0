"""Holds cannot lock a voucher up (issue #12, finding 7): a short maximum, the bureau's release,
and void and expiry release open holds with the reason recorded.

Through the HTTP API of the vouchers service, on vouchers issued from real approved decisions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from shared.auth import AUDITOR, OFFICER
from tests.auth import admin, auth
from tests.vouchers.flow import OFFICER_CHEN, YUAN, approved_m3, issue, vendor_call

BUREAU_ZHAO = auth(OFFICER, name="officer-zhao")


@pytest.fixture
def clock(vouchers_app: FastAPI) -> Iterator[Callable[[datetime], None]]:
    """Set the vouchers service's clock for one test (put back after it)."""
    original = vouchers_app.state.clock

    def set_now(moment: datetime) -> None:
        vouchers_app.state.clock = lambda: moment

    yield set_now
    vouchers_app.state.clock = original


async def hold(
    vouchers: httpx.AsyncClient, code: str, vendor: str, amount: int, key: str, **extra: Any
) -> httpx.Response:
    return await vouchers.post(
        f"/v1/vouchers/{code}/holds",
        json={"amount_fen": amount, "invoice_number": f"INV-{key}", **extra},
        headers=vendor_call(vendor, key),
    )


async def voucher(vouchers: httpx.AsyncClient, code: str) -> dict[str, Any]:
    body: dict[str, Any] = (await vouchers.get(f"/v1/vouchers/{code}")).json()
    return body


async def release_entry(database: str, hold_id: int) -> asyncpg.Record:
    connection = await asyncpg.connect(database)
    try:
        row = await connection.fetchrow(
            "SELECT kind, actor, memo, amount_fen FROM vouchers.entries WHERE redemption_id = $1 AND kind = 'release'",
            hold_id,
        )
    finally:
        await connection.close()
    assert row is not None, f"no release entry for hold {hold_id}"
    return row


async def events_of(vouchers: httpx.AsyncClient, code: str, kind: str, expected: int) -> list[dict[str, Any]]:
    """The voucher's events of one type on the change feed, once `expected` of them are served.

    The feed serves an event once no older transaction of the server is in flight (commit-safe
    order): another database's transaction on the same PostgreSQL can hold it back a moment.
    """
    found: list[dict[str, Any]] = []
    for _ in range(300):
        found, after = [], None
        while True:
            params = {"types": kind, "limit": 500, **({"after": after} if after else {})}
            page = (await vouchers.get("/v1/events", params=params, headers=auth(AUDITOR, name="audit"))).json()
            found += [event for event in page["items"] if event["subject"] == code]
            if not page["has_more"]:
                break
            after = page["next_cursor"]
        if len(found) >= expected:
            return found
        await asyncio.sleep(0.2)
    return found


async def test_a_hold_longer_than_the_maximum_is_refused_and_changes_nothing(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    code = (await issue(vouchers, decision_id)).json()["code"]
    before = await voucher(vouchers, code)
    week = await hold(vouchers, code, supply.vendor, 3_000_000 * YUAN, "long-1", hold_seconds=7 * 24 * 3600)
    assert week.status_code == 422, week.text
    assert week.headers["content-type"] == "application/problem+json"
    assert (week.json()["code"], week.json()["max_seconds"]) == ("hold_too_long", 24 * 3600)
    assert await voucher(vouchers, code) == before  # refused, not clamped: nothing held
    day = await hold(vouchers, code, supply.vendor, 1_000 * YUAN, "long-2", hold_seconds=24 * 3600)
    assert day.status_code == 201, day.text
    expires = datetime.fromisoformat(day.json()["hold_expires_at"])
    assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 24 * 3600 + 60


async def test_the_bureau_releases_a_hold_with_a_reason_and_it_is_recorded(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    code = (await issue(vouchers, decision_id)).json()["code"]
    held = await hold(vouchers, code, supply.vendor, 3_000_000 * YUAN, "squat-1")  # the whole balance
    assert held.status_code == 201, held.text
    hold_id = held.json()["id"]
    assert (await voucher(vouchers, code))["available_fen"] == 0

    path = f"/v1/holds/{hold_id}/bureau-release"
    by_vendor = await vouchers.post(path, json={"reason": "x" * 5}, headers=vendor_call(supply.vendor, "squat-2"))
    assert (by_vendor.status_code, by_vendor.json()["code"]) == (403, "forbidden")
    no_reason = await vouchers.post(path, json={}, headers=BUREAU_ZHAO)
    assert no_reason.status_code == 422
    released = await vouchers.post(path, json={"reason": "企业投诉：供应商长期占用券额"}, headers=BUREAU_ZHAO)
    assert released.status_code == 200, released.text
    body = released.json()
    assert (body["status"], body["amount_fen"], body["released_by"], body["reason"]) == (
        "released",
        3_000_000 * YUAN,
        "officer-zhao",
        "企业投诉：供应商长期占用券额",
    )
    state = await voucher(vouchers, code)
    assert (state["available_fen"], state["held_fen"]) == (3_000_000 * YUAN, 0)

    entry = await release_entry(vouchers_database, hold_id)
    assert (entry["actor"], entry["memo"], entry["amount_fen"]) == (
        "officer-zhao",
        "released: 企业投诉：供应商长期占用券额",
        3_000_000 * YUAN,
    )
    [event] = await events_of(vouchers, code, "vouchers.hold.released", 1)
    assert (event["data"]["released_by"], event["data"]["reason"]) == ("officer-zhao", "企业投诉：供应商长期占用券额")
    request_id = released.headers["x-request-id"]
    for _ in range(50):  # the audit log is written in batches
        rows = (await vouchers.get("/v1/audit", params={"request_id": request_id}, headers=admin())).json()["items"]
        if rows:
            break
        await asyncio.sleep(0.1)
    [row] = rows
    assert (row["method"], row["path"], row["status"]) == ("POST", path, 200)

    capture = await vouchers.post(f"/v1/holds/{hold_id}/capture", headers=vendor_call(supply.vendor, "squat-3"))
    assert (capture.status_code, capture.json()["code"]) == (409, "hold_not_active")
    again = await vouchers.post(path, json={"reason": "再次释放"}, headers=BUREAU_ZHAO)
    assert (again.status_code, again.json()["code"]) == (409, "hold_not_active")
    missing = await vouchers.post("/v1/holds/999999999/bureau-release", json={"reason": "不存在"}, headers=BUREAU_ZHAO)
    assert (missing.status_code, missing.json()["code"]) == (404, "hold_not_found")
    invariants = (await vouchers.get("/v1/ledger/invariants")).json()
    assert invariants["ok"] is True, invariants


async def test_voiding_releases_open_holds_with_the_reason(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    code = (await issue(vouchers, decision_id)).json()["code"]
    first = (await hold(vouchers, code, supply.vendor, 1_000_000 * YUAN, "void-1")).json()
    second = (await hold(vouchers, code, supply.vendor, 2_000_000 * YUAN, "void-2")).json()
    voided = await vouchers.post(f"/v1/vouchers/{code}/void", json={"reason": "企业申请注销"}, headers=OFFICER_CHEN)
    assert voided.status_code == 200, voided.text
    body = voided.json()
    assert (body["state"], body["held_fen"], body["available_fen"], body["returned_fen"]) == (
        "voided",
        0,
        0,
        3_000_000 * YUAN,
    )
    for opened in (first, second):
        entry = await release_entry(vouchers_database, opened["id"])
        assert (entry["actor"], entry["memo"]) == ("officer-chen", "released: voucher voided: 企业申请注销")
        late = await vouchers.post(
            f"/v1/holds/{opened['id']}/capture", headers=vendor_call(supply.vendor, f"void-c-{opened['id']}")
        )
        assert (late.status_code, late.json()["code"]) == (409, "hold_not_active")
    events = await events_of(vouchers, code, "vouchers.hold.released", 2)
    assert sorted(e["data"]["id"] for e in events) == sorted([first["id"], second["id"]])
    assert {e["data"]["reason"] for e in events} == {"voucher voided: 企业申请注销"}
    assert (await vouchers.get("/v1/ledger/invariants")).json()["ok"] is True


async def test_expiry_releases_a_hold_that_outlives_its_voucher(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
    clock: Callable[[datetime], None],
) -> None:
    clock(datetime(2025, 6, 1, 2, tzinfo=UTC))
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    issued = (await issue(vouchers, decision_id)).json()
    assert issued["valid_until"] == "2026-12-31"
    code = issued["code"]
    clock(datetime(2026, 12, 31, 15, tzinfo=UTC))  # 23:00 on its last day in Shenzhen: a 24-hour hold
    held = await hold(vouchers, code, supply.vendor, 500_000 * YUAN, "exp-1", hold_seconds=24 * 3600)
    assert held.status_code == 201, held.text
    clock(datetime(2027, 1, 1, 2, tzinfo=UTC))  # the voucher is past its date; the hold is not
    expired = await vouchers.post("/v1/expiries", headers=OFFICER_CHEN)
    assert expired.status_code == 200, expired.text
    assert expired.json()["expired_vouchers"] >= 1
    state = await voucher(vouchers, code)
    assert (state["state"], state["held_fen"], state["available_fen"], state["returned_fen"]) == (
        "expired",
        0,
        0,
        3_000_000 * YUAN,
    )
    entry = await release_entry(vouchers_database, held.json()["id"])
    assert (entry["actor"], entry["memo"]) == (supply.vendor, "expired: voucher expired after 2026-12-31")
    [event] = await events_of(vouchers, code, "vouchers.hold.expired", 1)
    assert event["data"]["reason"] == "voucher expired after 2026-12-31"
    assert (await vouchers.get("/v1/ledger/invariants")).json()["ok"] is True
