"""Issue #7: schemathesis against the three services' OpenAPI documents, with valid credentials.

Every operation each service documents is called with requests generated from its OpenAPI
document (valid ones and deliberately invalid ones: schemathesis' positive and negative
modes, its coverage phase's boundary values and other methods on each path, and the
documents' examples), as a client that may call it: the route's own `require(...)` scopes
(shared.auth.route_scopes) pick the token, an admin's where admin is allowed, else the first
role the route accepts (vendor and applicant tokens are bound to organisations that exist).
Each answer must hold:

- no 5xx (`not_a_server_error`): a 500 on any input is a bug;
- the status code is one the operation documents, with a documented content type, and the
  body matches the documented schema (`status_code_conformance`, `content_type_conformance`,
  `response_schema_conformance`, `response_headers_conformance`);
- every 4xx is `application/problem+json` with a stable `code`, the `status` and a `detail`
  (`problem_details`, below).

Random identifiers find nothing, so each service is first given real data (organisations,
a filed model, applications, approved decisions, issued vouchers with a hold, a redemption
and a settlement batch, a grant, a webhook), and every other generated case of an operation
gets those identifiers in place of the generated ones (`Known`): the happy paths and the
conflicts are checked too, with every other field still generated.

The apps run in this process over ASGI (schemathesis' client: one event loop thread for every
app), each on a throw-away database of its own, so random writes never reach another test's
data; their peers are the session's live registry and eligibility processes. Generation is
derandomized (Hypothesis' fixed seed per test) with a modest number of examples per
operation, so CI sends the same requests every run: about 10,000 requests, 2 minutes.
`SCHEMATHESIS_MAX_EXAMPLES=200` explores further, `SCHEMATHESIS_RANDOM=1` with fresh random
data each run (a failure prints the `@reproduce_failure` blob that replays it);
`SCHEMATHESIS_TRACE=file` appends every request's operation and answer to a file (to see
what was reached).

Excluded operations and why: none.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
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

from shared.auth import ADMIN, APPLICANT, APPROVER, OFFICER, VENDOR, iter_routes, route_scopes
from shared.feed.settings import WebhookSettings
from tests.api.apps import build_app, document
from tests.auth import admin, as_applicant, as_vendor, auth
from tests.conftest import DatabaseFactory
from tests.eligibility import seed
from tests.factories import new_credit_code, organisation_payload
from tests.vouchers.flow import YUAN, approve, approved_m3, m1_decision, submit

Scope = dict[str, Any]
Message = dict[str, Any]

#: Examples per operation for the fuzzing phase (the coverage phase adds its boundary cases).
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))


def _schema(service: str) -> Any:
    schema = schemathesis.openapi.from_dict(document(service))
    schema.config.update(base_url=f"http://{service}")
    return schema


registry_schema = _schema("registry")
eligibility_schema = _schema("eligibility")
vouchers_schema = _schema("vouchers")

FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=os.environ.get("SCHEMATHESIS_RANDOM") != "1",
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
    assert isinstance(body.get("code"), str), f"no stable `code` in {body}"
    assert body["code"], f"an empty `code` in {body}"
    assert body.get("status") == response.status_code, f"`status` {body.get('status')} != {response.status_code}"
    assert isinstance(body.get("detail"), str), f"no `detail` in {body}"
    assert body["detail"], f"an empty `detail` in {body}"


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    problem_details,
]


# --- who calls, and on what -------------------------------------------------------------------------


class Callers:
    """The token for each operation: from the route's declared scopes."""

    def __init__(self, app: FastAPI) -> None:
        self.scopes: dict[tuple[str, str], tuple[str, ...] | None] = {}
        for context in iter_routes(app):
            for method in context.methods or ():
                self.scopes[(method, str(context.path))] = route_scopes(context)
        self.applicant = ""  # organisations the bound tokens act for (set when the data is seeded)
        self.vendor = ""

    def headers(self, case: schemathesis.Case) -> dict[str, str]:
        # the operation's own method: the coverage phase also sends other methods to its path (expecting 405)
        key = (case.operation.method.upper(), case.operation.path)
        assert key in self.scopes, f"{key} is documented but not served"
        scopes = self.scopes[key]
        if scopes is None:  # public: /healthz, /readyz, the token endpoint, the JWKS
            return {}
        role = ADMIN if ADMIN in scopes else scopes[0]
        if role == VENDOR:
            assert self.vendor
            return as_vendor(self.vendor)
        if role == APPLICANT:
            assert self.applicant
            return as_applicant(self.applicant)
        return auth(role, name="schemathesis")  # the seeding's admin too: webhooks are per client


@dataclass
class Known:
    """Values that exist in the service's data, by parameter name (path, query) or top-level body field.

    Random identifiers find nothing, so every other generated case of an operation gets these
    in place of the generated ones (in turn): the happy paths and the conflicts are reached
    too, with everything else still generated.
    """

    path: dict[str, list[Any]] = field(default_factory=dict)
    query: dict[str, list[Any]] = field(default_factory=dict)
    body: dict[str, list[Any]] = field(default_factory=dict)


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
    """One service under test: its app, who calls, and the values its data holds."""

    def __init__(self, app: FastAPI) -> None:
        # no webhook is ever delivered (the dispatcher is off) and no URL is resolved: fuzzed URLs stay unreached
        app.state.webhook_settings = WebhookSettings(poll_seconds=0, allow_private_networks=True)
        self.app = Resident(app)
        self.callers = Callers(app)
        self.known = Known()
        self._turns: dict[str, itertools.count[int]] = {}

    def client(self, **headers: str) -> Any:
        """A client of the app for seeding (the same event loop as the tests' requests); admin by default."""
        client = asgi.get_client(self.app)
        client.headers.update(headers or auth(ADMIN, name="schemathesis"))
        return client

    def _use_known(self, case: schemathesis.Case) -> None:
        turn = next(self._turns.setdefault(case.operation.label, itertools.count()))
        if turn % 2 == 0:
            return

        def pick(values: list[Any]) -> Any:
            return values[(turn // 2) % len(values)]

        for container, known in ((case.path_parameters, self.known.path), (case.query, self.known.query)):
            if isinstance(container, dict):
                for name, values in known.items():
                    if values and name in container:
                        container[name] = pick(values)
        if isinstance(case.body, dict):
            for name, values in self.known.body.items():
                if values and name in case.body:
                    case.body[name] = pick(values)

    def run(self, case: schemathesis.Case) -> None:
        self._use_known(case)
        response = case.call_and_validate(app=self.app, headers=self.callers.headers(case), checks=CHECKS)
        trace = os.environ.get("SCHEMATHESIS_TRACE")
        if trace:
            with open(trace, "a", encoding="utf-8") as log:
                log.write(f"{case.method} {case.operation.path} {response.status_code} {response.content[:150]!r}\n")


# --- the data the requests find ------------------------------------------------------------------------


def _created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _seed_registry(client: Any) -> dict[str, Any]:
    """Real records: two organisations (an applicant with revenue; a compute and model vendor with a filed
    model), an affiliation and a recognition. `client` is httpx or requests, with an admin's token."""

    def post(path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return _created(client.post(path, json=payload))

    industrial = organisation_payload(registered_on="2021-01-04", four_above_category="above_scale_industrial")
    applicant = post("/v1/organisations", industrial)["credit_code"]
    vendor = post("/v1/organisations", organisation_payload(registered_on="2021-01-04"))["credit_code"]
    for year in (2024, 2025):
        post("/v1/revenues", {"credit_code": applicant, "year": year, "revenue_fen": 500_000_000})
    flags = {"is_model_vendor": True, "is_compute_vendor": True}
    post("/v1/vendors", {"credit_code": vendor, "effective_from": "2021-01-04", **flags})
    model = post("/v1/models", {"vendor_credit_code": vendor, "name": "龙岗模型-fuzz", "effective_from": "2021-01-04"})
    number = f"Guangdong-Fuzz{new_credit_code()[-8:]}-202403010001"
    post("/v1/filings", {"number": number, "model_id": model["id"], "kind": "filing", "filed_on": "2024-03-01"})
    affiliation = post(
        "/v1/affiliations",
        {"credit_code_a": applicant, "credit_code_b": vendor, "relation": "control", "effective_from": "2022-01-01"},
    )
    recognition = post(
        "/v1/recognitions",
        {
            "credit_code": applicant,
            "recognised_on": "2025-05-01",
            "details": {"kind": "major_ai_project", "project": "龙岗工业大模型"},
        },
    )
    ai_enterprise = {"kind": "ai_enterprise", "list": "龙岗区人工智能企业白名单", "authority": "龙岗区工业和信息化局"}
    post("/v1/recognitions", {"credit_code": applicant, "recognised_on": "2021-01-04", "details": ai_enterprise})
    diagnosis = post(
        "/v1/recognitions", {"credit_code": applicant, "recognised_on": "2025-06-15", "details": DIAGNOSIS}
    )
    return {
        "applicant": applicant,
        "vendor": vendor,
        "model": model["id"],
        "filing": number,
        "affiliation": affiliation["id"],
        "recognition": recognition["id"],
        "diagnosis": diagnosis["id"],
    }


WEBHOOK_URL = "https://hooks.example.com/longgang"  # never called: the fuzzed apps deliver no webhook


def _webhook(client: Any) -> Known:
    """A webhook subscription of the fuzzing client (webhooks are per client)."""
    webhook = _created(client.post("/v1/webhooks", json={"url": WEBHOOK_URL}))
    return Known(path={"webhook_id": [webhook["id"]]}, body={"url": [WEBHOOK_URL], "event_types": [[]]})


def _merge(*parts: Known) -> Known:
    merged = Known()
    for part in parts:
        merged.path.update(part.path)
        merged.query.update(part.query)
        merged.body.update(part.body)
    return merged


@pytest.fixture(scope="module")
def _residents() -> Iterator[list[Resident]]:
    """The apps' lifespans, ended at the end of the module (before the databases are dropped)."""
    residents: list[Resident] = []
    yield residents
    for resident in residents:
        resident.stop()


@pytest.fixture(scope="module")
def live_records(live_registry: str) -> dict[str, Any]:
    """Records in the live registry, which the eligibility and vouchers apps read."""
    with httpx.Client(base_url=live_registry, headers=admin(), timeout=30) as client:
        return _seed_registry(client)


def _peer_settings(env: dict[str, str], service: str) -> dict[str, Any]:
    return {
        "client_id": env[f"{service.upper()}_CLIENT_ID"],
        "client_secret": env[f"{service.upper()}_CLIENT_SECRET"],
        "auth_token_url": env["AUTH_TOKEN_URL"],
    }


@pytest.fixture(scope="module")
def registry_fuzz(databases: DatabaseFactory, _residents: list[Resident]) -> Fuzzed:
    fuzzed = Fuzzed(build_app("registry", databases.create("longgang_fuzz_registry")))
    _residents.append(fuzzed.app)
    with fuzzed.client() as client:
        own = _seed_registry(client)
        webhook = _webhook(client)
    fuzzed.callers.applicant, fuzzed.callers.vendor = own["applicant"], own["vendor"]
    fuzzed.known = _merge(
        webhook,
        Known(
            path={
                "credit_code": [own["applicant"], own["vendor"]],
                "year": [2024],
                "id": [own["model"], own["affiliation"], own["recognition"]],
                "number": [own["filing"]],
            },
            query={"credit_code": [own["applicant"]], "vendor_credit_code": [own["vendor"]]},
            body={
                "credit_code": [own["applicant"], own["vendor"]],
                "vendor_credit_code": [own["vendor"]],
                "model_id": [own["model"]],
                "credit_code_a": [own["applicant"]],
                "credit_code_b": [own["vendor"]],
            },
        ),
    )
    return fuzzed


M1_EVIDENCE = {
    "measure": "M1",
    "fiscal_year": 2025,
    "purpose": "healthcare",
    "invoices": [
        {
            "invoice_number": "GPU-2025-01",
            "provider_credit_code": "",  # the live vendor
            "paid_on": "2025-03-31",
            "lines": [{"kind": "compute", "description": "A800 租用", "amount_fen": 300_000_000}],
        }
    ],
}


M6_EVIDENCE = {"measure": "M6", "diagnosis_reference": "深工信诊断〔2025〕031号", "audited_investment_fen": 300_000_000}
#: the city's diagnosis M6 asks for (a registry record the evidence references by id)
DIAGNOSIS = {
    "kind": "digital_diagnosis",
    "project": "制造业数字化转型咨询诊断",
    "reference": M6_EVIDENCE["diagnosis_reference"],
    "authority": "深圳市工业和信息化局",
}


def _m1_evidence(provider: str) -> dict[str, Any]:
    evidence = json.loads(json.dumps(M1_EVIDENCE))
    evidence["invoices"][0]["provider_credit_code"] = provider
    return evidence


@pytest.fixture(scope="module")
def eligibility_fuzz(
    databases: DatabaseFactory,
    live_registry: str,
    live_vouchers: str,
    service_auth_env: dict[str, str],
    live_records: dict[str, Any],
    _residents: list[Resident],
) -> Fuzzed:
    app = build_app(
        "eligibility",
        databases.create("longgang_fuzz_eligibility"),
        registry_url=live_registry,
        vouchers_url=live_vouchers,  # approvals reserve the programme budget there (A2)
        **_peer_settings(service_auth_env, "eligibility"),
    )
    fuzzed = Fuzzed(app)
    _residents.append(fuzzed.app)
    applicant, vendor = live_records["applicant"], live_records["vendor"]
    fuzzed.callers.applicant, fuzzed.callers.vendor = applicant, vendor
    with fuzzed.client() as client:
        body = {
            "applicant": applicant,
            "as_of": "2026-02-01",
            "as_of_reason": "逾期登记的纸质申请",
            "evidence": _m1_evidence(vendor),
        }
        waiting = _created(client.post("/v1/applications", json=body))
        body = {
            "applicant": applicant,
            "as_of": "2026-03-02",
            "as_of_reason": "逾期登记的纸质申请",
            "evidence": {**M6_EVIDENCE, "diagnosis_id": live_records["diagnosis"]},
        }
        approved = _created(client.post("/v1/applications", json=body))
        path = f"/v1/applications/{approved['id']}"
        verdict = {"verdict": "approve", "reason": "合规"}
        assert client.post(f"{path}/reviews", json=verdict, headers=auth(OFFICER, name="wang")).status_code == 200
        assert client.post(f"{path}/approvals", json=verdict, headers=auth(APPROVER, name="li")).status_code == 200
        webhook = _webhook(client)
    fuzzed.known = _merge(
        webhook,
        Known(
            path={
                "application_id": [waiting["id"], approved["id"]],
                "decision_id": [waiting["decision"]["id"], approved["decision"]["id"]],
                "parameter_id": ["M1.revenue_classes", "M13.cap_fen"],
            },
            query={"applicant": [applicant]},
            body={
                "applicant": [applicant],
                "as_of": ["2026-02-01", "2025-05-01"],
                "as_of_reason": ["逾期登记的纸质申请"],
                "application_ids": [[waiting["id"], approved["id"]]],
            },
        ),
    )
    return fuzzed


@pytest_asyncio.fixture(scope="module")
async def vouchers_fuzz(
    databases: DatabaseFactory,
    live_registry: str,
    live_eligibility: str,
    service_auth_env: dict[str, str],
    _residents: list[Resident],
) -> Fuzzed:
    """Decisions approved in the live eligibility service; a model voucher (with a hold, a captured
    redemption and a settlement batch), a compute voucher and a grant issued in this vouchers app."""
    async with (
        httpx.AsyncClient(base_url=live_registry, headers=admin(), timeout=30) as registry,
        httpx.AsyncClient(base_url=live_eligibility, headers=admin(), timeout=30) as eligibility,
    ):
        supply, m3_issued = await approved_m3(registry, eligibility)
        # small enough to stay under the M3 claim ceiling with the first: the fuzzing may issue it once
        _, m3_unissued = await approved_m3(
            registry, eligibility, contract_fen=1_000_000 * YUAN, claim_fen=300_000 * YUAN, supply=supply
        )
        m1_holder, _, m1_application = await m1_decision(registry, eligibility)
        m1 = await approve(eligibility, m1_application)
        await seed.recognition(
            registry,
            supply.holder,
            "2021-01-04",
            kind="industrial_enterprise",
            industry_section="C",
            authority="统计局",
        )
        m6_evidence = await seed.m6_evidence(registry, supply.holder, 300_000_000)
        m6_application = await submit(eligibility, supply.holder, m6_evidence, as_of="2026-03-02")
        m6 = await approve(eligibility, m6_application)
    app = build_app(
        "vouchers",
        databases.create("longgang_fuzz_vouchers"),
        registry_url=live_registry,
        eligibility_url=live_eligibility,
        **_peer_settings(service_auth_env, "vouchers"),
    )
    fuzzed = Fuzzed(app)
    _residents.append(fuzzed.app)
    fuzzed.callers.applicant, fuzzed.callers.vendor = supply.holder, supply.vendor
    vendor = as_vendor(supply.vendor)
    with fuzzed.client() as client:
        m3_code = _created(client.post("/v1/vouchers", json={"decision_id": m3_issued}))["code"]
        m1_code = _created(client.post("/v1/vouchers", json={"decision_id": m1}))["code"]
        grant = _created(client.post("/v1/grants", json={"decision_id": m6}))
        redemption = {"amount_fen": 100_000, "invoice_number": "FP-FUZZ-1"}
        _created(
            client.post(
                f"/v1/vouchers/{m3_code}/redemptions", json=redemption, headers={**vendor, "Idempotency-Key": "fuzz-1"}
            )
        )
        hold = _created(
            client.post(
                f"/v1/vouchers/{m3_code}/holds",
                json={"amount_fen": 50_000, "invoice_number": "FP-FUZZ-2"},
                headers={**vendor, "Idempotency-Key": "fuzz-2"},
            )
        )
        batch = _created(client.post("/v1/settlement-batches", json={"vendor": supply.vendor}))
        webhook = _webhook(client)
    fuzzed.known = _merge(
        webhook,
        Known(
            path={
                "code": [m3_code, m1_code],
                "hold_id": [hold["id"]],
                "batch_id": [batch["id"]],
                "grant_id": [grant["id"]],
                "credit_code": [supply.holder, supply.vendor, m1_holder],
                "year": [2025, 2026],
            },
            query={"vendor": [supply.vendor], "holder": [supply.holder]},
            body={"decision_id": [m3_unissued, m3_issued, m1, m6], "vendor": [supply.vendor]},
        ),
    )
    return fuzzed


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
