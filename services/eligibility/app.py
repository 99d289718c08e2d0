"""The eligibility service: applications scored against the policy, as dated and traced rules.

Run: `uvicorn services.eligibility.app:create_app --factory --port 8002`
"""

from __future__ import annotations

from fastapi import FastAPI

from shared.app import create_service_app
from shared.auth import ADMIN, APPLICANT, AUDITOR, PLATFORM
from shared.feed.dispatcher import start_dispatcher, stop_dispatcher
from shared.feed.endpoints import events_router
from shared.feed.metrics import outbox_figures
from shared.metrics import on_scrape
from shared.peers import peer_client
from shared.testclocks import enterprise_clocks
from shared.tokens import peer_auth

from . import aggregates, exports
from .budget import ProgrammeBudget
from .endpoints import router
from .events import CATALOGUE
from .facts import RegistryFacts
from .models import SCHEMA
from .parameters import load_parameter_file
from .priority import load_priority_rubric
from .service import Policy
from .settings import EligibilitySettings
from .submission_sql import BY_KEY

DESCRIPTION = """
Scores applications against the Longgang AI measures (M1–M13, A1, A4). Each decision
carries a trace: every step with its clause, the facts and parameters it read (value,
effective date, given / provisional / interpretation), amounts before and after each cap.
Facts come from the registry as of the application's date; if the registry cannot be
reached the answer is 503 and nothing is stored.
"""


def create_app(settings: EligibilitySettings | None = None) -> FastAPI:
    settings = settings or EligibilitySettings()
    on_scrape("eligibility", outbox_figures)
    auth = peer_auth(settings)
    # refuse to start on a bad parameter file: the error names the file and the key
    registry = peer_client("registry", settings.registry_url, settings, auth=auth)
    policy = Policy(
        load_parameter_file(settings.policy_file),
        load_priority_rubric(settings.priority_file),
        # sandbox mode: an enterprise bound to a test clock applies on its clock's day (docs/sandbox.md)
        clocks=enterprise_clocks(settings.sandbox_mode, registry),
    )

    vouchers = peer_client("vouchers", settings.vouchers_url, settings, auth=auth)

    async def close_registry(app: FastAPI) -> None:
        await registry.aclose()
        await vouchers.aclose()

    app = create_service_app(
        service_name="eligibility",
        schema=SCHEMA,
        title="Longgang AI measures — eligibility (资格审核)",
        description=DESCRIPTION,
        settings=settings,
        # applicants get their own applications' events; vendors read no applications
        routers=[
            router,
            events_router(CATALOGUE, webhook_roles=(PLATFORM, ADMIN, AUDITOR, APPLICANT)),
            exports.router,
            aggregates.router,
        ],
        on_startup=[start_dispatcher],
        on_shutdown=[stop_dispatcher, close_registry],
        db_statement_settings=BY_KEY,
    )
    app.state.policy = policy
    app.state.registry_facts = RegistryFacts(
        registry, batch=settings.facts_batch, max_batch=settings.facts_max_batch, in_flight=settings.facts_in_flight
    )
    app.state.programme_budget = ProgrammeBudget(vouchers)
    return app
