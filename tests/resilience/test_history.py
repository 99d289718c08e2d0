"""Issue #7: a history of random concurrent operations under faults, checked afterwards (in the style of Jepsen).

Two processes of each service (registry, eligibility, vouchers) on a PostgreSQL of their own
(tests/resilience/cluster.py), authentication on. Setup through the public APIs; then clients
run a few thousand random operations (tests/resilience/workload.py) while the fault schedule
(tests/resilience/faults.py) stops the eligibility service during issuance, kills a vouchers
process with SIGKILL and restarts PostgreSQL. Every resolved vendor call is then replayed with
its key. The checker (tests/resilience/checker.py) reads the history and the final ledger and
lists violations: there must be none.

    RESILIENCE_SEED=<n>          replay a run (the seed is printed; default: random)
    RESILIENCE_OPERATIONS=3000   operations, paced evenly over
    RESILIENCE_DURATION=80       seconds (the faults are placed within it)
    RESILIENCE_CLIENTS=6         clients per vouchers process
    RESILIENCE_ENTERPRISES=4     M3 enterprises (each with claims beyond the annual ceiling)

Not part of `make test` (pyproject: --ignore); `make test-resilience` runs it.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.auth import AUDITOR
from tests.auth import admin, auth
from tests.resilience.checker import Expectations, Report, check
from tests.resilience.cluster import Cluster
from tests.resilience.faults import Injector, plan
from tests.resilience.history import SUMMARIES, History
from tests.resilience.snapshot import Snapshot, read_ledger, reconcile
from tests.resilience.workload import Workload, prepare

SEED_ENV = "RESILIENCE_SEED"
OPERATIONS = int(os.environ.get("RESILIENCE_OPERATIONS", "3000"))
DURATION = float(os.environ.get("RESILIENCE_DURATION", "80"))
CLIENTS = int(os.environ.get("RESILIENCE_CLIENTS", "6"))
ENTERPRISES = int(os.environ.get("RESILIENCE_ENTERPRISES", "4"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "resilience"
SERVICE_ENV = {
    "VOUCHERS_RATE_LIMIT_BURST": "1000000",  # the run is not about rate limits
    "VOUCHERS_RATE_LIMIT_MAX_IN_FLIGHT": "0",
    "VOUCHERS_RATE_LIMIT_WRITE_MAX_IN_FLIGHT": "0",
    "VOUCHERS_PEER_TIMEOUT_SECONDS": "1.0",
    "ELIGIBILITY_PEER_TIMEOUT_SECONDS": "1.0",
    "REGISTRY_ACCESS_LOG": "errors_and_slow",
    "ELIGIBILITY_ACCESS_LOG": "errors_and_slow",
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # not under pytest's basetemp: another pytest session on the machine may make it private to root again,
    # and the server runs as an unprivileged user when we are root (devtools/devdb.py)
    workdir = Path(tempfile.mkdtemp(prefix="longgang-resilience-"))
    cluster = Cluster(workdir, SERVICE_ENV)
    failed = True
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(1) as pool:  # asyncio.run inside: not on the test's event loop
            pool.submit(cluster.start_database).result()
        cluster.start_all()
        cluster.started_in = time.monotonic() - started
        yield cluster
        failed = False
    finally:
        cluster.stop()
        if failed or cluster.failed:
            print(f"logs and data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


async def parameter(eligibility: str, name: str, day: date) -> int:
    async with httpx.AsyncClient(base_url=eligibility, timeout=30, headers=admin()) as client:
        response = await client.get(f"/v1/policy/parameters/{name}")
    assert response.status_code == 200, response.text
    for value in response.json()["history"]:
        start, end = value["effective_from"], value["effective_to"]
        if date.fromisoformat(start) <= day and (end is None or day <= date.fromisoformat(end)):
            return int(value["value"])
    raise AssertionError(f"{name} has no value on {day}")


def operations_table(history: History) -> list[str]:
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    codes: dict[str, Counter[str]] = defaultdict(Counter)
    for op in history.ops:
        kind = "replay" if op.replay_of is not None else op.kind
        rows[kind][op.outcome] += 1
        rows[kind]["attempts"] += len(op.attempts)
        if op.outcome == "refused":
            codes[kind][op.code or "?"] += 1
        for attempt in op.attempts:
            if attempt.outcome == "indeterminate":
                what = f"{attempt.status}/{attempt.code}" if attempt.status else str(attempt.code)
                codes[kind]["~" + what] += 1
    lines = [
        f"  {'kind':<8} {'ok':>6} {'refused':>8} {'indet.':>7} {'attempts':>9}  refusals (and ~indeterminate attempts)"
    ]
    for kind in ("claim", "redeem", "hold", "capture", "release", "void", "read", "replay"):
        if kind in rows:
            row = rows[kind]
            detail = ", ".join(f"{code} {n}" for code, n in codes[kind].most_common())
            counts = f"{row['ok']:>6} {row['refused']:>8} {row['indeterminate']:>7} {row['attempts']:>9}"
            lines.append(f"  {kind:<8} {counts}  {detail}")
    return lines


def summarise(
    seed: int,
    history: History,
    snapshot: Snapshot,
    report: Report,
    timings: dict[str, float],
    setup: dict[str, Any],
) -> str:
    originals = [op for op in history.ops if op.replay_of is None]
    answered = Counter(a.process for op in history.ops for a in op.attempts if a.status is not None)
    entries = Counter(e["kind"] for e in snapshot.entries)
    lines = [
        f"resilience run: seed {seed} ({SEED_ENV}={seed} to replay); {len(originals)} operations "
        f"({OPERATIONS} planned over {DURATION:.0f} s), {CLIENTS} clients on each of 2 vouchers processes",
        f"setup: {setup['m3']} M3 decisions of {ENTERPRISES} enterprises (claims {setup['claims_yuan']:,} yuan "
        f"against a ceiling of {setup['ceiling_yuan']:,} each; {setup['reserve']} held back for the outage), "
        f"{setup['m1']} M1 decisions",
        "faults:",
        *(f"  [{moment:6.1f} s] {text}" for moment, text in history.faults),
        "operations:",
        *operations_table(history),
        "answers by process: " + ", ".join(f"{name} {n}" for name, n in sorted(answered.items())),
        f"ledger: {len(snapshot.vouchers)} vouchers, {len(snapshot.redemptions)} redemptions/holds, "
        f"{len(snapshot.entries)} entries ({', '.join(f'{k} {n}' for k, n in sorted(entries.items()))}), "
        f"{len(snapshot.outbox)} events",
        f"hash chain: {'verifies' if snapshot.chain and snapshot.chain.get('ok') else 'BROKEN'} "
        f"({(snapshot.chain or {}).get('entries_verified')} entries); projections: "
        + (
            "reconcile with the ledger"
            if snapshot.reconciliation and snapshot.reconciliation.get("ok")
            else f"DIFFER {snapshot.reconciliation}"
        ),
        "checked: "
        + ", ".join(f"{k} {n}" for k, n in sorted(report.counts.items()) if not k.startswith(("op ", "entry "))),
        f"violations: {len(report.violations)}"
        + ("" if report.ok else " (" + ", ".join(f"{k} {n}" for k, n in report.by_check().items()) + ")"),
        *(f"  {v}" for v in report.violations[:40]),
        "timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()),
    ]
    return "\n".join(lines)


async def test_a_history_under_faults_keeps_every_promise(cluster: Cluster) -> None:
    cluster.failed = True  # until the end: keep the logs
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(10**9))
    print(f"\nresilience run: seed {seed} ({SEED_ENV}={seed} to replay)", flush=True)
    rng = random.Random(seed)
    timings: dict[str, float] = {"start PostgreSQL and 6 processes": cluster.started_in}
    started = time.monotonic()

    today = date.today()
    eligibility = cluster.url("eligibility-0")
    ceiling = await parameter(eligibility, "M3.annual_claim_ceiling_fen", today)
    redemption_ceiling = await parameter(eligibility, "M3.annual_redemption_ceiling_fen", today)
    decisions, stranger = await prepare(
        rng, cluster.urls("registry"), cluster.urls("eligibility"), enterprises=ENTERPRISES, claim_ceiling_fen=ceiling
    )
    m3 = [d for d in decisions if d.measure == "M3"]
    setup = {
        "m3": len(m3),
        "m1": len(decisions) - len(m3),
        "reserve": sum(d.reserve for d in decisions),
        "claims_yuan": sum(d.amount_fen for d in m3) // ENTERPRISES // 100,
        "ceiling_yuan": ceiling // 100,
    }
    timings["setup"] = time.monotonic() - started

    history = History(seed)
    workload = Workload(seed, history, decisions, cluster.urls("vouchers"), OPERATIONS, DURATION, CLIENTS, stranger)
    injector = Injector(cluster, workload, plan(random.Random(seed ^ 0x5EED), DURATION))
    print("faults:", flush=True)
    mark = time.monotonic()
    await workload.run(injector.run)
    timings["run"] = time.monotonic() - mark

    mark = time.monotonic()
    assert await asyncio.to_thread(cluster.all_ready), "a process did not come back\n" + cluster.log_tail()
    await workload.replay()
    timings["replay"] = time.monotonic() - mark

    mark = time.monotonic()
    snapshot = await read_ledger(cluster.database_url)
    last_entry = max((e["id"] for e in snapshot.entries), default=0)
    snapshot.reconciliation = await reconcile(cluster.url("vouchers-1"), auth(AUDITOR, name="auditor"), last_entry)
    expect = Expectations(
        claim_ceiling_fen=ceiling,
        redemption_ceiling_fen=redemption_ceiling,
        decisions={d.id: d.facts() for d in decisions},
        eligibility_outages=tuple(injector.outages),
    )
    report = check(history, snapshot, expect)
    timings["check"] = time.monotonic() - mark
    timings["total"] = time.monotonic() - started + cluster.started_in

    summary = summarise(seed, history, snapshot, report, timings, setup)
    print(summary, flush=True)
    SUMMARIES.append(summary)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"seed-{seed}.txt").write_text(summary + "\n", encoding="utf-8")

    assert report.ok, f"{len(report.violations)} violations (seed {seed}):\n{summary}\n{cluster.log_tail()}"
    # the run did what it claims to: every fault, contention at the ceiling, answers lost and retried
    assert injector.injected == ["eligibility_outage", "kill_vouchers", "restart_postgres"], injector.injected
    assert report.counts["claims while eligibility was down"] >= 1, "no claim met the eligibility outage"
    assert report.counts["claims refused at the ceiling"] >= 1, "the M3 claim ceiling was never contended"
    originals = [op for op in history.ops if op.replay_of is None]
    assert len(originals) >= OPERATIONS * 0.9, len(originals)
    assert any(len(op.attempts) > 1 for op in originals), "no operation was ever retried"
    assert len(snapshot.redemptions) >= OPERATIONS // 10, len(snapshot.redemptions)
    cluster.failed = False
