"""End to end: the three services as real uvicorn processes on a real PostgreSQL, authentication on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools import devauth
from devtools.devrun import Stack, start_service, stop_services, wait_ready
from shared.auth import VENDOR
from shared.migrations import SERVICES
from tests.auth import admin
from tests.conftest import DatabaseFactory, free_port, provision_service_clients
from tests.eligibility.seed import vendor as seed_vendor
from tests.factories import organisation_payload
from tests.vouchers.flow import YUAN, approved_m3, issue

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(databases: DatabaseFactory) -> Iterator[Stack]:
    running = Stack(databases.create("longgang_e2e"), "127.0.0.1", {s: free_port() for s in SERVICES})
    # the services' own clients (eligibility and vouchers call their peers with tokens)
    environment = provision_service_clients(running.database_url, running.url("registry"))
    processes = {service: start_service(running, service, extra_env=environment) for service in SERVICES}
    try:
        wait_ready(running, processes, timeout=60)
        yield running
    finally:
        stop_services(processes)
    assert all(process.returncode is not None for process in processes.values())


def test_all_three_are_ready_and_document_themselves(stack: Stack) -> None:
    for service in SERVICES:
        ready = httpx.get(stack.url(service) + "/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["service"] == service
        assert ready.json()["migration"] is not None
        openapi = httpx.get(stack.url(service) + "/openapi.json", timeout=5).json()
        assert openapi["info"]["title"]
    docs = httpx.get(stack.url("registry") + "/docs", timeout=5)
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


def test_registry_round_trip_over_real_http(stack: Stack) -> None:
    base = stack.url("registry")
    payload = organisation_payload()
    anonymous = httpx.post(base + "/v1/organisations", json=payload, timeout=5)
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthenticated")
    created = httpx.post(base + "/v1/organisations", json=payload, timeout=5, headers=admin())
    assert created.status_code == 201, created.text
    assert created.headers["x-request-id"]
    fetched = httpx.get(base + f"/v1/organisations/{payload['credit_code']}", timeout=5, headers=admin())
    assert fetched.json()["name"] == payload["name"]
    duplicate = httpx.post(
        base + "/v1/organisations", json=payload, timeout=5, headers=admin(**{"Accept-Language": "en"})
    )
    assert duplicate.status_code == 409
    assert duplicate.headers["content-type"] == "application/problem+json"
    assert duplicate.json()["detail"] == f"organisation already exists: {payload['credit_code']}"


def test_eligibility_reads_the_registry_it_was_given(stack: Stack) -> None:
    """make run's wiring: the eligibility process finds the registry through REGISTRY_URL."""
    payload = organisation_payload(four_above_category="above_scale_industrial")
    created = httpx.post(stack.url("registry") + "/v1/organisations", json=payload, timeout=5, headers=admin())
    assert created.status_code == 201, created.text
    diagnosis = {
        "credit_code": payload["credit_code"],
        "recognised_on": "2025-06-15",
        "details": {
            "kind": "digital_diagnosis",
            "project": "诊断",
            "reference": "诊断",
            "authority": "深圳市工业和信息化局",
        },
    }
    recorded = httpx.post(stack.url("registry") + "/v1/recognitions", json=diagnosis, timeout=5, headers=admin())
    assert recorded.status_code == 201, recorded.text
    evidence = {
        "diagnosis_reference": "诊断",
        "diagnosis_id": recorded.json()["id"],
        "audited_investment_fen": 300_000_000,
    }
    submitted = httpx.post(
        stack.url("eligibility") + "/v1/applications",
        json={
            "applicant": payload["credit_code"],
            "as_of": "2026-03-01",
            "as_of_reason": "逾期登记的纸质申请",
            "evidence": {"measure": "M6", **evidence},
        },
        timeout=10,
        headers=admin(),
    )
    assert submitted.status_code == 201, submitted.text
    decision = submitted.json()["decision"]
    assert (decision["outcome"], decision["amount_fen"]) == ("eligible", 100_000_000)


async def test_a_vendor_client_redeems_with_a_token_from_the_token_endpoint(stack: Stack, tmp_path: Path) -> None:
    """Over real HTTP: an officer issues, the vendor's own system gets a token (client credentials)
    from the registry and redeems; another vendor's client is told the voucher does not exist."""
    async with (
        httpx.AsyncClient(base_url=stack.url("registry"), timeout=10, headers=admin()) as registry,
        httpx.AsyncClient(base_url=stack.url("eligibility"), timeout=30, headers=admin()) as eligibility,
        httpx.AsyncClient(base_url=stack.url("vouchers"), timeout=30, headers=admin()) as vouchers,
    ):
        supply, decision_id = await approved_m3(registry, eligibility)
        issued = await issue(vouchers, decision_id)
        assert issued.status_code == 201, issued.text
        code = issued.json()["code"]
        stranger = await seed_vendor(registry, is_model_vendor=True)

    clients = await asyncio.to_thread(  # (it runs its own event loop)
        devauth.ensure_clients,
        stack.database_url,
        tmp_path / "clients.json",
        {
            f"e2e-vendor-{supply.vendor}": {
                "name": "e2e model vendor",
                "scopes": [VENDOR],
                "organisation": supply.vendor,
            },
            f"e2e-vendor-{stranger}": {"name": "e2e other vendor", "scopes": [VENDOR], "organisation": stranger},
        },
    )
    tokens = {
        vendor: await asyncio.to_thread(devauth.fetch_token, stack.url("registry"), clients[f"e2e-vendor-{vendor}"])
        for vendor in (supply.vendor, stranger)
    }
    body = {"amount_fen": 1_000 * YUAN, "invoice_number": "FP-E2E"}
    async with httpx.AsyncClient(base_url=stack.url("vouchers"), timeout=30) as vendor_system:
        own = {"Authorization": f"Bearer {tokens[supply.vendor]}", "Idempotency-Key": "e2e-1"}
        redeemed = await vendor_system.post(f"/v1/vouchers/{code}/redemptions", json=body, headers=own)
        assert redeemed.status_code == 201, redeemed.text
        assert (redeemed.json()["vendor"], redeemed.json()["amount_fen"]) == (supply.vendor, 1_000 * YUAN)
        seen = await vendor_system.get(f"/v1/vouchers/{code}", headers={"Authorization": own["Authorization"]})
        assert seen.json()["redeemed_fen"] == 1_000 * YUAN
        other = {"Authorization": f"Bearer {tokens[stranger]}", "Idempotency-Key": "e2e-2"}
        refused = await vendor_system.post(f"/v1/vouchers/{code}/redemptions", json=body, headers=other)
        assert (refused.status_code, refused.json()["code"]) == (404, "voucher_not_found")
        anonymous = await vendor_system.post(f"/v1/vouchers/{code}/redemptions", json=body)
        assert anonymous.status_code == 401
