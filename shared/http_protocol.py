"""uvicorn's httptools protocol, writing each response to the socket once instead of twice (issue #16).

uvicorn writes a response's status line and headers when the app sends `http.response.start`, and its
body when the app sends `http.response.body`: two `write` calls, and uvloop makes each one a system call
at once. On this project's machines a system call costs tens of microseconds: sampling the vouchers
process under the redemption benchmark found these two writes at about a sixth of its CPU. A plain
response (the services' JSON answers) sends both messages in one turn of the event loop, so
`CoalescingTransport` keeps what is written during a turn and hands it to the socket once, at the end
of the turn (`loop.call_soon`): one system call per response, the same bytes in the same order.

`CoalescingHttpToolsProtocol` is uvicorn's `HttpToolsProtocol` on that transport; the services run
with it unless `HTTP_PROTOCOL` names another (`httptools`, `h11`, `auto`: uvicorn's own), which is how
to go back (devtools/devrun.py and deploy/Dockerfile pass it as uvicorn's `--http`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: what the services run with (uvicorn's `--http`) unless HTTP_PROTOCOL says otherwise
DEFAULT_HTTP_PROTOCOL = "shared.http_protocol:CoalescingHttpToolsProtocol"


class CoalescingTransport:
    """A transport whose writes of one event-loop turn reach the socket as one write, in order.

    Everything else is the wrapped transport's (flow control, addresses, pausing): the bytes held are
    at most one turn's, written before anything that ends the connection."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Hand what this turn wrote to the socket (a closed connection drops it, as the transport would)."""
        if self._pending:
            pending, self._pending = self._pending, []
            if not self._transport.is_closing():
                self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose responses are written once each (`CoalescingTransport`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
