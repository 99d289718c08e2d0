"""shared/testclocks.py against a stubbed registry (httpx MockTransport): an enterprise's time in sandbox mode,
the real clock otherwise (and then no call at all), and a registry that fails is never read as "no clock"."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from shared.peers import PeerClient, PeerUnavailable, make_peer_client
from shared.testclocks import EnterpriseClocks, enterprise_clocks

REAL = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
BOUND = "9144030071526726XG"
CLOCK = {"id": "00000000-0000-0000-0000-000000000001", "frozen_time": "2026-12-30T02:00:00Z"}


def _registry(handler: httpx.MockTransport) -> PeerClient:
    return PeerClient("registry", make_peer_client("http://registry", timeout_seconds=1, retries=0, transport=handler))


def _stub(calls: list[httpx.Request], status: int = 200) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if status != 200:
            return httpx.Response(status, json={"code": "boom"})
        if request.url.path == "/v1/test-clock-bindings":
            if "cursor" not in request.url.params:
                item = {"credit_code": BOUND, "frozen_time": "2026-12-30T10:00:00+08:00"}
                return httpx.Response(200, json={"items": [item], "next_cursor": "next"})
            item = {"credit_code": "914403001922038216", "frozen_time": "2028-01-01T00:00:00Z"}
            return httpx.Response(200, json={"items": [item], "next_cursor": None})
        code = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, json={"credit_code": code, "test_clock": CLOCK if code == BOUND else None})

    return httpx.MockTransport(answer)


async def test_a_bound_enterprise_has_its_clocks_time_and_others_the_real_one() -> None:
    calls: list[httpx.Request] = []
    clocks = enterprise_clocks(True, _registry(_stub(calls)), lambda: REAL)
    assert clocks.sandbox
    assert await clocks.now_for(BOUND) == datetime(2026, 12, 30, 2, 0, tzinfo=UTC)
    assert await clocks.now_for("914403001922038216") == REAL
    assert [request.url.path for request in calls] == [
        f"/v1/test-clock-bindings/{BOUND}",
        "/v1/test-clock-bindings/914403001922038216",
    ]
    assert await clocks.bound() == {
        BOUND: datetime(2026, 12, 30, 2, 0, tzinfo=UTC),
        "914403001922038216": datetime(2028, 1, 1, tzinfo=UTC),
    }


async def test_outside_sandbox_mode_there_is_no_call() -> None:
    calls: list[httpx.Request] = []
    clocks = enterprise_clocks(False, _registry(_stub(calls)), lambda: REAL)
    assert not clocks.sandbox
    assert await clocks.now_for(BOUND) == REAL
    assert await clocks.clock_of(BOUND) is None
    assert await clocks.bound() == {}
    assert calls == []
    assert await EnterpriseClocks(None, lambda: REAL).now_for(BOUND) == REAL


@pytest.mark.parametrize("status", [403, 404, 500, 503])
async def test_a_registry_that_refuses_or_fails_is_unavailable_never_the_real_clock(status: int) -> None:
    calls: list[httpx.Request] = []
    clocks = enterprise_clocks(True, _registry(_stub(calls, status)), lambda: REAL)
    with pytest.raises(PeerUnavailable):
        await clocks.now_for(BOUND)
    with pytest.raises(PeerUnavailable):
        await clocks.bound()


async def test_an_unreachable_registry_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    clocks = enterprise_clocks(True, _registry(httpx.MockTransport(refuse)), lambda: REAL)
    with pytest.raises(PeerUnavailable):
        await clocks.now_for(BOUND)
