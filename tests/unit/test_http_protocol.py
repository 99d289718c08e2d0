"""`shared.http_protocol`: a response reaches the socket in one write, byte for byte what uvicorn writes (issue #16).

The transport alone (a recording stand-in): a turn's writes go out once, in order, at the end of the turn;
closing writes what is held first; a closed connection drops it. Then uvicorn itself with the protocol, on a real
socket: a JSON answer is written once (uvicorn's own protocol: twice), identical to plain httptools' answer; two
pipelined requests get their answers in order; a streamed body (three chunks, chunked encoding) arrives whole.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.http_protocol import DEFAULT_HTTP_PROTOCOL, CoalescingHttpToolsProtocol, CoalescingTransport


class Recording:
    """A transport that records what reaches it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"extra {name}"


async def test_the_writes_of_a_turn_reach_the_socket_once_in_order() -> None:
    recording = Recording()
    transport = CoalescingTransport(recording, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 201 Created\r\n\r\n")
    transport.write(b'{"id": 1}')
    assert recording.writes == []  # held until the turn ends
    await asyncio.sleep(0)
    assert recording.writes == [b'HTTP/1.1 201 Created\r\n\r\n{"id": 1}']
    transport.write(b"next")
    await asyncio.sleep(0)
    assert recording.writes[1:] == [b"next"]
    assert transport.get_extra_info("peername") == "extra peername"  # the rest is the transport's


async def test_closing_writes_what_is_held_first_and_a_closed_connection_drops_it() -> None:
    recording = Recording()
    transport = CoalescingTransport(recording, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"last words")
    transport.close()
    assert (recording.writes, recording.closed) == ([b"last words"], True)
    transport.write(b"too late")
    await asyncio.sleep(0)
    assert recording.writes == [b"last words"]


#: writes that reached the socket's transport, by the protocols below
SOCKET_WRITES: list[bytes] = []


class Counting:
    """The socket's transport, counting its writes."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        SOCKET_WRITES.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CountedCoalescing(CoalescingHttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(Counting(transport))  # type: ignore[arg-type]


class CountedPlain(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(Counting(transport))  # type: ignore[arg-type]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    body = b'{"path": "%s"}' % scope["path"].encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def serving(http: Any) -> AsyncIterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=http, log_level="warning", lifespan="off")
    config.date_header = False  # the two servers' answers compared byte for byte
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):  # up to 5 s
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def exchange(port: int, request: bytes, until: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        received = b""
        while until not in received:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk, f"closed after {received!r}"
            received += chunk
        return received
    finally:
        writer.close()


GET = b"GET /%s HTTP/1.1\r\nhost: test\r\n\r\n"


async def test_uvicorn_with_the_protocol_answers_as_httptools_in_one_write() -> None:
    assert DEFAULT_HTTP_PROTOCOL == "shared.http_protocol:CoalescingHttpToolsProtocol"
    SOCKET_WRITES.clear()
    async with serving(CountedPlain) as port:
        plain = await exchange(port, GET % b"a", b'"/a"}')
    assert len(SOCKET_WRITES) == 2  # uvicorn's own: the head, then the body
    SOCKET_WRITES.clear()
    async with serving(CountedCoalescing) as port:
        coalesced = await exchange(port, GET % b"a", b'"/a"}')
        assert [coalesced] == SOCKET_WRITES  # one write, the whole answer
        pipelined = await exchange(port, GET % b"first" + GET % b"second", b'"/second"}')
        streamed = await exchange(port, GET % b"stream", b"0\r\n\r\n")
    assert coalesced == plain
    assert coalesced.startswith(b"HTTP/1.1 201 Created\r\n")
    assert pipelined.index(b'"/first"}') < pipelined.index(b"HTTP/1.1 201", len(b"HTTP/1.1 201"))
    assert pipelined.count(b"HTTP/1.1 201 Created") == 2
    assert b"transfer-encoding: chunked" in streamed
    assert [part in streamed for part in (b"one ", b"two ", b"three")] == [True, True, True]
