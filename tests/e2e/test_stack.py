"""End to end: the three services as real uvicorn processes on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from shared.devrun import Stack, start_service, stop_services, wait_ready
from shared.migrations import SERVICES
from tests.conftest import DatabaseFactory, free_port
from tests.factories import organisation_payload

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(databases: DatabaseFactory) -> Iterator[Stack]:
    running = Stack(databases.create("longgang_e2e"), "127.0.0.1", {s: free_port() for s in SERVICES})
    processes = {service: start_service(running, service) for service in SERVICES}
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
    created = httpx.post(base + "/v1/organisations", json=payload, timeout=5)
    assert created.status_code == 201, created.text
    assert created.headers["x-request-id"]
    fetched = httpx.get(base + f"/v1/organisations/{payload['credit_code']}", timeout=5)
    assert fetched.json()["name"] == payload["name"]
    duplicate = httpx.post(base + "/v1/organisations", json=payload, timeout=5, headers={"Accept-Language": "en"})
    assert duplicate.status_code == 409
    assert duplicate.headers["content-type"] == "application/problem+json"
    assert duplicate.json()["detail"] == f"organisation already exists: {payload['credit_code']}"


def test_eligibility_reads_the_registry_it_was_given(stack: Stack) -> None:
    """make run's wiring: the eligibility process finds the registry through REGISTRY_URL."""
    payload = organisation_payload(four_above_category="above_scale_industrial")
    assert httpx.post(stack.url("registry") + "/v1/organisations", json=payload, timeout=5).status_code == 201
    submitted = httpx.post(
        stack.url("eligibility") + "/v1/applications",
        json={
            "applicant": payload["credit_code"],
            "as_of": "2026-03-01",
            "evidence": {"measure": "M6", "diagnosis_reference": "诊断", "audited_investment_fen": 300_000_000},
        },
        timeout=10,
    )
    assert submitted.status_code == 201, submitted.text
    decision = submitted.json()["decision"]
    assert (decision["outcome"], decision["amount_fen"]) == ("eligible", 100_000_000)
