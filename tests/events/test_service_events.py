"""Each service writes an event for each state change, in the same transaction as the change."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from shared.auth import APPROVER, OFFICER, PLATFORM
from shared.dbroles import login_url
from tests.auth import admin, auth
from tests.eligibility import seed
from tests.events.conftest import eventually
from tests.factories import organisation_payload
from tests.vouchers.flow import OFFICER_CHEN, YUAN, approve, approved_m3, issue, redeem, submit, vendor_call

_keys = itertools.count(1)


async def feed_of(client: httpx.AsyncClient, subject: str | None = None, **params: Any) -> list[dict[str, Any]]:
    """Every event the feed serves now (as the data platform), optionally of one subject."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query: dict[str, Any] = {"limit": 500, **params}
        if cursor:
            query["after"] = cursor
        page = await client.get("/v1/events", params=query, headers=auth(PLATFORM))
        assert page.status_code == 200, page.text
        body = page.json()
        items.extend(item for item in body["items"] if subject is None or item["subject"] == subject)
        cursor = body["next_cursor"]
        if not body["has_more"]:
            return items


def types_of(items: list[dict[str, Any]]) -> list[str]:
    return [item["type"] for item in items]


# --- registry ------------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def registry_events(events_database: str) -> AsyncIterator[httpx.AsyncClient]:
    """The registry service on the events database, committing (no rollback)."""
    from services.registry.app import create_app
    from services.registry.settings import RegistrySettings

    app = create_app(RegistrySettings(database_url=login_url(events_database, "registry")))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry", headers=admin()) as client:
            yield client


async def test_registry_writes_an_event_per_new_version(registry_events: httpx.AsyncClient) -> None:
    payload = organisation_payload()
    code = payload["credit_code"]
    assert (await registry_events.post("/v1/organisations", json=payload)).status_code == 201
    duplicate = await registry_events.post("/v1/organisations", json=payload)
    assert duplicate.status_code == 409
    patched = await registry_events.patch(f"/v1/organisations/{code}", json={"name": "深圳龙岗改名科技有限公司"})
    assert patched.status_code == 200, patched.text
    unchanged = await registry_events.patch(f"/v1/organisations/{code}", json={"name": "深圳龙岗改名科技有限公司"})
    assert unchanged.status_code == 200

    events = await eventually(lambda: _at_least(registry_events, code, 2))
    assert types_of(events) == ["registry.organisation.created", "registry.organisation.changed"]
    created, changed = events
    assert created["organisation"] == code
    assert created["data"]["key"] == {"credit_code": code}
    assert created["data"]["version"] == 1
    assert created["data"]["data"]["name"] == payload["name"]
    assert changed["data"]["version"] == 2
    assert changed["data"]["data"]["name"] == "深圳龙岗改名科技有限公司"

    # a bulk import: one event per created or changed row, none for unchanged rows
    fresh = organisation_payload()
    rows = [fresh, {**payload, "name": "深圳龙岗再改名科技有限公司"}, {**payload, "name": "深圳龙岗再改名科技有限公司"}]
    refused = await registry_events.post("/v1/imports/organisations", json=rows)
    assert refused.status_code == 422, "a duplicate row: all or nothing, so nothing is written"
    report = await registry_events.post("/v1/imports/organisations", json=rows[:2])
    assert report.status_code == 200, report.text
    assert (report.json()["created"], report.json()["updated"]) == (1, 1)
    again = await registry_events.post("/v1/imports/organisations", json=rows[:2])
    assert again.json()["unchanged"] == 2
    await eventually(lambda: _at_least(registry_events, fresh["credit_code"], 1))
    assert types_of(await feed_of(registry_events, fresh["credit_code"])) == ["registry.organisation.created"]
    assert types_of(await feed_of(registry_events, code)) == [
        "registry.organisation.created",
        "registry.organisation.changed",
        "registry.organisation.changed",
    ]


async def _at_least(client: httpx.AsyncClient, subject: str, count: int, **params: Any) -> list[dict[str, Any]] | None:
    events = await feed_of(client, subject, **params)
    return events if len(events) >= count else None


async def test_registry_uid_records_and_the_vendor_filter(registry_events: httpx.AsyncClient) -> None:
    vendor = await seed.vendor(registry_events, is_model_vendor=True)
    model_id = await seed.model(registry_events, vendor)
    events = await eventually(lambda: _at_least(registry_events, model_id, 1))
    assert events[0]["type"] == "registry.model.created"
    assert events[0]["vendor"] == vendor
    assert events[0]["data"]["key"] == {"id": model_id}
    vendors = await eventually(lambda: _at_least(registry_events, vendor, 2))
    assert types_of(vendors) == ["registry.organisation.created", "registry.vendor.created"]
    assert vendors[1]["vendor"] == vendor
    # the registry's webhooks are for the bureau and the data platform only
    refused = await registry_events.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/x"}, headers=auth("vendor", org=vendor)
    )
    assert refused.status_code == 403


# --- eligibility and vouchers (the live processes of tests/conftest.py) -------------------------


@pytest.fixture
def clock(vouchers_app: FastAPI) -> Iterator[Callable[[datetime], None]]:
    original = vouchers_app.state.clock

    def set_now(moment: datetime) -> None:
        vouchers_app.state.clock = lambda: moment

    yield set_now
    vouchers_app.state.clock = original


def key() -> str:
    return f"events-{next(_keys)}"


async def test_eligibility_events_follow_an_application(
    live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    holder, evidence = await seed.m6_applicant(live_registry_client, 1_000_000 * YUAN)
    application = await submit(live_eligibility_client, holder, evidence, as_of="2026-02-01")
    await approve(live_eligibility_client, application)
    events = await eventually(lambda: _at_least(live_eligibility_client, application["id"], 4))
    assert types_of(events) == [
        "eligibility.application.submitted",
        "eligibility.application.decided",
        "eligibility.application.reviewed",
        "eligibility.application.approved",
    ]
    assert {event["organisation"] for event in events} == {holder}
    decided, approved = events[1], events[3]
    assert decided["data"]["decision"]["outcome"] == "eligible"
    assert decided["data"]["decision"]["amount_fen"] == 500_000 * YUAN
    assert approved["data"]["status"] == "approved"
    assert approved["data"]["review"]["step"] == "approval"
    assert approved["data"]["review"]["actor"] == "li"

    rejected_application = await submit(
        live_eligibility_client, *await seed.m6_applicant(live_registry_client, 1_000_000 * YUAN), as_of="2026-02-01"
    )
    path = f"/v1/applications/{rejected_application['id']}"
    reviewer, approver = auth(OFFICER, name="wang"), auth(APPROVER, name="li")
    assert (
        await live_eligibility_client.post(
            path + "/reviews", json={"verdict": "reject", "reason": "材料不全"}, headers=reviewer
        )
    ).status_code == 200
    assert (
        await live_eligibility_client.post(
            path + "/approvals", json={"verdict": "reject", "reason": "同意驳回"}, headers=approver
        )
    ).status_code == 200
    a1 = await live_eligibility_client.post(
        path + "/manual-decisions",
        json={"amount_fen": 100 * YUAN, "reason": "一事一议：特批"},
        headers=auth(APPROVER, name="zhao"),
    )
    assert a1.status_code == 200, a1.text
    events = await eventually(lambda: _at_least(live_eligibility_client, rejected_application["id"], 5))
    assert types_of(events)[2:] == [
        "eligibility.application.reviewed",
        "eligibility.application.rejected",
        "eligibility.application.a1_decided",
    ]
    assert events[-1]["data"]["decision"]["kind"] == "manual_a1"


async def test_voucher_events_in_order_per_voucher(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    clock: Callable[[datetime], None],
) -> None:
    now = datetime.now(UTC)
    clock(now)
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    issued = await issue(vouchers, decision_id)
    assert issued.status_code == 201, issued.text
    code = issued.json()["code"]
    assert (await redeem(vouchers, code, supply.vendor, 100 * YUAN, key())).status_code == 201
    holds = []
    for _ in range(3):
        held = await vouchers.post(
            f"/v1/vouchers/{code}/holds",
            json={"amount_fen": 10 * YUAN, "invoice_number": "FP-H", "hold_seconds": 60},
            headers=vendor_call(supply.vendor, key()),
        )
        assert held.status_code == 201, held.text
        holds.append(held.json()["id"])
    captured = await vouchers.post(f"/v1/holds/{holds[0]}/capture", headers=vendor_call(supply.vendor, key()))
    assert captured.status_code == 200, captured.text
    released = await vouchers.post(f"/v1/holds/{holds[1]}/release", headers=vendor_call(supply.vendor, key()))
    assert released.status_code == 200, released.text
    clock(now + timedelta(minutes=5))  # the third hold has lapsed
    assert (await vouchers.post("/v1/expiries", headers=OFFICER_CHEN)).status_code == 200
    refused = await redeem(vouchers, code, supply.vendor, 10**12, key())
    assert refused.status_code == 409, "a refusal changes nothing and writes no event"
    voided = await vouchers.post(f"/v1/vouchers/{code}/void", json={"reason": "合同解除"}, headers=OFFICER_CHEN)
    assert voided.status_code == 200, voided.text

    events = await eventually(lambda: _at_least(vouchers, code, 9))
    assert types_of(events) == [
        "vouchers.voucher.issued",
        "vouchers.voucher.redeemed",
        "vouchers.voucher.held",
        "vouchers.voucher.held",
        "vouchers.voucher.held",
        "vouchers.hold.captured",
        "vouchers.hold.released",
        "vouchers.hold.expired",
        "vouchers.voucher.voided",
    ]
    assert {event["organisation"] for event in events} == {supply.holder}
    assert {event["vendor"] for event in events} == {supply.vendor}
    redeemed = events[1]["data"]
    assert (redeemed["amount_fen"], redeemed["status"], redeemed["voucher_code"]) == (100 * YUAN, "captured", code)
    assert events[5]["data"]["id"] == holds[0]
    assert (events[7]["data"]["id"], events[7]["data"]["status"]) == (holds[2], "expired")
    assert events[-1]["data"]["reason"] == "合同解除"
    assert events[-1]["data"]["state"] == "voided"

    # settlement: the vendor's batch is created and closed
    batch = await vouchers.post("/v1/settlement-batches", json={"vendor": supply.vendor}, headers=OFFICER_CHEN)
    assert batch.status_code == 201, batch.text
    batch_id = batch.json()["id"]
    closed = await vouchers.post(f"/v1/settlement-batches/{batch_id}/close", headers=auth(OFFICER, name="officer-wu"))
    assert closed.status_code == 200, closed.text
    batches = await eventually(lambda: _at_least(vouchers, str(batch_id), 2, types="vouchers.settlement_batch.*"))
    assert types_of(batches) == ["vouchers.settlement_batch.created", "vouchers.settlement_batch.closed"]
    assert batches[1]["vendor"] == supply.vendor
    assert batches[1]["data"]["total_fen"] == 110 * YUAN


async def test_grant_events_and_voucher_expiry(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    clock: Callable[[datetime], None],
) -> None:
    holder, evidence = await seed.m6_applicant(live_registry_client, 1_000_000 * YUAN)
    application = await submit(live_eligibility_client, holder, evidence, as_of="2026-02-01")
    decision_id = await approve(live_eligibility_client, application)
    granted = await vouchers.post("/v1/grants", json={"decision_id": decision_id}, headers=OFFICER_CHEN)
    assert granted.status_code == 201, granted.text
    grant_id = str(granted.json()["id"])
    reversal = await vouchers.post(
        f"/v1/grants/{grant_id}/reversal", json={"reason": "重复拨付"}, headers=auth(APPROVER, name="approver-sun")
    )
    assert reversal.status_code == 201, reversal.text
    grants = await eventually(lambda: _at_least(vouchers, grant_id, 2, types="vouchers.grant.*"))
    assert types_of(grants) == ["vouchers.grant.disbursed", "vouchers.grant.reversed"]
    assert grants[0]["organisation"] == holder
    assert grants[1]["data"]["reversed_by_entry_id"] == reversal.json()["reversed_by_entry_id"]

    clock(datetime(2025, 6, 1, 2, tzinfo=UTC))
    _, m3_decision = await approved_m3(live_registry_client, live_eligibility_client)
    code = (await issue(vouchers, m3_decision)).json()["code"]
    clock(datetime(2027, 1, 2, 2, tzinfo=UTC))
    assert (await vouchers.post("/v1/expiries", headers=OFFICER_CHEN)).status_code == 200
    events = await eventually(lambda: _at_least(vouchers, code, 2))
    assert types_of(events) == ["vouchers.voucher.issued", "vouchers.voucher.expired"]
    assert events[1]["data"]["state"] == "expired"
    assert events[1]["data"]["returned_fen"] == 3_000_000 * YUAN
