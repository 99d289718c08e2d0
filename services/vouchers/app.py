"""The vouchers service: the append-only ledger of vouchers and grants.

Run: `uvicorn services.vouchers.app:create_app --factory --port 8003`
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI
from starlette.middleware import Middleware

from shared.app import create_service_app
from shared.feed.dispatcher import start_dispatcher, stop_dispatcher
from shared.feed.endpoints import events_router
from shared.feed.metrics import outbox_figures
from shared.metrics import on_scrape
from shared.peers import peer_client
from shared.testclocks import enterprise_clocks
from shared.tokens import peer_auth

from . import exports
from .authorisations import endpoints as authorisations
from .budgets import endpoints as budgets
from .budgets import reconciler
from .chain import endpoints as chain
from .chain import sealer
from .chain import service as chain_service
from .dashboard import install_dashboard
from .events import CATALOGUE
from .issuance import endpoints as issuance
from .ledger_metrics import register_metrics
from .models import SCHEMA
from .peers import Eligibility, Registry
from .pool import LedgerPool
from .redemptions import endpoints as redemptions
from .redemptions.group_commit import GroupCommit
from .reporting import endpoints as reporting
from .reporting import projector
from .reporting import service as reporting_service
from .settings import VouchersSettings
from .settlement import endpoints as settlement

DESCRIPTION = """
Compute vouchers (算力券, M1), model vouchers (模型券, M3) and grants, kept in an
append-only double-entry ledger. Every call needs a bearer token (OAuth2 client
credentials, `POST /oauth/token` on the registry). Vendors redeem over
`POST /v1/vouchers/{code}/redemptions` with a `vendor` client's token (the vendor is the
organisation the client is bound to) and an `Idempotency-Key`: the same key and body always
get the first answer; the same key with another body gets 409. A vendor sees and redeems
only vouchers it may redeem (others: 404). No ceiling can be exceeded: each is one row,
changed atomically in the same transaction as the entry.
"""


def create_app(settings: VouchersSettings | None = None) -> FastAPI:
    settings = settings or VouchersSettings()
    on_scrape("vouchers", outbox_figures)  # before the ledger's (register_metrics)
    auth = peer_auth(settings)
    ledger_pool = LedgerPool(
        settings.async_database_url, settings.db_role, settings.hot_pool_size, settings.db_pool_timeout_seconds
    )
    group_commit = GroupCommit(
        ledger_pool,
        enabled=settings.group_commit,
        in_flight=min(settings.group_commit_in_flight, settings.hot_pool_size),
        max_batch=settings.group_commit_max_batch,
        defer=settings.group_commit_defer,
    )
    eligibility = peer_client("eligibility", settings.eligibility_url, settings, auth=auth)
    registry = peer_client("registry", settings.registry_url, settings, auth=auth)

    async def start(app: FastAPI) -> None:
        await ledger_pool.start()

    async def stop(app: FastAPI) -> None:
        await group_commit.drain()
        await ledger_pool.close()
        await eligibility.aclose()
        await registry.aclose()

    app = create_service_app(
        service_name="vouchers",
        schema=SCHEMA,
        title="Longgang AI measures — vouchers (算力券 / 模型券)",
        description=DESCRIPTION,
        settings=settings,
        routers=[
            redemptions.router,
            issuance.router,
            authorisations.router,
            chain.router,
            settlement.router,
            budgets.router,
            events_router(CATALOGUE),
            exports.router,
            reporting.router,
        ],
        on_startup=[
            start,
            sealer.start_sealer,
            projector.start_read_side,
            start_dispatcher,
            reconciler.start_reconciler,
        ],
        on_shutdown=[
            reconciler.stop_reconciler,
            stop_dispatcher,
            projector.stop_read_side,
            reporting_service.close,
            sealer.stop_sealer,
            stop,
        ],
        db_server_settings={"role": settings.db_role} if settings.db_role else None,
        audit_role=settings.db_role or None,
    )
    app.router.routes.insert(0, redemptions.HOT_ROUTE)  # vendors' redemptions: the first route tried
    if settings.fast_path:
        # ...and served past the routing layers (HotPath): the innermost middleware, last of the list
        # (`add_middleware` puts a middleware first, outermost)
        app.user_middleware.append(Middleware(redemptions.HotPath))
    register_metrics()  # the ledger's scrape-time figures, ceilings counted by clause
    install_dashboard(app)  # GET /dashboard: the page that reads the aggregates API
    reporting_service.configure(app, settings)  # budgets (checked here: a bad file stops the service)
    chain_service.configure_checkpoints(app, settings)  # the checkpoint signing key (a key dir without one stops it)
    app.state.ledger_pool = ledger_pool
    app.state.group_commit = group_commit
    app.state.eligibility = Eligibility(eligibility)
    app.state.registry = Registry(registry, settings.vendor_check_ttl_seconds)
    app.state.clock = lambda: datetime.now(UTC)
    # sandbox mode: an enterprise bound to a test clock lives on its time (clocks.py; docs/sandbox.md)
    app.state.enterprise_clocks = enterprise_clocks(settings.sandbox_mode, registry, lambda: app.state.clock())
    return app
