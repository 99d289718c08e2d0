"""Sandbox mode end to end (issue #15, docs/sandbox.md): the three services as real processes with
SANDBOX_MODE on; an enterprise bound to a test clock at 2026-12-30 applies, gets a model voucher and has it
redeemed; the clock crosses the year: the annual claim ceiling is the new year's, the A4 window and the
voucher's validity follow the clock, and the expiry run expires the voucher by the clock's time. An
unbound enterprise keeps the real clock throughout."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from devtools.devrun import Stack, start_service, stop_services, wait_ready
from shared.auth import OFFICER
from shared.instants import SHENZHEN
from shared.migrations import SERVICES
from tests.auth import admin, auth
from tests.conftest import DatabaseFactory, free_port, provision_service_clients
from tests.vouchers.flow import (
    YUAN,
    ModelSupply,
    approve,
    issue,
    m3_evidence,
    model_supply,
    redeem,
    vendor_call,
)

pytestmark = pytest.mark.e2e

CLAIM_FEN = 3_000_000 * YUAN  # of a 10,000,000 contract: 30%; two in one year pass the 5,000,000 ceiling


@pytest.fixture(scope="module")
def sandbox_stack(databases: DatabaseFactory, ample_budgets: Path) -> Iterator[Stack]:
    running = Stack(databases.create("longgang_sandbox"), "127.0.0.1", {s: free_port() for s in SERVICES})
    environment = {
        **provision_service_clients(running.database_url, running.url("registry")),
        "SANDBOX_MODE": "true",
        "VOUCHERS_BUDGET_FILE": str(ample_budgets),
    }
    processes = {service: start_service(running, service, extra_env=environment) for service in SERVICES}
    try:
        wait_ready(running, processes, timeout=90)
        yield running
    finally:
        stop_services(processes)


@pytest_asyncio.fixture
async def clients(sandbox_stack: Stack) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=sandbox_stack.url("registry"), timeout=10, headers=admin()) as registry,
        httpx.AsyncClient(base_url=sandbox_stack.url("eligibility"), timeout=30, headers=admin()) as eligibility,
        httpx.AsyncClient(base_url=sandbox_stack.url("vouchers"), timeout=30, headers=admin()) as vouchers,
    ):
        yield {"registry": registry, "eligibility": eligibility, "vouchers": vouchers}


async def _clock(registry: httpx.AsyncClient, frozen_time: str, *codes: str) -> str:
    created = await registry.post("/v1/test-clocks", json={"frozen_time": frozen_time, "name": "year end"})
    assert created.status_code == 201, created.text
    clock_id = str(created.json()["id"])
    for code in codes:
        bound = await registry.put(f"/v1/test-clocks/{clock_id}/enterprises/{code}")
        assert bound.status_code == 201, bound.text
    return clock_id


async def _advance(registry: httpx.AsyncClient, clock_id: str, frozen_time: str) -> None:
    advanced = await registry.post(f"/v1/test-clocks/{clock_id}/advance", json={"frozen_time": frozen_time})
    assert advanced.status_code == 200, advanced.text


async def _apply(
    eligibility: httpx.AsyncClient, supply: ModelSupply, signed_on: str = "2026-11-02", **extra: Any
) -> dict[str, Any]:
    """An application dated the day it is received (no `as_of`): the enterprise's day."""
    evidence = m3_evidence(supply, 10_000_000 * YUAN, CLAIM_FEN, signed_on=signed_on)
    response = await eligibility.post("/v1/applications", json={"applicant": supply.holder, "evidence": evidence})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _hold(vouchers: httpx.AsyncClient, code: str, supply: ModelSupply, key: str, ends_at: str) -> int:
    """A hold of 1,000 yuan for 600 s by the voucher's vendor; it must end at `ends_at` (UTC, by the holder's
    clock): its id."""
    held = await vouchers.post(
        f"/v1/vouchers/{code}/holds",
        json={"amount_fen": 1_000 * YUAN, "invoice_number": f"FP-{key}", "hold_seconds": 600},
        headers=vendor_call(supply.vendor, key),
    )
    assert held.status_code == 201, held.text
    assert held.json()["hold_expires_at"].startswith(ends_at), held.json()
    return int(held.json()["id"])


def _real_today() -> str:
    return datetime.now(SHENZHEN).date().isoformat()


async def test_an_application_is_dated_by_its_enterprises_clock(clients: dict[str, httpx.AsyncClient]) -> None:
    registry, eligibility = clients["registry"], clients["eligibility"]
    supply = await model_supply(registry)
    clock_id = await _clock(registry, "2026-12-30T10:00:00+08:00", supply.holder)
    application = await _apply(eligibility, supply)
    assert application["as_of"] == "2026-12-30"
    first = application["decision"]["trace"][0]
    assert (first["clause"], first["inputs"]["test_clock"]) == ("A4", True), first
    # 23:30 UTC on 31 December is New Year's Day in Shenzhen: the day is the clock's, in Shenzhen time
    await _advance(registry, clock_id, "2026-12-31T16:30:00Z")
    assert (await _apply(eligibility, supply))["as_of"] == "2027-01-01"
    # an unbound enterprise applies on the real day, the same moment
    unbound = await model_supply(registry)
    assert (await _apply(eligibility, unbound))["as_of"] == _real_today()


async def test_the_a4_window_follows_the_clock(clients: dict[str, httpx.AsyncClient]) -> None:
    """A4: the measures are in force 2024-10-01 to 2027-09-30; a clock past it is outside, its last day inside."""
    registry, eligibility = clients["registry"], clients["eligibility"]
    supply = await model_supply(registry)
    clock_id = await _clock(registry, "2027-09-30T23:00:00+08:00", supply.holder)
    inside = await _apply(eligibility, supply, signed_on="2027-09-01")
    assert (inside["as_of"], inside["decision"]["outcome"]) == ("2027-09-30", "eligible"), inside["decision"]
    await _advance(registry, clock_id, "2027-10-01T00:00:00+08:00")
    outside = await _apply(eligibility, supply, signed_on="2027-09-02")
    assert (outside["as_of"], outside["decision"]["outcome"]) == ("2027-10-01", "ineligible")
    assert "outside_validity_window" in [failure["code"] for failure in outside["decision"]["failures"]]
    # the same day by the real clock is inside the window for an unbound enterprise
    unbound = await model_supply(registry)
    assert (await _apply(eligibility, unbound, signed_on="2026-11-03"))["decision"]["outcome"] == "eligible"


async def _approved(eligibility: httpx.AsyncClient, supply: ModelSupply, as_of: str) -> str:
    application = await _apply(eligibility, supply)
    assert (application["as_of"], application["decision"]["outcome"]) == (as_of, "eligible"), application
    return await approve(eligibility, application)


async def test_across_new_year_the_ceiling_validity_and_expiry_follow_the_clock(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    """docs/sandbox.md's walk-through: 2026-12-30 → 2027-01-02 → 2028-01-01, one enterprise on a clock."""
    registry, eligibility, vouchers = clients["registry"], clients["eligibility"], clients["vouchers"]
    supply = await model_supply(registry)
    clock_id = await _clock(registry, "2026-12-30T10:00:00+08:00", supply.holder)

    # 2026-12-30: issued on the clock's day, valid to the end of the next calendar year; redeemed
    first = await issue(vouchers, await _approved(eligibility, supply, "2026-12-30"))
    assert first.status_code == 201, first.text
    voucher = first.json()
    assert (voucher["year"], voucher["valid_until"], voucher["state"]) == (2026, "2027-12-31", "active")
    redeemed = await redeem(vouchers, voucher["code"], supply.vendor, 1_000_000 * YUAN, "sandbox-1")
    assert redeemed.status_code == 201, redeemed.text

    # a second contract the same year: 6,000,000 claimed in 2026 would pass the 5,000,000 ceiling
    second = await _approved(eligibility, supply, "2026-12-30")
    refused = await issue(vouchers, second)
    assert (refused.status_code, refused.json()["code"]) == (409, "claim_ceiling"), refused.text
    assert "2026" in refused.json()["detail"]

    # 2027-01-02: the same decision is issued against 2027's ceiling; the first voucher still redeems
    await _advance(registry, clock_id, "2027-01-02T10:00:00+08:00")
    issued = await issue(vouchers, second)
    assert issued.status_code == 201, issued.text
    assert (issued.json()["year"], issued.json()["valid_until"]) == (2027, "2028-12-31")
    again = await redeem(vouchers, voucher["code"], supply.vendor, 500_000 * YUAN, "sandbox-2", invoice="FP-2")
    assert again.status_code == 201, again.text
    # a hold ends by the holder's clock; captured while the clock has not moved
    hold_id = await _hold(vouchers, voucher["code"], supply, "sandbox-hold", "2027-01-02T02:10:00")
    captured = await vouchers.post(
        f"/v1/holds/{hold_id}/capture", headers=vendor_call(supply.vendor, "sandbox-capture")
    )
    assert captured.status_code == 200, captured.text

    # an unbound enterprise is on the real clock: nothing of it expires, its vouchers' year is today's
    other = await model_supply(registry)
    application = await _apply(eligibility, other)
    assert application["as_of"] == _real_today()
    real = await issue(vouchers, await approve(eligibility, application))
    assert real.status_code == 201, real.text
    assert real.json()["year"] == int(_real_today()[:4])

    # 2028-01-01: past the first voucher's last day and the A4 window
    await _advance(registry, clock_id, "2028-01-01T09:00:00+08:00")
    read = await vouchers.get(f"/v1/vouchers/{voucher['code']}")
    assert read.json()["state"] == "expired", read.json()  # by the holder's clock, before the expiry run
    late = await redeem(vouchers, voucher["code"], supply.vendor, 1_000 * YUAN, "sandbox-3", invoice="FP-3")
    assert (late.status_code, late.json()["code"]) == (409, "voucher_expired"), late.text
    expired = await vouchers.post("/v1/expiries")
    assert expired.status_code == 200, expired.text
    assert expired.json()["expired_vouchers"] == 1  # the first voucher: the second is valid to 2028-12-31
    read = await vouchers.get(f"/v1/vouchers/{voucher['code']}")
    assert read.json()["expired_at"].startswith("2028-01-01T01:00:00"), read.json()
    assert read.json()["returned_fen"] == voucher["amount_fen"] - 1_501_000 * YUAN
    assert (await vouchers.get(f"/v1/vouchers/{real.json()['code']}")).json()["state"] == "active"
    assert (await vouchers.get(f"/v1/vouchers/{issued.json()['code']}")).json()["state"] == "active"
    outside = await _apply(eligibility, supply, signed_on="2027-12-01")
    assert (outside["as_of"], outside["decision"]["outcome"]) == ("2028-01-01", "ineligible")
    assert "outside_validity_window" in [failure["code"] for failure in outside["decision"]["failures"]]


async def test_the_expiry_run_ends_a_hold_by_its_holders_clock(clients: dict[str, httpx.AsyncClient]) -> None:
    """A bound enterprise's hold is released by the expiry run once the enterprise's clock has passed the hold's
    end, and not before; the real clock, months behind, does not decide it (it did until the sweep of holds
    followed the clocks as the vouchers' expiry does)."""
    registry, eligibility, vouchers = clients["registry"], clients["eligibility"], clients["vouchers"]
    supply = await model_supply(registry)
    clock_id = await _clock(registry, "2027-03-01T10:00:00+08:00", supply.holder)
    issued = await issue(vouchers, await _approved(eligibility, supply, "2027-03-01"))
    assert issued.status_code == 201, issued.text
    code, amount = issued.json()["code"], issued.json()["amount_fen"]
    await _hold(vouchers, code, supply, "sandbox-expiring-hold", "2027-03-01T02:10:00")

    assert (await vouchers.post("/v1/expiries")).status_code == 200  # the clock says 10:00: the hold stands
    read = (await vouchers.get(f"/v1/vouchers/{code}")).json()
    assert (read["held_fen"], read["available_fen"]) == (1_000 * YUAN, amount - 1_000 * YUAN), read

    await _advance(registry, clock_id, "2027-03-01T10:11:00+08:00")
    assert (await vouchers.post("/v1/expiries")).status_code == 200
    read = (await vouchers.get(f"/v1/vouchers/{code}")).json()
    assert (read["held_fen"], read["available_fen"], read["state"]) == (0, amount, "active"), read


async def test_a_clock_never_goes_back_and_only_an_administrator_moves_it(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    registry = clients["registry"]
    supply = await model_supply(registry)
    clock_id = await _clock(registry, "2026-12-30T10:00:00+08:00", supply.holder)
    back = await registry.post(f"/v1/test-clocks/{clock_id}/advance", json={"frozen_time": "2026-12-29T00:00:00Z"})
    assert (back.status_code, back.json()["code"]) == (409, "test_clock_backwards")
    officer = await registry.post(
        f"/v1/test-clocks/{clock_id}/advance",
        json={"frozen_time": "2027-01-01T00:00:00Z"},
        headers=auth(OFFICER, name="officer-chen"),
    )
    assert (officer.status_code, officer.json()["code"]) == (403, "forbidden")
    assert (await registry.get(f"/v1/test-clocks/{clock_id}")).json()["frozen_time"] == "2026-12-30T02:00:00Z"
