"""Group commit's lanes (issue #16): calls of one enterprise wait for each other, another enterprise's do not.

A vouchers app with two lanes (`group_commit_in_flight=2`). A redemption's transaction holds its voucher's
row and its holder's M3 ceiling row until its commit, so two batches with one enterprise in common would
wait for each other in PostgreSQL anyway: a call's lane is its voucher's holder's (`crc32(holder) % 2`).
The test holds a lock on voucher A1 (enterprise A): the redemption of A1 waits in PostgreSQL and takes A's
lane; a redemption of A2 (the same enterprise) then waits in the process for that lane, while one of B1
(an enterprise of the other lane) is answered at once. Released, both of A's are answered. A capture of a hold
of A's takes A's lane too, whatever lane the hold's id alone would give.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
import httpx
import pytest_asyncio
from fastapi import FastAPI

from services.vouchers.redemptions.group_commit import GroupCommit
from tests.vouchers.flow import YUAN, model_supply, redeem, vendor_call
from tests.vouchers.test_group_commit import issued_codes, until

LANES = 2


@pytest_asyncio.fixture(scope="module")
async def app(running_vouchers_app: Callable[..., AbstractAsyncContextManager[FastAPI]]) -> AsyncIterator[FastAPI]:
    async with running_vouchers_app(group_commit=True, group_commit_in_flight=LANES) as app:
        yield app


def lane_of(holder: str) -> int:
    return zlib.crc32(holder.encode()) % LANES


@asynccontextmanager
async def stuck_redemption(
    client: httpx.AsyncClient, database: str, code: str, vendor: str, tag: str
) -> AsyncIterator[tuple[asyncio.Future[httpx.Response], Callable[[], Awaitable[None]]]]:
    """A redemption of `code` sent and waiting in PostgreSQL for its voucher's row, which another session holds
    (its lane busy meanwhile); yields the redemption's answer to come and the release of the row."""
    # the lock is held in one session; pg_stat_activity is read from another (a transaction sees one snapshot of it)
    locker, watcher = await asyncpg.connect(database), await asyncpg.connect(database)
    try:
        lock = locker.transaction()
        await lock.start()
        await locker.execute("SELECT 1 FROM vouchers.vouchers WHERE code = $1 FOR UPDATE", code)
        answer = asyncio.ensure_future(redeem(client, code, vendor, 100 * YUAN, f"l{tag}", f"FP-{tag}"))

        async def waits() -> bool:
            assert not answer.done(), answer.result().text
            return bool(
                await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE '%vouchers.redeem(%'"
                )
            )

        await until(waits, f"the redemption of {code} to wait for its voucher's lock")
        yield answer, lock.commit
    finally:
        await locker.close()
        await watcher.close()


async def test_an_enterprise_waits_for_its_own_lane_and_not_for_another(
    app: FastAPI,
    client: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    group_commit: GroupCommit = app.state.group_commit
    registry, eligibility = live_registry_client, live_eligibility_client
    a = await model_supply(registry)
    b = await model_supply(registry)
    while lane_of(b.holder) == lane_of(a.holder):  # an enterprise of the other lane (one in two is)
        b = await model_supply(registry)
    a1, a2, b1 = await issued_codes(client, registry, eligibility, [a, a, b], claim_fen=100_000 * YUAN)
    stamp = time.time_ns()

    async with stuck_redemption(client, vouchers_database, a1, a.vendor, f"{stamp}-a1") as (first, release):
        own_lane = group_commit.lanes[lane_of(a.holder)]
        assert own_lane.busy
        assert not own_lane.waiting
        second = asyncio.ensure_future(redeem(client, a2, a.vendor, 100 * YUAN, f"l{stamp}-a2", f"FP-{stamp}-a2"))

        async def second_queued() -> bool:
            return len(own_lane.waiting) == 1

        await until(second_queued, "A2's redemption to wait in A's lane")
        # the other lane is free: B1's redemption is answered while A1's voucher is still locked
        other = await asyncio.wait_for(
            redeem(client, b1, b.vendor, 100 * YUAN, f"l{stamp}-b1", f"FP-{stamp}-b1"), timeout=20
        )
        assert other.status_code == 201, other.text
        assert not first.done()
        assert not second.done()
        await release()
        answers = await asyncio.gather(first, second)
    assert [answer.status_code for answer in answers] == [201, 201], [answer.text for answer in answers]
    assert group_commit.holder_of_code[a1] == group_commit.holder_of_code[a2] == a.holder
    assert group_commit.holder_of_code[b1] == b.holder
    assert group_commit.lane_of_holder(a.holder) == lane_of(a.holder) != lane_of(b.holder)
    assert not any(lane.busy or lane.waiting for lane in group_commit.lanes)


async def test_a_capture_waits_in_its_holds_holders_lane(
    app: FastAPI,
    client: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    """A capture changes its hold's voucher row and its holder's ceiling row, as the holder's redemptions do: it
    takes the holder's lane (read by the hold's id), not a lane by the id, so it waits behind A's redemption."""
    group_commit: GroupCommit = app.state.group_commit
    a = await model_supply(live_registry_client)
    a1, a2 = await issued_codes(client, live_registry_client, live_eligibility_client, [a, a], claim_fen=100_000 * YUAN)
    stamp = time.time_ns()
    own_lane = group_commit.lanes[lane_of(a.holder)]
    hold_id = None
    for n in range(20):  # a hold whose id alone would take the other lane (one in two does)
        held = await client.post(
            f"/v1/vouchers/{a2}/holds",
            json={"amount_fen": YUAN, "invoice_number": f"FP-{stamp}-h{n}"},
            headers=vendor_call(a.vendor, f"l{stamp}-h{n}"),
        )
        assert held.status_code == 201, held.text
        if int(held.json()["id"]) % LANES != lane_of(a.holder):
            hold_id = int(held.json()["id"])
            break
    assert hold_id is not None

    async with stuck_redemption(client, vouchers_database, a1, a.vendor, f"{stamp}-a1") as (first, release):
        assert own_lane.busy
        capture = asyncio.ensure_future(
            client.post(f"/v1/holds/{hold_id}/capture", headers=vendor_call(a.vendor, f"l{stamp}-c"))
        )

        async def capture_queued() -> bool:
            assert not capture.done(), capture.result().text
            return len(own_lane.waiting) == 1

        await until(capture_queued, "the capture to wait in A's lane")
        await release()
        answers = await asyncio.gather(first, capture)
    assert [answer.status_code for answer in answers] == [201, 200], [answer.text for answer in answers]
    assert not any(lane.busy or lane.waiting for lane in group_commit.lanes)


async def test_a_capture_of_no_hold_takes_a_lane_by_its_id_and_is_answered_404(
    app: FastAPI, client: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    a = await model_supply(live_registry_client)
    missing = 2**61 + time.time_ns() % 1000  # within the path's bound, no such hold
    answer = await client.post(f"/v1/holds/{missing}/capture", headers=vendor_call(a.vendor, f"l{time.time_ns()}-m"))
    assert answer.status_code == 404, answer.text
    assert not any(lane.busy or lane.waiting for lane in app.state.group_commit.lanes)
