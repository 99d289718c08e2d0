"""Fixtures for the events tests: a committed database, a small app serving the vouchers schema's
feed and webhooks with its dispatcher running, real HTTP receivers, and direct connections.

The app is the shared events router on the vouchers schema (as the service's login
`vouchers_app`, as in production); events are written with `shared.feed.outbox.emit` on
plain asyncpg connections, so each test decides exactly which transaction holds what.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from services.vouchers.events import CATALOGUE as VOUCHERS_EVENTS
from services.vouchers.settings import VouchersSettings
from shared.app import create_service_app
from shared.dbroles import login_url
from shared.feed.dispatcher import start_dispatcher, stop_dispatcher
from shared.feed.endpoints import events_router
from shared.feed.outbox import emit
from shared.feed.settings import WebhookSettings
from tests.auth import admin
from tests.conftest import DatabaseFactory
from tests.events.receiver import Receiver

_subjects = itertools.count(1)


def fast_settings(**overrides: Any) -> WebhookSettings:
    values: dict[str, Any] = {
        "backoff_base_seconds": 0.05,
        "backoff_cap_seconds": 0.5,
        "poll_seconds": 0.05,
        "timeout_seconds": 3.0,
        "retry_for_seconds": 3600.0,
        "allow_private_networks": True,  # the receivers of these tests listen on 127.0.0.1
        "retention_interval_seconds": 0.0,  # no retention job: tests/events/test_retention.py runs its own
        **overrides,
    }
    return WebhookSettings(**values)


def new_subject(prefix: str = "EV") -> str:
    return f"{prefix}-{time.time_ns() % 10**9}-{next(_subjects)}"


@pytest.fixture(scope="module")
def events_database(databases: DatabaseFactory) -> str:
    return databases.create("longgang_events")


def make_events_app(database_url: str, settings: WebhookSettings) -> FastAPI:
    service_settings = VouchersSettings(database_url=login_url(database_url, "vouchers"))  # type: ignore[arg-type]
    app = create_service_app(
        service_name="vouchers",
        schema="vouchers",
        title="events test app",
        description="the shared events router on the vouchers schema",
        settings=service_settings,
        routers=[events_router(VOUCHERS_EVENTS)],
        on_startup=[start_dispatcher],
        on_shutdown=[stop_dispatcher],
    )
    app.state.webhook_settings = settings
    return app


@pytest_asyncio.fixture
async def events_app(events_database: str) -> AsyncIterator[FastAPI]:
    app = make_events_app(events_database, fast_settings())
    async with app.router.lifespan_context(app):
        yield app


@pytest_asyncio.fixture
async def client(events_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=events_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://events", headers=admin(), timeout=30) as http:
        yield http


@pytest_asyncio.fixture
async def connect(events_database: str) -> AsyncIterator[Callable[[], Awaitable[asyncpg.Connection]]]:
    """Opens connections to the events database (as its owner); closes them after the test."""
    opened: list[asyncpg.Connection] = []

    async def open_one() -> asyncpg.Connection:
        connection = await asyncpg.connect(events_database)
        opened.append(connection)
        return connection

    yield open_one
    for connection in opened:
        await connection.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
def receivers() -> Iterator[Callable[[], Receiver]]:
    started: list[Receiver] = []

    def make() -> Receiver:
        one = Receiver().start()
        started.append(one)
        return one

    yield make
    for one in started:
        one.stop()


async def emit_committed(
    connection: asyncpg.Connection,
    subject: str,
    type: str = "vouchers.voucher.redeemed",
    organisation: str | None = None,
    vendor: str | None = None,
    **payload: Any,
) -> None:
    """One event in its own transaction."""
    async with connection.transaction():
        await emit(connection, type, subject, {"subject": subject, **payload}, organisation, vendor)


async def eventually(check: Callable[[], Any], within: float = 20.0, interval: float = 0.05) -> Any:
    """Wait until `check()` (sync or async) returns something truthy; return it."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {within} s")
        await asyncio.sleep(interval)
