"""Prometheus metrics: `GET /metrics` on every service (roles `metrics:read`, `admin`).

Text exposition format (`prometheus-client`). Prometheus gets its token with the OAuth2
client-credentials grant like any other client (scrape config: docs/operations.md).

Counted per request, in this process (a pure-ASGI middleware and a few hooks; each
label set's child is looked up once and kept, so a request pays a dictionary lookup
and an `observe`):

- `http_request_duration_seconds{method, route, status_class}`: a histogram per route
  *template* (`/v1/vouchers/{code}/redemptions`, never the raw path; `unmatched` for
  unknown paths); its `_count` is the request rate.
- `http_problems_total{code, status}`: every problem+json answer by its stable `code`
  (shared/errors.py), refusals included.
- `peer_call_duration_seconds{peer}` and `peer_call_failures_total{peer, reason}`: calls
  to other services (shared/peers.py); reasons `timeout`, `connect`, `token`,
  `transport`, `invalid_json`, `http_5xx` statuses and `http_401|403|429` (other 4xx
  answers are a peer's domain answer, e.g. "not approved", not a failed call).
- a service's own counters, registered by the service: the vouchers service's
  `vouchers_redemptions_total{action, outcome}` and `vouchers_ceiling_refusals_total{clause, code}`
  (services/vouchers/metrics.py).

Read at scrape time (one short read-only transaction with a 2 s statement timeout; the
per-request path never queries for metrics):

- every service: `audit_buffer_rows`, `audit_rows_dropped_total`;
- registered by each service (`on_scrape`): `outbox_undelivered_events`,
  `outbox_oldest_undelivered_age_seconds`, `webhook_subscriptions{status}` (shared/feed/metrics.py);
- vouchers (registered by services/vouchers/ledger_metrics.py): `vouchers_ledger_entries_total`,
  `vouchers_seal_lag_entries`, `vouchers_seal_lag_seconds`, sealer state;
- `metrics_scrape_database_ok` is 0 when those reads failed (the rest is still served).

Process metrics (CPU, memory, GC) come from prometheus-client's default collectors. One
process per service is assumed (as `make run` and the benchmarks run them): with several
worker processes behind one port, each would answer with its own counters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import ADMIN, METRICS_READ, require
from shared.errors import ErrorCode, observe_problems

logger = logging.getLogger("shared.metrics")

#: the classic text format: every Prometheus reads it (our names need none of the newer escaping)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

#: seconds; the redemption path answers in a few ms, exports take seconds
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to answer a request (first byte in to last byte out), by route template, method and status class",
    ("method", "route", "status_class"),
    buckets=LATENCY_BUCKETS,
)
PROBLEMS = Counter("http_problems", "Problem+json answers by their stable code", ("code", "status"))
PEER_DURATION = Histogram(
    "peer_call_duration_seconds", "Calls to another service (retries included)", ("peer",), buckets=LATENCY_BUCKETS
)
PEER_FAILURES = Counter("peer_call_failures", "Calls to another service that failed, by reason", ("peer", "reason"))
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUS_CLASSES = tuple(f"{n}xx" for n in range(10))
UNMATCHED = "unmatched"


class Children:
    """A metric's children by label values, looked up once (prometheus-client's `labels()` validates
    and locks on every call)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self.metric.labels(*labels)
        return child


_problems = Children(PROBLEMS)
_peer_durations = Children(PEER_DURATION)
_peer_failures = Children(PEER_FAILURES)


def count_problem(error: ErrorCode) -> None:
    """Every problem+json answer (shared/errors.py's `problem_response` tells its observers)."""
    _problems(error.code, str(error.status)).inc()


observe_problems(count_problem)


def observe_peer_call(peer: str, seconds: float, failure: str | None) -> None:
    _peer_durations(peer).observe(seconds)
    if failure is not None:
        _peer_failures(peer, failure).inc()


def matched_route(scope: Scope) -> Any:
    """The route that served the request: FastAPI sets `scope["route"]` for its own routes; a bare
    Starlette route in an included router (the redemption path) is found in FastAPI's route context."""
    route = scope.get("route")
    if route is None:
        context = scope.get("fastapi", {}).get("effective_route_context")
        route = getattr(context, "original_route", None)
    return route


def route_template(route: Any) -> str:
    if route is None:
        return UNMATCHED
    return str(getattr(route, "path_format", None) or getattr(route, "path", UNMATCHED))


class MetricsMiddleware:
    """Pure ASGI: times each request and counts it under its route template (outermost middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # (method, id of the route, status) → histogram child: bounded by the app's routes × statuses
        # (routes are not hashable; they live as long as the app, so their ids are stable)
        self._children: dict[tuple[str, int, int], Any] = {}

    def _child(self, method: str, route: Any, status: int) -> Any:
        key = (method, id(route), status)
        child = self._children.get(key)
        if child is None:
            status_class = _STATUS_CLASSES[status // 100] if 0 <= status < 1000 else "other"
            child = HTTP_DURATION.labels(method, route_template(route), status_class)
            self._children[key] = child
        return child

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"]
            if method not in _KNOWN_METHODS:  # clients choose methods: keep the label set bounded
                method = "OTHER"
            route = scope.get("route") or matched_route(scope)
            child = self._children.get((method, id(route), status))
            if child is None:
                child = self._child(method, route, status)
            child.observe(elapsed)


# --- read at scrape time ---------------------------------------------------------------------------

#: A service's own scrape-time figures: called with the app and a read-only connection
ScrapeHook = Callable[[FastAPI, AsyncConnection], Awaitable[Sequence[Metric]]]
_SCRAPE_HOOKS: dict[str, list[ScrapeHook]] = {}


def on_scrape(service: str, hook: ScrapeHook) -> None:
    """Register a service's scrape-time figures (e.g. the vouchers ledger and sealer)."""
    hooks = _SCRAPE_HOOKS.setdefault(service, [])
    if hook not in hooks:
        hooks.append(hook)


def gauge(name: str, documentation: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    if not labels:
        return GaugeMetricFamily(name, documentation, value=value)
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _audit_figures(app: FastAPI) -> list[Metric]:
    writer = getattr(app.state, "audit", None)
    if writer is None:
        return []
    return [
        gauge("audit_buffer_rows", "Audit rows waiting in this process for their COPY", len(writer._rows)),
        counter("audit_rows_dropped", "Audit rows dropped because the buffer was full", writer.dropped),
    ]


async def _database_figures(app: FastAPI, connection: AsyncConnection) -> list[Metric]:
    figures: list[Metric] = []
    for hook in _SCRAPE_HOOKS.get(app.state.service_name, ()):
        figures.extend(await hook(app, connection))
    return figures


async def scrape(app: FastAPI) -> list[Metric]:
    """The scrape-time figures of this app: never raises (the database being away is a figure too)."""
    figures = _audit_figures(app)
    ok = 1
    try:
        async with app.state.database.engine.connect() as connection:
            await connection.execution_options(isolation_level="REPEATABLE READ")
            async with connection.begin():
                await connection.execute(text("SET TRANSACTION READ ONLY"))
                await connection.execute(text("SET LOCAL statement_timeout = 2000"))
                figures.extend(await _database_figures(app, connection))
    except Exception as exc:  # the process's own metrics are still worth serving
        logger.warning("metrics: scrape-time reads failed: %s: %s", type(exc).__name__, exc)
        ok = 0
    figures.append(gauge("metrics_scrape_database_ok", "1 if the scrape-time database reads succeeded", ok))
    return figures


class _Figures:
    def __init__(self, figures: Iterable[Metric]) -> None:
        self.figures = list(figures)

    def collect(self) -> Iterable[Metric]:
        return self.figures


async def exposition(app: FastAPI) -> bytes:
    return generate_latest(REGISTRY) + generate_latest(_Figures(await scrape(app)))


def metrics_router() -> APIRouter:
    router = APIRouter(tags=["metrics"])

    @router.get(
        "/metrics",
        response_class=Response,
        summary="Prometheus metrics (text exposition format): requests, errors, peers, outbox, ledger",
        dependencies=[require(METRICS_READ, ADMIN)],
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format 0.0.4"}},
    )
    async def metrics(request: Request) -> Response:
        return Response(await exposition(request.app), media_type=CONTENT_TYPE)

    return router


def install_metrics(app: FastAPI) -> None:
    """The middleware (outermost, so it times everything) and `GET /metrics`."""
    app.add_middleware(MetricsMiddleware)
    app.include_router(metrics_router())
