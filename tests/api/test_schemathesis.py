"""Issue #7: schemathesis against the three services' OpenAPI documents, with valid credentials.

Every operation each service documents is called with requests generated from its OpenAPI
document (valid ones and deliberately invalid ones: schemathesis' positive and negative
modes, its coverage phase's boundary values, and the documents' examples), as a client that
may call it: the route's own `require(...)` scopes (shared.auth.route_scopes) pick the
token, an admin's where admin is allowed, else the first role the route accepts (a vendor
or applicant token is bound to an organisation that exists in the live registry). Each
answer must hold:

- no 5xx (`not_a_server_error`): a 500 on any input is a bug;
- the status code is one the operation documents, with a documented content type, and the
  body matches the documented schema (`status_code_conformance`, `content_type_conformance`,
  `response_schema_conformance`, `response_headers_conformance`);
- every 4xx is `application/problem+json` with a stable `code`, the `status` and a `detail`
  (`problem_details`, below).

The apps run in this process over ASGI (schemathesis' own client: one event loop thread for
every app), each on a throw-away database of its own, so that random writes never reach
another test's data; their peers are the session's live registry and eligibility processes.
Generation is derandomized with a fixed seed and a modest number of examples per operation,
so CI replays the same requests every run.

Excluded operations and why: none.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.auth import ADMIN, APPLICANT, VENDOR, iter_routes, route_scopes
from shared.events import WebhookSettings
from tests.auth import admin, as_applicant, as_vendor, auth
from tests.conftest import DatabaseFactory
from tests.factories import new_credit_code, organisation_payload

Scope = dict[str, Any]
Message = dict[str, Any]

#: Examples per operation for the fuzzing phase (the coverage phase adds its boundary cases).
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))

PLACEHOLDER_URL = "postgresql://schemathesis@127.0.0.1:1/not_used"
PEER_SETTINGS = {
    "registry_url": "http://127.0.0.1:1",
    "client_id": "schemathesis",
    "client_secret": "not-used",
    "auth_token_url": "http://127.0.0.1:1/oauth/token",
}


def _build_app(service: str, database_url: str, **extra: Any) -> FastAPI:
    if service == "registry":
        from services.registry.app import create_app as registry_app
        from services.registry.settings import RegistrySettings

        return registry_app(RegistrySettings(database_url=database_url, **extra))
    if service == "eligibility":
        from services.eligibility.app import create_app as eligibility_app
        from services.eligibility.settings import EligibilitySettings

        return eligibility_app(EligibilitySettings(database_url=database_url, **extra))
    from services.vouchers.app import create_app as vouchers_app
    from services.vouchers.settings import VouchersSettings

    return vouchers_app(VouchersSettings(database_url=database_url, **extra))


def _document(service: str) -> dict[str, Any]:
    """The service's OpenAPI document, as its app serves it at /openapi.json (no database needed)."""
    extra: dict[str, Any] = {}
    if service != "registry":
        extra = dict(PEER_SETTINGS)
    if service == "vouchers":
        extra["eligibility_url"] = "http://127.0.0.1:1"
    document: dict[str, Any] = _build_app(service, PLACEHOLDER_URL, **extra).openapi()
    return document


def _schema(service: str) -> Any:
    schema = schemathesis.openapi.from_dict(_document(service))
    schema.config.update(base_url=f"http://{service}")
    return schema


registry_schema = _schema("registry")
eligibility_schema = _schema("eligibility")
vouchers_schema = _schema("vouchers")

FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)


# --- the checks ------------------------------------------------------------------------------------


def problem_details(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every 4xx is RFC 9457 problem+json with a stable `code`, its `status` and a `detail`."""
    if not 400 <= response.status_code < 500:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.split(";")[0].strip() == "application/problem+json", (
        f"{response.status_code} answered as {content_type!r}, not application/problem+json"
    )
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"{response.status_code}: the problem body is not JSON") from exc
    assert isinstance(body, dict), f"{response.status_code}: the problem body is not an object"
    assert isinstance(body.get("code"), str) and body["code"], f"no stable `code` in {body}"
    assert body.get("status") == response.status_code, f"`status` {body.get('status')} != {response.status_code}"
    assert isinstance(body.get("detail"), str) and body["detail"], f"no `detail` in {body}"


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    problem_details,
]


# --- who calls ---------------------------------------------------------------------------------------


class Callers:
    """The token for each operation: from the route's declared scopes."""

    def __init__(self, app: FastAPI, *, applicant: str, vendor: str) -> None:
        self.scopes: dict[tuple[str, str], tuple[str, ...] | None] = {}
        for context in iter_routes(app):
            for method in context.methods or ():
                self.scopes[(method, str(context.path))] = route_scopes(context)
        self.applicant = applicant
        self.vendor = vendor

    def headers(self, case: schemathesis.Case) -> dict[str, str]:
        # the operation's own method: the coverage phase also sends other methods to its path (expecting 405)
        key = (case.operation.method.upper(), case.operation.path)
        assert key in self.scopes, f"{key} is documented but not served"
        scopes = self.scopes[key]
        if scopes is None:  # public: /healthz, /readyz, the token endpoint, the JWKS
            return {}
        role = ADMIN if ADMIN in scopes else scopes[0]
        if role == VENDOR:
            return as_vendor(self.vendor)
        if role == APPLICANT:
            return as_applicant(self.applicant)
        return auth(role, name="schemathesis")


class Resident:
    """The app as schemathesis reaches it, with a lifespan that lasts the whole module.

    Schemathesis ends an ASGI app's lifespan after every test (one test per operation) and
    starts it again on the next request; our services' lifespans are not made to restart
    (their peer clients are closed for good on shutdown). So this wrapper answers the
    lifespan messages itself and runs the app's real lifespan once, in a task of its own on
    the same event loop as the requests, until `stop()`.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._stopping = asyncio.Event()
        self._error: BaseException | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message: Message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.create_task(self._run())
        await self._started.wait()
        if self._error is not None:
            raise self._error

    async def _run(self) -> None:
        try:
            async with self.app.router.lifespan_context(self.app):
                self._started.set()
                await self._stopping.wait()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            raise

    async def _stop(self) -> None:
        self._stopping.set()
        assert self._task is not None
        await self._task

    def stop(self) -> None:
        """From the test's thread: end the real lifespan (if it ever started)."""
        if self._task is not None and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=60)


class Fuzzed:
    def __init__(self, app: FastAPI, callers: Callers) -> None:
        self.app = Resident(app)
        self.callers = callers

    def run(self, case: schemathesis.Case) -> None:
        response = case.call_and_validate(app=self.app, headers=self.callers.headers(case), checks=CHECKS)
        if os.environ.get("PROBE"):
            with open(os.environ["PROBE"], "a") as f:
                f.write(f"{case.method} {case.operation.path} {response.status_code} {response.content[:150]!r}\n")


# --- the apps under test ---------------------------------------------------------------------------


class Organisations:
    """An applicant and a vendor (compute and model) in the live registry, for bound tokens."""

    def __init__(self, applicant: str, vendor: str) -> None:
        self.applicant = applicant
        self.vendor = vendor


def _post(client: Any, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=payload)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _seed_registry(client: Any) -> Organisations:
    """A few real records (organisations, revenue, a vendor with a model and a filing, a recognition)."""
    applicant = _post(client, "/v1/organisations", organisation_payload(registered_on="2021-01-04"))["credit_code"]
    vendor = _post(client, "/v1/organisations", organisation_payload(registered_on="2021-01-04"))["credit_code"]
    _post(client, "/v1/revenues", {"credit_code": applicant, "year": 2024, "revenue_fen": 300_000_000})
    _post(
        client,
        "/v1/vendors",
        {"credit_code": vendor, "effective_from": "2021-01-04", "is_model_vendor": True, "is_compute_vendor": True},
    )
    model = _post(
        client, "/v1/models", {"vendor_credit_code": vendor, "name": "龙岗模型-schemathesis", "effective_from": "2021-01-04"}
    )
    _post(
        client,
        "/v1/filings",
        {
            "number": f"Guangdong-Fuzz{new_credit_code()[-8:]}-202403010001",
            "model_id": model["id"],
            "kind": "filing",
            "filed_on": "2024-03-01",
        },
    )
    return Organisations(applicant, vendor)


@pytest.fixture(scope="module")
def _residents() -> Iterator[list[Resident]]:
    """The apps' lifespans, ended at the end of the module (before the databases are dropped)."""
    residents: list[Resident] = []
    yield residents
    for resident in residents:
        resident.stop()


@pytest.fixture(scope="module")
def live_organisations(live_registry: str) -> Organisations:
    with httpx.Client(base_url=live_registry, headers=admin(), timeout=30) as client:
        return _seed_registry(client)


def _fuzzed(app: FastAPI, residents: list[Resident], organisations: Organisations) -> Fuzzed:
    # no webhook is ever delivered (the dispatcher is off) and no URL is resolved: fuzzed URLs stay unreached
    app.state.webhook_settings = WebhookSettings(poll_seconds=0, allow_private_networks=True)
    fuzzed = Fuzzed(app, Callers(app, applicant=organisations.applicant, vendor=organisations.vendor))
    residents.append(fuzzed.app)
    return fuzzed


def _peer_settings(env: dict[str, str], service: str) -> dict[str, Any]:
    return {
        "client_id": env[f"{service.upper()}_CLIENT_ID"],
        "client_secret": env[f"{service.upper()}_CLIENT_SECRET"],
        "auth_token_url": env["AUTH_TOKEN_URL"],
    }


@pytest.fixture(scope="module")
def registry_fuzz(databases: DatabaseFactory, _residents: list[Resident]) -> Fuzzed:
    app = _build_app("registry", databases.create("longgang_fuzz_registry"))
    fuzzed = _fuzzed(app, _residents, Organisations(applicant="", vendor=""))
    with asgi.get_client(fuzzed.app) as client:
        client.headers.update(admin())
        own = _seed_registry(client)
    fuzzed.callers.applicant, fuzzed.callers.vendor = own.applicant, own.vendor
    return fuzzed


@pytest.fixture(scope="module")
def eligibility_fuzz(
    databases: DatabaseFactory,
    live_registry: str,
    service_auth_env: dict[str, str],
    live_organisations: Organisations,
    _residents: list[Resident],
) -> Fuzzed:
    app = _build_app(
        "eligibility",
        databases.create("longgang_fuzz_eligibility"),
        registry_url=live_registry,
        **_peer_settings(service_auth_env, "eligibility"),
    )
    return _fuzzed(app, _residents, live_organisations)


@pytest.fixture(scope="module")
def vouchers_fuzz(
    databases: DatabaseFactory,
    live_registry: str,
    live_eligibility: str,
    service_auth_env: dict[str, str],
    live_organisations: Organisations,
    _residents: list[Resident],
) -> Fuzzed:
    app = _build_app(
        "vouchers",
        databases.create("longgang_fuzz_vouchers"),
        registry_url=live_registry,
        eligibility_url=live_eligibility,
        **_peer_settings(service_auth_env, "vouchers"),
    )
    return _fuzzed(app, _residents, live_organisations)


# --- the tests: one per documented operation -----------------------------------------------------------


@registry_schema.parametrize()
@FUZZ
def test_registry(case: schemathesis.Case, registry_fuzz: Fuzzed) -> None:
    registry_fuzz.run(case)


@eligibility_schema.parametrize()
@FUZZ
def test_eligibility(case: schemathesis.Case, eligibility_fuzz: Fuzzed) -> None:
    eligibility_fuzz.run(case)


@vouchers_schema.parametrize()
@FUZZ
def test_vouchers(case: schemathesis.Case, vouchers_fuzz: Fuzzed) -> None:
    vouchers_fuzz.run(case)
