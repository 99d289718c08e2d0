"""The registry service: organisations, vendors, models and filings, catalogues — with history.

Run: `uvicorn services.registry.app:create_app --factory --port 8001`
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.app import create_service_app
from shared.auth import ADMIN, AUDITOR, PLATFORM
from shared.feed.dispatcher import start_dispatcher, stop_dispatcher
from shared.feed.endpoints import events_router
from shared.feed.metrics import outbox_figures
from shared.metrics import on_scrape
from shared.tokens import TokenSigner

from . import exports, token_endpoint
from .clients.endpoints import router as clients_router
from .clocks.endpoints import router as clocks_router
from .endpoints import router
from .events import CATALOGUE
from .facts.endpoints import router as facts_router
from .models import SCHEMA
from .settings import RegistrySettings

DESCRIPTION = """
The registry is the other services' source of facts: organisations (by Unified Social
Credit Code), their revenue and affiliations, vendors, models and their CAC filings,
catalogue entries and recognitions. Every fact keeps its history: add `?as_of=YYYY-MM-DD`
to any read or list to see it as it was in effect on that date.

Errors are RFC 9457 `application/problem+json` with a stable `code`; messages follow
`Accept-Language` (中文 by default, or English).
"""


def create_app(settings: RegistrySettings | None = None) -> FastAPI:
    settings = settings or RegistrySettings()
    on_scrape("registry", outbox_figures)
    # registry changes go to the bureau and the data platform only (applicants and vendors read no registry)
    # the facts routes first: every submission calls one, and routes are matched in order (after the ~80 record
    # routes it cost the process ~4% of its CPU, issue #16); their paths overlap no other route's
    routers = [facts_router, router, events_router(CATALOGUE, webhook_roles=(PLATFORM, ADMIN, AUDITOR)), exports.router]
    signer = None
    if settings.signing_keys_dir:
        signer = TokenSigner(
            Path(settings.signing_keys_dir),
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            lifetime_seconds=settings.token_lifetime_seconds,
            kid=settings.signing_kid,
        )
        # the token endpoint, and the administration of the clients it authenticates (issue #15)
        routers += [token_endpoint.router, clients_router]
    if settings.sandbox_mode:  # test clocks (docs/sandbox.md): never in production (shared/settings.py refuses)
        routers.append(clocks_router)
    app = create_service_app(
        service_name="registry",
        schema=SCHEMA,
        title="Longgang AI measures — registry (登记簿)",
        description=DESCRIPTION,
        settings=settings,
        routers=routers,
        on_startup=[start_dispatcher],
        on_shutdown=[stop_dispatcher],
    )
    app.state.token_signer = signer
    return app
