"""A TCP fault proxy on loopback, for putting slow and broken networks between services.

    async with FaultProxy(upstream_port) as proxy:          # listens on proxy.port
        proxy.add(Fault("latency", seconds=3.0))             # every request: the answer comes 3 s late
        proxy.add(Fault("cut", after_bytes=40, match=b"/v1/policy/", times=1))
        ...
        proxy.clear()                                        # a healthy network again

It forwards bytes both ways and understands just enough HTTP/1.1 to tell requests apart on
a kept-alive connection: clients such as httpx never pipeline, so the bytes on a connection
alternate request, response, request, response. Client bytes arriving after response bytes
begin a new request; the first rule that matches it (a substring of its first chunk, the
request line and headers) decides its fate:

- `latency`   the response is held back `seconds` before it is passed on (a slow peer);
- `drop`      the connection is reset as the request arrives; the request never reaches the
              peer (the caller sees a connection error);
- `blackhole` the request is swallowed and nothing ever comes back (the caller times out);
- `cut`       the first `after_bytes` bytes of the response are passed on, then the connection
              is reset (a reply cut mid-way: the peer did the work, the caller cannot know);
- `refuse`    the connection is reset as soon as it is accepted, before any request.

`times` limits a rule to its next N requests; `stats` counts connections, requests and
each fault applied.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["latency", "drop", "blackhole", "cut", "refuse"]
CHUNK = 65536


@dataclass
class Fault:
    kind: FaultKind
    seconds: float = 0.0
    after_bytes: int = 0
    match: bytes | None = None  # only requests whose first chunk contains this (None: every request)
    times: int | None = None  # the next N matching requests (None: all of them)

    def matches(self, first_chunk: bytes) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        return self.match is None or self.match in first_chunk


class _Link:
    """One proxied connection: the fault of the request in progress, and where it is."""

    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.client_reader, self.client_writer = client
        self.upstream_reader, self.upstream_writer = upstream
        self.fault: Fault | None = None
        self.answering = True  # True between requests: the next client bytes start a new one
        self.sent = 0  # response bytes passed on for the request in progress
        self.delayed = False

    def reset(self) -> None:
        """Both sides see a connection reset (RST), as after a crash or a cable pulled."""
        for writer in (self.client_writer, self.upstream_writer):
            writer.transport.abort()


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", name: str = "proxy") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.name = name
        self.rules: list[Fault] = []
        self.stats: Counter[str] = Counter()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, fault: Fault) -> Fault:
        self.rules.append(fault)
        return fault

    def clear(self) -> None:
        """No more faults for new requests (a request already held or swallowed stays so)."""
        self.rules.clear()

    def reset_all(self) -> None:
        """Reset every open connection (kept-alive ones included)."""
        for link in list(self._links):
            link.reset()

    def _choose(self, first_chunk: bytes) -> Fault | None:
        for fault in self.rules:
            if fault.matches(first_chunk):
                if fault.times is not None:
                    fault.times -= 1
                self.stats[fault.kind] += 1
                return fault
        return None

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self.reset_all()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.stats["connections"] += 1
        try:
            refuse = next((f for f in self.rules if f.kind == "refuse" and f.matches(b"")), None)
            if refuse is not None:
                self._choose(b"")  # counted (and `times` spent) like any other fault
                writer.transport.abort()
                return
            try:
                upstream = await asyncio.open_connection(*self.upstream)
            except OSError:
                self.stats["upstream_unreachable"] += 1
                writer.transport.abort()
                return
            link = _Link((reader, writer), upstream)
            self._links.add(link)
            try:
                await self._pump(link)
            finally:
                self._links.discard(link)
                link.reset()
        except asyncio.CancelledError:
            writer.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _pump(self, link: _Link) -> None:
        requests = asyncio.create_task(self._requests(link))
        responses = asyncio.create_task(self._responses(link))
        try:
            # the exchange ends when the peer closes (or a fault resets); a client that stops sending
            # may still be waiting for its answer, so the response side decides
            await responses
        finally:
            requests.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await requests

    async def _requests(self, link: _Link) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await link.client_reader.read(CHUNK):
                if link.answering:  # the first bytes of a new request
                    link.answering, link.sent, link.delayed = False, 0, False
                    self.stats["requests"] += 1
                    link.fault = self._choose(data)
                    if link.fault is not None and link.fault.kind == "drop":
                        link.reset()
                        return
                if link.fault is not None and link.fault.kind == "blackhole":
                    continue  # swallowed: the peer never hears of it
                link.upstream_writer.write(data)
                await link.upstream_writer.drain()
            # the client is done sending; the peer may still answer
            if link.upstream_writer.can_write_eof():
                link.upstream_writer.write_eof()

    async def _responses(self, link: _Link) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await link.upstream_reader.read(CHUNK):
                link.answering = True
                fault = link.fault
                if fault is not None and fault.kind == "latency" and not link.delayed:
                    link.delayed = True
                    await asyncio.sleep(fault.seconds)
                if fault is not None and fault.kind == "cut":
                    room = fault.after_bytes - link.sent
                    if room < len(data):
                        if room > 0:
                            link.client_writer.write(data[:room])
                            with contextlib.suppress(ConnectionError, OSError):
                                await link.client_writer.drain()
                        link.reset()
                        return
                link.sent += len(data)
                link.client_writer.write(data)
                await link.client_writer.drain()
