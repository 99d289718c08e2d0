"""The redemption path waits for a ledger connection at most the pool timeout, then answers 503 (issue #16's pool).

A vouchers app whose ledger pool has one connection and a pool timeout of `TIMEOUT` seconds
(`VOUCHERS_DB_POOL_TIMEOUT_SECONDS`, the bound every other pool of the service has). The test holds that one
connection: a vendor's redemption then gets 503 `service_busy` with Retry-After instead of waiting without end, and
nothing of it is written (its Idempotency-Key is not even claimed: the same call, sent again once a connection is
free, is redeemed). Calls queued behind it go as one batch, which finds no connection either: each of them gets the
503 once, not a wait per call (a batch without a connection is not answered call by call).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import asyncpg
import httpx
import pytest_asyncio
from fastapi import FastAPI

from services.vouchers.redemptions.group_commit import GroupCommit
from tests.identity.common import assert_problem
from tests.vouchers.flow import YUAN, model_supply, redeem
from tests.vouchers.test_group_commit import issued_codes, until

TIMEOUT = 1.0


@pytest_asyncio.fixture(scope="module")
async def app(running_vouchers_app: Callable[..., AbstractAsyncContextManager[FastAPI]]) -> AsyncIterator[FastAPI]:
    async with running_vouchers_app(group_commit=True, hot_pool_size=1, db_pool_timeout_seconds=TIMEOUT) as app:
        yield app


def assert_busy(response: httpx.Response) -> None:
    assert_problem(response, 503, "service_busy")
    assert response.headers["Retry-After"] == "1"


async def claimed(database: str, keys: list[str]) -> int:
    connection = await asyncpg.connect(database)
    try:
        found = await connection.fetchval("SELECT count(*) FROM vouchers.idempotency WHERE key = ANY($1)", keys)
        return int(found)
    finally:
        await connection.close()


async def test_no_free_ledger_connection_is_503_within_the_timeout_and_writes_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    group_commit: GroupCommit = app.state.group_commit
    supply = await model_supply(live_registry_client)
    (code,) = await issued_codes(client, live_registry_client, live_eligibility_client, [supply])
    stamp = time.time_ns()
    keys = [f"pool-{stamp}-{n}" for n in range(3)]
    fallbacks = group_commit.fallbacks
    lane = group_commit.lanes[0]

    async with app.state.ledger_pool.ready.acquire():  # the pool's only connection, held
        first = asyncio.ensure_future(redeem(client, code, supply.vendor, 100 * YUAN, keys[0], f"FP-{stamp}-0"))

        async def waiting_alone() -> bool:
            return lane.busy

        await until(waiting_alone, "the first redemption to wait for a connection, alone")
        queued = [
            asyncio.ensure_future(redeem(client, code, supply.vendor, 100 * YUAN, key, f"FP-{stamp}-{n}"))
            for n, key in enumerate(keys[1:], start=1)
        ]

        async def both_queued() -> bool:
            return len(lane.waiting) == 2 or first.done()

        await until(both_queued, "two more redemptions to wait in the lane")
        assert not first.done(), "the first call was answered before the others queued: raise TIMEOUT"
        # bounded: without the pool timeout these would wait as long as the connection is held
        answers = await asyncio.wait_for(asyncio.gather(first, *queued), timeout=20)
    for answer in answers:
        assert_busy(answer)
    assert group_commit.fallbacks == fallbacks  # the batch without a connection was not answered call by call
    assert await claimed(vouchers_database, keys) == 0  # nothing written, not even the keys' claims

    # a connection free again: the same calls are redeemed (new, not replays of a stored 503)
    again = [
        await redeem(client, code, supply.vendor, 100 * YUAN, key, f"FP-{stamp}-{n}") for n, key in enumerate(keys)
    ]
    assert [answer.status_code for answer in again] == [201, 201, 201], [answer.text for answer in again]
    assert await claimed(vouchers_database, keys) == 3
    voucher = (await client.get(f"/v1/vouchers/{code}")).json()
    assert voucher["redeemed_fen"] == 300 * YUAN, voucher
