"""The aiohttp-carried peer client (shared/peer_transport.py) says what httpx's own would: the answer, and for a
failure the httpx exception `RetryTransport` decides on (sent or never sent)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from shared.peer_transport import AiohttpTransport
from shared.peers import make_peer_client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[str]:
    listening = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        listening.close()


async def request_head(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(x.split(b":")[1]) for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")), 0)
    return head + await reader.readexactly(length)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_answers_with_headers_body_and_the_request_as_sent() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                seen.append(await request_head(reader))
            except asyncio.IncompleteReadError:
                break
            body = b'{"ok": true}'
            writer.write(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Peer: a\r\nX-Peer: b\r\n")
            writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    async with server(handler) as url:
        client = httpx.AsyncClient(base_url=url, transport=AiohttpTransport(), headers={"X-Caller": "t"})
        async with client:
            first = await client.post("/v1/facts?as_of=2026-01-01", json={"a": 1})
            second = await client.get("/again")
    assert (first.status_code, first.json(), first.headers.get_list("x-peer")) == (201, {"ok": True}, ["a", "b"])
    assert second.status_code == 201
    assert seen[0].startswith(b"POST /v1/facts?as_of=2026-01-01 HTTP/1.1\r\n")
    assert b"x-caller: t" in seen[0].lower()
    assert seen[0].endswith(b'{"a":1}')
    assert seen[0].lower().count(b"content-length") == 1
    assert b"aiohttp" not in seen[0].lower()
    assert len(seen) == 2  # the second request on the same kept-alive connection


async def test_a_refused_connection_is_connect_error_never_sent() -> None:
    client = httpx.AsyncClient(transport=AiohttpTransport(), timeout=1.0)
    async with client:
        with pytest.raises(httpx.ConnectError):
            await client.post(f"http://127.0.0.1:{closed_port()}/x", json={})


async def test_a_silent_peer_is_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        await asyncio.sleep(2)
        writer.close()

    async with server(handler) as url, httpx.AsyncClient(transport=AiohttpTransport(), timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url)


async def test_a_dropped_answer_is_an_error_after_sending_not_a_connect_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    async with server(handler) as url, httpx.AsyncClient(transport=AiohttpTransport(), timeout=1.0) as client:
        with pytest.raises(httpx.TransportError) as caught:
            await client.post(url, json={})
    assert not isinstance(caught.value, httpx.ConnectError | httpx.ConnectTimeout)


async def test_the_setting_chooses_what_carries_the_requests() -> None:
    for choice, kind in (("aiohttp", AiohttpTransport), ("httpcore", httpx.AsyncHTTPTransport)):
        client = make_peer_client("http://127.0.0.1:1", timeout_seconds=1.0, http_client=choice)  # type: ignore[arg-type]
        async with client:
            assert isinstance(client._transport.inner, kind)  # type: ignore[attr-defined]
