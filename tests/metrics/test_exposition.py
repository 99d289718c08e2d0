"""`GET /metrics` on every service: who may read it, what it holds, and counters that move.

The counters are the process's (the three test apps share one process), so each check
compares a scrape before and after the requests it makes.
"""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.auth import ADMIN, AUDITOR, DASHBOARD, METRICS_READ
from shared.feed.outbox import outbox_lag
from shared.migrations import async_url
from tests.auth import auth
from tests.metrics.scrape import PROMETHEUS, parse, requests, scrape, value

#: every service: requests, outbox lag, audit buffer, process (problems appear once one is answered)
COMMON = (
    "http_request_duration_seconds_bucket",
    "outbox_undelivered_events",
    "outbox_oldest_undelivered_age_seconds",
    "webhook_subscriptions",
    "audit_buffer_rows",
    "audit_rows_dropped_total",
    "process_cpu_seconds_total",
)
LEDGER = ("vouchers_ledger_entries_total", "vouchers_seal_lag_entries", "vouchers_seal_lag_seconds")


async def test_the_registry_exposes_its_metrics(registry: httpx.AsyncClient) -> None:
    await _exposes(registry, "registry")


async def test_eligibility_exposes_its_metrics(eligibility: httpx.AsyncClient) -> None:
    await _exposes(eligibility, "eligibility")


async def test_vouchers_exposes_its_metrics(vouchers: httpx.AsyncClient) -> None:
    await _exposes(vouchers, "vouchers")


async def _exposes(client: httpx.AsyncClient, service: str) -> None:
    await client.get("/healthz")
    samples = await scrape(client)
    names = {name for name, _ in samples}
    missing = [name for name in COMMON if name not in names]
    assert missing == [], service
    assert value(samples, "metrics_scrape_database_ok") == 1.0
    assert {labels for name, labels in samples if name == "webhook_subscriptions"} == {
        (("status", status),) for status in ("active", "deactivated", "suspended")
    }
    assert requests(samples, "GET", "/healthz", "2xx") >= 1
    if service == "vouchers":
        assert all(name in names for name in LEDGER), names
        assert value(samples, "vouchers_sealer_enabled") == 1.0
    else:
        assert not any(name.startswith("vouchers_ledger") for name in names)


async def test_metrics_are_for_prometheus_and_administrators(registry: httpx.AsyncClient) -> None:
    for headers in (PROMETHEUS, auth(ADMIN, name="admin")):
        assert (await registry.get("/metrics", headers=headers)).status_code == 200
    for scope in (DASHBOARD, AUDITOR):
        refused = await registry.get("/metrics", headers=auth(scope, name=scope))
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    del registry.headers["Authorization"]
    anonymous = await registry.get("/metrics")
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthenticated")
    # the scope cannot read anything else
    other = await registry.get("/v1/organisations", headers=auth(METRICS_READ, name="prometheus"))
    assert other.status_code == 403


async def test_requests_and_problems_are_counted_by_route_template_and_code(eligibility: httpx.AsyncClient) -> None:
    before = await scrape(eligibility)
    for _ in range(3):
        assert (await eligibility.get("/v1/policy/parameters/M6.ratio")).status_code == 200
    missing = await eligibility.get("/v1/policy/parameters/no.such")
    assert (missing.status_code, missing.json()["code"]) == (404, "parameter_not_found")
    unauthenticated = await eligibility.get("/v1/policy", headers={"Authorization": "Bearer nonsense"})
    assert unauthenticated.json()["code"] == "invalid_token"
    await eligibility.get(f"/v1/no-such-route/{uuid.uuid4()}")
    await eligibility.request("BREW", "/v1/policy")
    after = await scrape(eligibility)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/v1/policy/parameters/{parameter_id}"
    assert requests(after, "GET", route, "2xx") - requests(before, "GET", route, "2xx") == 3
    assert requests(after, "GET", route, "4xx") - requests(before, "GET", route, "4xx") == 1
    assert moved("http_problems_total", code="parameter_not_found", status="404") == 1
    assert moved("http_problems_total", code="invalid_token", status="401") == 1
    assert moved("http_problems_total", code="route_not_found", status="404") == 1
    # raw paths and client-chosen methods never become labels
    assert requests(after, "GET", "unmatched", "4xx") - requests(before, "GET", "unmatched", "4xx") == 1
    assert requests(after, "OTHER", "/v1/policy", "4xx") - requests(before, "OTHER", "/v1/policy", "4xx") == 1
    assert not any("no-such-route" in str(labels) or "BREW" in str(labels) for _, labels in after)
    # the histogram's buckets add up to its count
    labels = {"method": "GET", "route": route, "status_class": "2xx"}
    everything = value(after, "http_request_duration_seconds_bucket", le="+Inf", **labels)
    assert everything == requests(after, "GET", route, "2xx") > 0
    assert value(after, "http_request_duration_seconds_bucket", le="30.0", **labels) == everything


async def test_outbox_lag_is_what_active_subscriptions_wait_for(database_url: str) -> None:
    """Three events after an active subscription's position, an hour old: 3 undelivered, aged an hour."""
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.connect() as connection:
            transaction = await connection.begin()
            try:
                await connection.execute(
                    text("UPDATE registry.webhook_subscriptions SET status = 'suspended' WHERE status = 'active'")
                )
                empty = await outbox_lag(connection, "registry")
                assert (empty.undelivered, empty.oldest_age_seconds, empty.subscriptions["active"]) == (0, 0.0, 0)
                tail = (
                    await connection.execute(
                        text("SELECT txid::text::bigint, id FROM registry.outbox ORDER BY txid DESC, id DESC LIMIT 1")
                    )
                ).first()
                await connection.execute(
                    text(
                        "INSERT INTO registry.webhook_subscriptions (client_id, created_by, url, all_objects, secret, "
                        "cursor_txid, cursor_id) VALUES ('c', 'c', 'https://example.org/hook', true, 's', "
                        "CAST(:txid AS xid8), :id)"
                    ),
                    {"txid": tail[0] if tail else 0, "id": tail[1] if tail else 0},
                )
                for n in range(3):
                    await connection.execute(
                        text(
                            "INSERT INTO registry.outbox (type, subject, occurred_at) VALUES "
                            "('registry.organisation.created', :subject, clock_timestamp() - interval '1 hour')"
                        ),
                        {"subject": f"lag-{n}"},
                    )
                lag = await outbox_lag(connection, "registry")
                assert lag.undelivered == 3
                assert 3600 <= lag.oldest_age_seconds < 3700
                assert lag.subscriptions["active"] == 1
            finally:
                await transaction.rollback()
    finally:
        await engine.dispose()


def test_the_exposition_parses_back() -> None:
    """The helper reads what prometheus-client writes (a sanity check of the tests' own parser)."""
    samples = parse('x_total{a="1"} 2.0\n')
    assert value(samples, "x_total", a="1") == 2.0
    assert value(samples, "x_total", a="2") == 0.0
