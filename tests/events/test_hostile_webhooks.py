"""Issue #12: what a hostile or careless subscriber can do with webhooks, and what it no longer can.

- Finding 1: redeliveries to a receiver that never answers hold no database connection (an
  officer's request still answers at once); a pool that is exhausted answers 503, not 500.
- Finding 8: a receiver that hangs slows only its own subscription's deliveries.
- Finding 16: IPv6 forms of forbidden IPv4 addresses (NAT64, mapped, 6to4) are refused, and a
  delivery connects to the address that was checked, never resolving the name again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from services.vouchers.events import CATALOGUE as VOUCHERS_EVENTS
from services.vouchers.settings import VouchersSettings
from shared.app import create_service_app
from shared.auth import ADMIN, PLATFORM
from shared.feed.addresses import AddressRefused, is_public_address, pin, resolve_host
from shared.feed.dispatcher import Dispatcher, start_dispatcher, stop_dispatcher
from shared.feed.endpoints import events_router
from tests.auth import as_vendor, auth
from tests.events.conftest import emit_committed, eventually, fast_settings, new_subject
from tests.events.receiver import Receiver
from tests.factories import new_credit_code

Connect = Callable[[], Awaitable[asyncpg.Connection]]


class Silent:
    """A TCP server that accepts connections, reads what it is sent, and never answers."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Silent:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        for writer in self._writers:
            writer.close()
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hooks"

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass


def small_app(database_url: str, **settings: Any) -> FastAPI:
    """The events router on the vouchers schema with a small pool (2 + 2 overflow) that gives up after 1 s."""
    service_settings = VouchersSettings(
        database_url=database_url,  # type: ignore[arg-type]
        db_pool_size=2,
        db_pool_timeout_seconds=1.0,
        rate_limit_write_max_in_flight=16,
        **settings,
    )
    app = create_service_app(
        service_name="vouchers",
        schema="vouchers",
        title="events test app, small pool",
        description="the shared events router on the vouchers schema",
        settings=service_settings,
        routers=[events_router(VOUCHERS_EVENTS)],
        on_startup=[start_dispatcher],
        on_shutdown=[stop_dispatcher],
        db_server_settings={"role": service_settings.db_role} if service_settings.db_role else None,
        audit_role=service_settings.db_role or None,
    )
    app.state.webhook_settings = fast_settings(timeout_seconds=3.0, backoff_base_seconds=60, backoff_cap_seconds=60)
    return app


@pytest_asyncio.fixture
async def small(events_database: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = small_app(events_database)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://events", timeout=30) as http:
            yield app, http


# --- finding 1 -------------------------------------------------------------------------------------------


async def test_redeliveries_to_a_receiver_that_never_answers_do_not_starve_the_bureau(
    small: tuple[FastAPI, httpx.AsyncClient], connect: Connect
) -> None:
    """30 parallel redeliveries to a silent receiver: none holds a connection while it waits (the pool has 4);
    the vendor's requests beyond its in-flight bound are refused at once (429), and the bureau is served."""
    _, client = small
    vendor = new_credit_code()
    headers = as_vendor(vendor)
    async with Silent() as silent:
        created = await client.post("/v1/webhooks", json={"url": silent.url}, headers=headers)
        assert created.status_code == 201, created.text
        hook = created.json()["id"]
        connection = await connect()
        await emit_committed(connection, new_subject("SILENT"), vendor=vendor)

        async def first_delivery() -> Any:
            log = await client.get(f"/v1/webhooks/{hook}/deliveries", headers=headers)
            return log.json()["items"]

        (delivery,) = await eventually(first_delivery, within=15)
        assert delivery["delivered"] is False

        url = f"/v1/webhooks/{hook}/deliveries/{delivery['id']}/redeliver"
        flood = [asyncio.create_task(client.post(url, headers=headers)) for _ in range(30)]
        await eventually(lambda: silent.connections >= 10, within=10)  # the receiver is being called now
        started = time.monotonic()
        bureau = await client.get("/v1/webhooks", headers=auth(ADMIN, name="bureau-wang"))
        waited = time.monotonic() - started
        answers = await asyncio.gather(*flood)

    assert bureau.status_code == 200, bureau.text
    assert waited < 1.0, f"the bureau waited {waited:.2f} s for a connection"
    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) <= {201, 429}, [a.text for a in answers if a.status_code not in (201, 429)]
    refused = [answer for answer in answers if answer.status_code == 429]
    assert refused, "a vendor's requests in flight are bounded"
    assert refused[0].json()["code"] == "too_many_in_flight"
    assert int(refused[0].headers["retry-after"]) >= 1
    sent = [answer.json() for answer in answers if answer.status_code == 201]
    assert sent
    assert all(item["manual"] and not item["delivered"] for item in sent)
    assert all("Timeout" in item["error"] for item in sent), sent[0]


async def test_an_exhausted_pool_answers_503_with_retry_after(small: tuple[FastAPI, httpx.AsyncClient]) -> None:
    """Every pooled connection busy past the pool's timeout: 503 `service_busy` + Retry-After, never a 500."""
    app, client = small
    engine = app.state.database.engine
    held = [await engine.connect() for _ in range(4)]  # db_pool_size 2: a pool of 4
    try:
        for connection in held:
            await connection.exec_driver_sql("SELECT 1")
        busy = await client.get("/v1/webhooks", headers=auth(ADMIN, name="bureau-li"))
    finally:
        for connection in held:
            await connection.close()
    assert busy.status_code == 503, busy.text
    assert busy.headers["content-type"] == "application/problem+json"
    assert busy.json()["code"] == "service_busy"
    assert int(busy.headers["retry-after"]) >= 1
    assert (await client.get("/v1/webhooks", headers=auth(ADMIN, name="bureau-li"))).status_code == 200


# --- finding 8 -------------------------------------------------------------------------------------------


async def test_a_hanging_receiver_slows_only_its_own_subscription(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver, events_app: FastAPI
) -> None:
    dispatcher: Dispatcher = events_app.state.dispatcher
    await dispatcher.stop()  # a fresh HTTP client with a long timeout: A hangs for 6 s per attempt
    dispatcher.settings = fast_settings(timeout_seconds=6.0)
    await dispatcher.start()
    slow_vendor, quick_vendor = new_credit_code(), new_credit_code()
    async with Silent() as silent:
        for vendor, url in ((slow_vendor, silent.url), (quick_vendor, receiver.url)):
            created = await client.post("/v1/webhooks", json={"url": url}, headers=as_vendor(vendor))
            assert created.status_code == 201, created.text
        connection = await connect()
        await emit_committed(connection, new_subject("SLOW"), vendor=slow_vendor)
        first = new_subject("QUICK")
        await emit_committed(connection, first, vendor=quick_vendor)
        await eventually(lambda: silent.connections >= 1 and receiver.accepted_subjects() == [first], within=10)

        # A's receiver is hanging now; B's next events must not wait for it
        later = [new_subject("QUICK") for _ in range(3)]
        started = time.monotonic()
        for subject in later:
            await emit_committed(connection, subject, vendor=quick_vendor)
        await eventually(lambda: receiver.accepted_subjects() == [first, *later], within=10)
        took = time.monotonic() - started
        assert silent.connections == 1, "A is still at its first attempt"
    assert took < 2.0, f"B's deliveries waited {took:.1f} s behind A's receiver"


# --- finding 16 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("64:ff9b::7f00:1", False),  # NAT64 (RFC 6052) of 127.0.0.1: the probe
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254 (cloud metadata)
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b:1::808:808", False),  # local-use NAT64 (RFC 8215): never
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::ffff:192.168.1.1", False),
        ("::127.0.0.1", False),  # IPv4-compatible (deprecated)
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:c0a8:101::1", False),  # 6to4 of 192.168.1.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("ff02::1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("64:ff9b::808:808", True),  # NAT64 of a public address: a public address
        ("::ffff:8.8.8.8", True),
        ("2002:808:808::1", True),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
    ],
)
def test_ipv6_forms_of_forbidden_ipv4_addresses_are_not_public(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


async def test_webhook_urls_on_nat64_mapped_or_6to4_loopback_are_refused(
    client: httpx.AsyncClient, events_app: FastAPI
) -> None:
    dispatcher: Dispatcher = events_app.state.dispatcher
    dispatcher.settings = fast_settings(allow_private_networks=False)
    for url in (
        "http://[64:ff9b::7f00:1]:8080/hooks",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
        "http://[::ffff:127.0.0.1]/hooks",
        "http://[::ffff:7f00:1]/hooks",
        "http://[2002:7f00:1::1]/hooks",
        "http://[64:ff9b:1::a00:1]/hooks",
    ):
        refused = await client.post("/v1/webhooks", json={"url": url}, headers=auth(PLATFORM))
        assert refused.status_code == 422, (url, refused.text)
        assert refused.json()["errors"][0]["code"] == "url_not_allowed"


async def test_a_delivery_connects_to_the_address_checked_for_it(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver, events_app: FastAPI
) -> None:
    """The name is resolved once per delivery, by the resolver that checks it; the connection goes to that
    address with the name in `Host` (the system resolver, which does not know the name, is never asked)."""
    dispatcher: Dispatcher = events_app.state.dispatcher
    asked: list[tuple[str, int]] = []

    async def resolver(host: str, port: int) -> list[str]:
        if host != "receiver.longgang.invalid":  # other tests' subscriptions
            return await resolve_host(host, port)
        asked.append((host, port))
        return ["127.0.0.1"]

    dispatcher.resolver = resolver
    vendor = new_credit_code()
    url = f"http://receiver.longgang.invalid:{receiver.port}/hooks"
    created = await client.post("/v1/webhooks", json={"url": url}, headers=as_vendor(vendor))
    assert created.status_code == 201, created.text
    connection = await connect()
    subject = new_subject("PINNED")
    await emit_committed(connection, subject, vendor=vendor)
    await eventually(lambda: receiver.accepted_subjects() == [subject])
    (request,) = receiver.accepted()
    assert request.headers["host"] == f"receiver.longgang.invalid:{receiver.port}"
    assert asked == [("receiver.longgang.invalid", receiver.port)]


async def test_a_name_that_resolves_to_nat64_loopback_at_delivery_is_not_called(
    client: httpx.AsyncClient, connect: Connect, receiver: Receiver, events_app: FastAPI
) -> None:
    """A name checked when subscribed that resolves to loopback's NAT64 form when delivered: not sent."""
    dispatcher: Dispatcher = events_app.state.dispatcher

    async def rebound(host: str, port: int) -> list[str]:
        if host != "rebinding.longgang.invalid":  # other tests' subscriptions
            return await resolve_host(host, port)
        return ["64:ff9b::7f00:1"]

    vendor = new_credit_code()
    url = f"http://rebinding.longgang.invalid:{receiver.port}/hooks"
    created = await client.post("/v1/webhooks", json={"url": url}, headers=as_vendor(vendor))
    assert created.status_code == 201, created.text  # private networks allowed when it subscribed
    dispatcher.settings = fast_settings(allow_private_networks=False)
    dispatcher.resolver = rebound
    connection = await connect()
    await emit_committed(connection, new_subject("REBIND"), vendor=vendor)

    async def failed() -> Any:
        log = await client.get(f"/v1/webhooks/{created.json()['id']}/deliveries", headers=as_vendor(vendor))
        return [d for d in log.json()["items"] if not d["delivered"]]

    failures = await eventually(failed)
    assert failures[0]["error"] == "the URL's host is not a public address (not sent)"
    assert receiver.requests == []


async def test_the_pinned_request_keeps_the_name_for_host_and_tls() -> None:
    """https: the connection goes to the checked address; `Host`, SNI and the certificate check use the name."""

    async def public(host: str, port: int) -> list[str]:
        return {"xn--mnchen-3ya.example": ["203.0.113.7"], "hooks.example": ["2001:db8::7", "8.8.4.4"]}[host]

    pinned = await pin("https://münchen.example:8443/hooks?x=1", True, public)
    assert pinned.url == "https://203.0.113.7:8443/hooks?x=1"
    assert pinned.host_header == "xn--mnchen-3ya.example:8443"
    assert pinned.sni_hostname == "xn--mnchen-3ya.example"
    six = await pin("https://hooks.example/in", True, public)
    assert (six.url, six.host_header, six.sni_hostname) == (
        "https://[2001:db8::7]/in",
        "hooks.example",
        "hooks.example",
    )
    literal = await pin("http://[2606:4700::1111]:81/in", False, resolve_host)
    assert (literal.url, literal.sni_hostname) == ("http://[2606:4700::1111]:81/in", None)
    with pytest.raises(AddressRefused):  # one forbidden address (documentation range) beside a public one is enough
        await pin("https://hooks.example/in", False, public)
