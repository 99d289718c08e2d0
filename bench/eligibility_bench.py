"""Eligibility benchmark: submissions over HTTP, simulations, and the pure engine as the baseline.

    .venv/bin/python -m bench.eligibility_bench [--applications 10000] [--concurrency 16]
    make bench-eligibility

One run, on this machine, all on 127.0.0.1:

1. a fresh database `bench_eligibility_<pid>` on DATABASE_URL's server, or on the embedded
   PostgreSQL 18 when DATABASE_URL is unset; migrated; dropped at the end, even on failure;
2. the registry and the eligibility service as real uvicorn processes on free ports (their
   logs go to files in a temporary directory, not to this output);
3. organisations and their 2024 and 2025 revenues, seeded through the registry's bulk import,
   then the registry's tables analysed (as autovacuum would have before applications arrive);
4. N applications (M6, M9, M11, M13 in turn) submitted over HTTP with bounded concurrency,
   after --warmup more that are not measured (new connections, their first plans):
   submissions per second, latency p50 / p99, outcomes, each process's CPU per submission;
   with --profile, then --profile-applications more with py-spy sampling both services: where
   their CPU goes (a sampler costs CPU of its own, so it never runs during the measured ones);
5. every stored application re-evaluated through POST /v1/simulations, one request per
   measure and benefit year: applications re-evaluated per second;
6. the pure rules engine, in this process, on stored applications' evidence and facts (no
   I/O): evaluations per second, the baseline both rates are compared with.

It ends with a Markdown block to paste into docs/benchmarks.md. Bounded: N applications
and --max-seconds for the whole run. Exit status 1 if any request did not answer as
expected (201 for submissions, 200 for simulations) or the time budget ran out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

from bench import profile
from bench.common import (
    HOST,
    ONE_CLIENT_UNLIMITED,
    analyze,
    bench_auth,
    bench_headers,
    bounded,
    command_line,
    credit_codes,
    drop_database,
    free_port,
    fresh_database,
    keep_local,
    machine,
    percentile,
    post_all,
    postgres_server,
    say,
    signals_ignored,
)
from devtools import devdb
from devtools.devrun import Stack, start_service, stop_services, wait_ready
from shared.auth import OFFICER, PLATFORM
from shared.migrations import upgrade_all

SERVICES = ("registry", "eligibility")
AS_OF = "2026-03-01"
YUAN = 100  # fen
MEASURES = ("M6", "M9", "M11", "M13")
BENEFIT_YEAR = {"M6": 2026, "M9": 2025, "M11": 2025, "M13": 2026}
OVERRIDES: dict[str, dict[str, str]] = {
    "M6": {"M6.ratio": "0.40"},
    "M9": {"M9.growth_award_ratio": "0.02"},
    "M11": {"M11.rent_ratio": "0.40"},
    "M13": {"M13.ratio": "0.40"},
}
OUTCOMES = ("eligible", "needs_review", "ineligible")
REPEATS = "repeat applications (an organisation applying again for the same measure and benefit year)"
SAMPLES_PER_MEASURE = 50  # stored applications per measure the pure engine loops over


# --- data ------------------------------------------------------------------------------------


def organisation_rows(codes: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "credit_code": code,
            "name": f"深圳龙岗基准测试科技有限公司{n}",
            "kind": "enterprise",
            "registered_district": "440307",
            "registered_on": "2021-01-04",
            "is_software_internet": True,
            "four_above_category": "above_scale_industrial",  # M6 (industrial) and M11 (above scale)
            "owns_district_industrial_housing": False,
        }
        for n, code in enumerate(codes, start=1)
    ]


def revenue_rows(rng: random.Random, codes: list[str]) -> list[dict[str, Any]]:
    """2024 between 2 and 150 million yuan; 2025 between 80% and 250% of it (M9 growth, M11 threshold)."""
    rows: list[dict[str, Any]] = []
    for code in codes:
        revenue_2024 = rng.randint(2_000_000, 150_000_000) * YUAN
        revenue_2025 = revenue_2024 * rng.randint(80, 250) // 100
        rows.append({"credit_code": code, "year": 2024, "revenue_fen": revenue_2024})
        rows.append({"credit_code": code, "year": 2025, "revenue_fen": revenue_2025})
    return rows


def recognition_rows(code: str, rng: random.Random) -> list[dict[str, Any]]:
    """What M1/M9/M11 (an AI enterprise), M6 (the city's diagnosis) and M13 (an event it organised) read."""
    event = {
        "kind": "major_event",
        "name": f"龙岗人工智能大会 {code[-6:]}",
        "event_type": "conference",
        "held_on": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "venue": "龙岗国际会展中心",
        "district": "440307",
        "organisers": [code],
        "influence": rng.choices(("international", "national", "regional"), weights=(45, 45, 10))[0],
    }
    details = [
        {"kind": "ai_enterprise", "list": "龙岗区人工智能企业白名单", "authority": "龙岗区工业和信息化局"},
        {
            "kind": "digital_diagnosis",
            "project": "制造业数字化转型咨询诊断",
            "reference": f"深工信诊断〔2024〕{code[-6:]}号",
            "authority": "深圳市工业和信息化局",
        },
        event,
    ]
    return [{"credit_code": code, "recognised_on": "2024-06-01", "details": d} for d in details]


def evidence(measure: str, n: int, rng: random.Random, code: str, ids: dict[tuple[str, str], str]) -> dict[str, Any]:
    if measure == "M6":
        return {
            "measure": "M6",
            "diagnosis_reference": f"深工信诊断〔2024〕{code[-6:]}号",
            "diagnosis_id": ids[(code, "digital_diagnosis")],
            "audited_investment_fen": rng.randint(100_000, 5_000_000) * YUAN,
        }
    if measure == "M9":
        return {"measure": "M9", "year": 2025}
    if measure == "M11":
        area = rng.randint(20_000, 300_000)  # hundredths of a m²: 200.00 – 3,000.00 m²
        months = rng.randint(6, 12)
        rent_per_m2_month = rng.randint(40, 150)  # yuan
        return {
            "measure": "M11",
            "year": 2025,
            "area_m2": f"{area // 100}.{area % 100:02d}",
            "months": months,
            "rent_paid_fen": area * rent_per_m2_month * months,  # area/100 m² × yuan × 100 fen
        }
    return {
        "measure": "M13",
        "event_id": ids[(code, "major_event")],
        "audited_cost_fen": rng.randint(100_000, 2_000_000) * YUAN,
    }


def application_payloads(
    rng: random.Random, codes: list[str], count: int, ids: dict[tuple[str, str], str]
) -> list[dict[str, Any]]:
    """Measures in turn; each organisation applies once per measure before any applies twice."""
    payloads: list[dict[str, Any]] = []
    for i in range(count):
        measure = MEASURES[i % len(MEASURES)]
        code = codes[(i // len(MEASURES)) % len(codes)]
        payloads.append(
            {
                "applicant": code,
                "as_of": AS_OF,
                "as_of_reason": "逾期登记的纸质申请",
                "evidence": evidence(measure, i + 1, rng, code, ids),
            }
        )
    return payloads


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Seeding:
    organisations: int = 0
    revenues: int = 0
    recognitions: int = 0
    seconds: float = 0.0
    #: (credit code, kind) → the registry's id: M6 references its diagnosis, M13 its event
    ids: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass
class Submissions:
    requested: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    amounts_fen: Counter[str] = field(default_factory=Counter)
    #: outcomes of repeat applications (same organisation, measure and benefit year)
    repeat_outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    #: the load generator's own CPU over the submissions
    client_cpu_seconds: float = 0.0

    @property
    def created(self) -> int:
        return self.statuses["201"]

    @property
    def rate(self) -> float:
        return self.created / self.seconds if self.seconds else 0.0


@dataclass
class Simulation:
    measure: str
    year: int
    status: int
    seconds: float
    count: int = 0
    changed: int = 0
    total_before_fen: int = 0
    total_after_fen: int = 0


@dataclass
class Baseline:
    samples: int = 0
    agree: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    with_parsing: int = 0
    with_parsing_seconds: float = 0.0
    digest_seconds: float = 0.0  # one `ParameterSet.digest`, which every evaluation computes

    @property
    def rate(self) -> float:
        return self.evaluations / self.seconds if self.seconds else 0.0

    @property
    def parsing_rate(self) -> float:
        return self.with_parsing / self.with_parsing_seconds if self.with_parsing_seconds else 0.0


@dataclass
class Results:
    seeding: Seeding = field(default_factory=Seeding)
    submissions: Submissions = field(default_factory=Submissions)
    simulations: list[Simulation] = field(default_factory=list)
    baseline: Baseline = field(default_factory=Baseline)
    samples: list[dict[str, Any]] = field(default_factory=list)
    postgres_version: str = ""
    #: the submissions before the measured ones (not counted)
    warmup: Submissions = field(default_factory=Submissions)
    #: the CPU per submission of each process over the measured submissions
    cpu_per_submission: dict[str, float] = field(default_factory=dict)
    #: the whole machine over the measured submissions: cores busy, and the share of its time stolen by the hypervisor
    machine_busy_cores: float = 0.0
    machine_steal: float = 0.0
    #: with --profile: the further submissions sampled by py-spy, their CPU per submission, where each service's went
    profiled: Submissions = field(default_factory=Submissions)
    profiled_cpu_per_submission: dict[str, float] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)

    @property
    def created(self) -> int:
        """Applications stored: the warm-up's, the measured ones and the profiled ones."""
        return self.warmup.created + self.submissions.created + self.profiled.created

    @property
    def simulated(self) -> int:
        return sum(s.count for s in self.simulations if s.status == 200)

    @property
    def simulation_seconds(self) -> float:
        return sum(s.seconds for s in self.simulations)

    @property
    def simulation_rate(self) -> float:
        return self.simulated / self.simulation_seconds if self.simulation_seconds else 0.0

    @property
    def ok(self) -> bool:
        return (
            self.submissions.created == self.submissions.requested
            and bool(self.simulations)
            and all(s.status == 200 for s in self.simulations)
            and self.warmup.created == self.warmup.requested
            and self.profiled.created == self.profiled.requested
            and self.simulated == self.created
        )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


# --- the HTTP phases -----------------------------------------------------------------------------


async def seed_registry(client: httpx.AsyncClient, rng: random.Random, count: int, result: Seeding) -> list[str]:
    codes = credit_codes(rng, count)
    started = time.perf_counter()
    for path, rows in (
        ("/v1/imports/organisations", organisation_rows(codes)),
        ("/v1/imports/revenues", revenue_rows(rng, codes)),
    ):
        response = await client.post(path, json=rows)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {response.status_code}: {response.text[:2000]}")
        report = response.json()
        if report["created"] != len(rows) or report["failed"]:
            raise RuntimeError(f"{path}: expected {len(rows)} created, got {json.dumps(report)[:2000]}")
        if path.endswith("organisations"):
            result.organisations = report["created"]
        else:
            result.revenues = report["created"]
    # recognitions have no bulk import: one POST each, 16 at a time
    semaphore = asyncio.Semaphore(16)

    async def recognise(row: dict[str, Any]) -> None:
        async with semaphore:
            response = await client.post("/v1/recognitions", json=row)
        if response.status_code != 201:
            raise RuntimeError(f"/v1/recognitions: HTTP {response.status_code}: {response.text[:2000]}")
        result.ids[(row["credit_code"], row["details"]["kind"])] = str(response.json()["id"])

    rows = [row for code in codes for row in recognition_rows(code, rng)]
    await asyncio.gather(*(recognise(row) for row in rows))
    result.recognitions = len(rows)
    result.seconds = time.perf_counter() - started
    return codes


def submit_all(
    port: int,
    headers: dict[str, str],
    payloads: list[dict[str, Any]],
    concurrency: int,
    first_round: int,
    result: Submissions,
) -> None:
    """`payloads[first_round:]` are repeats: an organisation applying again for the same measure and year.

    The requests go from a child process (`bench.common.post_all`), the answers are read after the run: the
    client must not be what bounds the rate (httpx in this process used most of a core at ~140/s)."""
    result.requested = len(payloads)
    say(f"  (from a separate load-generator process, {concurrency} keep-alive connections)")
    sent = post_all(port, "/v1/applications", headers, [json.dumps(p).encode() for p in payloads], concurrency)
    result.seconds = sent.seconds
    result.client_cpu_seconds = sent.cpu_seconds
    for index, (payload, (status, seconds, content)) in enumerate(zip(payloads, sent.answers, strict=True)):
        measure = payload["evidence"]["measure"]
        result.statuses[str(status) if status else "connection failed"] += 1
        if status == 0 or status != 201:
            if len(result.errors) < 5:
                result.errors.append(f"{measure} {payload['applicant']}: HTTP {status}: {content[:500]!r}")
            continue
        result.latencies.append(seconds)
        decision = json.loads(content)["decision"]
        result.outcomes[(measure, decision["outcome"])] += 1
        if index >= first_round:
            result.repeat_outcomes[(measure, decision["outcome"])] += 1
        if decision["outcome"] == "eligible":
            result.amounts_fen[measure] += decision["amount_fen"] or 0
        for failure in decision["failures"]:
            result.failures[(measure, failure["code"])] += 1


async def simulate_all(client: httpx.AsyncClient) -> list[Simulation]:
    simulations: list[Simulation] = []
    for measure in MEASURES:
        year = BENEFIT_YEAR[measure]
        body = {"measure": measure, "year": year, "overrides": OVERRIDES[measure]}
        started = time.perf_counter()
        response = await client.post("/v1/simulations", json=body)
        simulation = Simulation(measure, year, response.status_code, time.perf_counter() - started)
        if response.status_code == 200:
            read = response.json()
            simulation.count = read["count"]
            simulation.changed = read["changed"]
            simulation.total_before_fen = read["total_before_fen"]
            simulation.total_after_fen = read["total_after_fen"]
        else:
            say(f"  simulation {measure}/{year}: HTTP {response.status_code}: {response.text[:500]}")
        say(
            f"  {measure} (benefit year {year}): {simulation.count:,} re-evaluated in {simulation.seconds:.2f} s, "
            f"{simulation.changed:,} changed"
        )
        simulations.append(simulation)
    return simulations


SAMPLES_SQL = """
SELECT a.evidence::text AS evidence, a.as_of, d.facts::text AS facts, d.outcome, d.amount_fen
FROM (
    SELECT *, row_number() OVER (PARTITION BY measure ORDER BY seq) AS n FROM eligibility.applications
) AS a
JOIN eligibility.decisions AS d ON d.id = a.current_decision_id
WHERE a.n <= $1 AND d.kind = 'automatic'
ORDER BY a.n, a.measure
"""


async def from_database(database_url: str, results: Results) -> None:
    """PostgreSQL's version, and stored applications with their decision's facts (the API does not
    return facts), the first few of each measure, measures interleaved: the same mix as submitted."""
    import asyncpg

    connection = await asyncpg.connect(database_url)
    try:
        results.postgres_version = str(await connection.fetchval("SELECT version()"))
        results.samples = [
            {
                "evidence": json.loads(row["evidence"]),
                "as_of": row["as_of"].isoformat(),
                "facts": json.loads(row["facts"]),
                "outcome": row["outcome"],
                "amount_fen": row["amount_fen"],
            }
            for row in await connection.fetch(SAMPLES_SQL, SAMPLES_PER_MEASURE)
        ]
    finally:
        await connection.close()


def cpu_mark(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each service (with its workers) and of PostgreSQL."""
    mark = {service: profile.tree_cpu_seconds(pid) for service, pid in pids.items()}
    mark["postgres"] = profile.postgres_cpu_seconds()
    return mark


def cpu_per_submission(pids: dict[str, int], before: dict[str, float], done: Submissions) -> dict[str, float]:
    """Each process's CPU since `before`, per submission answered 201 (the load generator's own too)."""
    created = done.created or 1
    per = {name: (seconds - before[name]) / created for name, seconds in cpu_mark(pids).items()}
    per["load generator"] = done.client_cpu_seconds / created
    return per


def cpu_line(per: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds * 1e3:,.1f} ms" for name, seconds in per.items())


def machine_line(results: Results) -> str:
    return (
        f"{results.machine_busy_cores:.2f} of {os.cpu_count()} cores busy, "
        f"{results.machine_steal:.1%} of its time stolen by the hypervisor"
    )


#: how long a sampler may run at most (it is stopped when the profiled submissions end)
PROFILE_MAX_SECONDS = 600


#: submits payloads from a given index of the run's sequence on, into a result (`http_phases`)
Submit = Callable[[list[dict[str, Any]], int, Submissions], Awaitable[None]]


async def profiled_submissions(
    args: argparse.Namespace, submit: Submit, payloads: list[dict[str, Any]], start: int, results: Results
) -> None:
    """Further submissions with py-spy sampling each service: where the CPU goes. Not the measured rate: sampling
    a process at 250 Hz costs CPU of its own on these two cores (a run measured under it was about a sixth
    slower)."""
    if not profile.available():
        say("! py-spy is not installed (pip install py-spy): no profile")
        return
    pids: dict[str, int] = args.pids
    samplers = {}
    for service, pid in pids.items():
        path = Path(args.log_dir) / f"{service}.pyspy.txt"
        samplers[service] = (profile.record(pid, PROFILE_MAX_SECONDS, path), path)
    say(f"profiling: {len(payloads):,} more submissions with py-spy sampling {', '.join(pids)}")
    before = cpu_mark(pids)
    try:
        await submit(payloads, start, results.profiled)
    finally:
        for sampler, _ in samplers.values():
            sampler.send_signal(signal.SIGINT)  # py-spy writes what it has sampled and stops
    p = results.profiled
    results.profiled_cpu_per_submission = cpu_per_submission(pids, before, p)
    say(f"  {p.created:,} × 201 in {p.seconds:.2f} s under the sampler: {p.rate:,.1f} submissions/s")
    say(f"  CPU per submission under the sampler: {cpu_line(results.profiled_cpu_per_submission)}")
    for service, (sampler, path) in samplers.items():
        sampler.wait(timeout=60)
        per = results.profiled_cpu_per_submission.get(service, 0.0) * 1e6
        summary = profile.summary(path, per, operation="submission") if path.exists() else "(py-spy wrote nothing)"
        results.profiles[service] = summary


async def http_phases(stack: Stack, args: argparse.Namespace, results: Results, deadline: float) -> None:
    rng = random.Random(args.seed)
    timeout = httpx.Timeout(120.0, connect=5.0)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the time budget (--max-seconds) ran out")
        return left

    auth_dir = Path(os.environ["BENCH_AUTH_DIR"])
    async with httpx.AsyncClient(
        base_url=stack.url("registry"), timeout=timeout, trust_env=False, headers=bench_headers(auth_dir, PLATFORM)
    ) as registry:
        say(f"seeding the registry: {args.organisations:,} organisations, revenues for 2024 and 2025 (bulk import)")
        async with asyncio.timeout(remaining()):
            codes = await seed_registry(registry, rng, args.organisations, results.seeding)
        await analyze(stack.database_url, "registry")
        say(
            f"  {results.seeding.organisations:,} organisations + {results.seeding.revenues:,} revenues "
            f"+ {results.seeding.recognitions:,} recognitions "
            f"in {results.seeding.seconds:.2f} s"
        )

    count = args.warmup + args.applications + args.profile_applications
    everything = application_payloads(rng, codes, count, results.seeding.ids)
    measured = slice(args.warmup, args.warmup + args.applications)
    warmup, payloads, for_profile = everything[: measured.start], everything[measured], everything[measured.stop :]
    async with httpx.AsyncClient(
        base_url=stack.url("eligibility"),
        timeout=timeout,
        limits=limits,
        trust_env=False,
        headers=bench_headers(auth_dir, OFFICER),
    ) as eligibility:
        first_round = len(MEASURES) * len(codes)  # the index of the first repeat application
        port = int(urlsplit(stack.url("eligibility")).port or 0)
        officer = bench_headers(auth_dir, OFFICER)

        async def submit(part: list[dict[str, Any]], start: int, result: Submissions) -> None:
            """`part`, the payloads from index `start` of the run's sequence on, at the run's concurrency."""
            async with asyncio.timeout(remaining()):
                await asyncio.to_thread(submit_all, port, officer, part, args.concurrency, first_round - start, result)

        if warmup:
            say(f"warming up: {len(warmup):,} submissions, not measured (the pools' connections, their plans)")
            await submit(warmup, 0, results.warmup)
            for line in results.warmup.errors:
                say(f"  ! {line}")
        say(f"submitting {len(payloads):,} applications ({', '.join(MEASURES)}), concurrency {args.concurrency}")
        before, machine_before = cpu_mark(args.pids), profile.machine_times()
        await submit(payloads, measured.start, results.submissions)
        s = results.submissions
        results.cpu_per_submission = cpu_per_submission(args.pids, before, s)
        machine_after = profile.machine_times()
        results.machine_busy_cores = (machine_after.busy - machine_before.busy) / (s.seconds or 1)
        results.machine_steal = (machine_after.steal - machine_before.steal) / (
            machine_after.total - machine_before.total or 1
        )
        say(f"  CPU per submission: {cpu_line(results.cpu_per_submission)}")
        say(f"  the machine meanwhile: {machine_line(results)}")
        say(
            f"  {s.created:,} × 201 in {s.seconds:.2f} s: {s.rate:,.1f} submissions/s, "
            f"p50 {ms(percentile(s.latencies, 50))}, p99 {ms(percentile(s.latencies, 99))}"
        )
        if s.failures:
            say(f"  reasons given for ineligible decisions: {failure_reasons(s)}")
        if s.repeat_outcomes:
            say(f"  {REPEATS}: {repeat_summary(s)}")
        for line in s.errors:
            say(f"  ! {line}")
        if for_profile:
            await profiled_submissions(args, submit, for_profile, measured.stop, results)
            for line in results.profiled.errors:
                say(f"  ! {line}")

        say("re-evaluating every stored application: POST /v1/simulations, one request per measure and year")
        async with asyncio.timeout(remaining()):
            results.simulations = await simulate_all(eligibility)
        say(
            f"  {results.simulated:,} re-evaluated in {results.simulation_seconds:.2f} s: "
            f"{results.simulation_rate:,.0f} applications/s"
        )
    async with asyncio.timeout(remaining()):
        await from_database(stack.database_url, results)


# --- the in-process baseline ----------------------------------------------------------------------


def pure_baseline(samples: list[dict[str, Any]], seconds: float, result: Baseline) -> None:
    """The rules engine alone on stored evidence and facts; then with the parsing a simulation does."""
    from pydantic import TypeAdapter

    from services.eligibility.evidence import AnyEvidence
    from services.eligibility.facts import Facts
    from services.eligibility.parameters import load_parameter_file
    from services.eligibility.rules import evaluate_application

    if not samples:
        return
    adapter: TypeAdapter[Any] = TypeAdapter(AnyEvidence)
    parameters = load_parameter_file()
    built = [
        (
            adapter.validate_python(s["evidence"]),
            date.fromisoformat(s["as_of"]),
            Facts.model_validate(s["facts"]),
        )
        for s in samples
    ]
    result.samples = len(built)
    for sample, (evidence_, as_of, facts) in zip(samples, built, strict=True):
        evaluation = evaluate_application(evidence_, as_of, facts, parameters)
        if (evaluation.result.outcome, evaluation.result.amount_fen) == (sample["outcome"], sample["amount_fen"]):
            result.agree += 1

    started = time.perf_counter()
    until = started + seconds
    count = 0
    while True:
        for evidence_, as_of, facts in built:
            evaluate_application(evidence_, as_of, facts, parameters)
        count += len(built)
        if time.perf_counter() >= until:
            break
    result.evaluations, result.seconds = count, time.perf_counter() - started

    started = time.perf_counter()
    until = started + seconds
    count = 0
    while True:
        for sample in samples:
            evaluate_application(
                adapter.validate_python(sample["evidence"]),
                date.fromisoformat(sample["as_of"]),
                Facts.model_validate(sample["facts"]),
                parameters,
            )
        count += len(samples)
        if time.perf_counter() >= until:
            break
    result.with_parsing, result.with_parsing_seconds = count, time.perf_counter() - started

    rounds = 200
    started = time.perf_counter()
    for _ in range(rounds):
        _ = parameters.digest
    result.digest_seconds = (time.perf_counter() - started) / rounds


# --- the services' access logs -------------------------------------------------------------------

_CODE = re.compile(r"/[0-9A-HJ-NPQRTUWXY]{18}(?=/|$)")
_UUID = re.compile(r"/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?=/|$)")


@dataclass
class Route:
    count: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    durations_ms: list[float] = field(default_factory=list)


@dataclass
class LogSummary:
    routes: dict[tuple[str, str], Route] = field(default_factory=lambda: defaultdict(Route))
    levels: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def read_log(path: Path) -> LogSummary:
    summary = LogSummary()
    if not path.exists():
        return summary
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            if "Traceback" in line or "Error" in line:
                summary.levels["unstructured error"] += 1
                if len(summary.problems) < 5:
                    summary.problems.append(line[:300])
            continue
        level = str(entry.get("level", "?"))
        summary.levels[level] += 1
        if level in ("error", "critical") and len(summary.problems) < 5:
            summary.problems.append(f"{entry.get('logger')}: {entry.get('msg')}"[:300])
        if entry.get("msg") == "request" and entry.get("logger") == "access":
            path_ = _UUID.sub("/{id}", _CODE.sub("/{credit_code}", str(entry.get("path", ""))))
            route = summary.routes[(str(entry.get("method")), path_)]
            route.count += 1
            route.statuses[int(entry.get("status", 0))] += 1
            route.durations_ms.append(float(entry.get("duration_ms", 0.0)))
    return summary


# --- running it ------------------------------------------------------------------------------------


def markdown(args: argparse.Namespace, argv: list[str], results: Results, logs: dict[str, LogSummary], db: str) -> str:
    s, b = results.submissions, results.baseline
    info = machine()
    pure = b.rate or math.nan
    eligible_amounts = sum(s.amounts_fen.values())
    lines = [
        f"Command: `{command_line('bench.eligibility_bench', argv)}`"
        + (" (what `make bench-eligibility` runs)" if not argv else "")
        + f" — run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| | |",
        "|---|---|",
        f"| machine | {info['nproc']} cores (nproc), {info['cpu']}, {info['memory']} RAM, {info['os']} |",
        f"| Python | {info['python']} |",
        f"| PostgreSQL | {results.postgres_version} ({db}) |",
        f"| registry seed | {results.seeding.organisations:,} organisations + {results.seeding.revenues:,} revenues "
        f"(2 bulk imports) + {results.seeding.recognitions:,} recognitions (one POST each) "
        f"in {results.seeding.seconds:.2f} s |",
        f"| applications | {s.requested:,} ({', '.join(MEASURES)} in turn, as of {AS_OF}), "
        f"concurrency {args.concurrency}; {s.created:,} answered 201; after {results.warmup.requested:,} "
        "not measured (warm-up) |",
        f"| services | registry 1 process; eligibility {args.eligibility_workers} "
        f"process{'es behind one port (uvicorn workers)' if args.eligibility_workers > 1 else ''} |",
        "",
        "| measurement | result |",
        "|---|---:|",
        f"| submissions (`POST /v1/applications`), end to end | **{s.rate:,.1f} /s** ({s.seconds:.1f} s) |",
        f"| submission latency p50 / p99 (client side) | {ms(percentile(s.latencies, 50))} / "
        f"{ms(percentile(s.latencies, 99))} |",
        f"| the machine during the submissions | {machine_line(results)} |",
        f"| re-evaluation (`POST /v1/simulations`, {len(results.simulations)} requests) | "
        f"**{results.simulation_rate:,.0f} applications/s** "
        f"({results.simulated:,} in {results.simulation_seconds:.2f} s) |",
        f"| pure engine (`evaluate_application`, in process, {b.samples} stored cases) | **{b.rate:,.0f} /s** |",
        f"| pure engine + parsing evidence and facts from JSON | {b.parsing_rate:,.0f} /s |",
        f"| of one pure evaluation (≈ {1e6 / pure:,.0f} µs): `ParameterSet.digest`, recomputed on every call "
        f"| {b.digest_seconds * 1e6:,.0f} µs |",
        f"| simulation rate / pure rate | {results.simulation_rate / pure:.3f} |",
        f"| submission rate / pure rate | {s.rate / pure:.4f} |",
    ]
    route = logs.get("eligibility", LogSummary()).routes.get(("POST", "/v1/applications"))
    if route and route.durations_ms:
        # the log's lines in order: the warm-up's first, the profiled ones after
        measured = route.durations_ms[results.warmup.requested : results.warmup.requested + s.requested]
        lines.append(
            f"| submission p50 / p99 inside the service (access log) | "
            f"{percentile(measured, 50):,.1f} ms / {percentile(measured, 99):,.1f} ms |"
        )
    lines += [
        "",
        "| measure | benefit year | eligible | needs review | ineligible | eligible total (yuan) "
        "| simulation override | changed |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    simulations = {sim.measure: sim for sim in results.simulations}
    for measure in MEASURES:
        sim = simulations.get(measure)
        override = ", ".join(f"`{k}` = {v}" for k, v in OVERRIDES[measure].items())
        counts = " | ".join(f"{s.outcomes[(measure, outcome)]:,}" for outcome in OUTCOMES)
        lines.append(
            f"| {measure} | {BENEFIT_YEAR[measure]} | {counts} | {s.amounts_fen[measure] // YUAN:,} | {override} "
            f"| {sim.changed if sim else 0:,} of {sim.count if sim else 0:,} |"
        )
    totals = " | ".join(f"{sum(n for (_, o), n in s.outcomes.items() if o == outcome):,}" for outcome in OUTCOMES)
    lines.append(f"| all | | {totals} | {eligible_amounts // YUAN:,} | | |")
    if s.failures:
        lines += ["", f"Reasons given for the ineligible decisions: {failure_reasons(s)}."]
    if s.repeat_outcomes:
        lines += ["", f"{REPEATS.capitalize()}: {repeat_summary(s)}."]
    if results.cpu_per_submission:
        lines += [
            "",
            "CPU per submission (each process's CPU time over the measured submissions ÷ submissions): "
            + cpu_line(results.cpu_per_submission)
            + ".",
        ]
    p = results.profiled
    if results.profiles:
        lines += [
            "",
            f"Profile (`--profile`): {p.created:,} further submissions with py-spy sampling both services, "
            f"{p.rate:,.1f} submissions/s under the sampler (not the measured rate); CPU per submission then: "
            + cpu_line(results.profiled_cpu_per_submission)
            + ".",
        ]
    for service, text in results.profiles.items():
        lines += ["", f"Where the {service} process's CPU went during the profiled submissions (py-spy):", "", text]
    return "\n".join(lines)


def repeat_summary(s: Submissions) -> str:
    parts = []
    for measure in MEASURES:
        counts = {outcome: s.repeat_outcomes[(measure, outcome)] for outcome in OUTCOMES}
        if any(counts.values()):
            parts.append(f"{measure} " + ", ".join(f"{n:,} {o.replace('_', ' ')}" for o, n in counts.items() if n))
    return "; ".join(parts)


def failure_reasons(s: Submissions) -> str:
    return ", ".join(
        f"{measure} `{code}` × {n:,}"
        for (measure, code), n in sorted(s.failures.items(), key=lambda kv: (MEASURES.index(kv[0][0]), -kv[1]))
    )


def print_logs(logs: dict[str, LogSummary]) -> None:
    say("\nserver side, from the services' access logs (duration inside the service):")
    say(f"  {'service':<12} {'route':<44} {'count':>7} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for service, summary in logs.items():
        for (method, path), route in sorted(summary.routes.items(), key=lambda kv: -kv[1].count):
            statuses = ", ".join(f"{status}×{n:,}" for status, n in sorted(route.statuses.items()))
            say(
                f"  {service:<12} {method + ' ' + path:<44} {route.count:>7,} "
                f"{percentile(route.durations_ms, 50):>8.1f} {percentile(route.durations_ms, 99):>8.1f}  {statuses}"
            )
        levels = ", ".join(f"{level} {n:,}" for level, n in sorted(summary.levels.items()))
        say(f"  {service:<12} log lines: {levels or 'none'}")
        for problem in summary.problems:
            say(f"  {service:<12} ! {problem}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.eligibility_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--applications", type=bounded(1, 100_000), default=10_000, help="how many (default 10000)")
    parser.add_argument("--concurrency", type=bounded(1, 256), default=16, help="requests in flight (default 16)")
    parser.add_argument(
        "--warmup", type=bounded(0, 100_000), default=500, help="submissions before the measured ones (default 500)"
    )
    parser.add_argument(
        "--eligibility-workers",
        type=bounded(1, 8),
        default=1,
        help="eligibility processes behind its port (uvicorn's workers: as that many pods behind a Service)",
    )
    parser.add_argument("--organisations", type=bounded(1, 20_000), default=2_000, help="seeded (default 2000)")
    parser.add_argument("--baseline-seconds", type=float, default=2.0, help="per pure-engine loop (default 2)")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="budget for the whole run (default 1800)")
    parser.add_argument("--seed", type=int, default=20261127, help="random seed of the data (default 20261127)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' log files")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the measured submissions, --profile-applications more with py-spy sampling the registry and "
        "eligibility processes: where the CPU goes",
    )
    parser.add_argument(
        "--profile-applications",
        type=bounded(1, 100_000),
        default=4_000,
        help="how many submissions the profile samples (default 4000)",
    )
    args = parser.parse_args(argv)
    if not args.profile:
        args.profile_applications = 0
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    deadline = time.monotonic() + args.max_seconds

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    # the services, the bench and wait_ready talk to 127.0.0.1 directly, never through a proxy
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = keep_local(os.environ.get(name, ""))

    name = f"bench_eligibility_{os.getpid()}"
    server_url: str | None = None
    started_server: devdb.EmbeddedPostgres | None = None
    database_created = False
    processes: dict[str, subprocess.Popen[bytes]] = {}
    log_dir = Path(tempfile.mkdtemp(prefix="bench_eligibility_"))
    log_files: dict[str, IO[bytes]] = {}
    results = Results()
    ok = False
    try:
        server_url, started_server, where = postgres_server()
        database_url = asyncio.run(fresh_database(server_url, name))
        database_created = True
        say(f"database {name}: migrating")
        upgrade_all(database_url)

        stack = Stack(database_url, HOST, {service: free_port() for service in SERVICES})
        os.environ.update(ONE_CLIENT_UNLIMITED)  # for this stack only
        os.environ["BENCH_AUTH_DIR"] = str(log_dir / "auth")
        bench_auth(database_url, stack.url("registry"), log_dir / "auth")
        for service in SERVICES:
            log_files[service] = (log_dir / f"{service}.log").open("wb")
            workers = {"WEB_CONCURRENCY": str(args.eligibility_workers)} if service == "eligibility" else {}
            processes[service] = start_service(stack, service, log=log_files[service], extra_env=workers)
        wait_ready(stack, processes, timeout=60)
        args.pids = {service: process.pid for service, process in processes.items()}
        args.log_dir = log_dir
        say("services ready: " + ", ".join(f"{s} {stack.url(s)}" for s in SERVICES) + f" (logs in {log_dir})")

        asyncio.run(http_phases(stack, args, results, deadline))

        say(f"pure engine baseline: {args.baseline_seconds:g} s per loop, in this process")
        pure_baseline(results.samples, args.baseline_seconds, results.baseline)
        b = results.baseline
        say(
            f"  {b.rate:,.0f} evaluations/s ({b.evaluations:,} in {b.seconds:.2f} s); with JSON parsing "
            f"{b.parsing_rate:,.0f}/s; agrees with the stored decision on {b.agree} of {b.samples} cases"
        )
        say(f"  ParameterSet.digest, computed by every evaluation: {b.digest_seconds * 1e6:,.0f} µs per call")

        stop_services(processes)
        for log in log_files.values():
            log.close()
        logs = {service: read_log(log_dir / f"{service}.log") for service in SERVICES}
        print_logs(logs)

        ok = results.ok
        if results.simulated != results.created:
            say(
                f"\n! simulations re-evaluated {results.simulated:,} applications, but {results.created:,} were created"
            )
        say("\n--- paste into docs/benchmarks.md " + "-" * 40 + "\n")
        say(markdown(args, argv, results, logs, where))
        say("\n" + "-" * 74)
        if not ok:
            say("\nFAILED: not every request answered as expected (see above)")
        return 0 if ok else 1
    except (RuntimeError, TimeoutError, OSError, httpx.HTTPError) as exc:
        say(f"error: {type(exc).__name__}: {exc}")
        return 1
    finally:
        with signals_ignored():
            stop_services(processes)
            for log in log_files.values():
                log.close()
            if database_created and server_url:
                try:
                    asyncio.run(drop_database(server_url, name))
                    say(f"database {name} dropped")
                except Exception as exc:  # report it, keep cleaning up
                    say(f"! could not drop database {name}: {exc}")
            if started_server is not None:
                started_server.stop()
                say("embedded PostgreSQL stopped (it was not running before)")
            if ok and not args.keep_logs:
                shutil.rmtree(log_dir, ignore_errors=True)
            else:
                say(f"service logs kept in {log_dir}")


if __name__ == "__main__":
    raise SystemExit(main())
