"""The vouchers service's own metrics: redemptions by outcome, ceiling refusals, the ledger.

Redemption outcomes are counted from the ledger function's answer (no extra query); the
ledger's size and seal lag are read when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from tests.metrics.scrape import requests, scrape, value
from tests.vouchers.flow import YUAN, approved_m3, issue, redeem

REDEEM_ROUTE = "/v1/vouchers/{code}/redemptions"


@pytest.fixture
def clock(vouchers_app: FastAPI) -> Iterator[Callable[[datetime], None]]:
    original = vouchers_app.state.clock

    def set_now(moment: datetime) -> None:
        vouchers_app.state.clock = lambda: moment

    yield set_now
    vouchers_app.state.clock = original


async def _number(database_url: str, query: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval(query))
    finally:
        await connection.close()


async def _entries(database_url: str) -> int:
    return await _number(database_url, "SELECT count(*) FROM vouchers.entries")


async def _seal_gaps(database_url: str) -> int:
    """Seal numbers left unused by sealing transactions that failed."""
    return await _number(database_url, "SELECT coalesce(max(seq), 0) - count(*) FROM vouchers.seals")


async def test_refusals_are_counted_with_their_code_and_ceilings_by_clause(
    vouchers: httpx.AsyncClient,
    vouchers_database: str,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    clock: Callable[[datetime], None],
) -> None:
    before = await scrape(vouchers)
    entries_before = await _entries(vouchers_database)

    # M3 (as test_the_redemption_ceiling_counts_the_redemption_year): 5,000,000 claimed in 2025 …
    clock(datetime(2025, 6, 1, 2, tzinfo=UTC))
    supply, first = await approved_m3(live_registry_client, live_eligibility_client)
    _, second = await approved_m3(
        live_registry_client, live_eligibility_client, supply=supply, claim_fen=2_000_000 * YUAN
    )
    codes = [(await issue(vouchers, d)).json()["code"] for d in (first, second)]
    _, over = await approved_m3(live_registry_client, live_eligibility_client, supply=supply)
    refused_claim = await issue(vouchers, over)  # … a third claim in 2025 is over the claim ceiling
    assert (refused_claim.status_code, refused_claim.json()["code"]) == (409, "claim_ceiling")
    # … and 5,000,000 redeemed in 2026, then one more yuan in 2026 is over the redemption ceiling
    clock(datetime(2026, 3, 1, 2, tzinfo=UTC))
    _, third = await approved_m3(live_registry_client, live_eligibility_client, supply=supply)
    codes.append((await issue(vouchers, third)).json()["code"])
    assert (await redeem(vouchers, codes[0], supply.vendor, 3_000_000 * YUAN, "m-1")).status_code == 201
    too_much = await redeem(vouchers, codes[1], supply.vendor, 2_000_000 * YUAN + 1, "m-2")
    assert (too_much.status_code, too_much.json()["code"]) == (409, "insufficient_balance")
    assert (await redeem(vouchers, codes[1], supply.vendor, 2_000_000 * YUAN, "m-3")).status_code == 201
    refused = await redeem(vouchers, codes[2], supply.vendor, 1 * YUAN, "m-4")
    assert (refused.status_code, refused.json()["code"]) == (409, "redemption_ceiling")
    replayed = await redeem(vouchers, codes[2], supply.vendor, 1 * YUAN, "m-4")  # the same answer, again
    assert replayed.json()["code"] == "redemption_ceiling"

    after = await scrape(vouchers)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("vouchers_redemptions_total", action="redeem", outcome="ok") == 2
    assert moved("vouchers_redemptions_total", action="redeem", outcome="insufficient_balance") == 1
    assert moved("vouchers_redemptions_total", action="redeem", outcome="redemption_ceiling") == 2  # replay: again
    assert moved("vouchers_ceiling_refusals_total", clause="M3", code="redemption_ceiling") == 2
    assert moved("vouchers_ceiling_refusals_total", clause="M3", code="claim_ceiling") == 1
    assert moved("http_problems_total", code="redemption_ceiling", status="409") == 2
    # the bare Starlette route of the hot path is counted under its template, like any route
    assert requests(after, "POST", REDEEM_ROUTE, "2xx") - requests(before, "POST", REDEEM_ROUTE, "2xx") == 2
    assert requests(after, "POST", REDEEM_ROUTE, "4xx") - requests(before, "POST", REDEEM_ROUTE, "4xx") == 3
    # three vouchers issued and two redemptions: five entries, counted from the chain and its lag
    written = await _entries(vouchers_database) - entries_before
    assert written == 5
    assert moved("vouchers_ledger_entries_total") == written
    # the last seal's number plus the unsealed entries: above the count by exactly the numbers that sealing
    # transactions which failed left unused (another app's sealer on this database, earlier in the session)
    assert value(after, "vouchers_ledger_entries_total") == await _entries(vouchers_database) + await _seal_gaps(
        vouchers_database
    )
    assert value(after, "vouchers_seal_lag_entries") >= 0
