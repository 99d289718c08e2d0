"""One application → approval → voucher → redemption is one trace across the three services (issue #15).

The three services run in this process, each served by uvicorn on a port of its own (their calls to each
other are real HTTP), on a real PostgreSQL, with tracing on and the SDK's in-memory exporter
(`shared.tracing.use_exporter`). The test client starts the trace: every request it sends carries one
W3C `traceparent`. Then every span of every service that the flow caused is in that trace, each peer
call's server span is the child of the caller's client span, the redemption's SQL call is a span under
its request, and a webhook delivery carries a `traceparent` of the dispatcher's delivery span.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared import tracing
from shared.dbroles import login_url
from shared.feed.settings import WebhookSettings
from tests.auth import admin
from tests.conftest import DatabaseFactory, _settings_auth, free_port, provision_service_clients
from tests.events.receiver import Receiver
from tests.vouchers.flow import YUAN, approved_m3, issue, redeem

SERVICES = ("registry", "eligibility", "vouchers")
#: quick deliveries (production: WEBHOOK_POLL_SECONDS=1); the receiver listens on 127.0.0.1
FAST_WEBHOOKS = {"poll_seconds": 0.1, "timeout_seconds": 3.0, "allow_private_networks": True}
#: W3C Trace Context: version 00, trace id, parent id, flags (sampled; the SDK also sets "random", 0x02)
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-0[13]$")


@dataclass
class Traced:
    urls: dict[str, str]
    exporter: InMemorySpanExporter
    receiver: Receiver


def _apps(database_url: str, urls: dict[str, str], budgets: Path, env: dict[str, str]) -> dict[str, FastAPI]:
    from services.eligibility.app import create_app as eligibility_app
    from services.eligibility.settings import EligibilitySettings
    from services.registry.app import create_app as registry_app
    from services.registry.settings import RegistrySettings
    from services.vouchers.app import create_app as vouchers_app
    from services.vouchers.settings import VouchersSettings

    apps = {
        "registry": registry_app(RegistrySettings(database_url=login_url(database_url, "registry"))),  # type: ignore[arg-type]
        "eligibility": eligibility_app(
            EligibilitySettings(
                database_url=login_url(database_url, "eligibility"),  # type: ignore[arg-type]
                registry_url=urls["registry"],
                vouchers_url=urls["vouchers"],
                **_settings_auth(env, "eligibility"),  # type: ignore[arg-type]
            )
        ),
        "vouchers": vouchers_app(
            VouchersSettings(
                database_url=login_url(database_url, "vouchers"),  # type: ignore[arg-type]
                eligibility_url=urls["eligibility"],
                registry_url=urls["registry"],
                budget_file=budgets,
                **_settings_auth(env, "vouchers"),  # type: ignore[arg-type]
            )
        ),
    }
    for app in apps.values():
        app.state.webhook_settings = WebhookSettings(**FAST_WEBHOOKS)  # type: ignore[arg-type]
    return apps


@pytest_asyncio.fixture(scope="module")
async def traced(databases: DatabaseFactory, ample_budgets: Path) -> AsyncIterator[Traced]:
    exporter = InMemorySpanExporter()
    tracing.use_exporter(exporter)
    servers: list[uvicorn.Server] = []
    tasks: list[asyncio.Task[None]] = []
    receiver = Receiver().start()
    try:
        database_url = databases.create("longgang_tracing")
        urls = {service: f"http://127.0.0.1:{free_port()}" for service in SERVICES}
        env = await asyncio.to_thread(provision_service_clients, database_url, urls["registry"])
        for service, app in _apps(database_url, urls, ample_budgets, env).items():
            port = int(urls[service].rsplit(":", 1)[1])
            config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_config=None, access_log=False)
            servers.append(uvicorn.Server(config))
            tasks.append(asyncio.create_task(servers[-1].serve()))
        deadline = time.monotonic() + 60
        while not all(server.started for server in servers):
            assert not any(task.done() for task in tasks), [task.exception() for task in tasks if task.done()]
            assert time.monotonic() < deadline, "the services did not start"
            await asyncio.sleep(0.05)
        yield Traced(urls, exporter, receiver)
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        receiver.stop()
        tracing.use_exporter(None)


def service(span: ReadableSpan) -> str:
    return str(span.resource.attributes["service.name"])


def trace_spans(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.context is not None and s.context.trace_id == trace_id]


async def eventually(check: Callable[[], Any], within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not true after {within} s"
        await asyncio.sleep(0.05)


def server_span(spans: Sequence[ReadableSpan], owner: str, method: str, route: str) -> ReadableSpan:
    """The server span of `owner`'s route (its template: `/v1/vouchers/{code}/redemptions`)."""
    found = [
        s
        for s in spans
        if s.kind == SpanKind.SERVER
        and service(s) == owner
        and (s.attributes or {}).get("http.route") == route
        and ((s.attributes or {}).get("http.request.method") or (s.attributes or {}).get("http.method")) == method
    ]
    assert len(found) == 1, (owner, method, route, [s.name for s in spans if s.kind == SpanKind.SERVER])
    return found[0]


def statement(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("db.statement") or attributes.get("db.query.text") or "")


async def test_application_to_redemption_is_one_trace_across_the_three_services(traced: Traced) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    headers = {**admin(), "traceparent": f"00-{trace_id}-{caller_span}-01"}
    client = {name: httpx.AsyncClient(base_url=url, headers=headers, timeout=30) for name, url in traced.urls.items()}
    try:
        hook = await client["vouchers"].post(
            "/v1/webhooks", json={"url": traced.receiver.url, "event_types": ["vouchers.voucher.redeemed"]}
        )
        assert hook.status_code == 201, hook.text
        supply, decision_id = await approved_m3(client["registry"], client["eligibility"])
        issued = await issue(client["vouchers"], decision_id)
        assert issued.status_code == 201, issued.text
        code = issued.json()["code"]
        redeemed = await redeem(client["vouchers"], code, supply.vendor, 1_000 * YUAN, key=f"trace-{trace_id}")
        assert redeemed.status_code == 201, redeemed.text
    finally:
        for each in client.values():
            await each.aclose()

    tid = int(trace_id, 16)
    redemption_route = ("vouchers", "POST", "/v1/vouchers/{code}/redemptions")
    # a server span ends just after its answer has left: wait for the last one
    await eventually(
        lambda: any(
            (s.attributes or {}).get("http.route") == redemption_route[2] for s in trace_spans(traced.exporter, tid)
        )
    )
    spans = trace_spans(traced.exporter, tid)
    by_id = {s.context.span_id: s for s in spans if s.context is not None}

    # one trace, three services, no orphan: every span's parent is the test's span or a span of the trace
    assert {service(s) for s in spans} == set(SERVICES)
    for s in spans:
        assert s.parent is not None, s.name
        assert s.parent.trace_id == tid
        assert s.parent.span_id == int(caller_span, 16) or s.parent.span_id in by_id, (service(s), s.name)

    # across services: a server span under another service's span is the child of that service's client span
    crossings = set()
    for s in spans:
        assert s.parent is not None
        parent = by_id.get(s.parent.span_id)
        if s.kind != SpanKind.SERVER or parent is None:
            continue
        assert parent.kind == SpanKind.CLIENT, (s.name, parent.name)
        assert service(parent) != service(s)
        crossings.add((service(parent), service(s)))
    assert {("eligibility", "registry"), ("eligibility", "vouchers"), ("vouchers", "eligibility")} <= crossings

    # the approval reserved the budget in the vouchers service, within the approval's request
    approval = server_span(spans, "eligibility", "POST", "/v1/applications/{application_id}/approvals")
    reservation = server_span(spans, "vouchers", "PUT", "/v1/budget-reservations/{reservation_id}")
    assert reservation.parent is not None
    assert by_id[reservation.parent.span_id].parent.span_id == approval.context.span_id  # type: ignore[union-attr]

    # the redemption's one SQL call is a span of the redemption's request
    redemption = server_span(spans, *redemption_route)
    assert redemption.name == "POST /v1/vouchers/{code}/redemptions"  # named by its route (shared/tracing.py)
    calls = [s for s in spans if "vouchers.redeem(" in statement(s)]
    assert len(calls) == 1, [statement(s) for s in spans if statement(s)]
    assert calls[0].kind == SpanKind.CLIENT
    assert service(calls[0]) == "vouchers"
    ancestor = calls[0]
    while ancestor.parent is not None and ancestor.parent.span_id in by_id:
        ancestor = by_id[ancestor.parent.span_id]
        if ancestor is redemption:
            break
    assert ancestor is redemption
    # the pools' reset of a connection handed back is no span (shared/tracing.py QUIET_STATEMENTS)
    assert not [s for s in spans if statement(s).startswith(tracing.QUIET_STATEMENTS)]


async def test_the_sealer_the_projector_and_the_dispatcher_trace_their_runs(traced: Traced) -> None:
    """After the flow above: the vouchers service's sealer and projector runs and the webhook delivery are
    spans (their own traces), with their SQL under them; the delivery's `traceparent` names its client span."""

    def named(name: str) -> list[ReadableSpan]:
        return [s for s in traced.exporter.get_finished_spans() if s.name == name and service(s) == "vouchers"]

    for job in ("vouchers-sealer run", "vouchers-projector run"):
        runs = await eventually(lambda job=job: [s for s in named(job) if (s.attributes or {}).get("rows")])
        run = runs[-1]
        assert run.context is not None
        children = [
            s
            for s in traced.exporter.get_finished_spans()
            if s.parent is not None and s.parent.span_id == run.context.span_id
        ]
        assert any(statement(s) for s in children), job

    delivered = await eventually(traced.receiver.accepted)
    header = delivered[0].headers.get("traceparent", "")
    match = TRACEPARENT.match(header)
    assert match, header
    trace_id, span_id = (int(part, 16) for part in match.groups())
    deliveries = await eventually(
        lambda: [
            s
            for s in traced.exporter.get_finished_spans()
            if s.context is not None and (s.context.trace_id, s.context.span_id) == (trace_id, span_id)
        ]
    )
    delivery = deliveries[0]
    assert delivery.kind == SpanKind.CLIENT
    assert service(delivery) == "vouchers"
    assert delivery.parent is not None
    parent = delivery.parent.span_id
    # the batch's span ends after its deliveries' (it records their results first): waited for, not assumed
    batches = await eventually(
        lambda: [s for s in named("webhook delivery batch") if s.context is not None and s.context.span_id == parent]
    )
    assert batches[0].attributes["webhook.sent"] >= 1  # type: ignore[index,operator]


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_are_not_traced(traced: Traced, path: str) -> None:
    before = len(traced.exporter.get_finished_spans())
    async with httpx.AsyncClient(base_url=traced.urls["registry"], timeout=10) as client:
        assert (await client.get(path)).status_code == 200
    await asyncio.sleep(0.2)
    assert not [
        s for s in traced.exporter.get_finished_spans()[before:] if (s.attributes or {}).get("url.path") == path
    ]
