"""An indeterminate outcome: the redemption commits, the reply is lost, the vendor retries.

A real vouchers process sits behind a TCP proxy (in the test, on loopback) that forwards
the request and then cuts the connection instead of passing the reply back — as a
network would after COMMIT and before the response. The vendor's retry with the same
Idempotency-Key must get the original answer, and the ledger must hold one entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest

from devtools.devrun import Stack, start_service, stop_services, wait_ready
from tests.auth import admin
from tests.conftest import DatabaseFactory, free_port
from tests.vouchers.flow import YUAN, approved_m3, issue, vendor_call


class CuttingProxy:
    """Forwards requests upstream; swallows the replies and cuts the client off while `cut` is set."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cut = True
        self.replies_swallowed = 0
        self.server: asyncio.Server | None = None
        self.port = free_port()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def client_to_upstream() -> None:
            try:
                while data := await reader.read(65536):
                    up_writer.write(data)
                    await up_writer.drain()
            except ConnectionError:
                pass

        forward = asyncio.create_task(client_to_upstream())
        try:
            reply = await up_reader.read(65536)  # the upstream has committed and answered
            if self.cut:
                self.replies_swallowed += 1
                writer.transport.abort()  # connection reset: the client never sees the reply
                return
            writer.write(reply)
            while data := await up_reader.read(65536):
                writer.write(data)
            await writer.drain()
        finally:
            forward.cancel()
            up_writer.close()
            writer.close()

    async def __aenter__(self) -> CuttingProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture(scope="module")
def vouchers_process(
    databases: DatabaseFactory, live_eligibility: str, live_registry: str, service_auth_env: dict[str, str]
) -> Iterator[tuple[str, int]]:
    url = databases.create("longgang_vouchers_cut")
    stack = Stack(url, "127.0.0.1", {"vouchers": free_port()})
    environment = {"ELIGIBILITY_URL": live_eligibility, "REGISTRY_URL": live_registry, **service_auth_env}
    process = start_service(stack, "vouchers", extra_env=environment)
    try:
        wait_ready(stack, {"vouchers": process}, timeout=60)
        yield url, stack.ports["vouchers"]
    finally:
        stop_services({"vouchers": process})


@pytest.fixture
async def direct(vouchers_process: tuple[str, int]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{vouchers_process[1]}", timeout=10, headers=admin()
    ) as client:
        yield client


async def test_a_lost_reply_after_commit_is_safe_to_retry(
    vouchers_process: tuple[str, int],
    direct: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
) -> None:
    database_url, port = vouchers_process
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    code = (await issue(direct, decision_id)).json()["code"]
    request = {"amount_fen": 700_000 * YUAN, "invoice_number": "FP-LOST"}
    headers = vendor_call(supply.vendor, "lost-reply-1", Connection="close")

    async with CuttingProxy(port) as proxy:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{proxy.port}", timeout=10) as through_proxy:
            with pytest.raises(httpx.TransportError):
                await through_proxy.post(f"/v1/vouchers/{code}/redemptions", json=request, headers=headers)
        assert proxy.replies_swallowed == 1

    # the outcome was indeterminate for the vendor; the ledger did commit
    retried = await direct.post(f"/v1/vouchers/{code}/redemptions", json=request, headers=headers)
    assert retried.status_code == 201, retried.text
    assert retried.json()["amount_fen"] == 700_000 * YUAN
    assert retried.json()["voucher"]["available_fen"] == 2_300_000 * YUAN  # the state right after the first commit
    again = await direct.post(f"/v1/vouchers/{code}/redemptions", json=request, headers=headers)
    assert again.json() == retried.json()

    connection = await asyncpg.connect(database_url)
    try:
        entries = await connection.fetch(
            "SELECT e.kind FROM vouchers.entries e JOIN vouchers.vouchers v ON v.id = e.voucher_id "
            "WHERE v.code = $1 ORDER BY e.id",
            code,
        )
        redemptions = await connection.fetchval(
            "SELECT count(*) FROM vouchers.redemptions r JOIN vouchers.vouchers v ON v.id = r.voucher_id "
            "WHERE v.code = $1",
            code,
        )
    finally:
        await connection.close()
    assert [e["kind"] for e in entries] == ["issue", "redeem"]
    assert redemptions == 1
    assert (await direct.get(f"/v1/vouchers/{code}")).json()["available_fen"] == 2_300_000 * YUAN
