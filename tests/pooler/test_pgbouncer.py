"""Issue #15: the services through a real PgBouncer, in session and in transaction pooling.

Per pool mode: a fresh migrated database, PgBouncer in front of it (devtools/pgbouncer.py, the
settings deploy/k8s relies on) and the three services as real processes whose every database
URL goes through it, with `<SERVICE>_DB_POOLER` set to the mode. Then: the timeouts each login
gets through the pooler; an application → approval → voucher → redemption flow with the change
feed and a signed ledger checkpoint (its publisher lock is transaction-level); a mixed
concurrent run on two vouchers processes (tests/vouchers/test_concurrency.py's run and checker,
fewer operations). And why it works: PgBouncer refuses what the services sent before (startup
parameters), and under transaction pooling asyncpg's per-connection statements collide unless
`shared.dbconnect` turns them off.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from devtools.devrun import Stack, start_service, stop_services, wait_ready
from devtools.pgbouncer import PgBouncer
from shared.auth import AUDITOR, PLATFORM
from shared.dbconnect import PoolerRefused, check_login_defaults, connect_options, declare, timeouts
from shared.dbroles import LOGIN_ROLES, login_url
from tests.auth import admin, auth
from tests.conftest import DatabaseFactory, free_port, provision_service_clients
from tests.events.conftest import eventually
from tests.vouchers import test_concurrency as mixed
from tests.vouchers.flow import YUAN, approved_m3, issue, redeem

pytestmark = pytest.mark.e2e

MODES = ("session", "transaction")
MIXED_OPERATIONS = 250


@dataclass
class Pooled:
    mode: str
    database_url: str  # the owner's, direct (for checks)
    bouncer: PgBouncer
    urls: dict[str, str] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)


def _start(stack: Stack, service: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return start_service(stack, service, log=out, extra_env=env)


@pytest.fixture(scope="module", params=MODES)
def pooled(
    request: pytest.FixtureRequest,
    databases: DatabaseFactory,
    ample_budgets: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pooled]:
    mode: str = request.param
    database_url = databases.create(f"longgang_pooler_{mode}")
    # session pooling: a server connection per client connection, as many as a direct run opens
    bouncer = PgBouncer(databases.server_url, mode, pool_size=60 if mode == "session" else 10)
    workdir = tmp_path_factory.mktemp(f"pooler_{mode}")
    bouncer.keep_log = workdir / "pgbouncer.log"
    bouncer.start(probe_database=database_url.rsplit("/", 1)[1])
    through = bouncer.url(database_url)
    ports = {"registry": free_port(), "eligibility": free_port(), "vouchers": free_port()}
    stack = Stack(through, "127.0.0.1", ports)
    second = Stack(through, "127.0.0.1", ports | {"vouchers": free_port()})  # the same peers
    env = {
        **{f"{s.upper()}_DB_POOLER": mode for s in LOGIN_ROLES},
        # few connections (session pooling holds a server connection for each; the server is shared)
        **{f"{s.upper()}_DB_POOL_SIZE": "2" for s in LOGIN_ROLES},
        "VOUCHERS_HOT_POOL_SIZE": "3",
        "VOUCHERS_PEER_TIMEOUT_SECONDS": "10",
        "VOUCHERS_BUDGET_FILE": str(ample_budgets),
        "VOUCHERS_CHECKPOINT_SINK": str(workdir / "checkpoints.jsonl"),
        "VOUCHERS_RATE_LIMIT_BURST": "1000000",
        "VOUCHERS_RATE_LIMIT_MAX_IN_FLIGHT": "0",
        "VOUCHERS_RATE_LIMIT_WRITE_MAX_IN_FLIGHT": "0",
    }
    running = Pooled(mode, database_url, bouncer)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        registry_log = workdir / "registry.log"
        processes["registry"] = _start(stack, "registry", registry_log, env)
        wait_ready(stack, {"registry": processes["registry"]}, timeout=60)
        env |= provision_service_clients(database_url, stack.url("registry"))
        for service in ("eligibility", "vouchers"):
            processes[service] = _start(stack, service, workdir / f"{service}.log", env)
        # the second serves requests only (the first one's sealer, projector and reconcilers suffice)
        quiet = {f"VOUCHERS_{job}_INTERVAL_SECONDS": "0" for job in ("SEALER", "PROJECTOR", "RECONCILIATION")}
        processes["vouchers-1"] = _start(second, "vouchers", workdir / "vouchers-1.log", env | quiet)
        running.logs = [registry_log, *(workdir / f"{name}.log" for name in ("eligibility", "vouchers", "vouchers-1"))]
        try:
            wait_ready(stack, {s: processes[s] for s in ("eligibility", "vouchers")}, timeout=60)
            wait_ready(second, {"vouchers": processes["vouchers-1"]}, timeout=60)
        except RuntimeError as exc:
            raise RuntimeError(
                f"{exc}\n{mixed.log_tail(running.logs)}\n--- pgbouncer ---\n{bouncer.log_tail()}"
            ) from exc
        running.urls = {s: stack.url(s) for s in ports} | {"vouchers-1": second.url("vouchers")}
        yield running
    finally:
        stop_services(processes)
        bouncer.stop()


def test_pgbouncer_refuses_the_startup_parameters_the_services_sent_before(pooled: Pooled) -> None:
    """What DB_POOLER changes: direct, a connection carries its timeouts (and a role) as startup
    parameters, which PgBouncer refuses; behind it, only what PgBouncer tracks is sent."""
    url = pooled.bouncer.url(login_url(pooled.database_url, "vouchers"))
    direct = connect_options(url, "probe", role="vouchers_writer", settings=timeouts(30_000))  # not declared: none
    assert {"statement_timeout", "role"} <= set(direct["server_settings"])

    async def attempt(server_settings: dict[str, str]) -> str:
        with pytest.raises(asyncpg.PostgresError) as refused:
            await asyncpg.connect(url, server_settings=server_settings, timeout=5)
        return str(refused.value)

    assert "unsupported startup parameter: statement_timeout" in asyncio.run(attempt(direct["server_settings"]))
    assert "unsupported startup parameter: role" in asyncio.run(attempt({"role": "vouchers_writer"}))

    declare(url, pooled.mode)  # type: ignore[arg-type]
    with pytest.raises(PoolerRefused, match="role"):
        connect_options(url, "probe", role="vouchers_writer")
    assert set(connect_options(url, "probe", settings=timeouts(30_000))["server_settings"]) == {"application_name"}


async def test_every_login_has_its_timeouts_through_the_pooler(pooled: Pooled) -> None:
    """`SHOW statement_timeout` over each service login, through PgBouncer: the login's default."""
    for service in LOGIN_ROLES:
        url = pooled.bouncer.url(login_url(pooled.database_url, service))
        declare(url, pooled.mode)  # type: ignore[arg-type]
        assert await check_login_defaults(url, 30_000) == {
            "statement_timeout": "30s",
            "idle_in_transaction_session_timeout": "1min",
        }
        connection = await asyncpg.connect(url, **connect_options(url, "probe"))
        try:
            assert await connection.fetchval("SELECT current_user") == LOGIN_ROLES[service]
            assert await connection.fetchval("SHOW statement_timeout") == "30s"
        finally:
            await connection.close()
    # and what the services run with: their connections, seen from the server
    connection = await asyncpg.connect(pooled.database_url)
    try:
        rows = await connection.fetch(
            "SELECT DISTINCT usename FROM pg_stat_activity"
            " WHERE datname = current_database() AND usename LIKE '%\\_app'"
        )
    finally:
        await connection.close()
    assert {row["usename"] for row in rows} <= set(LOGIN_ROLES.values())


async def test_a_login_without_its_timeouts_is_refused_behind_a_pooler(databases: DatabaseFactory) -> None:
    """The start-up check: a login with no defaults would run without any timeout behind PgBouncer."""
    owner = await asyncpg.connect(databases.server_url)
    role = f"pooler_probe_{random.randrange(10**9)}"
    try:
        await owner.execute(f"CREATE ROLE {role} LOGIN")
        url = databases.server_url.replace("://postgres@", f"://{role}@", 1)
        declare(url, "transaction")
        with pytest.raises(PoolerRefused, match="statement_timeout"):
            await check_login_defaults(url, 30_000)
    finally:
        await owner.execute(f"DROP ROLE IF EXISTS {role}")
        await owner.close()


async def test_transaction_pooling_needs_the_statement_cache_off(pooled: Pooled) -> None:
    """Two clients on one server connection (the `probe` entry): asyncpg's cached statements are
    named, and two processes number them alike; with `connect_options` nothing is named."""
    if pooled.mode != "transaction":
        pytest.skip("session pooling gives each client its own server connection")
    url = pooled.bouncer.probe_url("vouchers_app")
    first, second = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        named_from = asyncpg.connection._uid  # type: ignore[attr-defined]
        await first.fetchval("SELECT $1::int", 1)
        asyncpg.connection._uid = named_from  # type: ignore[attr-defined]  # as another process names it
        with pytest.raises(asyncpg.exceptions.DuplicatePreparedStatementError):
            await second.fetchval("SELECT $1::text", "x")
    finally:
        await first.close()
        await second.close()

    # with the kernel's options: no named statement; uncached ones never leave their server connection
    # between Parse and Bind (asyncpg flushes, it does not sync), even with two clients taking turns
    declare(url, "transaction")
    clients = [await asyncpg.connect(url, **connect_options(url, "probe")) for _ in range(2)]

    async def turns(connection: asyncpg.Connection, query: str, convert: type) -> list[object]:
        return [await connection.fetchval(query, convert(n)) for n in range(100)]

    try:
        numbers, texts = await asyncio.gather(
            turns(clients[0], "SELECT $1::int", int), turns(clients[1], "SELECT 'x' || $1::text", str)
        )
    finally:
        for client in clients:
            await client.close()
    assert (numbers, texts) == (list(range(100)), [f"x{n}" for n in range(100)])


async def test_a_mixed_concurrent_run_through_the_pooler(pooled: Pooled, monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/vouchers/test_concurrency.py's run and every one of its checks, on two vouchers
    processes through PgBouncer (fewer operations)."""
    monkeypatch.setattr(mixed, "OPERATIONS", MIXED_OPERATIONS)
    seed = random.SystemRandom().randrange(10**9)
    print(f"\npooler {pooled.mode}: mixed run seed {seed}")
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=2 * mixed.CONCURRENCY, max_keepalive_connections=mixed.CONCURRENCY)
    async with (
        httpx.AsyncClient(base_url=pooled.urls["registry"], timeout=30, headers=admin()) as registry,
        httpx.AsyncClient(base_url=pooled.urls["eligibility"], timeout=60, headers=admin()) as eligibility,
    ):
        supplies, decisions, stranger = await mixed.prepare(rng, registry, eligibility)
    urls = [pooled.urls["vouchers"], pooled.urls["vouchers-1"]]
    timeout = mixed.NORMAL_TIMEOUT
    async with (
        httpx.AsyncClient(base_url=urls[0], timeout=timeout, limits=limits, headers=admin()) as first,
        httpx.AsyncClient(base_url=urls[1], timeout=timeout, limits=limits, headers=admin()) as second,
    ):
        run = mixed.MixedRun(seed, [first, second], supplies, decisions, stranger)
        await run.run()
        await asyncio.sleep(1.2)
        expiries = await first.post("/v1/expiries")
        assert expiries.status_code == 200, expiries.text
    summary = await mixed.check_run(run, pooled.database_url, pooled.logs)
    assert summary["redemptions"] > 0, summary
    chain = await mixed.verify_chain(urls[1])
    assert chain is not None
    assert chain.get("ok") is True, chain


async def test_application_to_redemption_the_feed_and_a_checkpoint_through_the_pooler(pooled: Pooled) -> None:
    """After the mixed run (its checker counts every voucher of the database)."""
    async with (
        httpx.AsyncClient(base_url=pooled.urls["registry"], timeout=30, headers=admin()) as registry,
        httpx.AsyncClient(base_url=pooled.urls["eligibility"], timeout=30, headers=admin()) as eligibility,
        httpx.AsyncClient(base_url=pooled.urls["vouchers"], timeout=30, headers=admin()) as vouchers,
    ):
        supply, decision_id = await approved_m3(registry, eligibility)
        issued = await issue(vouchers, decision_id)
        assert issued.status_code == 201, issued.text
        code = issued.json()["code"]
        redeemed = await redeem(vouchers, code, supply.vendor, 1_000 * YUAN, "pooler-1")
        assert redeemed.status_code == 201, redeemed.text
        replay = await redeem(vouchers, code, supply.vendor, 1_000 * YUAN, "pooler-1")
        assert replay.json() == redeemed.json()

        async def in_the_feed() -> set[str]:
            feed = await vouchers.get("/v1/events", params={"limit": 500}, headers=auth(PLATFORM))
            assert feed.status_code == 200, feed.text
            types = {item["type"] for item in feed.json()["items"] if item["subject"] == code}
            return types if {"vouchers.voucher.issued", "vouchers.voucher.redeemed"} <= types else set()

        await eventually(in_the_feed, within=10)
        auditor = auth(AUDITOR, name="审计-王")
        published = await vouchers.post("/v1/ledger/checkpoints", json={}, headers=auditor)
        assert published.status_code == 201, published.text
        verified = await vouchers.get("/v1/ledger/verify", headers=auditor)
        assert verified.status_code == 200, verified.text
        assert verified.json()["ok"] is True, verified.text
        audit = await registry.get("/v1/audit", headers=auditor)
        assert audit.status_code == 200, audit.text
