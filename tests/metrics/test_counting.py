"""The per-request counting without a database: the middleware's labels, and peer-call failures."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI
from prometheus_client import REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from shared.metrics import MetricsMiddleware
from shared.peers import PeerClient, PeerRejected, PeerUnavailable, make_peer_client
from tests.metrics.scrape import Samples, parse, requests, value


def _now() -> Samples:
    return parse(generate_latest(REGISTRY).decode())


def _app() -> FastAPI:
    app = FastAPI()
    router = APIRouter()

    @router.get("/t/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"thing_id": thing_id}

    @router.get("/t/broken")
    async def broken() -> None:
        raise RuntimeError("boom")

    async def bare(request: Request) -> Response:
        return PlainTextResponse("ok", status_code=201)

    router.add_route("/t/bare/{code}/go", bare, methods=["POST"])
    prefixed = APIRouter(prefix="/t/prefixed")

    @prefixed.get("/things/{thing_id}")
    async def prefixed_thing(thing_id: int) -> dict[str, int]:
        return {"thing_id": thing_id}

    app.include_router(router)
    app.include_router(prefixed)
    app.add_middleware(MetricsMiddleware)
    return app


async def test_requests_are_labelled_by_template_method_and_status_class() -> None:
    before = _now()
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for n in range(3):
            await client.get(f"/t/things/{n}")
        await client.get("/t/things/not-a-number")  # 422
        await client.post("/t/bare/ABC-1/go")
        await client.post("/t/bare/XYZ-2/go")
        await client.get("/t/prefixed/things/7")
        await client.get("/t/broken")  # an exception: counted as a 500
        await client.request("PROPFIND", "/t/things/1")
    after = _now()

    def moved(method: str, route: str, status_class: str) -> float:
        return requests(after, method, route, status_class) - requests(before, method, route, status_class)

    assert moved("GET", "/t/things/{thing_id}", "2xx") == 3
    assert moved("GET", "/t/things/{thing_id}", "4xx") == 1
    assert moved("POST", "/t/bare/{code}/go", "2xx") == 2
    assert moved("GET", "/t/prefixed/things/{thing_id}", "2xx") == 1
    assert moved("GET", "/t/broken", "5xx") == 1
    assert moved("OTHER", "/t/things/{thing_id}", "4xx") == 1


def _peer(handler: httpx.MockTransport) -> PeerClient:
    return PeerClient("testpeer", make_peer_client("http://peer", timeout_seconds=1, retries=0, transport=handler))


async def test_peer_failures_are_counted_by_reason() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/down":
            raise httpx.ConnectError("refused", request=request)
        if path == "/slow":
            raise httpx.ReadTimeout("slow", request=request)
        if path == "/broken":
            return httpx.Response(503, json={"code": "x"})
        if path == "/garbled":
            return httpx.Response(200, content=b"{not json")
        if path == "/who-are-you":
            return httpx.Response(401, json={"code": "invalid_token"})
        if path == "/not-approved":
            return httpx.Response(404, json={"code": "decision_not_approved"})
        return httpx.Response(200, json={"ok": True})

    peer = _peer(httpx.MockTransport(answer))
    before = _now()
    for path, error in (
        ("/down", PeerUnavailable),
        ("/slow", PeerUnavailable),
        ("/broken", PeerUnavailable),
        ("/garbled", PeerUnavailable),
        ("/who-are-you", PeerRejected),
        ("/not-approved", PeerRejected),
    ):
        try:
            await peer.get_json(path)
        except error:
            pass
        else:
            raise AssertionError(path)
    assert await peer.get_json("/fine") == {"ok": True}
    await peer.aclose()
    after = _now()

    def failures(reason: str) -> float:
        labels = {"peer": "testpeer", "reason": reason}
        return value(after, "peer_call_failures_total", **labels) - value(before, "peer_call_failures_total", **labels)

    assert {reason: failures(reason) for reason in ("connect", "timeout", "http_503", "invalid_json", "http_401")} == {
        "connect": 1,
        "timeout": 1,
        "http_503": 1,
        "invalid_json": 1,
        "http_401": 1,
    }
    assert failures("http_404") == 0  # a peer's answer, not a failed call
    calls = value(after, "peer_call_duration_seconds_count", peer="testpeer")
    assert calls - value(before, "peer_call_duration_seconds_count", peer="testpeer") == 7
