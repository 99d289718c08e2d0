"""Streaming against a real vouchers process: a failure mid-stream, a client that goes away, the
limit on concurrent exports.

The ledger here has entries with long memos (about 120 MB of NDJSON in all), and the clients
read through a small socket buffer: more than every buffer between PostgreSQL and the client
holds, so an export that the client stops reading stays in progress, blocked, until the
client reads on or leaves.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
import pytest_asyncio

from shared.auth import PLATFORM
from tests.auth import auth
from tests.conftest import DatabaseFactory, running_service
from tests.exports.helpers import assert_problem

ROUTE = "/v1/exports/ledger-entries"
ENTRIES = 2_000
MEMO = "导出数据" * 5_000  # 60 kB of UTF-8 per entry
#: a small receive buffer (no autotuning): the client holds little of what it does not read
SMALL_BUFFER = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)]
EXPORT_BACKENDS = "SELECT pid FROM pg_stat_activity WHERE application_name = 'vouchers-export' AND datname = $1"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def big_ledger(databases: DatabaseFactory) -> str:
    url = databases.create("exports_stream")

    async def fill() -> None:
        connection = await asyncpg.connect(url)
        try:
            budget = await connection.fetchval(
                "INSERT INTO vouchers.accounts (kind, ref) VALUES ('budget', 'M1:2026') RETURNING id"
            )
            grants = await connection.fetchval(
                "INSERT INTO vouchers.accounts (kind, ref) VALUES ('grant_paid', '9144030071526726XG') RETURNING id"
            )
            await connection.execute(
                "INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, actor, memo) "
                "SELECT 'grant', $1, $2, n, 'bench', $3 FROM generate_series(1, $4::int) n",
                budget,
                grants,
                MEMO,
                ENTRIES,
            )
        finally:
            await connection.close()

    asyncio.run(fill())
    return url


@pytest.fixture(scope="module")
def live_vouchers(big_ledger: str) -> Iterator[str]:
    with running_service(big_ledger, "vouchers", {"VOUCHERS_SEALER_INTERVAL_SECONDS": "0"}) as url:
        yield url


@pytest_asyncio.fixture
async def client(live_vouchers: str) -> AsyncIterator[httpx.AsyncClient]:
    async with slow_reader(live_vouchers) as http:
        yield http


def slow_reader(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=30,
        headers=auth(PLATFORM, name="platform"),
        transport=httpx.AsyncHTTPTransport(socket_options=SMALL_BUFFER),
    )


async def export_backends(database_url: str) -> list[int]:
    connection = await asyncpg.connect(database_url)
    try:
        name = database_url.rsplit("/", 1)[1].split("?")[0]
        return [row["pid"] for row in await connection.fetch(EXPORT_BACKENDS, name)]
    finally:
        await connection.close()


async def wait_for_no_export_backend(database_url: str, seconds: float = 15) -> None:
    for _ in range(int(seconds / 0.2)):
        if not await export_backends(database_url):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"an export's database connection is still open after {seconds} s")


async def test_a_complete_export_ends_with_its_trailer(client: httpx.AsyncClient) -> None:
    lines = 0
    last = b""
    async with client.stream("GET", ROUTE) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            lines += 1
            last = line.encode()
    assert json.loads(last)["end"]["rows"] == ENTRIES == lines - 1


async def test_a_failure_mid_stream_aborts_the_response(client: httpx.AsyncClient, big_ledger: str) -> None:
    """The database connection dies while the client reads: the transfer is cut short (no final
    chunk) and no trailer is ever sent, so nobody can take the file for complete."""
    received = bytearray()
    async with client.stream("GET", ROUTE) as response:
        assert response.status_code == 200
        chunks = response.aiter_raw()
        received += await anext(chunks)
        backends = await export_backends(big_ledger)
        assert len(backends) == 1
        connection = await asyncpg.connect(big_ledger)
        try:
            assert await connection.fetchval("SELECT pg_terminate_backend($1)", backends[0])
        finally:
            await connection.close()

        async def read_on() -> None:
            async for chunk in chunks:
                received.extend(chunk)

        with pytest.raises(httpx.RemoteProtocolError):
            await read_on()
    assert b'{"end":' not in received
    assert received.count(b"\n") < ENTRIES
    # the service is fine afterwards
    response = await client.get(ROUTE, params={"kind": "none_such"})
    assert response.status_code == 200
    assert json.loads(response.content)["end"]["rows"] == 0


async def test_a_client_that_leaves_releases_the_database_connection(
    client: httpx.AsyncClient, big_ledger: str
) -> None:
    async with client.stream("GET", ROUTE, params={"format": "csv"}) as response:
        assert response.status_code == 200
        chunks = response.aiter_raw()  # kept: a dropped iterator closes the response
        await anext(chunks)
        assert len(await export_backends(big_ledger)) == 1
    # the client closed the connection with most of the export unread
    await wait_for_no_export_backend(big_ledger)


async def test_concurrent_exports_are_limited(client: httpx.AsyncClient, live_vouchers: str, big_ledger: str) -> None:
    """Four exports at a time per process (each holds a database connection); the fifth: 429."""
    clients = [slow_reader(live_vouchers) for _ in range(4)]
    streams = []
    readers = []
    try:
        for http in clients:
            stream = http.stream("GET", ROUTE)
            response = await stream.__aenter__()
            streams.append(stream)
            assert response.status_code == 200
            readers.append(response.aiter_raw())  # kept: a dropped iterator closes the response
            await anext(readers[-1])
        assert len(await export_backends(big_ledger)) == 4
        busy = await client.get(ROUTE)
        body = assert_problem(busy, 429, "exports_busy")
        assert busy.headers["retry-after"] == "10"
        assert body["limit"] == 4
    finally:
        for stream in streams:
            await stream.__aexit__(None, None, None)
        for http in clients:
            await http.aclose()
    await wait_for_no_export_backend(big_ledger)
    response = await client.get(ROUTE, params={"kind": "none_such"})
    assert response.status_code == 200
