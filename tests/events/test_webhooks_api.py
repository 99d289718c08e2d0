"""Webhook subscriptions over HTTP: who may, whose they are, what is refused, safe retries."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from shared.auth import ADMIN, APPLICANT, AUDITOR, DASHBOARD, OFFICER, PLATFORM
from shared.feed.dispatcher import Dispatcher
from shared.pagination import decode_cursor_keys
from tests.auth import as_applicant, as_vendor, auth
from tests.events.conftest import fast_settings
from tests.factories import new_credit_code

HOOK = "http://127.0.0.1:9/hooks"  # nothing listens there; these tests never emit an event


async def create(client: httpx.AsyncClient, headers: dict[str, str], url: str = HOOK, **body: Any) -> httpx.Response:
    return await client.post("/v1/webhooks", json={"url": url, **body}, headers=headers)


async def test_create_shows_the_secret_once_and_reads_do_not(client: httpx.AsyncClient) -> None:
    platform = auth(PLATFORM, name="platform-api-test")
    created = await create(client, platform, event_types=["vouchers.voucher.redeemed", "vouchers.hold.*"])
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert len(body["secret"]) > 40
    assert created.headers["location"] == f"/v1/webhooks/{body['id']}"
    assert body["status"] == "active"
    assert body["filter"] == {"all_objects": True, "vendor": None, "organisation": None}
    assert body["event_types"] == ["vouchers.voucher.redeemed", "vouchers.hold.*"]

    one = await client.get(f"/v1/webhooks/{body['id']}", headers=platform)
    assert one.status_code == 200
    assert "secret" not in one.json()
    listed = await client.get("/v1/webhooks", headers=platform)
    assert [item["id"] for item in listed.json()["items"]] == [body["id"]]
    assert "secret" not in listed.json()["items"][0]


async def test_a_client_sees_only_its_own_subscriptions(client: httpx.AsyncClient) -> None:
    vendor_a, vendor_b = new_credit_code(), new_credit_code()
    created = await create(client, as_vendor(vendor_a))
    assert created.status_code == 201, created.text
    mine = created.json()
    assert mine["filter"] == {"all_objects": False, "vendor": vendor_a, "organisation": None}
    path = f"/v1/webhooks/{mine['id']}"

    other = as_vendor(vendor_b)
    for method, suffix in (
        ("GET", ""),
        ("DELETE", ""),
        ("POST", "/resume"),
        ("GET", "/deliveries"),
        ("POST", "/deliveries/1/redeliver"),
    ):
        response = await client.request(method, path + suffix, headers=other)
        assert response.status_code == 404, (method, suffix, response.text)
        assert response.json()["code"] == "webhook_not_found"
    assert (await client.get("/v1/webhooks", headers=other)).json()["items"] == []
    # administrators manage every subscription (e.g. a revoked client's)
    assert (await client.get(path, headers=auth(ADMIN))).status_code == 200
    assert (await client.get(path, headers=as_vendor(vendor_a))).status_code == 200

    applicant = new_credit_code()
    bound = await create(client, as_applicant(applicant))
    assert bound.json()["filter"] == {"all_objects": False, "vendor": None, "organisation": applicant}


async def test_roles(client: httpx.AsyncClient) -> None:
    for headers in (auth(PLATFORM), auth(ADMIN), auth(AUDITOR), as_vendor(new_credit_code())):
        assert (await create(client, headers)).status_code == 201
    assert (await create(client, as_applicant(new_credit_code()))).status_code == 201
    for role in (OFFICER, DASHBOARD):
        refused = await create(client, auth(role))
        assert refused.status_code == 403
        assert refused.json()["code"] == "forbidden"
        assert (await client.get("/v1/webhooks", headers=auth(role))).status_code == 403
    assert (await client.get("/v1/webhooks", headers={"Authorization": ""})).status_code == 401
    types = await client.get("/v1/events/types", headers=auth(APPLICANT, org=new_credit_code()))
    assert types.status_code == 200
    assert {"type": "vouchers.voucher.redeemed", "description": "A vendor redeemed part or all of a voucher"} in (
        types.json()
    )
    assert all(item["type"].startswith("vouchers.") for item in types.json())


async def test_only_http_urls_and_known_types(client: httpx.AsyncClient) -> None:
    for url in (
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://",
        "example.com/x",
        "http://host:99999/x",
    ):
        refused = await create(client, auth(PLATFORM), url=url)
        assert refused.status_code == 422, (url, refused.text)
        assert refused.json()["errors"][0]["code"] == "url_not_allowed", url
    for types in (["vouchers.voucher.teleported"], ["registry.organisation.created"], ["x.*"], ["vouchers.nothing.*"]):
        refused = await create(client, auth(PLATFORM), event_types=types)
        assert refused.status_code == 422, types
        assert refused.json()["errors"][0]["code"] == "unknown_event_type"
    extra = await create(client, auth(PLATFORM), secret="mine")
    assert extra.status_code == 422
    assert (await create(client, auth(PLATFORM), url="https://example.com/hook")).status_code == 201


async def test_creation_is_safe_to_retry_with_an_idempotency_key(client: httpx.AsyncClient) -> None:
    platform = auth(PLATFORM, name="platform-retry-test", **{"Idempotency-Key": "hook-1"})
    first = await create(client, platform, event_types=["vouchers.voucher.issued"])
    again = await create(client, platform, event_types=["vouchers.voucher.issued"])
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json(), "the reply was lost: the retry gets the same subscription and secret"
    assert again.headers["idempotent-replayed"] == "true"
    other_body = await create(client, platform, event_types=["vouchers.voucher.voided"])
    assert (other_body.status_code, other_body.json()["code"]) == (409, "idempotency_key_reused")
    # the same key of another client is that client's own
    elsewhere = await create(client, auth(PLATFORM, name="platform-retry-other", **{"Idempotency-Key": "hook-1"}))
    assert elsewhere.status_code == 201
    assert elsewhere.json()["id"] != first.json()["id"]
    listed = await client.get("/v1/webhooks", headers=platform)
    assert [item["id"] for item in listed.json()["items"]] == [first.json()["id"]]


async def test_deactivate_resume_and_the_limit(client: httpx.AsyncClient, events_app: FastAPI) -> None:
    vendor = as_vendor(new_credit_code())
    created = (await create(client, vendor)).json()
    path = f"/v1/webhooks/{created['id']}"
    assert (await client.post(path + "/resume", headers=vendor)).json()["status"] == "active"
    assert (await client.delete(path, headers=vendor)).status_code == 204
    assert (await client.delete(path, headers=vendor)).status_code == 204  # idempotent
    gone = (await client.get(path, headers=vendor)).json()
    assert gone["status"] == "deactivated"
    assert gone["deactivated_at"]
    refused = await client.post(path + "/resume", headers=vendor)
    assert (refused.status_code, refused.json()["code"]) == (409, "webhook_deactivated")

    dispatcher: Dispatcher = events_app.state.dispatcher
    dispatcher.settings = fast_settings(max_per_client=2)
    assert (await create(client, vendor)).status_code == 201
    assert (await create(client, vendor)).status_code == 201  # the deactivated one does not count
    over = await create(client, vendor)
    assert (over.status_code, over.json()["code"]) == (409, "webhook_limit")


async def test_start_position(client: httpx.AsyncClient) -> None:
    beginning = await create(client, auth(PLATFORM), after="beginning")
    assert beginning.status_code == 201
    now = await create(client, auth(PLATFORM))
    assert decode_cursor_keys("vouchers-events", beginning.json()["delivered_up_to"], 2) == (0, 0)
    resumed = await create(client, auth(PLATFORM), after=now.json()["delivered_up_to"])
    assert resumed.json()["delivered_up_to"] == now.json()["delivered_up_to"]
    bad = await create(client, auth(PLATFORM), after="not-a-cursor")
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_cursor")


async def test_private_addresses_are_refused_unless_allowed(client: httpx.AsyncClient, events_app: FastAPI) -> None:
    """Otherwise a subscriber could make the service call (and, by the log, probe) its internal network."""
    dispatcher: Dispatcher = events_app.state.dispatcher
    dispatcher.settings = fast_settings(allow_private_networks=False)
    for url in (
        "http://127.0.0.1:8080/hooks",
        "http://localhost/hooks",
        "http://10.1.2.3/hooks",
        "http://192.168.0.10/hooks",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hooks",
        "http://0.0.0.0/hooks",
    ):
        refused = await create(client, auth(PLATFORM), url=url)
        assert refused.status_code == 422, (url, refused.text)
        assert refused.json()["errors"][0]["code"] == "url_not_allowed"
    assert (await create(client, auth(PLATFORM), url="https://203.0.113.9/hooks")).status_code == 422  # TEST-NET
    assert (await create(client, auth(PLATFORM), url="https://8.8.8.8/hooks")).status_code == 201
