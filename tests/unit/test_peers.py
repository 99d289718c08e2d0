"""Peer calls: always a timeout, retries only when repeating is harmless (httpx MockTransport)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from shared.context import request_id_var
from shared.peers import PeerClient, PeerRejected, PeerUnavailable, make_peer_client


class Recorder:
    def __init__(self, *responses: int | Exception) -> None:
        self.responses = list(responses)
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        outcome = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(outcome, Exception):
            raise outcome
        return httpx.Response(outcome, json={"ok": outcome < 400})


def _client(recorder: Recorder, retries: int = 2) -> PeerClient:
    transport = httpx.MockTransport(recorder)
    return PeerClient(
        "registry", make_peer_client("http://registry", timeout_seconds=0.5, retries=retries, transport=transport)
    )


async def test_get_is_retried_on_503_then_succeeds() -> None:
    recorder = Recorder(503, 503, 200)
    assert await _client(recorder).get_json("/v1/x") == {"ok": True}
    assert len(recorder.calls) == 3


async def test_post_without_idempotency_key_is_not_retried() -> None:
    recorder = Recorder(503, 200)
    with pytest.raises(PeerUnavailable):
        await _client(recorder).request_json("POST", "/v1/x", json={})
    assert len(recorder.calls) == 1


async def test_post_with_idempotency_key_is_retried() -> None:
    recorder = Recorder(503, 201)
    body = await _client(recorder).request_json("POST", "/v1/x", json={}, headers={"Idempotency-Key": "k1"})
    assert body == {"ok": True}
    assert len(recorder.calls) == 2


async def test_a_read_sent_as_post_is_retried_like_a_get() -> None:
    recorder = Recorder(503, httpx.ReadError("cut"), 200)
    assert await _client(recorder).query_json("/v1/facts", {"q": 1}) == {"ok": True}
    assert [request.method for request in recorder.calls] == ["POST"] * 3
    assert recorder.calls[0].content == b'{"q":1}'


async def test_read_timeouts_become_peer_unavailable_after_retries() -> None:
    recorder = Recorder(httpx.ReadTimeout("slow"))
    with pytest.raises(PeerUnavailable) as caught:
        await _client(recorder).get_json("/v1/x")
    assert len(recorder.calls) == 3
    problem = caught.value.as_problem()
    assert problem.error.status == 503
    assert problem.headers["Retry-After"] == "2"


async def test_connect_errors_are_retried_even_for_post() -> None:
    recorder = Recorder(httpx.ConnectError("refused"), 201)
    assert await _client(recorder).request_json("POST", "/v1/x", json={}) == {"ok": True}
    assert len(recorder.calls) == 2


async def test_4xx_is_a_rejection_not_an_outage() -> None:
    recorder = Recorder(404)
    with pytest.raises(PeerRejected) as caught:
        await _client(recorder).get_json("/v1/x")
    assert caught.value.status == 404
    assert len(recorder.calls) == 1


def test_clients_always_have_timeouts() -> None:
    client = make_peer_client("http://x", timeout_seconds=1.5)
    assert client.timeout.read == 1.5
    assert client.timeout.connect == 1.0


async def test_a_peer_call_carries_the_calling_requests_id_as_its_correlation_id() -> None:
    """The peer assigns its own request id (issue #12); ours goes along so its logs and audit rows name it."""
    recorder = Recorder(200)
    token = request_id_var.set("0123456789abcdef0123456789abcdef")
    try:
        await _client(recorder).get_json("/v1/x")
    finally:
        request_id_var.reset(token)
    [call] = recorder.calls
    assert call.headers["X-Correlation-ID"] == "0123456789abcdef0123456789abcdef"
    assert "X-Request-ID" not in call.headers


class Hung:
    """A peer that takes each request and answers nothing for `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        await asyncio.sleep(self.seconds)
        return httpx.Response(200, json={"ok": True})


async def test_a_hung_peer_costs_the_caller_one_timeout_not_one_per_attempt() -> None:
    """The whole call, retries included, ends within the client's timeout (here 0.5 s, against a peer that would
    hold it 30 s); before, each of the three attempts waited its own timeout."""
    hung = Hung(30.0)
    client = PeerClient(
        "registry", make_peer_client("http://registry", timeout_seconds=0.5, transport=httpx.MockTransport(hung))
    )
    started = time.monotonic()
    with pytest.raises(PeerUnavailable):
        await client.get_json("/v1/x")
    assert time.monotonic() - started < 5.0  # 0.5 s and the event loop's slack; not 30 s, nor 3 × 0.5 s of waits
    assert hung.calls == 1  # no time was left for another attempt


async def test_no_retry_starts_that_the_deadline_would_cut_off() -> None:
    """A 503 that comes late leaves no time for the pause and another attempt: the 503 is the answer (a clean
    `PeerUnavailable`), not a retry cut off mid-way."""
    calls = 0

    async def late_503(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.46)
        return httpx.Response(503, json={"ok": False})

    client = PeerClient(
        "registry", make_peer_client("http://registry", timeout_seconds=0.5, transport=httpx.MockTransport(late_503))
    )
    with pytest.raises(PeerUnavailable):
        await client.get_json("/v1/x")
    assert calls == 1
