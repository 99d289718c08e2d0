"""httpx clients for calls between services.

Every client has explicit timeouts (never httpx's "none"). Retries happen only where
repeating is harmless: idempotent methods, reads sent as POST (`PeerClient.query_json`: a
query with a body), requests carrying an `Idempotency-Key`, and connection failures (the
request never left). Anything that still fails becomes
`PeerUnavailable`, which the handler every service app registers (`peer_unavailable_handler`,
shared/app.py) answers with 503 + `Retry-After`, so a caller never makes a decision on missing
facts: routes let it propagate.

Exception tree:
    PeerError
    ├── PeerUnavailable   the peer could not be reached, timed out, or answered 5xx
    └── PeerRejected      the peer answered 4xx (carries status and problem body)
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Literal

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse

from shared.context import request_id_var
from shared.errors import PEER_UNAVAILABLE, ProblemError, problem_error_response
from shared.metrics import observe_peer_call
from shared.peer_transport import AiohttpTransport
from shared.settings import ServiceSettings
from shared.tokens import TokenUnavailable
from shared.tracing import instrument_client

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({502, 503, 504})
#: 4xx answers counted as failed calls (metrics): the calling service's credentials or rate, not the peer's
#: domain answer (a 404 "not approved" is an answer)
COUNTED_REJECTIONS = frozenset({401, 403, 429})
#: A request extension marking a POST that only reads (`PeerClient.query_json`): safe to repeat like a GET.
READ_ONLY = "longgang_read_only"


def failure_reason(exc: httpx.HTTPError) -> str:
    """A bounded label for a failed call (shared/metrics.py)."""
    if isinstance(exc, TokenUnavailable):
        return "token"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.TransportError):
        return "transport"
    return "error"


class PeerError(Exception):
    def __init__(self, peer: str, message: str) -> None:
        super().__init__(f"{peer}: {message}")
        self.peer = peer


class PeerUnavailable(PeerError):
    def as_problem(self, retry_after_seconds: int = 2) -> ProblemError:
        return ProblemError(PEER_UNAVAILABLE, headers={"Retry-After": str(retry_after_seconds)}, peer=self.peer)


async def peer_unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    """A peer call failed anywhere in a request: 503 `peer_unavailable` + `Retry-After`, naming the peer."""
    assert isinstance(exc, PeerUnavailable)
    return problem_error_response(request, exc.as_problem())


class PeerRejected(PeerError):
    def __init__(self, peer: str, status: int, body: Any) -> None:
        super().__init__(peer, f"HTTP {status}")
        self.status = status
        self.body = body


class RetryTransport(httpx.AsyncBaseTransport):
    """Retries safe requests on transport errors and 502/503/504, with jittered backoff, within the call's
    `deadline_seconds` (None: no bound but the attempts'): the whole call, retries and backoff included, ends by
    then (`httpx.ReadTimeout`, or the last answer), so a hung peer costs a caller one timeout, not one per
    attempt; retries serve the failures that come fast (a refused connection, a 503 while a peer restarts)."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        retries: int = 2,
        backoff_seconds: float = 0.05,
        deadline_seconds: float | None = None,
    ) -> None:
        self.inner = inner
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.deadline_seconds = deadline_seconds

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        safe = (
            request.method in IDEMPOTENT_METHODS
            or "idempotency-key" in request.headers
            or request.extensions.get(READ_ONLY) is True
        )
        deadline = None if self.deadline_seconds is None else time.monotonic() + self.deadline_seconds
        attempt = 0
        while True:
            jitter = 0.5 + random.random()  # noqa: S311 - backoff jitter, not cryptography
            pause = self.backoff_seconds * (2 ** (attempt + 1)) * jitter
            try:
                response = await self._send(request, deadline)
            except httpx.ConnectError:
                if not self._again(attempt, deadline, pause):  # never sent: safe to repeat for any method
                    raise
            except httpx.TransportError:
                if not (safe and self._again(attempt, deadline, pause)):
                    raise
            else:
                if not (safe and response.status_code in RETRY_STATUSES and self._again(attempt, deadline, pause)):
                    return response
                await response.aclose()
            attempt += 1
            await asyncio.sleep(pause)

    def _again(self, attempt: int, deadline: float | None, pause: float) -> bool:
        """Another attempt: retries left, and time for the pause before it (the last failure stands otherwise)."""
        return attempt < self.retries and (deadline is None or time.monotonic() + pause < deadline)

    async def _send(self, request: httpx.Request, deadline: float | None) -> httpx.Response:
        """One attempt, cut off at the call's deadline (the transport's own timeouts apply within it)."""
        if deadline is None:
            return await self.inner.handle_async_request(request)
        timer = asyncio.timeout_at(asyncio.get_running_loop().time() + (deadline - time.monotonic()))
        try:
            async with timer:
                return await self.inner.handle_async_request(request)
        except TimeoutError as exc:
            if not timer.expired():
                raise
            raise httpx.ReadTimeout("the call's deadline passed", request=request) from exc

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _forward_request_id(request: httpx.Request) -> None:
    """The calling request's id goes along as the peer call's correlation id (the peer assigns its own
    request id, shared/logs.py): the peer's log lines and audit rows name the request that caused them."""
    request_id = request_id_var.get()
    if request_id != "-":
        request.headers.setdefault("X-Correlation-ID", request_id)


def make_peer_client(
    base_url: str,
    *,
    timeout_seconds: float,
    retries: int = 2,
    transport: httpx.AsyncBaseTransport | None = None,
    headers: dict[str, str] | None = None,
    auth: httpx.Auth | None = None,
    http_client: Literal["aiohttp", "httpcore"] = "aiohttp",
) -> httpx.AsyncClient:
    """A client for one peer service. Pass `transport=httpx.MockTransport(...)` in unit tests; otherwise
    `http_client` chooses what carries the requests (the setting `peer_http_client`, shared/peer_transport.py).

    With tracing on (shared/tracing.py) each call is a client span whose W3C `traceparent` goes along."""
    inner = transport or (
        AiohttpTransport(max_connections=50)
        if http_client == "aiohttp"
        else httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=50))
    )
    client = httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 1.0)),
        # the whole call, retries included, within the timeout: a hung peer costs one timeout, not three
        transport=RetryTransport(inner, retries=retries, deadline_seconds=timeout_seconds),
        headers=headers,
        auth=auth,
        event_hooks={"request": [_forward_request_id]},
    )
    return instrument_client(client)


def peer_client(name: str, base_url: str, settings: ServiceSettings, *, auth: httpx.Auth | None = None) -> PeerClient:
    """A service's client for one peer, as its settings say (timeout, what carries the requests)."""
    client = make_peer_client(
        base_url, timeout_seconds=settings.peer_timeout_seconds, http_client=settings.peer_http_client, auth=auth
    )
    return PeerClient(name, client)


class PeerClient:
    """JSON calls to one peer with the error tree above."""

    def __init__(self, name: str, client: httpx.AsyncClient) -> None:
        self.name = name
        self.client = client

    async def request_json(self, method: str, url: str, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            observe_peer_call(self.name, time.perf_counter() - started, failure_reason(exc))
            raise PeerUnavailable(self.name, type(exc).__name__) from exc
        status = response.status_code
        failure = f"http_{status}" if status >= 500 or status in COUNTED_REJECTIONS else None
        try:
            body = response.json() if response.content and status < 500 else None
        except ValueError as exc:
            observe_peer_call(self.name, time.perf_counter() - started, failure or "invalid_json")
            raise PeerUnavailable(self.name, "invalid JSON") from exc
        observe_peer_call(self.name, time.perf_counter() - started, failure)
        if status >= 500:
            raise PeerUnavailable(self.name, f"HTTP {status}")
        if status >= 400:
            raise PeerRejected(self.name, status, body)
        return body

    async def get_json(self, url: str, **kwargs: Any) -> Any:
        return await self.request_json("GET", url, **kwargs)

    async def query_json(self, url: str, body: Any) -> Any:
        """A read sent as POST with a JSON body (too large for a URL): retried as a GET is."""
        return await self.request_json("POST", url, json=body, extensions={READ_ONLY: True})

    async def aclose(self) -> None:
        await self.client.aclose()
