"""What the metrics middleware costs per request: a trivial ASGI app, bare and wrapped.

    .venv/bin/python -m bench.metrics_overhead

No server, no sockets: the same in-process call many times, so what differs is the
middleware itself (timing, the status from `send`, one cached histogram child, `observe`).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from starlette.routing import Route

from shared.metrics import MetricsMiddleware

ROUTE = Route("/v1/vouchers/{code}/redemptions", lambda request: None, methods=["POST"])
START = {"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"application/json")]}
BODY = {"type": "http.response.body", "body": b"{}"}


async def trivial(scope: dict[str, Any], receive: Any, send: Any) -> None:
    scope["route"] = ROUTE  # as the router sets it
    await send(START)
    await send(BODY)


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict[str, Any]) -> None:
    return None


async def per_call(app: Any, calls: int) -> float:
    scope = {"type": "http", "method": "POST", "path": "/v1/vouchers/M3-X/redemptions", "headers": []}
    started = time.perf_counter()
    for _ in range(calls):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - started) / calls * 1e6


async def main(calls: int = 200_000, rounds: int = 7) -> None:
    wrapped = MetricsMiddleware(trivial)  # type: ignore[arg-type]
    bare_us, wrapped_us = [], []
    for _ in range(rounds):
        bare_us.append(await per_call(trivial, calls))
        wrapped_us.append(await per_call(wrapped, calls))
    bare, with_metrics = statistics.median(bare_us), statistics.median(wrapped_us)
    print(f"trivial ASGI app: {bare:.2f} µs per call; with MetricsMiddleware: {with_metrics:.2f} µs")
    print(f"overhead: {with_metrics - bare:.2f} µs per request (median of {rounds} rounds of {calls:,} calls)")


if __name__ == "__main__":
    asyncio.run(main())
