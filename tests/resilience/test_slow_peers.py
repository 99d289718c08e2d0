"""Issue #7: slow and broken peers. A fault proxy (tests/resilience/proxy.py) sits on each service-to-service path:

    eligibility ──proxy──▶ registry        facts for an application (one POST /v1/facts, issue #16)
    vouchers    ──proxy──▶ eligibility     the approved decision and the policy parameters (issuance)
    vouchers    ──proxy──▶ registry        is the vendor a compute vendor, unaffiliated? (M1 redemption)

For each fault — an answer later than the peer timeout, a request swallowed, a connection reset as the
request arrives or as it is accepted, a reply cut mid-way — the caller gives up within its peer
timeout (each GET, and the facts read sent as POST, is tried up to `RETRIES + 1` times, with a short backoff, as
shared/peers.py retries safe requests, all within the one timeout: a hung peer costs one timeout, not one per
attempt), answers a clean 503 problem+json `peer_unavailable` with Retry-After, and writes
nothing: no application, no voucher, no entry, no allowance, no outbox event, no idempotency record,
and the ledger's invariants hold. A fault that passes (one cut reply; a slow answer within the
timeout) costs nothing but time, and once the network heals the same request succeeds.

Not part of `make test` (pyproject: --ignore); `make test-resilience` runs it.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from services.vouchers.invariants import check_database
from tests.auth import admin
from tests.resilience.cluster import ONE_EACH, Cluster
from tests.resilience.history import SUMMARIES
from tests.resilience.proxy import Fault, FaultProxy
from tests.resilience.workload import _approve, _submit
from tests.vouchers.flow import OFFICER_CHEN, YUAN, m1_decision, m3_evidence, model_supply, vendor_call

PEER_TIMEOUT = 0.5  # seconds, for both callers (ELIGIBILITY_ and VOUCHERS_PEER_TIMEOUT_SECONDS)
RETRIES = 2  # shared.peers.make_peer_client: a GET (or a read sent as POST) is sent at most 3 times
#: the longest a caller may take to give up: the call's timeout (its attempts and their backoff all within it),
#: plus process slack; below the 1.65 s at least that a hung peer cost before 2026-12-07 (three attempts' timeouts
#: and the backoff between them)
GIVE_UP_WITHIN = PEER_TIMEOUT + 1.0
SLOW = 5.0  # seconds: a peer this slow would hold the caller far beyond its timeout

TABLES = {
    "eligibility": ("applications", "decisions", "reviews", "outbox"),
    "vouchers": ("vouchers", "entries", "accounts", "allowances", "redemptions", "idempotency", "outbox"),
}
#: every way the network can fail a request for good (each rule applies to every attempt)
FAILURES: dict[str, Callable[[bytes | None], Fault]] = {
    "slower than the timeout": lambda match: Fault("latency", seconds=SLOW, match=match),
    "request swallowed": lambda match: Fault("blackhole", match=match),
    "connection reset on request": lambda match: Fault("drop", match=match),
    "reply cut mid-way": lambda match: Fault("cut", after_bytes=60, match=match),
    "connection reset on accept": lambda match: Fault("refuse"),
}


@dataclass
class Peers:
    database_url: str
    registry: str  # direct
    eligibility: str  # direct (its registry is behind `eligibility_to_registry`)
    vouchers: str  # direct (its peers are behind `vouchers_to_eligibility` and `vouchers_to_registry`)
    eligibility_to_registry: FaultProxy
    vouchers_to_eligibility: FaultProxy
    vouchers_to_registry: FaultProxy

    def heal(self) -> None:
        for proxy in (self.eligibility_to_registry, self.vouchers_to_eligibility, self.vouchers_to_registry):
            proxy.clear()


@pytest_asyncio.fixture(scope="module", params=["aiohttp", "httpcore"])
async def peers(request: pytest.FixtureRequest) -> AsyncIterator[Peers]:
    """One process of each service on a PostgreSQL of their own, every service-to-service call through a proxy;
    the peer clients carried by either `PEER_HTTP_CLIENT` (shared/peer_transport.py): each must fail the same way."""
    workdir = Path(tempfile.mkdtemp(prefix="longgang-peers-"))
    http_client = request.param
    environment = {
        "ELIGIBILITY_PEER_TIMEOUT_SECONDS": str(PEER_TIMEOUT),
        "VOUCHERS_PEER_TIMEOUT_SECONDS": str(PEER_TIMEOUT),
        "ELIGIBILITY_PEER_HTTP_CLIENT": http_client,
        "VOUCHERS_PEER_HTTP_CLIENT": http_client,
        "VOUCHERS_VENDOR_CHECK_TTL_SECONDS": "0",  # ask the registry at every M1 redemption
    }
    cluster = Cluster(workdir, environment, topology=ONE_EACH)
    failures_before, failed = request.session.testsfailed, True
    try:
        await asyncio.to_thread(cluster.start_database)
        registry, eligibility = cluster.processes["registry-0"].port, cluster.processes["eligibility-0"].port
        async with (
            FaultProxy(registry, name="eligibility→registry") as eligibility_to_registry,
            FaultProxy(registry, name="vouchers→registry") as vouchers_to_registry,
            FaultProxy(eligibility, name="vouchers→eligibility") as vouchers_to_eligibility,
        ):
            # tokens come straight from the registry (AUTH_TOKEN_URL); the data calls pass the proxies
            cluster.peer_urls = {
                "eligibility-0": {"REGISTRY_URL": eligibility_to_registry.url},
                "vouchers-0": {
                    "ELIGIBILITY_URL": vouchers_to_eligibility.url,
                    "REGISTRY_URL": vouchers_to_registry.url,
                },
            }
            await asyncio.to_thread(cluster.start_all)  # in a thread: the proxies serve on this loop meanwhile
            yield Peers(
                cluster.database_url,
                cluster.url("registry-0"),
                cluster.url("eligibility-0"),
                cluster.url("vouchers-0"),
                eligibility_to_registry,
                vouchers_to_eligibility,
                vouchers_to_registry,
            )
            failed = request.session.testsfailed > failures_before
    finally:
        await asyncio.to_thread(cluster.stop)
        if failed:
            print(f"logs and data kept in {workdir}\n{cluster.log_tail()}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        if CASES:
            limit = f"peer timeout {PEER_TIMEOUT} s per call, at most {GIVE_UP_WITHIN:.2f} s to give up"
            SUMMARIES.append(f"slow and broken peers, {http_client} ({limit}):\n" + "\n".join(CASES))
            CASES.clear()


@pytest_asyncio.fixture
async def clients(peers: Peers) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, httpx.AsyncClient]]:
    peers.heal()
    async with (
        httpx.AsyncClient(base_url=peers.registry, timeout=30, headers=admin()) as registry,
        httpx.AsyncClient(base_url=peers.eligibility, timeout=30, headers=admin()) as eligibility,
        httpx.AsyncClient(base_url=peers.vouchers, timeout=30, headers=admin()) as vouchers,
    ):
        yield registry, eligibility, vouchers
    peers.heal()


async def row_counts(database_url: str, schema: str) -> dict[str, int]:
    connection = await asyncpg.connect(database_url)
    try:
        return {t: int(await connection.fetchval(f"SELECT count(*) FROM {schema}.{t}")) for t in TABLES[schema]}
    finally:
        await connection.close()


async def timed(call: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


#: one line per broken request, for the session's summary (tests/resilience/conftest.py)
CASES: list[str] = []


def assert_clean_503(response: httpx.Response, elapsed: float, path: str, case: str) -> None:
    CASES.append(f"  {path}, {case}: {response.status_code} after {elapsed:.2f} s")
    peer = path.rsplit(" ", 1)[1]
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert (body["code"], body["peer"]) == ("peer_unavailable", peer), body
    assert int(response.headers["retry-after"]) > 0
    assert elapsed <= GIVE_UP_WITHIN, f"gave up after {elapsed:.2f} s, later than {GIVE_UP_WITHIN:.2f} s"


async def each_fault_answers_503(
    peers: Peers,
    proxy: FaultProxy,
    call: Callable[[], Awaitable[httpx.Response]],
    path: str,
    at: bytes,
    *,
    ledger_checked: bool = False,
) -> None:
    """Every failure of FAILURES, at every call of `path` and at the one call that names `at`: a clean 503 within
    the bound, and not a row written in the caller's schema (nor, for the ledger, an invariant broken)."""
    schema = path.split(" ", 1)[0]
    for where in (None, at):
        for name, fault in FAILURES.items():
            if where is not None and name == "connection reset on accept":
                continue  # a connection is accepted before the request says what it is for
            before = await row_counts(peers.database_url, schema)
            proxy.add(fault(where))
            response, elapsed = await timed(call())
            proxy.clear()
            assert_clean_503(response, elapsed, path, f"{name} at {(where or b'every call').decode()}")
            assert await row_counts(peers.database_url, schema) == before, (name, where)
            if ledger_checked:
                assert await check_database(peers.database_url) == []


async def test_eligibility_with_a_broken_registry_answers_503_and_stores_no_application(
    peers: Peers, clients: tuple[httpx.AsyncClient, httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    registry, eligibility, _ = clients
    supply = await model_supply(registry)
    proxy = peers.eligibility_to_registry

    async def apply() -> httpx.Response:
        evidence = m3_evidence(supply, 10_000_000 * YUAN, 1_000_000 * YUAN)
        return await eligibility.post(
            "/v1/applications",
            json={
                "applicant": supply.holder,
                "as_of": "2025-05-01",
                "as_of_reason": "逾期登记的纸质申请",
                "evidence": evidence,
            },
        )

    # every call, or the one facts read (POST /v1/facts: the application's facts in one call)
    await each_fault_answers_503(peers, proxy, apply, "eligibility → registry", b"/v1/facts")

    # one reply cut (the facts read is sent again: it only reads), then a registry slow within the timeout: slower
    cuts, slow = proxy.stats["cut"], proxy.stats["latency"]
    proxy.add(Fault("cut", after_bytes=30, times=1))
    proxy.add(Fault("latency", seconds=PEER_TIMEOUT / 3))
    response, _ = await timed(apply())
    assert response.status_code == 201, response.text
    assert (proxy.stats["cut"], proxy.stats["latency"] > slow) == (cuts + 1, True)


async def test_issuance_with_a_broken_eligibility_answers_503_and_writes_nothing(
    peers: Peers, clients: tuple[httpx.AsyncClient, httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    registry, eligibility, vouchers = clients
    supply = await model_supply(registry)
    application = await _submit(eligibility, supply.holder, m3_evidence(supply, 10_000_000 * YUAN, 2_000_000 * YUAN))
    decision_id = await _approve(eligibility, eligibility, application)
    proxy = peers.vouchers_to_eligibility

    async def issue() -> httpx.Response:
        return await vouchers.post("/v1/vouchers", json={"decision_id": decision_id}, headers=OFFICER_CHEN)

    # every failure, at every call and at one of the parameters issuing reads (the redemption ceiling): all are
    # asked in parallel before the issuing transaction opens, so either fails the request within one call's budget
    await each_fault_answers_503(
        peers, proxy, issue, "vouchers → eligibility", b"M3.annual_redemption_ceiling_fen", ledger_checked=True
    )

    issued = await issue()  # the network healed: issued once
    assert issued.status_code == 201, issued.text
    again = await issue()
    assert (again.status_code, again.json()["code"]) == (409, "already_issued")
    assert await check_database(peers.database_url) == []


async def test_an_m1_redemption_with_a_broken_registry_answers_503_and_the_same_key_succeeds_later(
    peers: Peers, clients: tuple[httpx.AsyncClient, httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    registry, eligibility, vouchers = clients
    _, provider, application = await m1_decision(registry, eligibility)
    decision_id = await _approve(eligibility, eligibility, application)
    issued = await vouchers.post("/v1/vouchers", json={"decision_id": decision_id}, headers=OFFICER_CHEN)
    assert issued.status_code == 201, issued.text
    code = issued.json()["code"]
    proxy = peers.vouchers_to_registry
    request = {"amount_fen": 10_000 * YUAN, "invoice_number": "FP-PEER-1"}
    headers = vendor_call(provider, "peer-broken-1")

    async def redeem() -> httpx.Response:
        return await vouchers.post(f"/v1/vouchers/{code}/redemptions", json=request, headers=headers)

    # the vendor's record, or the holder's affiliations after it
    await each_fault_answers_503(peers, proxy, redeem, "vouchers → registry", b"/v1/affiliations")

    redeemed = await redeem()  # the same key, the network healed: redeemed once
    assert redeemed.status_code == 201, redeemed.text
    assert (await redeem()).json() == redeemed.json()
    assert redeemed.json()["voucher"]["available_fen"] == 490_000 * YUAN
    assert await check_database(peers.database_url) == []
