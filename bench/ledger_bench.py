"""Ledger benchmark: voucher redemptions over HTTP, against pgbench on the same server, as the ledger grows.

    .venv/bin/python -m bench.ledger_bench [--clients 32] [--seconds 15] [--sizes 10000,1000000]
    make bench-ledger

One run, on this machine, all on 127.0.0.1:

1. a fresh database `bench_ledger_<pid>` on DATABASE_URL's server, or on the embedded
   PostgreSQL 18 when DATABASE_URL is unset; migrated; dropped at the end, even on failure;
2. the registry, the eligibility service and the vouchers service as real uvicorn processes
   on free ports (their logs go to files in a temporary directory, not to this output), with
   authentication on: a signing key and its JWKS in a temporary directory, the services' own
   clients in the registry; the bench's own calls carry tokens it mints with that key
   (`shared.tokens.TokenSigner`): an administrator, officer wang, approver li, and one
   `vendor` client per model vendor;
3. M3 model vouchers obtained through the public APIs, as an enterprise would: model vendors
   with a CAC-filed model in the registry, one application per contract (claims of 380,000
   yuan, 30% of a 1,300,000 yuan contract) reviewed by one officer and approved by another,
   then issued by the vouchers service; the vouchers spread over enterprises so that no
   annual ceiling (5,000,000 yuan per enterprise) is near;
4. the baseline: `pgbench` TPC-B-like on the same server, in its own database
   `bench_ledger_pgbench_<pid>` (scale 10), with the same number of clients, and with 8
   clients as in the design measurements (docs/benchmarks.md);
5. the load: `POST /v1/vouchers/{code}/redemptions` from `wrk` (N connections, T seconds, after a
   short warm-up), first against ONE vouchers process, then against TWO fresh ones with
   --two-process-lanes lanes each (the wrk threads split between their ports), then against one
   process whose connections go through PgBouncer in transaction pooling (Debian's `pgbouncer`,
   `make pooler-tool`; statement cache off: issue #15; --skip-pooler leaves it out). A generated Lua
   script gives every request its own Idempotency-Key (run, thread, counter), takes the vouchers in
   turn, sends the token of the voucher's vendor and redeems 1 to 100 fen, so no voucher runs out
   (the vendor rate limit is raised out of the way; the limiter still runs). Without wrk, a Python
   load generator in a separate process does the same (slower: see --load-generator);
6. checks: every answer 201; the redemption rows each run wrote equal its 201 answers (the
   server's own count: the service's access log and its idempotency records; the load
   generator reads all of them but those still in flight when the run stops); the ledger
   invariants (services.vouchers.invariants.check_database) hold;
7. ledger growth: the ledger is filled with SQL to each of --sizes entries (valid captured
   redemptions of 1 fen on a filler voucher, each with its entry and idempotency record, and
   the voucher's and ceiling's projections moved accordingly, so the invariants still hold),
   left to the vouchers process's sealer to seal (the bench waits, --seal-timeout), then
   VACUUM ANALYZE and CHECKPOINT, then a shorter load against one process. The smallest
   size is measured before the main load, which itself adds tens of thousands of entries;
   the others after it.

Every load run also reports where the two cores went (from /proc: the vouchers processes,
PostgreSQL, the load generator, and everything else on the machine), the CPU time per
redemption, and how far the sealer fell behind.

It ends with a Markdown block to paste into docs/benchmarks.md. Bounded: fixed run lengths
and --max-seconds for the whole run. Exit status 1 if any request did not answer 201, a
count does not match, an invariant is broken or the time budget ran out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import httpx

from bench import profile
from bench.common import (
    CONTENT_LENGTH,
    HOST,
    bounded,
    command_line,
    credit_codes,
    drop_database,
    free_port,
    fresh_database,
    keep_local,
    machine,
    percentile,
    postgres_server,
    say,
    signals_ignored,
    webhook_secret_env,
)
from devtools import devauth, devdb
from devtools.devrun import ROOT, Stack, start_service, stop_services, wait_ready
from devtools.pgbouncer import PGBOUNCER, PgBouncer
from shared.auth import ADMIN, APPROVER, OFFICER, VENDOR
from shared.http_protocol import DEFAULT_HTTP_PROTOCOL
from shared.migrations import upgrade_all

YUAN = 100  # fen
CONTRACT_FEN = 1_300_000 * YUAN
CLAIM_FEN = 380_000 * YUAN  # at most 30% of the contract (M3.contract_ratio)
AS_OF = "2025-05-01"
SIGNED_ON = "2025-04-01"
FILED_ON = "2024-03-01"
PGBENCH_SCALE = 10
DESIGN_NOTES_PGBENCH_CLIENTS = 8
TARGET_RATIO = 1.0  # issue #16: at least pgbench's TPC-B-like rate with the same clients
TARGET_P99_MS = 50.0
REDEMPTION_ROUTE = re.compile(r"^/v1/vouchers/[^/]+/redemptions$")
FILL_BATCH = 100_000
#: the vouchers processes' log files: one, the two of the two-process run, and one through PgBouncer
PROCESS_LOGS = ("vouchers", "vouchers-2a", "vouchers-2b", "vouchers-pooled")
NOISE_CORES = 0.15  # cores used outside the benchmark during a run above which the output warns
CORES = len(os.sched_getaffinity(0))


# --- data --------------------------------------------------------------------------------------


def organisation_rows(codes: list[str], prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "credit_code": code,
            "name": f"深圳龙岗{prefix}基准测试科技有限公司{n}",
            "kind": "enterprise",
            "registered_district": "440307",
            "registered_on": "2021-01-04",
            "is_software_internet": True,
        }
        for n, code in enumerate(codes, start=1)
    ]


def m3_application(holder: str, vendor: str, model_id: str, number: str) -> dict[str, Any]:
    return {
        "applicant": holder,
        "as_of": AS_OF,
        "as_of_reason": "逾期登记的纸质申请",
        "evidence": {
            "measure": "M3",
            "claim_fen": CLAIM_FEN,
            "contract": {
                "number": number,
                "vendor_credit_code": vendor,
                "model_id": model_id,
                "signed_on": SIGNED_ON,
                "amount_fen": CONTRACT_FEN,
                "components": [{"kind": "private_deployment", "amount_fen": CONTRACT_FEN}],
            },
        },
    }


@dataclass(frozen=True)
class Voucher:
    code: str
    holder: str
    vendor: str
    authorization: str = ""  # the vendor client's "Bearer …" header


class BenchAuth:
    """Authentication for the bench's stack: keys, JWKS and service clients; tokens for its own calls."""

    def __init__(self, directory: Path, database_url: str, registry_url: str, lifetime_seconds: int) -> None:
        from shared.tokens import TokenSigner

        keys, _ = devauth.ensure_keys(directory)
        clients = devauth.ensure_clients(database_url, directory / "clients.json", devauth.SERVICE_CLIENTS)
        #: for every service process (AUTH_JWKS, the signing keys, the services' client ids and secrets)
        self.env = {**devauth.service_env(directory, registry_url, clients), **webhook_secret_env(directory)}
        # its tokens live as long as the run: the stack's verifiers accept that lifetime (and no longer)
        self.env["AUTH_MAX_TOKEN_LIFETIME_SECONDS"] = str(lifetime_seconds)
        self.signer = TokenSigner(
            keys,
            issuer=os.environ.get("AUTH_ISSUER", "longgang-ai-identity"),
            audience=os.environ.get("AUTH_AUDIENCE", "longgang-ai"),
            lifetime_seconds=lifetime_seconds,
        )

    def headers(self, scope: str, name: str, organisation: str | None = None) -> dict[str, str]:
        token = self.signer.sign(f"bench-{scope}-{name}", [scope], name=name, organisation=organisation)
        return {"Authorization": f"Bearer {token}"}

    def vendor(self, credit_code: str) -> str:
        return self.headers(VENDOR, f"vendor {credit_code}", credit_code)["Authorization"]


@dataclass
class Setup:
    vouchers: list[Voucher] = field(default_factory=list)
    filler: Voucher | None = None
    enterprises: int = 0
    vendors: int = 0
    requests: int = 0
    seconds: float = 0.0


# --- measuring -----------------------------------------------------------------------------------


@dataclass
class CpuUse:
    """Cores used during a run, by who used them (from /proc), and the machine's busy cores."""

    wall: float = 0.0
    groups: dict[str, float] = field(default_factory=dict)
    busy: float = 0.0

    def cores(self, group: str) -> float:
        return self.groups.get(group, 0.0) / self.wall if self.wall else 0.0

    @property
    def busy_cores(self) -> float:
        return self.busy / self.wall if self.wall else 0.0

    @property
    def elsewhere(self) -> float:
        """Cores used by processes outside this benchmark (other databases' backends, other work)."""
        return self.cores("other")

    @property
    def stack(self) -> float:
        """Cores the benchmark's own processes used: service(s), PostgreSQL, load generator."""
        return self.cores("vouchers") + self.cores("postgres") + self.cores("load generator")

    def ceiling(self, rate: float, processes: int = 0) -> float:
        """The rate if the benchmark had every core to itself and stayed CPU-bound: rate × cores ÷ cores
        used, and at most one core per vouchers process (a Python process runs on one at a time)."""
        if not self.stack:
            return math.nan
        ceiling = rate * CORES / self.stack
        vouchers = self.cores("vouchers")
        if processes and vouchers:
            ceiling = min(ceiling, rate * processes / vouchers)
        return ceiling


CPU_GROUPS = ("vouchers", "postgres", "load generator", "other")


@dataclass
class LoadRun:
    label: str
    processes: int
    clients: int
    seconds: float
    tag: str
    measured: bool = True
    entries_before: int = 0
    ledger_bytes: int = 0  # entries, seals, redemptions and idempotency records, with their indexes
    generator: str = "wrk"
    requests: int = 0  # answers the load generator read
    duration_s: float = 0.0
    issued: int = 0  # requests the load generator started
    statuses: Counter[int] = field(default_factory=Counter)
    errors: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    created: int = 0  # redemption rows the run wrote (server side)
    keys: int = 0  # idempotency records of the run's keys
    keys_201: int = 0
    cpu: CpuUse = field(default_factory=CpuUse)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    server_ms: list[float] = field(default_factory=list)
    seal_behind: int | None = None  # at most this many entries not yet sealed while the run went (sampled)
    sealing: Sealing | None = None  # the sealer's backlog when the run stopped, and its catching up

    def cpu_us(self, group: str) -> float:
        """CPU microseconds of a group per redemption, over the measuring window."""
        done = self.rate * self.cpu.wall
        return self.cpu.groups.get(group, 0.0) / done * 1e6 if done else math.nan

    @property
    def ok_answers(self) -> int:
        return self.statuses[201]

    @property
    def rate(self) -> float:
        return self.ok_answers / self.duration_s if self.duration_s else 0.0

    @property
    def p50(self) -> float:
        return self.latency_ms.get("50", math.nan)

    @property
    def p99(self) -> float:
        return self.latency_ms.get("99", math.nan)

    def problems(self) -> list[str]:
        found: list[str] = []
        others = {status: n for status, n in self.statuses.items() if status != 201}
        if others:
            found.append(f"{self.label}: answers other than 201: {others}")
        errors = {kind: n for kind, n in self.errors.items() if n and kind != "status"}
        if errors:
            found.append(f"{self.label}: socket errors or timeouts: {errors}")
        if self.ok_answers == 0:
            found.append(f"{self.label}: no redemption answered 201")
        if not self.keys == self.keys_201 == self.created:
            found.append(
                f"{self.label}: the server recorded {self.keys:,} keys, {self.keys_201:,} answered 201, "
                f"but wrote {self.created:,} redemptions"
            )
        if not self.ok_answers <= self.created <= self.issued:
            found.append(
                f"{self.label}: {self.ok_answers:,} answers 201 read, {self.created:,} redemptions written, "
                f"{self.issued:,} requests started"
            )
        return found


@dataclass
class Sealing:
    """The vouchers sealer (chain/sealer.py) hashing committed entries: how far behind it was, how long it took."""

    backlog: int = 0
    seconds: float = 0.0
    caught_up: bool = False
    active: bool = False  # it made progress while we waited (else: no sealer, or a disabled one)

    @property
    def rate(self) -> float:
        return self.backlog / self.seconds if self.seconds and self.caught_up else math.nan

    def describe(self) -> str:
        if self.backlog <= 0:
            return "nothing left to seal"
        if self.caught_up:
            return f"{self.backlog:,} entries left to seal, sealed in {self.seconds:.1f} s"
        state = "still behind" if self.active else "no progress (no sealer running?)"
        return f"{self.backlog:,} entries left to seal, {state} after {self.seconds:.0f} s"


@dataclass
class Pgbench:
    clients: int
    seconds: int
    tps: float = 0.0
    latency_ms: float = 0.0
    transactions: int = 0
    failed: int = 0
    cpu: CpuUse = field(default_factory=CpuUse)


@dataclass
class Fill:
    target: int
    before: int = 0
    added: int = 0
    seconds: float = 0.0
    maintenance_seconds: float = 0.0
    sealing: Sealing | None = None


@dataclass
class Growth:
    fill: Fill
    run: LoadRun


@dataclass
class Results:
    setup: Setup = field(default_factory=Setup)
    pgbench: list[Pgbench] = field(default_factory=list)
    pgbench_init_seconds: float = 0.0
    runs: list[LoadRun] = field(default_factory=list)
    growth: list[Growth] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    invariant_checks: list[tuple[int, float, int]] = field(default_factory=list)  # entries, seconds, violations
    access_201: int = 0
    access_other: Counter[int] = field(default_factory=Counter)
    load_redemptions: int = 0
    problems: list[str] = field(default_factory=list)
    postgres_version: str = ""
    postgres_settings: dict[str, str] = field(default_factory=dict)
    wrk_version: str = ""
    profile: str = ""

    def baseline(self, clients: int) -> Pgbench | None:
        return next((p for p in self.pgbench if p.clients == clients), None)

    @property
    def all_runs(self) -> list[LoadRun]:
        return self.runs + [g.run for g in self.growth]


def ms(value: float) -> str:
    return f"{value:,.1f} ms"


# --- CPU accounting -----------------------------------------------------------------------------


def _proc_times() -> dict[tuple[int, int], tuple[str, float]]:
    """Every process, by (pid, start time): (what it is, CPU seconds so far). A PostgreSQL backend's
    command line changes with its state, so it cannot be part of the key."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        found[(int(entry.name), int(fields[19]))] = (f"{comm}|{cmdline}", (int(fields[11]) + int(fields[12])) / ticks)
    return found


def _machine_busy() -> float:
    times = profile.machine_times()
    return times.busy + times.steal  # stolen time shows in "other"


class CpuMeter:
    """CPU seconds per group while a load runs: the vouchers processes, PostgreSQL (the backends of
    the benchmark's databases and the server's background processes), the load generator (wrk,
    pgbench or the Python one) and everything else on the machine (other databases' backends,
    other processes). It looks at /proc a little after the load starts and a little before it
    ends, when every process involved (pgbench's backends too) is alive."""

    def __init__(self, vouchers: set[int], databases: set[str]) -> None:
        self.vouchers = vouchers
        self.databases = databases

    def group(self, pid: int, what: str, generator: int | None) -> str:
        comm, _, cmdline = what.partition("|")
        if pid in self.vouchers:
            return "vouchers"
        if pid == generator:
            return "load generator"
        if comm == "postgres" or cmdline.startswith("postgres"):
            # backends read "postgres: <user> <database> <host>(<port>) <state>"
            match = re.match(r"postgres: \S+ (\S+) \S+\(\d+\)", cmdline)
            return "postgres" if match is None or match.group(1) in self.databases else "other"
        return "other"

    def window(self, seconds: float, generator: int | None, into: CpuUse, margin: float = 1.0) -> None:
        """Call right after starting a load of `seconds`; returns `margin` before it ends."""
        margin = min(margin, seconds / 5)
        time.sleep(margin)
        before, busy, started = _proc_times(), _machine_busy(), time.monotonic()
        time.sleep(max(0.1, seconds - 2 * margin))
        after, into.busy, into.wall = _proc_times(), _machine_busy() - busy, time.monotonic() - started
        groups: Counter[str] = Counter()
        for (pid, start), (what, cpu) in after.items():
            previous = before.get((pid, start))
            groups[self.group(pid, what, generator)] += cpu - (previous[1] if previous else 0.0)
        # whatever the machine did besides the benchmark's own processes (short-lived ones included)
        groups["other"] = max(0.0, into.busy - groups["vouchers"] - groups["postgres"] - groups["load generator"])
        into.groups = dict(groups)


# --- the stack's data, through the public APIs ---------------------------------------------------


async def _created(
    client: httpx.AsyncClient,
    path: str,
    payload: dict[str, Any],
    expect: int = 201,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    response = await client.post(path, json=payload, headers=headers)
    if response.status_code != expect:
        raise RuntimeError(f"{path}: HTTP {response.status_code}: {response.text[:2000]}")
    body: dict[str, Any] = response.json()
    return body


async def model_vendor(registry: httpx.AsyncClient, code: str, n: int) -> str:
    """A model vendor with one model holding a CAC filing; returns the model id."""
    await _created(
        registry,
        "/v1/vendors",
        {"credit_code": code, "is_model_vendor": True, "is_compute_vendor": False, "effective_from": "2021-01-04"},
    )
    model = await _created(
        registry,
        "/v1/models",
        {"vendor_credit_code": code, "name": f"龙岗基准大模型-{n}", "effective_from": "2021-01-04"},
    )
    await _created(
        registry,
        "/v1/filings",
        {
            "number": f"Guangdong-LonggangBench{n}-{FILED_ON.replace('-', '')}0001",
            "model_id": model["id"],
            "kind": "filing",
            "filed_on": FILED_ON,
        },
    )
    return str(model["id"])


async def obtain_voucher(
    auth: BenchAuth,
    eligibility: httpx.AsyncClient,
    vouchers: httpx.AsyncClient,
    holder: str,
    vendor: str,
    model_id: str,
    number: str,
) -> Voucher:
    """Apply, review (officer wang), approve (approver li: another client), issue (officer bench)."""
    application = await _created(eligibility, "/v1/applications", m3_application(holder, vendor, model_id, number))
    decision = application["decision"]
    if decision["outcome"] != "eligible" or decision["amount_fen"] != CLAIM_FEN:
        raise RuntimeError(
            f"contract {number}: expected eligible for {CLAIM_FEN} fen, got {json.dumps(decision)[:2000]}"
        )
    path = f"/v1/applications/{application['id']}"
    review, approval = {"verdict": "approve", "reason": "合规"}, {"verdict": "approve", "reason": "同意"}
    await _created(eligibility, path + "/reviews", review, 200, auth.headers(OFFICER, "wang"))
    await _created(eligibility, path + "/approvals", approval, 200, auth.headers(APPROVER, "li"))
    issued = await _created(
        vouchers, "/v1/vouchers", {"decision_id": decision["id"]}, 201, auth.headers(OFFICER, "bench")
    )
    if (issued["kind"], issued["amount_fen"], issued["vendor"]) != ("M3", CLAIM_FEN, vendor):
        raise RuntimeError(f"contract {number}: unexpected voucher {json.dumps(issued)[:2000]}")
    return Voucher(issued["code"], issued["holder"], issued["vendor"], auth.vendor(vendor))


async def create_vouchers(
    stack: Stack, vouchers_url: str, args: argparse.Namespace, setup: Setup, auth: BenchAuth
) -> None:
    rng = random.Random(args.seed)
    timeout = httpx.Timeout(60.0, connect=5.0)
    started = time.perf_counter()
    # the holders, the model vendors, and one more of each for the filler voucher
    holders = credit_codes(rng, args.enterprises + 1)
    vendors = credit_codes(rng, args.vendors + 1)
    admin = auth.headers(ADMIN, "bench administrator")
    async with (
        httpx.AsyncClient(base_url=stack.url("registry"), timeout=timeout, trust_env=False, headers=admin) as registry,
        httpx.AsyncClient(
            base_url=stack.url("eligibility"), timeout=timeout, trust_env=False, headers=admin
        ) as eligibility,
        httpx.AsyncClient(base_url=vouchers_url, timeout=timeout, trust_env=False, headers=admin) as vouchers,
    ):
        rows = organisation_rows(holders, "") + organisation_rows(vendors, "模型供应商")
        response = await registry.post("/v1/imports/organisations", json=rows)
        report = response.json() if response.status_code == 200 else None
        if report is None or report["created"] != len(rows) or report["failed"]:
            raise RuntimeError(f"organisation import: HTTP {response.status_code}: {response.text[:2000]}")
        models = [await model_vendor(registry, code, n) for n, code in enumerate(vendors, start=1)]
        setup.requests += 1 + 3 * len(vendors)

        semaphore = asyncio.Semaphore(8)

        async def one(i: int, holder: str, v: int) -> Voucher:
            async with semaphore:
                return await obtain_voucher(
                    auth, eligibility, vouchers, holder, vendors[v], models[v], f"HT-BENCH-{os.getpid()}-{i:05d}"
                )

        # voucher i: enterprise i mod E, vendor i mod V, so neighbours in the load belong to different ones
        plans = [(i, holders[i % args.enterprises], i % args.vendors) for i in range(args.vouchers)]
        plans.append((args.vouchers, holders[-1], len(vendors) - 1))  # the filler's own enterprise and vendor
        issued = await asyncio.gather(*(one(*plan) for plan in plans))
        setup.requests += 4 * len(plans)
    setup.vouchers, setup.filler = list(issued[:-1]), issued[-1]
    setup.enterprises, setup.vendors = args.enterprises, args.vendors
    setup.seconds = time.perf_counter() - started


# --- the database, as superuser --------------------------------------------------------------------


async def fetchval(database_url: str, query: str, *params: Any) -> Any:
    import asyncpg

    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        return await connection.fetchval(query, *params)
    finally:
        await connection.close()


async def server_facts(database_url: str, results: Results) -> None:
    import asyncpg

    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        results.postgres_version = str(await connection.fetchval("SELECT version()"))
        for name in ("shared_buffers", "synchronous_commit", "fsync", "max_connections", "io_method"):
            with suppress(asyncpg.PostgresError):
                results.postgres_settings[name] = str(await connection.fetchval(f"SHOW {name}"))
    finally:
        await connection.close()


async def entries_count(database_url: str) -> int:
    return int(await fetchval(database_url, "SELECT count(*) FROM vouchers.entries"))


LEDGER_BYTES_SQL = """
SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'vouchers' AND c.relname IN ('entries', 'seals', 'redemptions', 'idempotency')
"""


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


async def settle(database_url: str) -> float:
    """VACUUM ANALYZE the tables the hot path writes, then CHECKPOINT: each run starts alike."""
    import asyncpg

    started = time.perf_counter()
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        for table in ("entries", "seals", "redemptions", "idempotency", "vouchers", "allowances"):
            await connection.execute(f"VACUUM (ANALYZE) vouchers.{table}")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()
    return time.perf_counter() - started


async def unsealed(database_url: str) -> int | None:
    """Entries without a seal yet (None without a seals table)."""
    import asyncpg

    try:
        value = await fetchval(
            database_url, "SELECT (SELECT count(*) FROM vouchers.entries) - (SELECT count(*) FROM vouchers.seals)"
        )
    except asyncpg.UndefinedTableError:
        return None
    return int(value)


BEHIND_SQL = """
SELECT coalesce((SELECT max(id) FROM vouchers.entries), 0) - coalesce((SELECT max(entry_id) FROM vouchers.seals), 0)
"""


class SealWatch:
    """Samples, every second while a run goes, how far the sealer is behind: the newest entry's id
    less the newest sealed entry's id (two index lookups, so it costs nothing at a million entries;
    approximate, as entries are sealed in transaction order)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.behind: list[int] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._watch()), daemon=True)

    async def _watch(self) -> None:
        import asyncpg

        try:
            connection = await asyncpg.connect(self.database_url, timeout=10)
        except (OSError, asyncpg.PostgresError):
            return
        try:
            while not self.stopping.is_set():
                self.behind.append(int(await connection.fetchval(BEHIND_SQL)))
                await asyncio.sleep(1.0)
        except asyncpg.PostgresError:
            return  # no seals table: nothing to watch
        finally:
            await connection.close()

    def __enter__(self) -> SealWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=15)

    @property
    def most(self) -> int | None:
        return max(self.behind) if self.behind else None


def wait_sealed(database_url: str, timeout: float) -> Sealing:
    """Wait until the vouchers process's sealer has sealed every entry, at most `timeout` seconds,
    or until it makes no progress for 10 s. Measured runs start from a sealed ledger."""
    sealing = Sealing()
    started = time.monotonic()
    backlog = asyncio.run(unsealed(database_url))
    if backlog is None or backlog <= 0:
        sealing.caught_up = True
        return sealing
    sealing.backlog = last = backlog
    progressed = time.monotonic()
    while time.monotonic() - started < timeout:
        time.sleep(0.25)
        left = asyncio.run(unsealed(database_url)) or 0
        if left <= 0:
            sealing.caught_up = True
            break
        if left < last:
            sealing.active, last, progressed = True, left, time.monotonic()
        elif time.monotonic() - progressed > 10:
            break
    sealing.seconds = time.monotonic() - started
    sealing.active = sealing.active or sealing.caught_up
    return sealing


async def run_counts(database_url: str, tag: str, first_id: int) -> tuple[int, int, int]:
    """Redemptions written after `first_id`; the run's idempotency records, and those answered 201."""
    import asyncpg

    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        created = await connection.fetchval("SELECT count(*) FROM vouchers.redemptions WHERE id > $1", first_id)
        row = await connection.fetchrow(
            "SELECT count(*) AS keys, count(*) FILTER (WHERE status_code = 201) AS created "
            "FROM vouchers.idempotency WHERE key LIKE $1",
            tag + "-%",
        )
        assert row is not None
        return int(created), int(row["keys"]), int(row["created"])
    finally:
        await connection.close()


FILL_SQL = """
WITH v AS (
    SELECT id, account_id, vendor FROM vouchers.vouchers WHERE code = $1
), r AS (
    INSERT INTO vouchers.redemptions (voucher_id, vendor, amount_fen, invoice_number, status, year)
    SELECT v.id, v.vendor, 1, 'FILL-' || g, 'captured', $3
    FROM v, generate_series(1, $2::int) AS g
    RETURNING id, voucher_id, vendor, amount_fen, invoice_number
), e AS (
    INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, voucher_id, redemption_id,
                                  actor, request_id)
    SELECT 'redeem', v.account_id, $4, r.amount_fen, r.voucher_id, r.id, r.vendor, 'bench-fill'
    FROM r, v
    RETURNING redemption_id
)
INSERT INTO vouchers.idempotency (client, key, request_hash, status_code, response)
SELECT r.vendor, 'fill-' || r.id, md5(r.id::text), 201,
       jsonb_build_object('id', r.id, 'vendor', r.vendor, 'amount_fen', r.amount_fen,
                          'invoice_number', r.invoice_number, 'status', 'captured')
FROM r JOIN e ON e.redemption_id = r.id
"""


async def fill_ledger(database_url: str, filler: Voucher, fill: Fill, year: int) -> None:
    """Grow the ledger to `fill.target` entries with captured 1-fen redemptions on the filler voucher.

    Each gets its redemption row, its 'redeem' entry (voucher account → the vendor's
    receivable) and its idempotency record, as the hot path writes them; the voucher's amounts
    and the enterprise's redemption ceiling move by the same total, so the invariants hold.
    Written as superuser: the entries table refuses UPDATE, DELETE and TRUNCATE, not INSERT.
    """
    import asyncpg

    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        fill.before = int(await connection.fetchval("SELECT count(*) FROM vouchers.entries"))
        missing = max(0, fill.target - fill.before)
        started = time.perf_counter()
        receivable = await connection.fetchval("SELECT vouchers.vendor_account($1)", filler.vendor)
        while missing > 0:
            batch = min(FILL_BATCH, missing)
            async with connection.transaction():
                await connection.execute(FILL_SQL, filler.code, batch, year, receivable)
                await connection.execute(
                    "UPDATE vouchers.vouchers SET available_fen = available_fen - $2, "
                    "redeemed_fen = redeemed_fen + $2 WHERE code = $1",
                    filler.code,
                    batch,
                )
                updated = await connection.execute(
                    "UPDATE vouchers.allowances SET used_fen = used_fen + $3 "
                    "WHERE holder = $1 AND year = $2 AND kind = 'M3.redemptions'",
                    filler.holder,
                    year,
                    batch,
                )
                if updated != "UPDATE 1":
                    raise RuntimeError(f"no {year} redemption ceiling for the filler's enterprise {filler.holder}")
            missing -= batch
            fill.added += batch
            say(f"  {fill.before + fill.added:>10,} entries ({fill.added / (time.perf_counter() - started):,.0f}/s)")
        fill.seconds = time.perf_counter() - started
    finally:
        await connection.close()


# --- pgbench -------------------------------------------------------------------------------------------


def pgbench_env(server_url: str) -> tuple[dict[str, str], str]:
    parts = urlsplit(server_url)
    env = dict(os.environ)
    env.update({"PGHOST": parts.hostname or HOST, "PGPORT": str(parts.port or 5432)})
    if parts.username:
        env["PGUSER"] = unquote(parts.username)
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    return env, devdb.binary("pgbench")


def run_pgbench(server_url: str, database: str, result: Pgbench, meter: CpuMeter) -> None:
    env, binary = pgbench_env(server_url)
    threads = 2 if result.clients % 2 == 0 else 1
    command = [binary, "-c", str(result.clients), "-j", str(threads), "-T", str(result.seconds), "-n", database]
    stdout = measured_run(command, result.seconds, meter, result.cpu, env=env)
    tps = re.search(r"^tps = ([\d.]+)", stdout, re.MULTILINE)
    if tps is None:
        raise RuntimeError(f"no tps in pgbench's output: {stdout[-2000:]}")
    result.tps = float(tps.group(1))
    if latency := re.search(r"^latency average = ([\d.]+) ms", stdout, re.MULTILINE):
        result.latency_ms = float(latency.group(1))
    if processed := re.search(r"number of transactions actually processed: (\d+)", stdout):
        result.transactions = int(processed.group(1))
    if failed := re.search(r"number of failed transactions: (\d+)", stdout):
        result.failed = int(failed.group(1))


def measured_run(
    command: list[str], seconds: float, meter: CpuMeter, cpu: CpuUse, env: dict[str, str] | None = None
) -> str:
    """Run a load generator for `seconds`, measuring CPU use meanwhile; its standard output."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        meter.window(seconds, process.pid, cpu)
        stdout, stderr = process.communicate(timeout=seconds + 120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)}: exit {process.returncode}: {stdout[-2000:]} {stderr[-2000:]}")
    return stdout


def pgbench_init(server_url: str, database: str) -> float:
    env, binary = pgbench_env(server_url)
    started = time.perf_counter()
    command = [binary, "-i", "-s", str(PGBENCH_SCALE), "-q", database]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)}: exit {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - started


# --- the load: wrk ---------------------------------------------------------------------------------------

WRK_SCRIPT = """-- generated by bench/ledger_bench.py for one run
-- each request: its own Idempotency-Key (run, thread, counter), the next voucher in turn,
-- the token of that voucher's vendor, 1 to 100 fen; threads are spread over the ports
local run = "%(tag)s"
local vouchers = {
%(vouchers)s
}
local ports = {%(ports)s}
local threads = {}

function setup(thread)
  local n = #threads + 1
  thread.addr = wrk.lookup("%(host)s", tostring(ports[(n - 1) %% #ports + 1]))[1]
  thread:set("id", n)
  thread:set("position", (n - 1) * 17)
  table.insert(threads, thread)
end

function init(args)
  issued = 0
  statuses = {}
end

function request()
  issued = issued + 1
  position = position %% #vouchers + 1
  local voucher = vouchers[position]
  local body = string.format('{"amount_fen":%%d,"invoice_number":"FP-%%s-%%d-%%d"}', issued %% 100 + 1, run, id, issued)
  return wrk.format("POST", "/v1/vouchers/" .. voucher[1] .. "/redemptions", {
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = string.format("%%s-%%d-%%d", run, id, issued),
    ["Authorization"] = voucher[2],
  }, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local issued_total, counts = 0, {}
  for _, thread in ipairs(threads) do
    issued_total = issued_total + (thread:get("issued") or 0)
    for status, n in pairs(thread:get("statuses") or {}) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local statuses_json, percentiles_json = {}, {}
  for status, n in pairs(counts) do
    statuses_json[#statuses_json + 1] = string.format('"%%d": %%d', status, n)
  end
  for _, p in ipairs({50, 75, 90, 99, 99.9}) do
    percentiles_json[#percentiles_json + 1] = string.format('"%%s": %%d', tostring(p), latency:percentile(p))
  end
  local e = summary.errors
  io.write(string.format(
    'LEDGER-BENCH {"requests": %%d, "duration_us": %%d, "issued": %%d, "statuses": {%%s}, ' ..
    '"errors": {"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}, ' ..
    '"latency_us": {"min": %%d, "max": %%d, "mean": %%.1f, "percentiles": {%%s}}}\\n',
    summary.requests, summary.duration, issued_total, table.concat(statuses_json, ", "),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, table.concat(percentiles_json, ", ")))
end
"""


def wrk_script(tag: str, vouchers: list[Voucher], ports: list[int]) -> str:
    return WRK_SCRIPT % {
        "tag": tag,
        "host": HOST,
        "vouchers": ",\n".join(f'  {{"{v.code}", "{v.authorization}"}}' for v in vouchers),
        "ports": ", ".join(str(p) for p in ports),
    }


def read_generator_report(run: LoadRun, report: dict[str, Any]) -> None:
    run.requests = int(report["requests"])
    run.duration_s = report["duration_us"] / 1e6
    run.issued = int(report["issued"])
    run.statuses = Counter({int(status): int(n) for status, n in report["statuses"].items()})
    run.errors = {kind: int(n) for kind, n in report["errors"].items()}
    latency = report["latency_us"]
    run.latency_ms = {p: v / 1000 for p, v in latency["percentiles"].items()}
    run.latency_ms.update({"min": latency["min"] / 1000, "max": latency["max"] / 1000, "mean": latency["mean"] / 1000})


def run_wrk(run: LoadRun, script: Path, ports: list[int], threads: int, meter: CpuMeter) -> None:
    command = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(run.clients),
        "-d",
        f"{run.seconds:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        f"http://{HOST}:{ports[0]}",
    ]
    stdout = measured_run(command, run.seconds, meter, run.cpu)
    line = next((x for x in stdout.splitlines() if x.startswith("LEDGER-BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {stdout[-2000:]}")
    read_generator_report(run, json.loads(line.removeprefix("LEDGER-BENCH ")))


# --- the load: Python, when wrk is not there --------------------------------------------------------------


def python_load(spec: dict[str, Any], reports: Any) -> None:
    """The fallback load generator, in its own process: keep-alive HTTP/1.1 over asyncio streams
    (uvloop when installed), one coroutine per connection, connections spread over the ports."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    reports.put(asyncio.run(_python_load(spec)))


async def _python_load(spec: dict[str, Any]) -> dict[str, Any]:
    vouchers: list[list[str]] = spec["vouchers"]
    ports: list[int] = spec["ports"]
    tag: str = spec["tag"]
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    issued = 0
    started = time.monotonic()
    deadline = started + spec["seconds"]

    async def connection(n: int) -> None:
        nonlocal issued
        port = ports[n % len(ports)]
        reader, writer = await asyncio.open_connection(HOST, port)
        count, position = 0, n * 17
        try:
            while time.monotonic() < deadline:
                count += 1
                issued += 1
                position = (position + 1) % len(vouchers)
                code, authorization = vouchers[position]
                body = json.dumps({"amount_fen": count % 100 + 1, "invoice_number": f"FP-{tag}-{n}-{count}"}).encode()
                head = (
                    f"POST /v1/vouchers/{code}/redemptions HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                    f"Content-Type: application/json\r\nIdempotency-Key: {tag}-{n}-{count}\r\n"
                    f"Authorization: {authorization}\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode()
                sent = time.perf_counter()
                writer.write(head + body)
                answer = await reader.readuntil(b"\r\n\r\n")
                length = CONTENT_LENGTH.search(answer)
                await reader.readexactly(int(length.group(1)) if length else 0)
                latencies.append(time.perf_counter() - sent)
                statuses[int(answer[9:12])] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            errors["read"] += 1
            print(f"python load generator: connection {n}: {exc!r}", file=sys.stderr)
        finally:
            writer.close()

    await asyncio.gather(*(connection(n) for n in range(spec["clients"])))
    elapsed = time.monotonic() - started
    return {
        "requests": len(latencies),
        "duration_us": elapsed * 1e6,
        "issued": issued,
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": {"connect": 0, "read": errors["read"], "write": 0, "status": 0, "timeout": 0},
        "latency_us": {
            "min": min(latencies, default=0) * 1e6,
            "max": max(latencies, default=0) * 1e6,
            "mean": (sum(latencies) / len(latencies) * 1e6) if latencies else 0,
            "percentiles": {str(p): percentile(latencies, p) * 1e6 for p in (50, 75, 90, 99, 99.9)},
        },
    }


def run_python(run: LoadRun, vouchers: list[Voucher], ports: list[int], meter: CpuMeter) -> None:
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    spec = {
        "vouchers": [[v.code, v.authorization] for v in vouchers],
        "ports": ports,
        "tag": run.tag,
        "clients": run.clients,
        "seconds": run.seconds,
    }
    process = context.Process(target=python_load, args=(spec, reports), daemon=True)
    process.start()
    try:
        # the child imports this module first (about a second): look at the CPU after that
        meter.window(run.seconds + 1.0, process.pid, run.cpu, margin=1.5)
        report = reports.get(timeout=run.seconds + 60)
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
    read_generator_report(run, report)


# --- running a load ------------------------------------------------------------------------------------------


class Loader:
    def __init__(
        self, database_url: str, setup: Setup, meter: CpuMeter, generator: str, threads: int, work_dir: Path
    ) -> None:
        self.database_url = database_url
        self.setup = setup
        self.meter = meter
        self.generator = generator
        self.threads = threads
        self.work_dir = work_dir
        self.runs = 0

    def run(self, label: str, ports: list[int], clients: int, seconds: float, *, measured: bool = True) -> LoadRun:
        self.runs += 1
        tag = f"b{os.getpid()}r{self.runs}"
        run = LoadRun(label, len(ports), clients, seconds, tag, measured=measured, generator=self.generator)
        first_id = int(
            asyncio.run(fetchval(self.database_url, "SELECT coalesce(max(id), 0) FROM vouchers.redemptions"))
        )
        run.entries_before = asyncio.run(entries_count(self.database_url))
        run.ledger_bytes = int(asyncio.run(fetchval(self.database_url, LEDGER_BYTES_SQL)) or 0)
        run.started_at = datetime.now(UTC)
        with SealWatch(self.database_url) as watch:
            if self.generator == "wrk":
                script = self.work_dir / f"{tag}.lua"
                script.write_text(wrk_script(tag, self.setup.vouchers, ports), encoding="utf-8")
                run_wrk(run, script, ports, min(run.clients, max(self.threads, len(ports))), self.meter)
            else:
                run_python(run, self.setup.vouchers, ports, self.meter)
        run.ended_at = datetime.now(UTC)
        run.seal_behind = watch.most
        run.sealing = wait_sealed(self.database_url, timeout=60)
        time.sleep(0.5)  # let requests still in flight when the generator stopped finish
        run.created, run.keys, run.keys_201 = asyncio.run(run_counts(self.database_url, tag, first_id))
        return run


def describe(run: LoadRun) -> str:
    cpu = run.cpu
    return (
        f"{run.ok_answers:,} × 201 in {run.duration_s:.1f} s: {run.rate:,.0f} redemptions/s, "
        f"p50 {ms(run.p50)}, p99 {ms(run.p99)}; written {run.created:,} "
        f"(in flight at the stop {run.created - run.ok_answers}); "
        f"CPU cores: vouchers {cpu.cores('vouchers'):.2f}, postgres {cpu.cores('postgres'):.2f}, "
        f"{run.generator} {cpu.cores('load generator'):.2f}, other {cpu.elsewhere:.2f} "
        f"(machine busy {cpu.busy_cores:.2f} of {CORES}); CPU per redemption: vouchers "
        f"{run.cpu_us('vouchers'):,.0f} µs, postgres {run.cpu_us('postgres'):,.0f} µs; CPU-bound ceiling "
        f"{cpu.ceiling(run.rate, run.processes):,.0f}/s; sealer: at most "
        f"~{run.seal_behind if run.seal_behind is not None else '?'} entries behind, at the stop "
        f"{run.sealing.describe() if run.sealing else '?'}"
    )


def describe_pgbench(result: Pgbench) -> str:
    cpu = result.cpu
    return (
        f"pgbench TPC-B-like, {result.clients} clients, {result.seconds} s: {result.tps:,.0f} tps, mean latency "
        f"{ms(result.latency_ms)}; CPU cores: postgres {cpu.cores('postgres'):.2f}, pgbench "
        f"{cpu.cores('load generator'):.2f}, other {cpu.elsewhere:.2f}; CPU per "
        f"transaction: postgres {us(cpu, 'postgres', result.tps)}, pgbench "
        f"{us(cpu, 'load generator', result.tps)}; CPU-bound ceiling "
        f"{cpu.ceiling(result.tps):,.0f} tps"
    )


# --- the services' access logs ---------------------------------------------------------------------


@dataclass
class AccessEntry:
    at: datetime
    status: int
    duration_ms: float


def redemption_log(path: Path) -> list[AccessEntry]:
    found: list[AccessEntry] = []
    if not path.exists():
        return found
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"access"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") != "request" or not REDEMPTION_ROUTE.match(str(entry.get("path", ""))):
            continue
        found.append(
            AccessEntry(
                datetime.fromisoformat(str(entry["ts"])), int(entry.get("status", 0)), float(entry["duration_ms"])
            )
        )
    return found


def log_problems(path: Path) -> list[str]:
    problems: list[str] = []
    if not path.exists():
        return problems
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"level": "error"' in line or '"level": "critical"' in line or line.startswith("Traceback"):
            problems.append(line[:300])
            if len(problems) >= 5:
                break
    return problems


# --- running it -----------------------------------------------------------------------------------------------


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("uvicorn", "uvloop", "httptools", "fastapi", "asyncpg"):
        with suppress(PackageNotFoundError):
            found.append(f"{package} {version(package)}")
    return ", ".join(found)


def wrk_version() -> str:
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()[:1]
    return first[0].split(" [")[0] if first else "wrk"


def code_version() -> str:
    """The commit measured, and whether the services' code differed from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", "services", "shared", "migrations"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return f"commit {head.stdout.strip()}" + (
        f" with uncommitted changes to {len(changed)} files of services/, shared/ or migrations/" if changed else ""
    )


def report_head(command: str, target: str, results: Results, where: str) -> list[str]:
    """A report's first lines: the command (and the make target it is, if any), the machine, the code and the
    PostgreSQL server."""
    info = machine()
    settings = ", ".join(f"{k} {v}" for k, v in results.postgres_settings.items())
    return [
        f"Command: `{command}`"
        + (f" (what `make {target}` runs)" if target else "")
        + f" — run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| | |",
        "|---|---|",
        f"| machine | {info['nproc']} cores (nproc), {info['cpu']}, {info['memory']} RAM, {info['os']} |",
        f"| Python | {info['python']}; {versions()} |",
        f"| code | {code_version()} |",
        f"| PostgreSQL | {results.postgres_version} ({where}); {settings} |",
    ]


def markdown(args: argparse.Namespace, argv: list[str], results: Results, where: str) -> str:
    setup = results.setup
    same = results.baseline(args.clients)
    notes = results.baseline(DESIGN_NOTES_PGBENCH_CLIENTS)
    overrides = ", ".join(f"{k}={v}" for k, v in service_env(args).items()) or "the defaults"
    generator = (
        f"{results.wrk_version}, {max(args.wrk_threads, 1)} threads (one per process when two)"
        if args.load_generator == "wrk"
        else "Python (asyncio streams, separate process): wrk was not available"
    )
    lines = [
        *report_head(command_line("bench.ledger_bench", argv), "" if argv else "bench-ledger", results, where),
        f"| vouchers | {len(setup.vouchers)} M3 vouchers of {CLAIM_FEN // YUAN:,} yuan, "
        f"{setup.enterprises} enterprises, {setup.vendors} model vendors, obtained through registry → "
        f"eligibility (apply, review, approve) → vouchers (issue): {setup.requests} requests "
        f"in {setup.seconds:.1f} s |",
        f"| load | {generator}; {args.clients} connections, {args.seconds:g} s per run after a {args.warmup:g} s "
        "warm-up; every request a new Idempotency-Key, the vouchers in turn, 1–100 fen |",
        f"| vouchers process | uvicorn (uvloop, `--http {os.environ.get('HTTP_PROTOCOL') or DEFAULT_HTTP_PROTOCOL}`), "
        f"1 worker each; settings: {overrides}; "
        "JSON access log to a file; its background sealer on |",
        "",
        f"| run | per second | p50 | p99 | ratio to pgbench ({args.clients} clients) | ratio to pgbench "
        f"({DESIGN_NOTES_PGBENCH_CLIENTS} clients, as in the design measurements) | CPU per operation: "
        f"vouchers / postgres / load generator | cores used: vouchers / postgres / load generator / other | "
        f"CPU-bound ceiling on {CORES} cores |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for p in results.pgbench:
        lines.append(
            f"| `pgbench` TPC-B-like, {p.clients} clients, `-j {2 if p.clients % 2 == 0 else 1} -T {p.seconds} -n`, "
            f"scale {PGBENCH_SCALE} | **{p.tps:,.0f} tps** | (mean {ms(p.latency_ms)}) | — | | "
            f"| — / {us(p.cpu, 'postgres', p.tps)} / {us(p.cpu, 'load generator', p.tps)} | {cores(p.cpu)} "
            f"| {p.cpu.ceiling(p.tps):,.0f} |"
        )
    measured = [r for r in results.runs if r.measured]
    for run in measured:
        ratio = run.rate / same.tps if same and same.tps else math.nan
        ratio8 = run.rate / notes.tps if notes and notes.tps else math.nan
        lines.append(
            f"| redemptions, {run.label} | **{run.rate:,.0f} /s** | {ms(run.p50)} | {ms(run.p99)} "
            f"| **{fraction(ratio)}** | {fraction(ratio8)} | {us(run.cpu, 'vouchers', run.rate)} / "
            f"{us(run.cpu, 'postgres', run.rate)} / {us(run.cpu, 'load generator', run.rate)} | {cores(run.cpu)} "
            f"| {run.cpu.ceiling(run.rate, run.processes):,.0f} |"
        )
    lines += ["", target_line(args, results)]
    if same and measured:
        lines += [
            "",
            f"CPU-bound ceilings (each rate × {CORES} cores ÷ the cores the benchmark's own processes used, and "
            "at most one core per vouchers process: an estimate for a quiet machine) give these ratios to pgbench's "
            f"({same.cpu.ceiling(same.tps):,.0f} tps, {args.clients} clients): "
            + "; ".join(
                f"{r.label} {r.cpu.ceiling(r.rate, r.processes) / same.cpu.ceiling(same.tps):.2f}" for r in measured
            )
            + ".",
        ]
    noisy = max((r.cpu.elsewhere for r in results.all_runs if r.measured), default=0.0)
    if noisy > NOISE_CORES:
        lines += [
            "",
            f"⚠ Other work on this machine (outside the benchmark) used up to {noisy:.2f} cores during the measured "
            "runs: rates and latencies are worse than on a quiet machine; the CPU per redemption much less so.",
        ]
    lines += [
        "",
        "Ledger growth: filled with SQL (captured 1-fen redemptions on a filler voucher, each with its entry and "
        "idempotency record), sealed by the service's sealer, VACUUM ANALYZE and CHECKPOINT; then "
        f"{args.growth_seconds:g} s of redemptions against one process, {args.clients} connections:",
        "",
        "| entries before the run | ledger tables + indexes | filled by SQL | sealed by the sealer | redemptions/s "
        "| p50 | p99 | in the service p50 / p99 | CPU per redemption: vouchers / postgres |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for g in results.growth:
        filled = f"{g.fill.added:,} in {g.fill.seconds:.1f} s" if g.fill.added else "—"
        sealed = "—"
        if g.fill.sealing and g.fill.sealing.backlog:
            sealed = (
                f"{g.fill.sealing.backlog:,} in {g.fill.sealing.seconds:.1f} s"
                if g.fill.sealing.caught_up
                else g.fill.sealing.describe()
            )
        lines.append(
            f"| {g.run.entries_before:,} | {mib(g.run.ledger_bytes)} | {filled} | {sealed} | {g.run.rate:,.0f} "
            f"| {ms(g.run.p50)} | "
            f"{ms(g.run.p99)} | {server_percentiles(g.run)} | {cpu_per_redemption(g.run)} |"
        )
    lags = [r.sealing for r in results.all_runs if r.measured and r.sealing is not None]
    behind = [(r.seal_behind, r.rate) for r in results.all_runs if r.measured and r.seal_behind is not None]
    logged = (
        f"{results.access_201:,} sent according to the access logs = "
        if results.access_201 or results.access_other
        else "no access log to compare with; "
    )
    checks = [
        f"every answer 201 ({sum(r.ok_answers for r in results.all_runs):,} read by the load generator; "
        f"{logged}{results.load_redemptions:,} redemption rows written by the load)",
        "each run's idempotency records = its redemption rows",
        "invariants (`check_database`) hold: "
        + ", ".join(f"{entries:,} entries in {seconds:.1f} s" for entries, seconds, _ in results.invariant_checks),
    ]
    if behind and lags:
        most, rate = max(behind)
        checks.append(
            f"the sealer kept up: at most ~{most:,} entries behind while the load ran (sampled each second; "
            f"~{most / rate * 1000 if rate else math.nan:,.0f} ms of redemptions), all sealed within "
            f"{max(s.seconds for s in lags):.1f} s of each run's end"
            + ("" if all(s.caught_up for s in lags) else " (not always: see the output)")
        )
    lines += [
        "",
        "Checks: " + "; ".join(checks) + ".",
        "",
        "Latencies are the load generator's (wrk's include its coordinated-omission correction); "
        '"in the service" is the access log\'s duration. '
        + (
            "In the service, p50 / p99: " + "; ".join(f"{r.label} {server_percentiles(r)}" for r in measured) + "."
            if measured
            else ""
        )
        + " CPU per redemption: CPU time of the vouchers process(es) and of PostgreSQL (this database's "
        "backends and the server's background processes) over the run, divided by the redemptions written.",
    ]
    if results.profile:
        lines += ["", "Where the vouchers process's CPU went (py-spy, `--profile`):", "", results.profile]
    return "\n".join(lines)


def fraction(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}"


def cpu_per_redemption(run: LoadRun) -> str:
    return f"{run.cpu_us('vouchers'):,.0f} µs / {run.cpu_us('postgres'):,.0f} µs"


def us(cpu: CpuUse, group: str, rate: float) -> str:
    """CPU microseconds of a group per operation (redemption or transaction)."""
    done = rate * cpu.wall
    return f"{cpu.groups.get(group, 0.0) / done * 1e6:,.0f} µs" if done else "—"


def cores(cpu: CpuUse) -> str:
    return (
        f"{cpu.cores('vouchers'):.2f} / {cpu.cores('postgres'):.2f} / {cpu.cores('load generator'):.2f} / "
        f"{cpu.elsewhere:.2f}"
    )


def server_percentiles(run: LoadRun) -> str:
    if not run.server_ms:
        return "—"
    return f"{percentile(run.server_ms, 50):,.1f} / {percentile(run.server_ms, 99):,.1f} ms"


def target_line(args: argparse.Namespace, results: Results) -> str:
    same = results.baseline(args.clients)
    verdicts = []
    for run in results.runs:
        if not run.measured or same is None or not same.tps:
            continue
        ratio = run.rate / same.tps
        met = ratio >= TARGET_RATIO and run.p99 < TARGET_P99_MS
        verdicts.append(
            f"{run.label}: ratio {ratio:.2f} {'≥' if ratio >= TARGET_RATIO else '<'} {TARGET_RATIO}, "
            f"p99 {ms(run.p99)} {'<' if run.p99 < TARGET_P99_MS else '≥'} {TARGET_P99_MS:g} ms — "
            f"**{'met' if met else 'not met'}**"
        )
    if not verdicts:
        return (
            f"Target (issue #16): ratio ≥ {TARGET_RATIO} with p99 < {TARGET_P99_MS:g} ms: "
            "no pgbench baseline to compare."
        )
    return f"Target (issue #16): ratio ≥ {TARGET_RATIO} with p99 < {TARGET_P99_MS:g} ms. " + "; ".join(verdicts) + "."


def service_env(args: argparse.Namespace) -> dict[str, str]:
    # one vendor client sends thousands of redemptions a second over many connections here: the
    # per-client limits (shared/ratelimit.py) are raised so that they never refuse, but they still run
    env: dict[str, str] = {
        "VOUCHERS_RATE_LIMIT_PER_SECOND": "1000000000",
        "VOUCHERS_RATE_LIMIT_MAX_IN_FLIGHT": "0",
        "VOUCHERS_RATE_LIMIT_WRITE_MAX_IN_FLIGHT": "0",
    }
    if args.hot_pool_size:
        env["VOUCHERS_HOT_POOL_SIZE"] = str(args.hot_pool_size)
    if args.log_level:
        env["VOUCHERS_LOG_LEVEL"] = args.log_level
    env["VOUCHERS_GROUP_COMMIT"] = "false" if args.group_commit == "off" else "true"
    return env


# --- a run's stack and its end, shared with bench/tracing_bench.py ---------------------------------------

#: what ends a run with "error: …" and exit status 1 (anything else is a bug: its traceback is shown)
RUN_ERRORS = (RuntimeError, TimeoutError, OSError, httpx.HTTPError, subprocess.TimeoutExpired)


def prepare_process() -> None:
    """SIGTERM ends the run as an exception does, through its clean-up; and the services, the bench and wait_ready
    talk to 127.0.0.1 directly, never through a proxy."""

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = keep_local(os.environ.get(name, ""))


def migrated_database(server_url: str, name: str, created: list[str]) -> str:
    """A fresh database `name` on the server, migrated; noted in `created` first, for clean_up to drop."""
    database_url = asyncio.run(fresh_database(server_url, name))
    created.append(name)
    say(f"database {name}: migrating")
    upgrade_all(database_url)
    return database_url


def start_stack(
    args: argparse.Namespace,
    database_url: str,
    ports: dict[str, int],
    auth_dir: Path,
    log_dir: Path,
    processes: dict[str, subprocess.Popen[bytes]],
    log_files: dict[str, IO[bytes]],
) -> tuple[Stack, BenchAuth, dict[str, str]]:
    """Registry, eligibility and vouchers (with service_env(args)) on `ports`, ready; each logs to
    `log_dir`/<service>.log. Returns the stack, its authentication and the vouchers process's environment."""
    stack = Stack(database_url, HOST, ports)
    auth = BenchAuth(auth_dir, database_url, stack.url("registry"), int(args.max_seconds) + 3600)
    os.environ.update(auth.env)  # every service process verifies tokens; the registry also signs them
    env = service_env(args)
    for service in ("registry", "eligibility", "vouchers"):
        log_files[service] = (log_dir / f"{service}.log").open("wb")
        processes[service] = start_service(
            stack, service, log=log_files[service], extra_env=env if service == "vouchers" else None
        )
    wait_ready(stack, processes, timeout=60)
    return stack, auth, env


def report(text: str, problems: list[str]) -> bool:
    """Prints the Markdown block for docs/benchmarks.md, then the problems if any: whether there were none."""
    say("\n--- paste into docs/benchmarks.md " + "-" * 40 + "\n")
    say(text)
    say("\n" + "-" * 74)
    if problems:
        say("\nFAILED:")
        for problem in problems:
            say(f"  ! {problem}")
    return not problems


class Deadline:
    """A run's time budget (--max-seconds): `check` raises once it has run out."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def check(self, phase: str) -> None:
        if time.monotonic() > self.at:
            raise TimeoutError(f"the time budget (--max-seconds) ran out before {phase}")


@dataclass
class Workspace:
    """What a ledger benchmark run holds until it ends, however it ends (`close`): its server, the databases it
    created, its service processes, their logs and its throw-away signing key."""

    name: str  # the run's database
    pgbench_name: str  # pgbench's database
    log_dir: Path
    auth_dir: Path
    server_url: str | None = None
    started_server: devdb.EmbeddedPostgres | None = None
    created: list[str] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log_files: dict[str, IO[bytes]] = field(default_factory=dict)

    @classmethod
    def new(cls, prefix: str) -> Workspace:
        """A run's workspace (the process prepared for it: `prepare_process`)."""
        prepare_process()
        return cls(
            f"{prefix}_{os.getpid()}",
            f"{prefix}_pgbench_{os.getpid()}",
            Path(tempfile.mkdtemp(prefix=f"{prefix}_")),
            Path(tempfile.mkdtemp(prefix=f"{prefix}_auth_")),
        )

    def open(
        self, args: argparse.Namespace, results: Results
    ) -> tuple[str, str, str, Stack, BenchAuth, dict[str, str], dict[str, int]]:
        """The server and the run's migrated database, the load generator named, the three services up: the
        server's URL and description, the database's URL, the stack, its credentials, the services' environment
        and ports."""
        server_url, self.started_server, where = postgres_server()
        self.server_url = server_url
        database_url = migrated_database(server_url, self.name, self.created)
        asyncio.run(server_facts(database_url, results))
        if args.load_generator == "wrk":
            results.wrk_version = wrk_version()
        else:
            say("! wrk not found: the Python load generator (separate process) is used; it is slower than wrk")
        ports = {s: free_port() for s in ("registry", "eligibility", "vouchers")}
        stack, auth, env = start_stack(
            args, database_url, ports, self.auth_dir, self.log_dir, self.processes, self.log_files
        )
        say("services ready: " + ", ".join(f"{s} {stack.url(s)}" for s in ports) + f" (logs in {self.log_dir})")
        return server_url, where, database_url, stack, auth, env, ports

    def close(self, *, keep_logs: bool) -> None:
        clean_up(
            self.processes,
            self.log_files,
            self.server_url,
            self.created,
            self.started_server,
            self.auth_dir,
            self.log_dir,
            keep_logs=keep_logs,
        )


def clean_up(
    processes: dict[str, subprocess.Popen[bytes]],
    log_files: dict[str, IO[bytes]],
    server_url: str | None,
    created: list[str],
    started_server: devdb.EmbeddedPostgres | None,
    auth_dir: Path,
    log_dir: Path,
    *,
    keep_logs: bool,
) -> None:
    """A run's end, however it ends (signals ignored meanwhile): the services stopped, the databases in `created`
    dropped, the embedded server stopped if the run started it, the signing key removed, the logs unless kept."""
    with signals_ignored():
        stop_services(processes)
        for log in log_files.values():
            log.close()
        for database in created:
            if not server_url:
                break
            try:
                asyncio.run(drop_database(server_url, database))
                say(f"database {database} dropped")
            except Exception as exc:  # report it, keep cleaning up
                say(f"! could not drop database {database}: {exc}")
        if started_server is not None:
            started_server.stop()
            say("embedded PostgreSQL stopped (it was not running before)")
        shutil.rmtree(auth_dir, ignore_errors=True)  # the throw-away signing key
        if keep_logs:
            say(f"service logs kept in {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)


def sizes(text: str) -> list[int]:
    try:
        values = sorted({int(v.replace("_", "")) for v in text.split(",") if v.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a comma-separated list of entry counts: {exc}") from exc
    if not values or values[0] < 0 or values[-1] > 20_000_000:
        raise argparse.ArgumentTypeError("entry counts between 0 and 20,000,000")
    return values


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    """The vouchers, their holders and vendors, the load generator and the vouchers processes' settings (shared with
    bench/ledger_rounds.py)."""
    parser.add_argument("--vouchers", type=bounded(1, 1000), default=64, help="redeemed in turn (default 64)")
    parser.add_argument("--enterprises", type=bounded(1, 1000), default=32, help="holding them (default 32)")
    parser.add_argument("--vendors", type=bounded(1, 100), default=8, help="model vendors (default 8)")
    parser.add_argument("--wrk-threads", type=bounded(1, 16), default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--load-generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="wrk when installed (auto, the default), else a Python generator in a separate process",
    )
    parser.add_argument("--hot-pool-size", type=bounded(1, 200), help="VOUCHERS_HOT_POOL_SIZE (default: the service's)")
    parser.add_argument("--log-level", help="VOUCHERS_LOG_LEVEL (default: the service's, INFO: one access log line)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ledger_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--clients", type=bounded(1, 512), default=32, help="connections (and pgbench clients)")
    parser.add_argument("--seconds", type=bounded(1, 300), default=15, help="per main run and pgbench (default 15)")
    parser.add_argument("--sizes", type=sizes, default=[10_000, 1_000_000], help="ledger sizes (entries)")
    parser.add_argument("--growth-seconds", type=float, default=10.0, help="per ledger size (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="before each main run, not counted (default 2)")
    add_stack_arguments(parser)
    parser.add_argument(
        "--seal-timeout", type=float, default=240.0, help="wait for the sealer after a fill (default 240 s)"
    )
    parser.add_argument("--skip-pgbench", action="store_true", help="no baseline (ratios shown as nan)")
    parser.add_argument("--skip-pooler", action="store_true", help="no run through PgBouncer")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="budget for the whole run (default 900)")
    parser.add_argument("--seed", type=int, default=20261127, help="random seed of the data (default 20261127)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' log files")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the one-process run, one more with py-spy sampling the vouchers process: where its CPU goes",
    )
    parser.add_argument(
        "--group-commit",
        choices=("on", "off", "both"),
        default="on",
        help="VOUCHERS_GROUP_COMMIT for the runs; both: the one-process run again with it off (default on)",
    )
    parser.add_argument(
        "--two-process-lanes",
        type=int,
        default=1,
        help="VOUCHERS_GROUP_COMMIT_IN_FLIGHT of each process in the two-process run (default 1, the service's own "
        "default, as README advises on 2 cores; the one-process runs keep the service's default)",
    )
    args = parser.parse_args(argv)
    check_load_args(parser, args)
    return args


def check_load_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--load-generator auto becomes wrk when it is installed, else python; wrk when it is not is an error, and so
    is --vouchers below --enterprises."""
    if args.load_generator == "auto":
        args.load_generator = "wrk" if shutil.which("wrk") else "python"
    elif args.load_generator == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk), or use --load-generator python")
    if args.vouchers < args.enterprises:
        parser.error("--vouchers must be at least --enterprises")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    remaining = Deadline(args.max_seconds).check
    space = Workspace.new("bench_ledger")
    name, pgbench_name, created, processes = space.name, space.pgbench_name, space.created, space.processes
    log_files, log_dir = space.log_files, space.log_dir
    results = Results()
    ok = False
    try:
        server_url, where, database_url, stack, auth, env, ports = space.open(args, results)
        second_port = free_port()

        say(
            f"obtaining {args.vouchers} M3 vouchers (+1 filler) through registry → eligibility → vouchers "
            f"({args.enterprises} enterprises, {args.vendors} model vendors)"
        )
        asyncio.run(create_vouchers(stack, stack.url("vouchers"), args, results.setup, auth))
        say(
            f"  {len(results.setup.vouchers) + 1} vouchers, {results.setup.requests} requests in "
            f"{results.setup.seconds:.1f} s"
        )

        meter = CpuMeter({processes["vouchers"].pid}, {name, pgbench_name})
        if not args.skip_pgbench:
            remaining("pgbench")
            asyncio.run(fresh_database(server_url, pgbench_name))
            created.append(pgbench_name)
            say(f"pgbench: initialising {pgbench_name} (scale {PGBENCH_SCALE})")
            results.pgbench_init_seconds = pgbench_init(server_url, pgbench_name)
            say(f"  initialised in {results.pgbench_init_seconds:.1f} s")
            for clients in dict.fromkeys((args.clients, DESIGN_NOTES_PGBENCH_CLIENTS)):
                remaining("pgbench")
                asyncio.run(fetchval(server_url, "CHECKPOINT"))
                result = Pgbench(clients, args.seconds)
                run_pgbench(server_url, pgbench_name, result, meter)
                results.pgbench.append(result)
                say("  " + describe_pgbench(result))
            asyncio.run(drop_database(server_url, pgbench_name))
            created.remove(pgbench_name)

        loader = Loader(database_url, results.setup, meter, args.load_generator, args.wrk_threads, log_dir)
        filler = results.setup.filler
        assert filler is not None
        year = local_year()
        first, *later = args.sizes

        def growth_step(size: int) -> None:
            remaining(f"the ledger at {size:,} entries")
            # warm the process up first: the fill then tops the ledger up to exactly `size`
            results.runs.append(
                loader.run(f"warm-up ({size:,})", [ports["vouchers"]], args.clients, args.warmup, measured=False)
            )
            fill = Fill(size)
            say(f"ledger growth: filling to {size:,} entries with SQL")
            asyncio.run(fill_ledger(database_url, filler, fill, year))
            if fill.added:
                say("  waiting for the vouchers sealer to seal the new entries")
                fill.sealing = wait_sealed(database_url, timeout=args.seal_timeout)
                say(f"  {fill.sealing.describe()}")
            fill.maintenance_seconds = asyncio.run(settle(database_url))
            run = loader.run(f"{size:,} entries", [ports["vouchers"]], args.clients, args.growth_seconds)
            results.growth.append(Growth(fill, run))
            say(f"  at {run.entries_before:,} entries: " + describe(run))

        growth_step(first)

        remaining("the main runs")
        say(f"load: {args.load_generator}, {args.clients} connections, one vouchers process")
        asyncio.run(settle(database_url))
        results.runs.append(loader.run("warm-up", [ports["vouchers"]], args.clients, args.warmup, measured=False))
        results.runs.append(loader.run("1 vouchers process", [ports["vouchers"]], args.clients, args.seconds))
        say("  " + describe(results.runs[-1]))
        if args.profile:
            profile_run(loader, processes["vouchers"].pid, ports["vouchers"], args, results, log_dir)
        measuring = Measuring(args, database_url, processes, log_files, log_dir, meter, loader, results)
        if args.group_commit == "both":
            remaining("the one-process run without group commit")
            say("load: one vouchers process with group commit off (VOUCHERS_GROUP_COMMIT=false)")
            alone = Stack(database_url, HOST, {**ports, "vouchers": second_port})
            fresh_vouchers_run(
                "1 vouchers process, group commit off",
                {"vouchers-alone": (alone, {**env, "VOUCHERS_GROUP_COMMIT": "false"})},
                measuring,
            )

        remaining("the two-process run")
        # two fresh processes with the lanes of a two-process deployment (README: on 2 cores, one lane each);
        # the first process stays up, idle but for its sealer (its CPU is counted with theirs)
        pair = {"vouchers-2a": second_port, "vouchers-2b": free_port()}
        lanes_env = {**env, "VOUCHERS_GROUP_COMMIT_IN_FLIGHT": str(args.two_process_lanes)}
        say(
            f"load: {args.clients} connections split between two vouchers processes (ports "
            f"{', '.join(map(str, pair.values()))}; VOUCHERS_GROUP_COMMIT_IN_FLIGHT={args.two_process_lanes})"
        )
        fresh_vouchers_run(
            "2 vouchers processes",
            {name: (Stack(database_url, HOST, {**ports, "vouchers": port}), lanes_env) for name, port in pair.items()},
            measuring,
        )

        if args.skip_pooler:
            say("no run through PgBouncer (--skip-pooler)")
        elif not Path(PGBOUNCER).exists():
            say("! pgbouncer is not installed (make pooler-tool): no run through PgBouncer")
        else:
            remaining("the run through PgBouncer")
            pooled_run(server_url, ports, env, measuring)

        say("checking the ledger's invariants")
        check_invariants(database_url, results)
        for size in later:
            growth_step(size)
        if later:
            check_invariants(database_url, results)

        end_checks(database_url, processes, log_files, log_dir, results)

        if results.growth:
            say("\nledger growth:")
            for g in results.growth:
                say(
                    f"  {g.run.entries_before:>10,} entries ({mib(g.run.ledger_bytes)}): {g.run.rate:,.0f}/s, "
                    f"p50 {ms(g.run.p50)}, "
                    f"p99 {ms(g.run.p99)}, in the service {server_percentiles(g.run)}"
                )
        ok = report(markdown(args, argv, results, where), results.problems)
        return 0 if ok else 1
    except RUN_ERRORS as exc:
        say(f"error: {type(exc).__name__}: {exc}")
        return 1
    finally:
        space.close(keep_logs=args.keep_logs or not ok)


def pooled_run(server_url: str, ports: dict[str, int], env: dict[str, str], on: Measuring) -> None:
    """The one-process run again, the vouchers process reaching PostgreSQL through PgBouncer in
    transaction pooling (issue #15: its statement cache off; docs/operations.md, "PgBouncer").
    PgBouncer's own CPU is counted as "other"."""
    bouncer = PgBouncer(server_url, "transaction", pool_size=max(on.args.hot_pool_size or 10, 10) + 10)
    bouncer.start(probe_database=on.database_url.rsplit("/", 1)[1])
    try:
        say(f"load: {on.args.clients} connections, one vouchers process through PgBouncer (transaction pooling)")
        pooled = Stack(bouncer.url(on.database_url), HOST, {**ports, "vouchers": free_port()})
        fresh_vouchers_run(
            "1 vouchers process through PgBouncer (transaction pooling)",
            {"vouchers-pooled": (pooled, env | {"VOUCHERS_DB_POOLER": "transaction"})},
            on,
        )
    finally:
        bouncer.stop()


@dataclass
class Measuring:
    """What a run on processes of its own measures with: the benchmark's arguments, database, process and log
    registries, CPU meter, load generator and results."""

    args: argparse.Namespace
    database_url: str
    processes: dict[str, subprocess.Popen[bytes]]
    log_files: dict[str, IO[bytes]]
    log_dir: Path
    meter: CpuMeter
    loader: Loader
    results: Results


def fresh_vouchers_run(label: str, fresh: dict[str, tuple[Stack, dict[str, str]]], on: Measuring) -> None:
    """`label`'s load on vouchers processes started for it (name → its stack and environment; the load split
    between them), after a warm-up; their CPU is metered and they are stopped after."""
    targets = start_vouchers(fresh, on)
    asyncio.run(settle(on.database_url))
    on.results.runs.append(
        on.loader.run(f"warm-up ({label})", targets, on.args.clients, on.args.warmup, measured=False)
    )
    on.results.runs.append(on.loader.run(label, targets, on.args.clients, on.args.seconds))
    say("  " + describe(on.results.runs[-1]))
    for name in fresh:
        on.meter.vouchers.discard(on.processes[name].pid)
        stop_services({name: on.processes.pop(name)})


def start_vouchers(fresh: dict[str, tuple[Stack, dict[str, str]]], on: Measuring) -> list[int]:
    """Vouchers processes (name → its stack and environment) started and ready, each logging to <log dir>/<name>.log
    and registered in `on`'s processes; their CPU metered as the vouchers'. Their ports, in `fresh`'s order."""
    for name, (stack, extra_env) in fresh.items():
        on.log_files[name] = (on.log_dir / f"{name}.log").open("wb")
        on.processes[name] = start_service(stack, "vouchers", log=on.log_files[name], extra_env=extra_env)
        wait_ready(stack, {"vouchers": on.processes[name]}, timeout=60)
        on.meter.vouchers.add(on.processes[name].pid)
    return [stack.ports["vouchers"] for stack, _ in fresh.values()]


def profile_run(loader: Loader, pid: int, port: int, args: argparse.Namespace, results: Results, log_dir: Path) -> None:
    """The one-process load again with py-spy sampling the vouchers process (bench/profile.py): where its CPU goes."""
    if not profile.available():
        say("! py-spy is not installed (pip install py-spy): no profile")
        return
    samples = log_dir / "vouchers.pyspy.txt"
    sampler = profile.record(pid, args.seconds, samples)
    run = loader.run("1 vouchers process (profiled)", [port], args.clients, args.seconds, measured=False)
    sampler.wait(timeout=args.seconds + 60)
    say("  profiled: " + describe(run))
    results.profile = profile.summary(samples, run.cpu_us("vouchers")) if samples.exists() else "(py-spy wrote nothing)"
    say(results.profile)


def local_year() -> int:
    from shared.instants import local_today

    return local_today(datetime.now(UTC)).year


def check_invariants(database_url: str, results: Results) -> None:
    from services.vouchers.invariants import check_database

    entries = asyncio.run(entries_count(database_url))
    started = time.perf_counter()
    violations = asyncio.run(check_database(database_url))
    seconds = time.perf_counter() - started
    results.invariant_checks.append((entries, seconds, len(violations)))
    say(f"  invariants at {entries:,} entries: {len(violations)} violations ({seconds:.1f} s)")
    for violation in violations[:10]:
        say(f"  ! {violation}")
    results.problems += [f"invariant {v}" for v in violations[:20]]


def end_checks(
    database_url: str,
    processes: dict[str, subprocess.Popen[bytes]],
    log_files: dict[str, IO[bytes]],
    log_dir: Path,
    results: Results,
) -> None:
    """After the last run: the services stopped and their logs closed; every run's answers and counts checked, and
    the access logs against the redemption rows (into results.problems); the logs' errors shown."""
    stop_services(processes)
    for log in log_files.values():
        log.close()
    attribute_logs(log_dir, database_url, results)
    for run in results.all_runs:
        results.problems += run.problems()
    for service in (*PROCESS_LOGS, "registry", "eligibility"):
        for problem in log_problems(log_dir / f"{service}.log"):
            say(f"  {service} log ! {problem}")


def attribute_logs(log_dir: Path, database_url: str, results: Results) -> None:
    """The access logs' redemption lines: server-side durations per run; every answer 201; as many
    201 answers as redemption rows the load wrote (the filler's are not answers)."""
    entries = [e for name in PROCESS_LOGS for e in redemption_log(log_dir / f"{name}.log")]
    for entry in entries:
        if entry.status == 201:
            results.access_201 += 1
        else:
            results.access_other[entry.status] += 1
    for run in results.all_runs:
        if run.started_at and run.ended_at:
            run.server_ms = [e.duration_ms for e in entries if run.started_at <= e.at <= run.ended_at]
    results.load_redemptions = int(
        asyncio.run(
            fetchval(database_url, "SELECT count(*) FROM vouchers.redemptions WHERE invoice_number LIKE 'FP-%'")
        )
    )
    if not entries:
        return  # no access log (VOUCHERS_LOG_LEVEL above INFO): the idempotency records still count
    if results.access_other:
        results.problems.append(f"the access logs show answers other than 201: {dict(results.access_other)}")
    if results.access_201 != results.load_redemptions:
        results.problems.append(
            f"the access logs show {results.access_201:,} answers 201 but the load wrote "
            f"{results.load_redemptions:,} redemptions"
        )


if __name__ == "__main__":
    raise SystemExit(main())
