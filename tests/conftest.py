"""Test fixtures: a real PostgreSQL, migrated with Alembic, and per-test rollback.

The server is the one named by DATABASE_URL, or else the embedded PostgreSQL 18 (the
same as `make run`). Each test session (each pytest-xdist worker: `make test` runs two, a
test file to a worker) creates its own databases, migrates every service's tree to head (as
the owner, DATABASE_URL's user), and drops them at the end; so a test that commits into the
session's database leaves rows for whichever file that worker runs next. The
services, in process or as processes, log in as their own least-privileged roles
(shared/dbroles.py: `login_url`), so every test runs with the privileges production has.
Each test runs inside a transaction that is rolled back: the app's request transactions
become savepoints in it.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import itertools
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from devtools import devauth, devdb
from devtools.devrun import Stack, start_service, stop_services, wait_ready
from shared.db import SessionConnections, committed_session, get_connections, get_session
from shared.dbconnect import libpq_url
from shared.dbroles import login_url
from shared.feed.secretbox import ensure_key_file
from shared.migrations import upgrade_all
from tests.auth import admin

#: Keys and clients of this test session (set up in pytest_configure).
AUTH_DIR = Path(tempfile.mkdtemp(prefix="longgang-auth-"))
#: Whether the embedded PostgreSQL ran before this run (read by the run's first process when DATABASE_URL is unset).
EMBEDDED_WAS_RUNNING = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    """Authentication is always on: a signing key for the session, published as a JWKS file.

    Processes started by the tests inherit these variables (devrun's Stack copies os.environ).
    """
    keys, jwks = devauth.ensure_keys(AUTH_DIR)
    os.environ["AUTH_JWKS"] = str(jwks)
    os.environ["REGISTRY_SIGNING_KEYS_DIR"] = str(keys)
    # the vouchers service signs ledger checkpoints with a key of its own (its sink is per test)
    os.environ["VOUCHERS_CHECKPOINT_KEYS_DIR"] = str(devauth.ensure_checkpoint_key(AUTH_DIR / "checkpoint-keys"))
    # webhook secrets are stored encrypted with it (shared/feed/secretbox.py)
    os.environ["WEBHOOK_SECRET_KEY"] = ensure_key_file(AUTH_DIR / "webhook-secret-key")
    # many apps and service processes share one server here: each keeps at most 2 × 5 connections (shared/db.py)
    for service in ("REGISTRY", "ELIGIBILITY", "VOUCHERS"):
        os.environ.setdefault(f"{service}_DB_POOL_SIZE", "5")
    if not hasattr(config, "workerinput") and not os.environ.get("DATABASE_URL"):
        # the run's first process (pytest-xdist's controller, or the only one) stops the embedded server at the end
        # if it was not running before: a worker's session ends while another's still uses it
        config.stash[EMBEDDED_WAS_RUNNING] = devdb.from_environment().is_running()


#: What one worker's session holds at its peak, with a margin: two held 162 together (max of pg_stat_activity's client
#: backends, sampled through a run of `make test` on two workers).
CONNECTIONS_PER_WORKER = 100


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (`make test`): a worker per core, as many as the server's connections allow (one at least).

    The embedded server allows devdb.MAX_CONNECTIONS; a server named by DATABASE_URL says its own (PostgreSQL's
    default, 100, means one worker)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    url = os.environ.get("DATABASE_URL")
    allowed = int(asyncio.run(_admin(url, "SHOW max_connections"))) if url else devdb.MAX_CONNECTIONS
    return max(1, min(cores, allowed // CONNECTIONS_PER_WORKER))


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(AUTH_DIR, ignore_errors=True)
    if not config.stash.get(EMBEDDED_WAS_RUNNING, True):
        devdb.from_environment().stop()


def provision_service_clients(database_url: str, registry_url: str) -> dict[str, str]:
    """The services' own clients in a registry database; returns the services' env (ids, secrets, token URL)."""
    path = AUTH_DIR / f"clients-{uuid.uuid4().hex[:8]}.json"
    clients = devauth.ensure_clients(database_url, path, devauth.SERVICE_CLIENTS)
    return devauth.service_env(AUTH_DIR, registry_url, clients)


def _server() -> str:
    """The server to test on: DATABASE_URL's, or the embedded one, started if it is not running (by one worker
    of several: devdb takes a lock), stopped at the end of the run (pytest_unconfigure)."""
    return os.environ.get("DATABASE_URL") or devdb.from_environment().start()


def _with_database(url: str, name: str) -> str:
    base, _, rest = url.rpartition("/")
    query = "?" + rest.split("?", 1)[1] if "?" in rest else ""
    return f"{base}/{name}{query}"


async def _admin(url: str, statement: str) -> Any:
    """One statement on its own connection; its first value, if any."""
    connection = await asyncpg.connect(libpq_url(url))
    try:
        return await connection.fetchval(statement)
    finally:
        await connection.close()


class DatabaseFactory:
    """Creates throw-away databases on the test server (dropped at the end of the session)."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.created: list[str] = []
        #: the session's own database (`database_url`), created first
        self.session_url = ""

    def create(self, prefix: str, *, migrate: bool = True) -> str:
        """Blocking, in a worker thread: callable from sync fixtures and from async tests alike."""
        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        url = _with_database(self.server_url, name)

        def work() -> None:
            asyncio.run(_admin(self.server_url, f'CREATE DATABASE "{name}"'))
            self.created.append(name)
            if migrate:
                upgrade_all(url)

        with ThreadPoolExecutor(1) as pool:
            pool.submit(work).result()
        return url

    def drop_all(self) -> None:
        """All at once: one after the other took ~0.2 s each, seconds at the end of every worker's session."""

        async def drop() -> None:
            statements = [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in self.created]
            await asyncio.gather(*(_admin(self.server_url, statement) for statement in statements))

        asyncio.run(drop())


@pytest.fixture(scope="session")
def databases() -> Iterator[DatabaseFactory]:
    """The session's databases, the first of them its own (`database_url`), migrated at once while holding a lock
    file: the migrations create and set up the services' roles, which are the cluster's. Two sessions doing that at
    once are no error (tests/test_migration_roles.py); the lock keeps the cluster-wide statements one at a time
    anyway, and costs nothing after the first, which leaves every role in place for the others."""
    manager = DatabaseFactory(_server())
    digest = hashlib.sha256(manager.server_url.encode()).hexdigest()[:16]
    with (Path(tempfile.gettempdir()) / f"longgang-tests-{digest}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manager.session_url = manager.create("longgang_test")
    yield manager
    manager.drop_all()


@pytest.fixture(scope="session")
def database_url(databases: DatabaseFactory) -> str:
    """The session's migrated database (all three schemas at head)."""
    return databases.session_url


@pytest_asyncio.fixture(scope="session")
async def registry_app(database_url: str) -> AsyncIterator[FastAPI]:
    from services.registry.app import create_app
    from services.registry.settings import RegistrySettings

    app = create_app(RegistrySettings(database_url=login_url(database_url, "registry")))
    yield app
    await app.state.database.dispose()


@contextmanager
def sessions_in(app: FastAPI, connection: AsyncConnection) -> Iterator[None]:
    """Every request's session, and every raw connection lent for fixed SQL (a submission's statements), a
    savepoint of `connection`'s transaction, committed or rolled back as the app's own would be."""
    sessions = async_sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False, autoflush=False
    )

    async def session_override() -> AsyncIterator[AsyncSession]:
        async with committed_session(sessions) as session:
            yield session

    async def connections_override() -> SessionConnections:
        return SessionConnections(sessions)

    app.dependency_overrides[get_session] = session_override
    app.dependency_overrides[get_connections] = connections_override
    try:
        yield
    finally:
        app.dependency_overrides.pop(get_session, None)
        app.dependency_overrides.pop(get_connections, None)


async def _rollback_client(app: FastAPI, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose every request runs in a savepoint of one transaction, rolled back at the end."""
    engine = app.state.database.engine
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            with sessions_in(app, connection):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url=base_url, headers=admin()) as client:
                    yield client
        finally:
            await transaction.rollback()


@pytest_asyncio.fixture
async def registry(registry_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP client for the registry, isolated by rollback."""
    async for client in _rollback_client(registry_app, "http://registry"):
        yield client


#: Ports for the services and servers the tests start: below the kernel's ephemeral range (32768–60999 by
#: default), where no outgoing connection is given one, in a block of its own per test worker (pytest-xdist's
#: PYTEST_XDIST_WORKER, gw0, gw1, …). A port the kernel picked for `bind(0)` could be handed to another worker, or
#: to a client connection, between the moment it was read and the moment the service bound it.
PORTS_FROM = 10_000
PORTS_PER_WORKER = 2_000
_ports_taken = itertools.count()


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


def free_port() -> int:
    """A port nothing listens on now, from this worker's block (the next one that binds; one in TIME_WAIT is
    skipped)."""
    first = PORTS_FROM + (_worker_index() % 11) * PORTS_PER_WORKER  # eleven blocks below 32768
    for _ in range(PORTS_PER_WORKER):
        port = first + next(_ports_taken) % PORTS_PER_WORKER
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {first}–{first + PORTS_PER_WORKER - 1}")


@contextmanager
def running_service(database_url: str, service: str, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """One service as a real uvicorn process on a free port; yields its base URL."""
    stack = Stack(database_url, "127.0.0.1", {service: free_port()})
    process = start_service(stack, service, extra_env=extra_env)
    try:
        wait_ready(stack, {service: process}, timeout=60)
        yield stack.url(service)
    finally:
        stop_services({service: process})


@pytest.fixture(scope="session")
def live_registry_database(databases: DatabaseFactory) -> str:
    return databases.create("longgang_registry_live")


@pytest.fixture(scope="session")
def live_registry(live_registry_database: str) -> Iterator[str]:
    """A real registry process on its own database (data written to it is committed); it issues tokens."""
    with running_service(live_registry_database, "registry") as url:
        yield url


@pytest.fixture(scope="session")
def service_auth_env(live_registry_database: str, live_registry: str) -> dict[str, str]:
    """Client ids and secrets of the eligibility and vouchers services, known to the live registry."""
    return provision_service_clients(live_registry_database, live_registry)


def _settings_auth(env: dict[str, str], service: str) -> dict[str, str]:
    return {
        "client_id": env[f"{service.upper()}_CLIENT_ID"],
        "client_secret": env[f"{service.upper()}_CLIENT_SECRET"],
        "auth_token_url": env["AUTH_TOKEN_URL"],
    }


@pytest.fixture(scope="session")
def live_ports() -> dict[str, int]:
    """Ports of the live eligibility and vouchers processes, chosen first: each calls the other."""
    return {"eligibility": free_port(), "vouchers": free_port()}


@pytest.fixture(scope="session")
def ample_budgets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.vouchers.ample_budgets import ample_budget_file

    return ample_budget_file(tmp_path_factory.mktemp("budgets"))


@pytest.fixture(scope="session")
def live_vouchers(
    vouchers_database: str,
    live_registry: str,
    service_auth_env: dict[str, str],
    live_ports: dict[str, int],
    ample_budgets: Path,
) -> Iterator[str]:
    """A real vouchers process on the vouchers tests' database, where approvals reserve the budget (A2).

    The live eligibility process and the in-process eligibility app reserve here; the in-process
    vouchers app (same database) consumes those reservations when it issues. Its reconciler asks
    the live eligibility process, so reservations of rolled-back test approvals are released.
    """
    stack = Stack(vouchers_database, "127.0.0.1", {"vouchers": live_ports["vouchers"]})
    environment = {
        "REGISTRY_URL": live_registry,
        "ELIGIBILITY_URL": f"http://127.0.0.1:{live_ports['eligibility']}",
        "VOUCHERS_BUDGET_FILE": str(ample_budgets),
        # it is here for reservations: the in-process app's sealer and projector are the ones the tests watch
        "VOUCHERS_SEALER_INTERVAL_SECONDS": "0",
        "VOUCHERS_PROJECTOR_INTERVAL_SECONDS": "0",
        "VOUCHERS_RECONCILIATION_INTERVAL_SECONDS": "0",
        **service_auth_env,
    }
    process = start_service(stack, "vouchers", extra_env=environment)
    try:
        wait_ready(stack, {"vouchers": process}, timeout=60)
        yield stack.url("vouchers")
    finally:
        stop_services({"vouchers": process})


@pytest_asyncio.fixture(scope="session")
async def eligibility_app(
    database_url: str, live_registry: str, live_vouchers: str, service_auth_env: dict[str, str]
) -> AsyncIterator[FastAPI]:
    from services.eligibility.app import create_app
    from services.eligibility.settings import EligibilitySettings

    app = create_app(
        EligibilitySettings(
            database_url=login_url(database_url, "eligibility"),
            registry_url=live_registry,
            vouchers_url=live_vouchers,
            **_settings_auth(service_auth_env, "eligibility"),  # type: ignore[arg-type]
        )
    )
    yield app
    await app.state.registry_facts.registry.aclose()
    await app.state.programme_budget.aclose()
    await app.state.database.dispose()


@pytest_asyncio.fixture
async def eligibility(eligibility_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP client for the eligibility service (its registry is the live process), isolated by rollback."""
    async for client in _rollback_client(eligibility_app, "http://eligibility"):
        yield client


@pytest_asyncio.fixture
async def live_registry_client(live_registry: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_registry, timeout=10, headers=admin()) as client:
        yield client


@pytest.fixture(scope="session")
def live_eligibility(
    databases: DatabaseFactory,
    live_registry: str,
    live_vouchers: str,
    live_ports: dict[str, int],
    service_auth_env: dict[str, str],
) -> Iterator[str]:
    """A real eligibility process (own database) reading the live registry; it reserves budget in live_vouchers."""
    url = databases.create("longgang_eligibility_live")
    stack = Stack(url, "127.0.0.1", {"eligibility": live_ports["eligibility"]})
    environment = {"REGISTRY_URL": live_registry, "VOUCHERS_URL": live_vouchers, **service_auth_env}
    process = start_service(stack, "eligibility", extra_env=environment)
    try:
        wait_ready(stack, {"eligibility": process}, timeout=60)
        yield stack.url("eligibility")
    finally:
        stop_services({"eligibility": process})


@pytest.fixture(scope="session")
def vouchers_database(databases: DatabaseFactory) -> str:
    """The vouchers tests' own database: the redemption path commits, so no rollback here."""
    return databases.create("longgang_vouchers")


@pytest.fixture(scope="session")
def running_vouchers_app(
    vouchers_database: str,
    live_eligibility: str,
    live_registry: str,
    service_auth_env: dict[str, str],
    ample_budgets: Path,
) -> Callable[..., AbstractAsyncContextManager[FastAPI]]:
    """Starts a vouchers app (lifespan) on the vouchers tests' database, calling the live peers; keyword arguments:
    more VouchersSettings."""
    from services.vouchers.app import create_app
    from services.vouchers.settings import VouchersSettings

    @asynccontextmanager
    async def running(**settings: Any) -> AsyncIterator[FastAPI]:
        app = create_app(
            VouchersSettings(
                database_url=login_url(vouchers_database, "vouchers"),
                eligibility_url=live_eligibility,
                registry_url=live_registry,
                # budgets are ceilings (A2): the shared ledger's tests together claim more than the placeholders
                budget_file=ample_budgets,
                **settings,
                **_settings_auth(service_auth_env, "vouchers"),  # type: ignore[arg-type]
            )
        )
        async with app.router.lifespan_context(app):
            yield app

    return running


@pytest_asyncio.fixture(scope="session")
async def vouchers_app(
    running_vouchers_app: Callable[..., AbstractAsyncContextManager[FastAPI]],
) -> AsyncIterator[FastAPI]:
    async with running_vouchers_app() as app:
        yield app


@pytest_asyncio.fixture
async def vouchers(vouchers_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP client for the vouchers service (committed data: tests use fresh enterprises)."""
    transport = httpx.ASGITransport(app=vouchers_app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://vouchers", timeout=30, headers=admin()
    ) as client:
        yield client


@pytest_asyncio.fixture
async def live_eligibility_client(live_eligibility: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_eligibility, timeout=30, headers=admin()) as client:
        yield client
