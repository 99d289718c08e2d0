"""The fault proxy itself, against a tiny HTTP/1.1 server (no services, fast: part of `make test`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.resilience.proxy import Fault, FaultProxy


class Upstream:
    """Answers every request with its path, on kept-alive connections; remembers what it received."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.port = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = dict(line.lower().split(":", 1) for line in lines[1:] if ":" in line)
                length = int(headers.get("content-length", "0"))
                if length:
                    await reader.readexactly(length)
                self.received.append(path)
                body = ("answer:" + path + " " + "x" * 200).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body))
                writer.write(body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Upstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture
async def rig() -> AsyncIterator[tuple[Upstream, FaultProxy, httpx.AsyncClient]]:
    async with (
        Upstream() as upstream,
        FaultProxy(upstream.port) as proxy,
        httpx.AsyncClient(base_url=proxy.url, timeout=2.0) as client,
    ):
        yield upstream, proxy, client


async def test_a_healthy_proxy_passes_requests_on_one_kept_alive_connection(
    rig: tuple[Upstream, FaultProxy, httpx.AsyncClient],
) -> None:
    upstream, proxy, client = rig
    for path in ("/a", "/b", "/c"):
        response = await client.post(path, json={"n": 1})
        assert response.status_code == 200
        assert response.text.startswith(f"answer:{path} ")
    assert upstream.received == ["/a", "/b", "/c"]
    assert proxy.stats["requests"] == 3
    assert proxy.stats["connections"] == 1


async def test_latency_delays_the_answer_and_outlasts_an_impatient_caller(
    rig: tuple[Upstream, FaultProxy, httpx.AsyncClient],
) -> None:
    _, proxy, client = rig
    proxy.add(Fault("latency", seconds=0.4))
    started = time.monotonic()
    assert (await client.get("/slow")).status_code == 200
    assert time.monotonic() - started >= 0.4
    with pytest.raises(httpx.ReadTimeout):
        await client.get("/slower", timeout=0.1)
    assert proxy.stats["latency"] == 2


async def test_a_dropped_request_never_reaches_the_peer(rig: tuple[Upstream, FaultProxy, httpx.AsyncClient]) -> None:
    upstream, proxy, client = rig
    proxy.add(Fault("drop", match=b"/dropped"))
    with pytest.raises(httpx.TransportError):
        await client.get("/dropped")
    assert (await client.get("/fine")).status_code == 200
    assert upstream.received == ["/fine"]


async def test_a_blackhole_swallows_the_request_and_the_caller_times_out(
    rig: tuple[Upstream, FaultProxy, httpx.AsyncClient],
) -> None:
    upstream, proxy, client = rig
    proxy.add(Fault("blackhole", times=1))
    with pytest.raises(httpx.ReadTimeout):
        await client.get("/void", timeout=0.3)
    assert upstream.received == []
    assert (await client.get("/after")).status_code == 200  # `times=1`: the rule is spent
    assert upstream.received == ["/after"]


async def test_a_reply_cut_mid_way_was_received_by_the_peer_but_not_by_the_caller(
    rig: tuple[Upstream, FaultProxy, httpx.AsyncClient],
) -> None:
    upstream, proxy, client = rig
    proxy.add(Fault("cut", after_bytes=90, match=b"/cut"))
    with pytest.raises(httpx.RemoteProtocolError):  # headers came, the body stopped short
        await client.get("/cut")
    assert upstream.received == ["/cut"]
    assert (await client.get("/whole")).status_code == 200
    assert proxy.stats["cut"] == 1


async def test_refused_connections_and_clearing_the_rules(rig: tuple[Upstream, FaultProxy, httpx.AsyncClient]) -> None:
    upstream, proxy, client = rig
    proxy.add(Fault("refuse"))
    with pytest.raises(httpx.TransportError):
        await client.get("/refused")
    proxy.clear()
    assert (await client.get("/open")).status_code == 200
    assert upstream.received == ["/open"]
