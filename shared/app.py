"""The one way a service app is built: logging, request ids, errors, database, health.

Each service calls `create_service_app` with its settings, schema and routers, so the
conventions (problem+json, transactions, readiness) are the same in all three.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute

from shared.apidocs import install_api_docs
from shared.audit import install_audit
from shared.auth import check_routes_protected, verifier_from_settings
from shared.db import Database
from shared.dbconnect import check_login_defaults, declare
from shared.errors import install_error_handlers
from shared.health import router as health_router
from shared.limits import DEFAULT_MAX_BODY_BYTES, install_request_guard
from shared.logs import RequestContextMiddleware, configure_logging
from shared.metrics import install_metrics
from shared.migrations import head_revision, known_revisions
from shared.openapi import PROBLEM_RESPONSES, install_openapi
from shared.peers import PeerUnavailable, peer_unavailable_handler
from shared.ratelimit import InFlightMiddleware, limiter_from_settings
from shared.settings import ServiceSettings
from shared.tracing import configure_tracing
from shared.tracing import shutdown as shutdown_tracing

Hook = Callable[[FastAPI], Awaitable[None]]
T = TypeVar("T")


def state_dependency(name: str, kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A dependency returning `app.state.<name>` (async: FastAPI would run a sync one in a thread)."""

    async def dependency(request: Request) -> T:
        value = getattr(request.app.state, name)
        assert isinstance(value, kind)
        return value

    return dependency


def operation_id(route: APIRoute) -> str:
    """An operation's OpenAPI id: its route's name, the endpoint function's (`redeem_voucher`, `finish_hold`), not
    FastAPI's default of name, path and method (`redeem_v1_vouchers__code__redemptions_post`). A generated
    client's methods are named by it; tests/api/test_operation_ids.py holds them unique per document."""
    return route.name


#: objects allocated (net) before the collector looks at the youngest generation (Python's default: 700)
YOUNG_GENERATION_THRESHOLD = 20_000


def create_service_app(
    *,
    service_name: str,
    schema: str,
    title: str,
    description: str,
    settings: ServiceSettings,
    routers: Sequence[APIRouter],
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    db_server_settings: dict[str, str] | None = None,
    db_statement_settings: dict[str, str] | None = None,
    audit_role: str | None = None,
) -> FastAPI:
    """Every route must declare who may call it (`shared.auth.require`): checked here.

    `max_body_bytes` bounds the body of a route that declares no limit of its own (`shared.limits.max_body`).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.db_pooler != "none":  # PgBouncer passes no timeouts: the login's own must be there
            await check_login_defaults(settings.async_database_url, settings.db_statement_timeout_ms)
        await app.state.audit.start()
        await app.state.rate_limiter.start(
            settings.async_database_url, schema, role=audit_role, interval=settings.rate_limit_sync_seconds
        )
        for hook in on_startup:
            await hook(app)
        # Everything alive now lives as long as the process: keep it out of the collector's
        # full passes, which otherwise stall every request for 50–80 ms every few seconds
        # (measured on the redemption path, docs/benchmarks.md).
        gc.collect()
        gc.freeze()
        # A request allocates thousands of container objects (a submission's trace alone is hundreds of dicts):
        # with the default young-generation threshold (700) the collector ran several times per request. At
        # 20,000 the eligibility process spent ~0.12 ms less CPU per submission (~6%, issue #16: four A/B
        # rounds, docs/benchmarks.md); what the collector finds is the same, found less often.
        gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])
        try:
            yield
        finally:
            for hook in on_shutdown:
                await hook(app)
            await app.state.audit.stop()
            await app.state.rate_limiter.stop()
            await app.state.database.dispose()
            await shutdown_tracing(app)  # after the jobs: their last spans are sent

    configure_logging(service_name, settings.log_level)
    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
        generate_unique_id_function=operation_id,
        # /docs is served from this package with a CSP (shared/apidocs); no ReDoc, no OAuth2 redirect page
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        # FastAPI's native OpenTelemetry looks up the global providers on every request;
        # we export nothing through it (Prometheus metrics: shared/metrics.py), so it stays off
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.service_name = service_name
    app.state.schema = schema
    app.state.settings = settings
    app.state.migration_head = head_revision(service_name)
    app.state.known_revisions = known_revisions(service_name)
    declare(settings.async_database_url, settings.db_pooler)
    declare(settings.async_read_database_url, settings.db_pooler)
    app.state.database = Database(
        settings.async_database_url,
        application_name=service_name,
        pool_size=settings.db_pool_size,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        server_settings=db_server_settings,
        pool_timeout=settings.db_pool_timeout_seconds,
        statement_settings=db_statement_settings,
    )
    app.state.verifier = verifier_from_settings(settings)
    app.state.rate_limiter = limiter_from_settings(settings)
    install_error_handlers(app)
    app.add_exception_handler(PeerUnavailable, peer_unavailable_handler)
    install_request_guard(app, max_body_bytes)  # token, then the body: inside the audit log, which records refusals
    install_audit(app, settings.async_database_url, schema, role=audit_role)
    app.add_middleware(InFlightMiddleware)  # frees what `authorize` counted in flight
    app.add_middleware(RequestContextMiddleware, log_successes=settings.access_log == "all")
    install_metrics(app)  # outermost middleware, and GET /metrics
    app.include_router(health_router)
    install_api_docs(app)
    install_openapi(app, settings.auth_token_url)
    for router in routers:
        app.include_router(router)
    check_routes_protected(app)
    # OpenTelemetry when the OTEL_* variables ask for it; off, nothing is installed (shared/tracing.py)
    configure_tracing(app, service_name)
    return app
