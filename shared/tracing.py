"""Distributed tracing with OpenTelemetry (issue #15): off unless the standard `OTEL_*` variables ask for it.

**Off** (the default) this module does nothing to an app: the OpenTelemetry SDK and the instrumentations
are not imported, no middleware is installed, asyncpg and httpx are not wrapped, so the redemption path
runs exactly the code it runs without tracing (measured: docs/benchmarks.md, "Tracing"). Only the API
package, which FastAPI imports anyway, is imported here.

**On** when `OTEL_SDK_DISABLED` is not `true` and either `OTEL_TRACES_EXPORTER` names an exporter (`otlp`,
`console`; `none` is off) or an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). Unlike the SDK's own default, an unset exporter is not `otlp`: a
service does not send spans to localhost:4318 unless told to. The rest is the SDK's, read from its own
variables: the OTLP exporter (HTTP/protobuf: `OTEL_EXPORTER_OTLP_*`), the batch processor (`OTEL_BSP_*`),
the sampler (`OTEL_TRACES_SAMPLER`, `_ARG`), the propagators (`OTEL_PROPAGATORS`, default W3C
`traceparent` and baggage), the resource (`OTEL_RESOURCE_ATTRIBUTES`; `OTEL_SERVICE_NAME`, default the
service's name). Then:

- the app is instrumented (opentelemetry-instrumentation-fastapi): a server span per request, continuing
  the caller's `traceparent` (health probes and /metrics excluded), named `<method> <route template>`
  from the app's own routing (`_RouteNamer`);
- peer calls (shared/peers.py) and webhook deliveries (shared/feed/dispatcher.py) go through the httpx
  instrumentation: a client span each, its `traceparent` sent with the request;
- asyncpg is instrumented (opentelemetry-instrumentation-asyncpg): a span per statement, the redemption
  path's single call of `vouchers.redeem()` included, but only inside a trace (background polling makes
  no traces of its own) and not the pool's reset of a connection handed back;
- periodic jobs (shared/periodic.py) get a span per run that does work: the sealer's and the projector's
  runs, each webhook delivery batch, the reconciliations.

Each app has its own tracer provider, whose resource names its service. Instrumentations that are
process-wide (asyncpg) or built before the app (peer clients) use a provider that routes each span to the
provider of its parent span, so three services in one process (the tests) still report as three.

Tests pass an exporter (`use_exporter`: the SDK's InMemorySpanExporter) instead of the variables.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.util._decorator import _agnosticcontextmanager

if TYPE_CHECKING:  # the SDK's types only: it is imported when tracing is on
    import httpx
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

#: The exporters `OTEL_TRACES_EXPORTER` may name (the SDK's OTLP over HTTP/protobuf, and the console's).
EXPORTERS = ("otlp", "console")
#: Requests not traced: probes and scrapes (regular expressions, as the FastAPI instrumentation takes them).
EXCLUDED_URLS = "/healthz,/readyz,/metrics"
#: Statements that make no span: asyncpg's pool reset when a connection is handed back (a third of a
#: redemption's spans, and nothing the request asked for).
QUIET_STATEMENTS = ("SELECT pg_advisory_unlock_all()",)

_exporter_override: SpanExporter | None = None
_router: _RoutingProvider | None = None


class TracingConfigError(ValueError):
    """An `OTEL_*` variable this service cannot honour (named, with the value: none of them is a secret)."""


def exporter_name(environ: Mapping[str, str] | None = None) -> str | None:
    """The exporter the environment asks for, or None: tracing off (see the module's doc)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    name = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if name == "none":
        return None
    if name:
        if name not in EXPORTERS:
            raise TracingConfigError(f"OTEL_TRACES_EXPORTER={name}: supported are {', '.join(EXPORTERS)} or none")
        return name
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return None


def enabled() -> bool:
    """Whether apps made now are traced: a test's exporter, or the environment."""
    return _exporter_override is not None or exporter_name() is not None


def use_exporter(exporter: SpanExporter | None) -> None:
    """Tests: every app configured from now on sends its spans to `exporter` (each as it ends), whatever the
    environment says; None goes back to the environment and undoes the process-wide instrumentation."""
    global _exporter_override, _router
    _exporter_override = exporter
    if exporter is None and _router is not None:
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
        _router = None


def _span_exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol not in (None, "", "http/protobuf"):
        raise TracingConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: this build exports http/protobuf only")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _provider(service_name: str) -> SdkTracerProvider | None:
    """A tracer provider for one service, exporting where the test or the environment says; None: off."""
    name = None if _exporter_override is not None else exporter_name()
    if _exporter_override is None and name is None:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    if _exporter_override is not None:
        provider.add_span_processor(SimpleSpanProcessor(_exporter_override))
    else:
        assert name is not None
        provider.add_span_processor(BatchSpanProcessor(_span_exporter(name)))
    return provider


def configure_tracing(app: FastAPI, service_name: str) -> None:
    """The app factory's step (shared/app.py): nothing when off; else the app's provider and instrumentation."""
    provider = _provider(service_name)
    app.state.tracer_provider = provider
    if provider is None:
        return
    from opentelemetry.instrumentation import fastapi as fastapi_instrumentation

    router = _routing()
    router.add(provider)
    # The instrumentation names a server span by matching the request against every route of the app
    # before it runs (~0.4 ms a request for the vouchers service's 61 routes): the span starts named by
    # its method, and `_RouteNamer` names it by the route the app's own routing found.
    setattr(fastapi_instrumentation, "_get_default_span_details", _method_only)  # noqa: B010
    fastapi_instrumentation.FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls=EXCLUDED_URLS, exclude_spans=["receive", "send"]
    )
    app.add_middleware(_RouteNamer)


async def shutdown(app: FastAPI) -> None:
    """At the app's end: its spans sent (a test's exporter is left open for the test to read)."""
    provider: SdkTracerProvider | None = getattr(app.state, "tracer_provider", None)
    if provider is None:
        return
    if _router is not None:
        _router.remove(provider)
    if _exporter_override is not None:
        provider.force_flush()
    else:
        provider.shutdown()


def tracer(app: FastAPI, name: str = "longgang") -> trace.Tracer | None:
    """The app's tracer for spans of its own (periodic jobs), or None when it is not traced."""
    provider: SdkTracerProvider | None = getattr(app.state, "tracer_provider", None)
    return None if provider is None else provider.get_tracer(name)


def span(
    tracer: trace.Tracer | None, name: str, attributes: Mapping[str, str | int] | None = None
) -> contextlib.AbstractContextManager[trace.Span | None]:
    """A span around a block when `tracer` is set (tracing on); else nothing at all."""
    if tracer is None:
        return contextlib.nullcontext()
    return tracer.start_as_current_span(name, attributes=attributes)


def instrument_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Peer and webhook clients: a client span per request and its `traceparent` sent, when tracing is on
    (made before the app's provider exists: the spans follow their parent's service)."""
    if not enabled():
        return client
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=_routing())
    return client


def _routing() -> _RoutingProvider:
    """The process's routing provider; asyncpg is instrumented with it once."""
    global _router
    if _router is None:
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        _router = _RoutingProvider()
        children = _RoutingProvider(_router, children_only=True)
        AsyncPGInstrumentor().instrument(tracer_provider=children)  # type: ignore[no-untyped-call]
    return _router


def _method_only(scope: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """A server span's first name: its method (`_RouteNamer` adds the route)."""
    return str(scope.get("method") or "HTTP").strip(), {}


class _RouteNamer:
    """Pure ASGI, installed only when tracing is on: when the answer starts (the app has routed it), the
    server span is named `<method> <route template>`, with `http.route` (the instrumentation ends the span
    with the answer's last byte: later would be too late)."""

    def __init__(self, app: Any) -> None:
        from shared.metrics import matched_route, route_template

        self.app = app
        self.matched_route = matched_route
        self.route_template = route_template

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        span = trace.get_current_span()

        async def named(message: Any) -> None:
            if message["type"] == "http.response.start":
                route = self.matched_route(scope)
                if route is not None:
                    template = self.route_template(route)
                    span.update_name(f"{scope['method']} {template}")
                    span.set_attribute("http.route", template)
            await send(message)

        await self.app(scope, receive, named if span.is_recording() else send)


def _quiet(attributes: Any) -> bool:
    statement = attributes.get("db.statement") or attributes.get("db.query.text") if attributes else None
    return isinstance(statement, str) and statement.startswith(QUIET_STATEMENTS)


class _RoutingProvider(trace.TracerProvider):
    """Gives tracers whose spans are made by the provider of their parent span (a provider added here), or by
    the first one added when the parent is none of theirs. `children_only`: no span without a parent (a
    statement outside any trace is not traced)."""

    def __init__(self, shared: _RoutingProvider | None = None, *, children_only: bool = False) -> None:
        self.providers: dict[int, SdkTracerProvider] = {} if shared is None else shared.providers
        self.children_only = children_only

    def add(self, provider: SdkTracerProvider) -> None:
        self.providers[id(provider.resource)] = provider

    def remove(self, provider: SdkTracerProvider) -> None:
        self.providers.pop(id(provider.resource), None)

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        return _RoutingTracer(self, (instrumenting_module_name, instrumenting_library_version, schema_url))


class _RoutingTracer(trace.Tracer):
    def __init__(self, router: _RoutingProvider, scope: tuple[str, str | None, str | None]) -> None:
        self.router = router
        self.scope = scope
        self.tracers: dict[int, trace.Tracer] = {}

    def _tracer(self, context: Any) -> trace.Tracer | None:
        parent = trace.get_current_span(context)
        provider = self.router.providers.get(id(getattr(parent, "resource", None)))
        if provider is None:
            if self.children_only(parent) or not self.router.providers:
                return None
            provider = next(iter(self.router.providers.values()))
        key = id(provider)
        if key not in self.tracers:
            self.tracers[key] = provider.get_tracer(*self.scope)
        return self.tracers[key]

    def children_only(self, parent: trace.Span) -> bool:
        return self.router.children_only and not parent.get_span_context().is_valid

    def start_span(
        self,
        name: str,
        context: Any = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Any = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        tracer = self._tracer(context)
        if tracer is None or (self.router.children_only and _quiet(attributes)):
            return trace.INVALID_SPAN
        return tracer.start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )

    @_agnosticcontextmanager
    def start_as_current_span(
        self,
        name: str,
        context: Any = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Any = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        started = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )
        with trace.use_span(
            started,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current
