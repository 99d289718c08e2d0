"""Issue #5's acceptance test for webhooks: the three services as real processes with authentication on.

Every client gets its token from the registry's token endpoint (client credentials). A
vendor client subscribes to the vouchers service's events and redeems; a real HTTP server
in this test receives the signed event, verifies its signature and sees it once. Then the
receiver goes away, more changes are made, and when it is back it receives every event it
missed, in order, each once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from devtools import devauth
from devtools.devrun import Stack, start_service, stop_services, wait_ready
from shared.auth import APPROVER, OFFICER, PLATFORM, VENDOR
from shared.migrations import SERVICES
from tests.conftest import AUTH_DIR, DatabaseFactory, free_port
from tests.events.receiver import Receiver
from tests.factories import new_credit_code, organisation_payload
from tests.vouchers.flow import ModelSupply, m3_evidence

pytestmark = pytest.mark.e2e

YUAN = 100
#: quick retries, so that the test does not wait minutes (production: 5 s doubling up to 10 min, for 24 h)
FAST_WEBHOOKS = {
    "WEBHOOK_BACKOFF_BASE_SECONDS": "0.05",
    "WEBHOOK_BACKOFF_CAP_SECONDS": "0.5",
    "WEBHOOK_POLL_SECONDS": "0.1",
    "WEBHOOK_TIMEOUT_SECONDS": "3",
    "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",  # the receiver listens on 127.0.0.1
}


@dataclass
class Running:
    stack: Stack
    clients: dict[str, Any]
    vendor: str

    def client(self, service: str, client_id: str) -> httpx.Client:
        """An HTTP client for `service` acting as `client_id`, with a token from the token endpoint."""
        token = devauth.fetch_token(self.stack.url("registry"), self.clients[client_id])
        return httpx.Client(
            base_url=self.stack.url(service),
            headers={"Authorization": f"Bearer {token}", "Accept-Language": "en"},
            timeout=30,
        )


@pytest.fixture(scope="module")
def running(databases: DatabaseFactory) -> Iterator[Running]:
    database_url = databases.create("longgang_e2e_webhooks")
    stack = Stack(database_url, "127.0.0.1", {service: free_port() for service in SERVICES})
    processes = {"registry": start_service(stack, "registry", extra_env=FAST_WEBHOOKS)}
    try:
        wait_ready(stack, processes, timeout=60)
        vendor = new_credit_code()
        wanted = {
            **devauth.SERVICE_CLIENTS,
            "e2e-platform": {"name": "data platform", "scopes": [PLATFORM]},
            "e2e-officer": {"name": "officer wang", "scopes": [OFFICER]},
            "e2e-approver": {"name": "approver li", "scopes": [APPROVER]},
            "e2e-vendor": {"name": "model vendor", "scopes": [VENDOR], "organisation": vendor},
        }
        clients = devauth.ensure_clients(database_url, AUTH_DIR / f"e2e-webhooks-{uuid.uuid4().hex[:8]}.json", wanted)
        environment = {**devauth.service_env(AUTH_DIR, stack.url("registry"), clients), **FAST_WEBHOOKS}
        for service in ("eligibility", "vouchers"):
            processes[service] = start_service(stack, service, extra_env=environment)
        wait_ready(stack, processes, timeout=60)
        yield Running(stack, clients, vendor)
    finally:
        stop_services(processes)


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def eventually(check: Callable[[], Any], within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {within} s")
        time.sleep(0.05)


def approved_m3_decision(running: Running) -> tuple[ModelSupply, str]:
    """Registry facts entered by the data platform; the officer submits and reviews, the approver approves."""
    with (
        running.client("registry", "e2e-platform") as registry,
        running.client("eligibility", "e2e-officer") as officer,
        running.client("eligibility", "e2e-approver") as approver,
    ):
        holder = created(registry.post("/v1/organisations", json=organisation_payload(registered_on="2021-01-04")))
        if registry.get(f"/v1/vendors/{running.vendor}").status_code == 404:
            organisation = organisation_payload(credit_code=running.vendor, registered_on="2021-01-04")
            created(registry.post("/v1/organisations", json=organisation))
            vendor = {"credit_code": running.vendor, "effective_from": "2021-01-04", "is_model_vendor": True}
            created(registry.post("/v1/vendors", json=vendor))
        model = created(
            registry.post(
                "/v1/models",
                json={
                    "vendor_credit_code": running.vendor,
                    "name": f"龙岗行业大模型-{uuid.uuid4().hex[:6]}",
                    "effective_from": "2021-01-04",
                },
            )
        )
        filing = {
            "number": f"Guangdong-E2E{uuid.uuid4().hex[:8]}-202403010001",
            "model_id": model["id"],
            "kind": "filing",
            "filed_on": "2024-03-01",
        }
        created(registry.post("/v1/filings", json=filing))
        supply = ModelSupply(holder["credit_code"], running.vendor, model["id"])
        application = created(
            officer.post(
                "/v1/applications",
                json={
                    "applicant": supply.holder,
                    "as_of": "2025-05-01",
                    "as_of_reason": "逾期登记的纸质申请",
                    "evidence": m3_evidence(supply, 10_000_000 * YUAN, 3_000_000 * YUAN),
                },
            )
        )
        assert application["decision"]["outcome"] == "eligible", application["decision"]
        path = f"/v1/applications/{application['id']}"
        created(officer.post(path + "/reviews", json={"verdict": "approve", "reason": "材料齐全"}))
        created(approver.post(path + "/approvals", json={"verdict": "approve", "reason": "同意"}))
        return supply, str(application["decision"]["id"])


def vendor_call(vendor: httpx.Client, method: str, path: str, **body: Any) -> dict[str, Any]:
    headers = {"Idempotency-Key": f"e2e-{uuid.uuid4().hex}"}
    return created(vendor.request(method, path, json=body or None, headers=headers))


def test_a_vendor_receives_its_signed_events_once_and_everything_it_missed_in_order(running: Running) -> None:
    _, decision_id = approved_m3_decision(running)
    receiver = Receiver().start()
    try:
        with (
            running.client("vouchers", "e2e-vendor") as vendor,
            running.client("vouchers", "e2e-officer") as officer,
            running.client("vouchers", "e2e-platform") as platform,
        ):
            hook = created(
                vendor.post(
                    "/v1/webhooks",
                    json={"url": receiver.url, "event_types": ["vouchers.voucher.*", "vouchers.hold.*"]},
                    headers={"Idempotency-Key": "e2e-hook"},
                )
            )
            assert hook["filter"] == {"all_objects": False, "vendor": running.vendor, "organisation": None}
            secret = hook["secret"]
            code = created(officer.post("/v1/vouchers", json={"decision_id": decision_id}))["code"]

            # the vendor redeems: the receiver gets the signed event, once
            redemption = vendor_call(
                vendor, "POST", f"/v1/vouchers/{code}/redemptions", amount_fen=1_000 * YUAN, invoice_number="FP-1"
            )
            redeemed = eventually(
                lambda: [r for r in receiver.accepted() if r.event["type"] == "vouchers.voucher.redeemed"]
            )
            time.sleep(0.5)  # a duplicate would have come by now
            assert len(redeemed) == 1
            (event,) = redeemed
            assert event.verified(secret)
            assert not event.verified("whsec_someone-else")
            assert event.headers["longgang-event-id"] == event.event["id"]
            assert event.event["subject"] == code
            assert event.event["data"]["id"] == redemption["id"]
            assert event.event["data"]["amount_fen"] == 1_000 * YUAN
            assert event.event["data"]["vendor"] == running.vendor
            assert [r.event["type"] for r in receiver.accepted()] == [
                "vouchers.voucher.issued",
                "vouchers.voucher.redeemed",
            ]
            assert len(receiver.requests) == 2, "nothing was sent twice"
            seen = len(receiver.accepted())

            # the receiver goes away; the vendor goes on working
            receiver.stop()
            for number in range(2, 5):
                vendor_call(
                    vendor,
                    "POST",
                    f"/v1/vouchers/{code}/redemptions",
                    amount_fen=number * 100 * YUAN,
                    invoice_number=f"FP-{number}",
                )
            held = vendor_call(
                vendor, "POST", f"/v1/vouchers/{code}/holds", amount_fen=50 * YUAN, invoice_number="FP-H1"
            )
            vendor_call(vendor, "POST", f"/v1/holds/{held['id']}/capture")
            held_again = vendor_call(
                vendor, "POST", f"/v1/vouchers/{code}/holds", amount_fen=70 * YUAN, invoice_number="FP-H2"
            )
            vendor_call(vendor, "POST", f"/v1/holds/{held_again['id']}/release")

            def failed_attempts() -> list[dict[str, Any]] | None:
                log = created(vendor.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"limit": 500}))["items"]
                failures = [d for d in log if not d["delivered"]]
                return failures if len(failures) >= 3 else None

            failures = eventually(failed_attempts)
            assert all(f["status_code"] is None and f["error"] for f in failures), "connection refused, logged"
            assert len({f["event_id"] for f in failures}) == 1, "retried the same (first missed) event, no skipping"

            # it is back: every missed event arrives, in order, each once
            receiver.start()
            missed = 7
            eventually(lambda: len(receiver.accepted()) >= seen + missed)
            time.sleep(0.5)
            accepted = receiver.accepted()
            assert len(accepted) == seen + missed
            caught_up = accepted[seen:]
            assert [(r.event["type"], r.event["data"]["amount_fen"]) for r in caught_up] == [
                ("vouchers.voucher.redeemed", 200 * YUAN),
                ("vouchers.voucher.redeemed", 300 * YUAN),
                ("vouchers.voucher.redeemed", 400 * YUAN),
                ("vouchers.voucher.held", 50 * YUAN),
                ("vouchers.hold.captured", 50 * YUAN),
                ("vouchers.voucher.held", 70 * YUAN),
                ("vouchers.hold.released", 70 * YUAN),
            ]
            assert all(r.verified(secret) for r in accepted)
            ids = [r.event_id for r in accepted]
            assert len(set(ids)) == len(ids), "each event once"

            # the same events, in the same order, as the change feed serves them to the data platform
            feed = created(
                platform.get("/v1/events", params={"types": "vouchers.voucher.*,vouchers.hold.*", "limit": 500})
            )
            assert [item["id"] for item in feed["items"] if item["subject"] == code] == ids

            status = created(vendor.get(f"/v1/webhooks/{hook['id']}"))
            assert (status["status"], status["attempts"], status["failing_since"]) == ("active", 0, None)
    finally:
        receiver.stop()


def test_the_other_services_feed_their_own_changes(running: Running) -> None:
    """The registry's and eligibility's changes are in their own feeds, for the data platform."""
    supply, decision_id = approved_m3_decision(running)
    with (
        running.client("registry", "e2e-platform") as registry,
        running.client("eligibility", "e2e-platform") as eligibility,
        running.client("eligibility", "e2e-vendor") as vendor,
    ):

        def registry_types() -> list[str]:
            items = created(registry.get("/v1/events", params={"limit": 500}))["items"]
            return [item["type"] for item in items if item["subject"] == supply.holder]

        assert eventually(registry_types) == ["registry.organisation.created"]

        def eligibility_types() -> list[str] | None:
            items = created(eligibility.get("/v1/events", params={"limit": 500}))["items"]
            found = [item for item in items if (item["data"].get("decision") or {}).get("id") == decision_id]
            return [item["type"] for item in found] if len(found) >= 4 else None

        assert eventually(eligibility_types) == [
            "eligibility.application.submitted",
            "eligibility.application.decided",
            "eligibility.application.reviewed",
            "eligibility.application.approved",
        ]
        # a vendor reads no applications, so it subscribes to none of their events either
        refused = vendor.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/x"})
        assert refused.status_code == 403
