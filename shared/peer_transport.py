"""An httpx transport over aiohttp's connection pool, for calls between services (issue #16).

The peer clients stay httpx clients (timeouts, auth, event hooks, `RetryTransport`, `MockTransport` in unit tests,
the tracing instrumentation): only the bottom layer that opens connections and parses HTTP/1.1 changes. httpcore's
pool checks every idle connection's socket on every request (`is_socket_readable`, a system call each) and parses
in Python; with 16 calls in flight that cost eligibility ~1.4 ms of CPU per registry call against ~0.3 ms here
(docs/benchmarks.md). `PEER_HTTP_CLIENT=httpcore` (per service: `ELIGIBILITY_PEER_HTTP_CLIENT`, …) goes back.

Errors keep httpx's meaning, which `RetryTransport` relies on: `httpx.ConnectError`/`ConnectTimeout` only when the
request never left (safe to repeat for any method); a dropped or broken answer is `RemoteProtocolError`/`ReadError`
and a silent peer `ReadTimeout` (repeated only for safe requests).
"""

from __future__ import annotations

import aiohttp
import httpx

#: Kept shorter than uvicorn's keep-alive (5 s), so the server never closes a connection this side may reuse.
KEEPALIVE_SECONDS = 4.0


def _httpx_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """The httpx exception that says the same as an aiohttp one (most specific class first)."""
    message = str(exc) or type(exc).__name__
    kind: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # connecting, or waiting for a pooled connection
        kind = httpx.ConnectTimeout
    elif isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):  # connected, the answer did not come
        kind = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ClientConnectorError):  # refused, unreachable: nothing was sent
        kind = httpx.ConnectError
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        kind = httpx.RemoteProtocolError
    else:  # a payload cut short, a reset connection, anything else of aiohttp's
        kind = httpx.ReadError
    return kind(message, request=request)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive through one `aiohttp.ClientSession`, made on first use (inside the event loop)."""

    def __init__(self, max_connections: int = 50) -> None:
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=KEEPALIVE_SECONDS)
            # no cookies, no environment proxies: a peer call is exactly the request httpx built
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, auto_decompress=False
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        limits = aiohttp.ClientTimeout(
            total=None,
            connect=timeout.get("pool"),
            sock_connect=timeout.get("connect"),
            sock_read=timeout.get("read"),
        )
        body = await request.aread()
        try:
            async with self._client().request(
                request.method,
                str(request.url),
                headers=list(request.headers.multi_items()),
                data=body or None,
                allow_redirects=False,
                timeout=limits,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            ) as answer:
                content = await answer.read()
                status, headers = answer.status, list(answer.raw_headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _httpx_error(exc, request) from exc
        return httpx.Response(
            status, headers=headers, stream=httpx.ByteStream(content), extensions={"http_version": b"HTTP/1.1"}
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
