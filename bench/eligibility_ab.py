"""Two versions of the submission path compared at the same moments: two stacks up at once, alternating bursts.

    .venv/bin/python -m bench.eligibility_ab TREE_A[:NAME=VALUE,...] TREE_B[:NAME=VALUE,...] [--rounds 4] [--burst 1000]

TREE is a checkout of this repository (`git worktree add /tmp/old <commit>` for an older one; `.` for this one);
what follows a colon is set in that stack's eligibility process's environment (`.:ELIGIBILITY_FACTS_IN_FLIGHT=1`).

This machine's speed moves by ±20% within minutes, so two benchmark runs one after the other compare two moments
as much as two versions. Here each tree gets its own registry and eligibility process (started from that tree,
with its own migrations) and its own database on the same PostgreSQL server (the embedded one, or
`DATABASE_URL`'s), both registries are seeded with the same data, and the submissions go in bursts of `--burst`
at 16 in flight, alternating A B, B A, A B, … over `--rounds`, after `--warmup` submissions per side that are
not counted. For each burst and in total it prints the rate,
the p99 latency and each process's CPU per submission (from /proc: the registry, the eligibility process and its
workers, the PostgreSQL backends of that stack's database). Both databases grow alike, so a burst compares like
with like. Issue #16, docs/benchmarks.md.

The stack built first measures slower: the same tree on both sides ran 8–9% faster on the side built second,
in both orders, with PostgreSQL's CPU per submission 14–22% higher on the side built first (2026-12-07; why is not
known). Compare two trees in both orders (swap them, or pass `--built-first b` to build side b's stack first) and
read the difference in both runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from bench import eligibility_bench, profile
from bench.common import (
    ONE_CLIENT_UNLIMITED,
    analyze,
    bench_auth,
    bench_headers,
    drop_database,
    free_port,
    fresh_database,
    keep_local,
    percentile,
    post_all,
    postgres_server,
    say,
)
from devtools.devrun import Stack, stop_services, wait_ready
from shared.auth import OFFICER, PLATFORM
from shared.http_protocol import DEFAULT_HTTP_PROTOCOL

SERVICES = ("registry", "eligibility")
_MIGRATE = "import sys; from shared.migrations import upgrade_all; upgrade_all(sys.argv[1])"


@dataclass
class Side:
    """One tree's stack and what it has measured."""

    tag: str
    tree: Path
    environment: dict[str, str]
    database: str = ""
    url: str = ""
    stack: Stack | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    bodies: list[bytes] = field(default_factory=list)
    answered: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("registry", "eligibility", "postgres"), 0.0))


def parse_side(tag: str, spec: str) -> Side:
    tree, _, settings = spec.partition(":")
    environment = dict(item.split("=", 1) for item in settings.split(",") if item)
    return Side(tag, Path(tree).resolve(), environment)


def cpu_seconds(side: Side) -> dict[str, float]:
    """CPU seconds so far of the side's registry, its eligibility process (and workers), its database's backends."""
    registry, eligibility = side.processes["registry"].pid, side.processes["eligibility"].pid
    backends = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = entry.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if command.startswith("postgres:") and f" {side.database} " in command:
            backends.append(int(entry.parent.name))
    return {
        "registry": profile.cpu_seconds(registry),
        "eligibility": profile.tree_cpu_seconds(eligibility),  # with uvicorn's workers (WEB_CONCURRENCY)
        "postgres": sum(profile.cpu_seconds(pid) for pid in backends),
    }


def start(side: Side, server_url: str, auth_dir: Path, logs: list[IO[bytes]]) -> None:
    side.database = f"bench_ab_{side.tag}_{os.getpid()}"
    side.url = asyncio.run(fresh_database(server_url, side.database))
    subprocess.run([sys.executable, "-c", _MIGRATE, side.url], cwd=side.tree, check=True, capture_output=True)
    side.stack = Stack(side.url, "127.0.0.1", {service: free_port() for service in SERVICES})
    auth = bench_auth(side.url, side.stack.url("registry"), auth_dir)
    for service in SERVICES:
        environment = {**side.stack.service_env(), **auth, **(side.environment if service == "eligibility" else {})}
        command = [sys.executable, "-m", "uvicorn", f"services.{service}.app:create_app", "--factory"]
        command += ["--host", "127.0.0.1", "--port", str(side.stack.ports[service]), "--no-access-log"]
        command += ["--http", environment.get("HTTP_PROTOCOL") or DEFAULT_HTTP_PROTOCOL]
        log = (auth_dir.parent / f"{side.tag}-{service}.log").open("wb")
        logs.append(log)
        side.processes[service] = subprocess.Popen(command, cwd=side.tree, env=environment, stdout=log, stderr=log)
    wait_ready(side.stack, side.processes, timeout=60)


async def seed(side: Side, auth_dir: Path, count: int) -> None:
    """The same organisations, revenues and recognitions on every side (one random seed), the registry's tables
    analysed (`bench.common.analyze`), then the bodies."""
    assert side.stack is not None
    rng = random.Random(20261127)
    seeding = eligibility_bench.Seeding()
    headers = bench_headers(auth_dir, PLATFORM)
    async with httpx.AsyncClient(
        base_url=side.stack.url("registry"), timeout=120, trust_env=False, headers=headers
    ) as client:
        codes = await eligibility_bench.seed_registry(client, rng, 2_000, seeding)
    await analyze(side.url, "registry")
    payloads = eligibility_bench.application_payloads(rng, codes, count, seeding.ids)
    side.bodies = [json.dumps(payload).encode() for payload in payloads]


def burst(side: Side, bodies: list[bytes], headers: dict[str, str]) -> str:
    assert side.stack is not None
    before = cpu_seconds(side)
    sent = post_all(side.stack.ports["eligibility"], "/v1/applications", headers, bodies, 16)
    after = cpu_seconds(side)
    answered = sum(1 for status, _, _ in sent.answers if status == 201)
    side.answered += answered
    side.seconds += sent.seconds
    per = {name: (after[name] - before[name]) / max(answered, 1) * 1e3 for name in before}
    for name in before:
        side.cpu[name] += after[name] - before[name]
    p99 = percentile([seconds for _, seconds, _ in sent.answers], 99) * 1e3
    return (
        f"{answered / sent.seconds:7.1f}/s  p99 {p99:6.1f} ms  CPU per submission: registry {per['registry']:.2f}, "
        f"eligibility {per['eligibility']:.2f}, postgres {per['postgres']:.2f} ms  ({answered} × 201)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.eligibility_ab", description=__doc__)
    parser.add_argument("a", help="TREE[:NAME=VALUE,...]")
    parser.add_argument("b", help="TREE[:NAME=VALUE,...]")
    parser.add_argument("--rounds", type=int, default=4, help="bursts per side (default 4)")
    parser.add_argument("--burst", type=int, default=1_000, help="submissions per burst (default 1000)")
    parser.add_argument("--warmup", type=int, default=200, help="submissions per side first, not counted (200)")
    parser.add_argument(
        "--built-first",
        choices=("a", "b"),
        default="a",
        help="whose stack is started and seeded first (a): the one built first measured slower (module doc)",
    )
    args = parser.parse_args(argv)
    sides = [parse_side("a", args.a), parse_side("b", args.b)]
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = keep_local(os.environ.get(name, ""))
    os.environ.update(ONE_CLIENT_UNLIMITED)
    auth_dir = Path(tempfile.mkdtemp(prefix="bench_ab_")) / "auth"
    os.environ["BENCH_AUTH_DIR"] = str(auth_dir)
    server_url, started, where = postgres_server()
    logs: list[IO[bytes]] = []
    try:
        for side in sides if args.built_first == "a" else reversed(sides):
            say(f"side {side.tag}: {side.tree} {side.environment or ''} (PostgreSQL: {where})")
            start(side, server_url, auth_dir, logs)
            asyncio.run(seed(side, auth_dir, args.warmup + args.rounds * args.burst))
        headers = bench_headers(auth_dir, OFFICER)
        for side in sides:  # connections opened, caches and plans warm: the first burst measured them too
            assert side.stack is not None
            post_all(side.stack.ports["eligibility"], "/v1/applications", headers, side.bodies[: args.warmup], 16)
        for number in range(args.rounds):
            for side in sides if number % 2 == 0 else reversed(sides):
                first = args.warmup + number * args.burst
                bodies = side.bodies[first : first + args.burst]
                say(f"round {number} {side.tag}: {burst(side, bodies, headers)}")
        for side in sides:
            per = {name: seconds / max(side.answered, 1) * 1e3 for name, seconds in side.cpu.items()}
            say(
                f"side {side.tag} ({side.tree} {side.environment or ''}): {side.answered / side.seconds:.1f} "
                f"submissions/s; CPU per submission: registry {per['registry']:.2f}, eligibility "
                f"{per['eligibility']:.2f}, postgres {per['postgres']:.2f} ms"
            )
    finally:
        for side in sides:
            stop_services(side.processes)
            if side.database:
                asyncio.run(drop_database(server_url, side.database))
        for log in logs:
            log.close()
        if started is not None:
            started.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
