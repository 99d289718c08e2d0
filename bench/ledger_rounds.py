"""Redemptions against pgbench, interleaved: pgbench, one and two vouchers processes in short runs, over rounds.

    .venv/bin/python -m bench.ledger_rounds [--rounds 5] [--seconds 8] [--clients 32]
    make bench-ledger-rounds [ARGS='--rounds 6 --seconds 10']

Why: issue #16's target is "redemptions over HTTP with two vouchers processes ≥ the one-process figure, and
≥ 1.0 × pgbench TPC-B-like tps measured in the same run". `make bench-ledger` (bench/ledger_bench.py)
measures pgbench, then one process, then two, minutes apart; this machine's speed drifts by ±20–30% within
minutes, so one run's ratio says as much about the moments as about the code: the same code gave ratios
that moved by ±30%. Here the three kinds take turns in short runs, seconds apart, and the figures are medians:

1. the stack of bench/ledger_bench.py, by its own functions: a fresh database, registry, eligibility and
   vouchers as uvicorn processes with authentication on, M3 vouchers obtained through the public APIs; then
   two more vouchers processes on two other ports (same database, same settings as bench-ledger's two-process
   run: the service's defaults, VOUCHERS_GROUP_COMMIT_IN_FLIGHT=1, one lane each). All three stay up for the
   whole run: a run only switches where the load goes ("one": the first process; "two": the pair, wrk's
   threads split between them). The ledger is filled to --entries first (as bench-ledger's main runs start);
2. pgbench TPC-B-like (scale 10) in a database of its own on the same server, initialised once, with the same
   number of clients as the redemption load has connections;
3. --rounds rounds; each measures every kind once, for --seconds, after --warmup seconds not counted (pgbench
   too: after a redemption run its tables may have left the shared buffers), each kind after a CHECKPOINT (the
   redemption runs after VACUUM ANALYZE of the ledger's tables and a CHECKPOINT, as in bench-ledger). The
   order rotates (`round_order`): pgbench one two, two one pgbench, one two pgbench, pgbench two one, two
   pgbench one, one pgbench two, … so that no kind always runs first or after the same other kind; six rounds
   hold each order once;
4. reported: every run; per kind the median rate, p50, p99 and CPU per operation (the vouchers processes' and
   PostgreSQL's, from /proc as bench-ledger measures it); per round the ratios one/pgbench, two/pgbench and
   two/one of runs seconds apart, and their medians over the rounds, which decide the targets (with the
   median p99 below 50 ms). A Markdown block for docs/benchmarks.md ends the output;
5. checks, as bench-ledger's: every answer 201, each run's redemption rows = its idempotency records = its
   201 answers, the access logs agree, the ledger invariants hold at the end; exit status 1 otherwise.

What keeping the three processes up changes: the idle processes are not quite idle. Every vouchers process
runs the background sealer (every 0.5 s; whichever gets the lock seals what all of them wrote), so during a
one-process run the idle pair seals part of that process's entries, on the same two cores. Their CPU is
counted with the vouchers processes' (as bench-ledger's two-process run counts its idle first process) and
shown apart ("idle"); during pgbench's runs it is theirs alone. PostgreSQL's CPU includes the server's
background processes (autovacuum, checkpointer), whichever database they work for.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from bench.common import HOST, bounded, command_line, free_port, fresh_database, say
from bench.ledger_bench import (
    CLAIM_FEN,
    NOISE_CORES,
    PGBENCH_SCALE,
    RUN_ERRORS,
    TARGET_P99_MS,
    TARGET_RATIO,
    YUAN,
    CpuMeter,
    CpuUse,
    Deadline,
    Fill,
    Loader,
    LoadRun,
    Measuring,
    Pgbench,
    Results,
    Workspace,
    add_stack_arguments,
    check_invariants,
    check_load_args,
    create_vouchers,
    describe,
    describe_pgbench,
    end_checks,
    fetchval,
    fill_ledger,
    local_year,
    ms,
    pgbench_init,
    report,
    report_head,
    run_pgbench,
    server_percentiles,
    service_env,
    settle,
    start_vouchers,
    wait_sealed,
)
from bench.profile import parallel_yield
from devtools.devrun import Stack
from shared.auth import METRICS_READ
from shared.http_protocol import DEFAULT_HTTP_PROTOCOL

KINDS = ("pgbench", "one", "two")
LABELS = {"pgbench": "pgbench TPC-B-like", "one": "1 vouchers process", "two": "2 vouchers processes"}
#: the per-round ratios reported, numerator / denominator
RATIOS = (("one", "pgbench"), ("two", "pgbench"), ("two", "one"))
#: the vouchers processes, under the log names bench-ledger's access-log checks read (ledger_bench.PROCESS_LOGS)
ONE, PAIR = "vouchers", ("vouchers-2a", "vouchers-2b")
#: the CPU group of the vouchers processes that are up but get no load in a run
IDLE = "vouchers (idle)"


# --- the pure parts -------------------------------------------------------------------------------------------


def round_order(number: int, kinds: Sequence[str] = KINDS) -> list[str]:
    """The kinds' order in round `number` (from 1): turned by one place every second round, and every other round
    reversed. With three kinds: pgbench one two, two one pgbench, one two pgbench, pgbench two one, two pgbench
    one, one pgbench two; six rounds hold every order once and each kind twice at each place."""
    index = number - 1
    shift = (index // 2) % len(kinds)
    turned = [*kinds[shift:], *kinds[:shift]]
    return turned[::-1] if index % 2 else turned


def median(values: Sequence[float]) -> float:
    """The median of the values that are numbers (nan when none is)."""
    numbers = [v for v in values if not math.isnan(v)]
    return statistics.median(numbers) if numbers else math.nan


def round_ratios(rounds: Sequence[dict[str, float]], numerator: str, denominator: str) -> list[float]:
    """Per round (kind → rate), numerator's rate over denominator's; rounds missing either, or with a
    denominator of 0, are left out."""
    return [
        r[numerator] / r[denominator]
        for r in rounds
        if numerator in r and r.get(denominator) and not math.isnan(r[numerator] / r[denominator])
    ]


def median_ratio(rounds: Sequence[dict[str, float]], numerator: str, denominator: str) -> float:
    """The median of the per-round ratios: each compares runs seconds apart, so a drift of the machine's speed
    between rounds cancels out; nan without a round to compare."""
    return median(round_ratios(rounds, numerator, denominator))


def per_operation(cpu: CpuUse, rate: float, *groups: str) -> float:
    """CPU microseconds of the groups per operation over the measuring window."""
    done = rate * cpu.wall
    return sum(cpu.groups.get(g, 0.0) for g in groups) / done * 1e6 if done else math.nan


# --- measuring --------------------------------------------------------------------------------------------------


class RoundsMeter(CpuMeter):
    """bench-ledger's CPU meter, with the vouchers processes that get no load in a run as a group of their own
    (IDLE) instead of "other": `vouchers` are the loaded processes' pids, `idle` the others'."""

    def __init__(self, vouchers: set[int], databases: set[str]) -> None:
        super().__init__(vouchers, databases)
        self.idle: set[int] = set()

    def group(self, pid: int, what: str, generator: int | None) -> str:
        return IDLE if pid in self.idle else super().group(pid, what, generator)

    def window(self, seconds: float, generator: int | None, into: CpuUse, margin: float = 1.0) -> None:
        super().window(seconds, generator, into, margin)
        # the parent's "other" is the machine's busy time less its three groups: the idle processes' too
        into.groups["other"] = max(0.0, into.groups.get("other", 0.0) - into.groups.get(IDLE, 0.0))


@dataclass
class Batching:
    """What the loaded vouchers processes' group commit did over a run, from their /metrics before and after:
    batches written, calls in them, calls alone, calls deferred to the next batch (another process held a row)."""

    batches: float
    batched: float
    alone: float
    deferred: float

    @property
    def per_batch(self) -> float:
        return self.batched / self.batches if self.batches else math.nan

    @property
    def deferred_share(self) -> float:
        calls = self.batched + self.alone
        return self.deferred / calls if calls else math.nan

    def describe(self) -> str:
        return (
            f"group commit: {self.batches:,.0f} batches of {self.per_batch:.1f} calls, {self.alone:,.0f} alone, "
            f"{self.deferred_share:.1%} deferred"
        )


_COUNTER = re.compile(r'^vouchers_group_commit_(calls|batches)_total\{(?:how|outcome)="(\w+)"\} ([0-9.e+]+)$')


def group_commit_counts(ports: Sequence[int], headers: dict[str, str]) -> Counter[str]:
    """The group-commit counters of the vouchers processes on `ports`, summed (`calls:batched`, `batches:ok`, …)."""
    counts: Counter[str] = Counter()
    for port in ports:
        text = httpx.get(f"http://{HOST}:{port}/metrics", headers=headers, timeout=10).raise_for_status().text
        for line in text.splitlines():
            found = _COUNTER.match(line)
            if found:
                counts[f"{found[1]}:{found[2]}"] += float(found[3])
    return counts


def batching(before: Counter[str], after: Counter[str]) -> Batching:
    delta = {key: after[key] - before[key] for key in after}
    return Batching(
        batches=delta.get("batches:ok", 0.0),
        batched=delta.get("calls:batched", 0.0),
        alone=delta.get("calls:alone", 0.0) + delta.get("calls:after_failed_batch", 0.0),
        deferred=delta.get("calls:deferred", 0.0),
    )


@dataclass
class Measured:
    """One measured run of a kind in a round (its place in the round from 1)."""

    round: int
    place: int
    kind: str
    run: LoadRun | None = None
    pgbench: Pgbench | None = None
    #: the loaded processes' group commit over the run (`Batching`); none for pgbench
    batching: Batching | None = None

    @property
    def cpu(self) -> CpuUse:
        if self.run:
            return self.run.cpu
        return self.pgbench.cpu if self.pgbench else CpuUse()

    @property
    def rate(self) -> float:
        if self.run:
            return self.run.rate
        return self.pgbench.tps if self.pgbench else math.nan

    @property
    def p50(self) -> float:
        return self.run.p50 if self.run else math.nan

    @property
    def p99(self) -> float:
        return self.run.p99 if self.run else math.nan

    @property
    def mean_ms(self) -> float:
        if self.run:
            return self.run.latency_ms.get("mean", math.nan)
        return self.pgbench.latency_ms if self.pgbench else math.nan

    def us(self, *groups: str) -> float:
        return per_operation(self.cpu, self.rate, *groups)

    @property
    def vouchers_us(self) -> float:
        """Every vouchers process's CPU per redemption, the idle ones' included (nan for pgbench)."""
        return self.us("vouchers", IDLE) if self.run else math.nan

    @property
    def idle_us(self) -> float:
        return self.us(IDLE) if self.run else math.nan


@dataclass
class Rounds:
    measured: list[Measured] = field(default_factory=list)
    #: per round: the work of two CPU-bound processes at once over one's alone (`bench.profile.parallel_yield`)
    yields: list[float] = field(default_factory=list)

    def of(self, kind: str) -> list[Measured]:
        return [m for m in self.measured if m.kind == kind]

    def rates(self) -> list[dict[str, float]]:
        """Per round: kind → rate."""
        found: dict[int, dict[str, float]] = {}
        for m in self.measured:
            found.setdefault(m.round, {})[m.kind] = m.rate
        return [found[n] for n in sorted(found)]

    def ratio(self, numerator: str, denominator: str) -> float:
        return median_ratio(self.rates(), numerator, denominator)

    def met_in(self, numerator: str, denominator: str, at_least: float) -> tuple[int, int]:
        """In how many rounds the ratio was at least `at_least`, of how many."""
        ratios = round_ratios(self.rates(), numerator, denominator)
        return sum(1 for r in ratios if r >= at_least), len(ratios)


def measure(
    kind: str,
    number: int,
    place: int,
    args: argparse.Namespace,
    on: Measuring,
    targets: dict[str, list[int]],
    pids: dict[str, set[int]],
    pgbench: tuple[str, str],
    metrics: dict[str, str],
) -> Measured:
    """One run of `kind` (after its warm-up), the other kinds' vouchers processes metered as idle."""
    meter = on.meter
    assert isinstance(meter, RoundsMeter)
    meter.vouchers = set(pids.get(kind, set()))
    meter.idle = set().union(*pids.values()) - meter.vouchers
    label = f"{LABELS[kind]}, round {number}"
    if kind == "pgbench":
        server_url, database = pgbench
        asyncio.run(fetchval(server_url, "CHECKPOINT"))
        if args.warmup > 0:
            run_pgbench(server_url, database, Pgbench(args.clients, max(1, round(args.warmup))), meter)
        result = Pgbench(args.clients, args.seconds)
        run_pgbench(server_url, database, result, meter)
        if result.failed or not result.tps:
            on.results.problems.append(f"{label}: {result.failed} failed transactions, {result.tps:,.0f} tps")
        return Measured(number, place, kind, pgbench=result)
    asyncio.run(settle(on.database_url))
    if args.warmup > 0:
        on.results.runs.append(
            on.loader.run(f"warm-up ({label})", targets[kind], args.clients, args.warmup, measured=False)
        )
    before = group_commit_counts(targets[kind], metrics)
    run = on.loader.run(label, targets[kind], args.clients, args.seconds)
    on.results.runs.append(run)
    after = group_commit_counts(targets[kind], metrics)
    return Measured(number, place, kind, run=run, batching=batching(before, after))


def describe_measured(m: Measured) -> str:
    if m.pgbench is not None:
        return describe_pgbench(m.pgbench) + f"; idle vouchers processes {m.cpu.cores(IDLE):.2f} cores"
    assert m.run is not None
    return (
        describe(m.run) + f"; idle vouchers processes {m.cpu.cores(IDLE):.2f} cores, "
        f"{us_text(m.idle_us)} per redemption" + (f"; {m.batching.describe()}" if m.batching else "")
    )


# --- the report ---------------------------------------------------------------------------------------------------


def us_text(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:,.0f} µs"


def ms_text(value: float) -> str:
    return "—" if math.isnan(value) else ms(value)


def ratio_text(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}"


def rate_text(kind: str, rate: float) -> str:
    return f"{rate:,.0f} tps" if kind == "pgbench" else f"{rate:,.0f} /s"


def verdicts(rounds: Rounds) -> list[str]:
    """The target's three lines (issue #16), from the medians of the per-round ratios and the median p99s."""
    lines = []
    checks = (
        ("two", "one", 1.0, "2 vouchers processes ≥ 1 vouchers process"),
        ("one", "pgbench", TARGET_RATIO, f"1 vouchers process ≥ {TARGET_RATIO} × pgbench"),
        ("two", "pgbench", TARGET_RATIO, f"2 vouchers processes ≥ {TARGET_RATIO} × pgbench"),
    )
    for numerator, denominator, at_least, title in checks:
        ratio = rounds.ratio(numerator, denominator)
        rounds_met, count = rounds.met_in(numerator, denominator, at_least)
        met = not math.isnan(ratio) and ratio >= at_least
        text = (
            f"{title}: median {numerator}/{denominator} ratio {ratio_text(ratio)} {'≥' if met else '<'} {at_least:g} "
            f"(≥ in {rounds_met} of {count} rounds)"
        )
        if denominator == "pgbench":
            p99 = median([m.p99 for m in rounds.of(numerator)])
            fast = p99 < TARGET_P99_MS
            met = met and fast
            text += f", median p99 {ms_text(p99)} {'<' if fast else '≥'} {TARGET_P99_MS:g} ms"
        lines.append(f"- {text} — **{'met' if met else 'not met'}**")
    return lines


def markdown(args: argparse.Namespace, argv: list[str], results: Results, rounds: Rounds, where: str) -> str:
    setup = results.setup
    overrides = ", ".join(f"{k}={v}" for k, v in service_env(args).items())
    generator = (
        f"{results.wrk_version}, {args.wrk_threads} threads (split between the ports with two processes)"
        if args.load_generator == "wrk"
        else "Python (asyncio streams, separate process): wrk was not available"
    )
    loaded = [m.run for m in rounds.measured if m.run]
    entries = f"{loaded[0].entries_before:,} to {loaded[-1].entries_before:,}" if loaded else "?"
    lines = [
        *report_head(command_line("bench.ledger_rounds", argv), "" if argv else "bench-ledger-rounds", results, where),
        f"| vouchers | {len(setup.vouchers)} M3 vouchers of {CLAIM_FEN // YUAN:,} yuan, {setup.enterprises} "
        f"enterprises, {setup.vendors} model vendors, obtained through the public APIs; the ledger filled to "
        f"{args.entries:,} entries first, {entries} entries before the first and the last redemption run |",
        f"| method | {args.rounds} rounds of pgbench TPC-B-like (scale {PGBENCH_SCALE}, `-c {args.clients} -T "
        f"{args.seconds} -n`), 1 vouchers process, 2 vouchers processes, in rotating order; each run {args.seconds} "
        f"s after a {args.warmup:g} s warm-up; the three vouchers processes up throughout, the load switched "
        "between them |",
        f"| load | {generator}; {args.clients} connections; every request a new Idempotency-Key, the vouchers in "
        "turn, 1–100 fen |",
        f"| vouchers processes | uvicorn (uvloop, `--http {os.environ.get('HTTP_PROTOCOL') or DEFAULT_HTTP_PROTOCOL}`)"
        f", 1 worker each; settings: {overrides}; the pair with VOUCHERS_GROUP_COMMIT_IN_FLIGHT="
        f"{args.two_process_lanes}; JSON access log to a file; each its background sealer |",
        "",
        "Medians over the rounds:",
        "",
        "| kind | runs | rate (median) | min–max | p50 | p99 | CPU per operation: vouchers processes (of which "
        "idle) / postgres / load generator | cores: vouchers / idle vouchers / postgres / load generator / other |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for kind in KINDS:
        runs = rounds.of(kind)
        if not runs:
            continue
        rates = [m.rate for m in runs]
        p50 = ms_text(median([m.p50 for m in runs])) if kind != "pgbench" else "—"
        p99 = (
            ms_text(median([m.p99 for m in runs]))
            if kind != "pgbench"
            else f"— (mean {ms_text(median([m.mean_ms for m in runs]))})"
        )
        vouchers = (
            "—"
            if kind == "pgbench"
            else f"{us_text(median([m.vouchers_us for m in runs]))} ({us_text(median([m.idle_us for m in runs]))})"
        )
        cores = " / ".join(
            f"{median([m.cpu.cores(g) for m in runs]):.2f}"
            for g in ("vouchers", IDLE, "postgres", "load generator", "other")
        )
        lines.append(
            f"| {LABELS[kind]} | {len(runs)} | **{rate_text(kind, median(rates))}** | "
            f"{min(rates):,.0f}–{max(rates):,.0f} | {p50} | {p99} | {vouchers} / "
            f"{us_text(median([m.us('postgres') for m in runs]))} / "
            f"{us_text(median([m.us('load generator') for m in runs]))} | {cores} |"
        )
    batched = {k: [m.batching for m in rounds.of(k) if m.batching] for k in KINDS}
    if any(batched.values()):
        lines += [
            "",
            "Group commit in the loaded processes (their /metrics before and after each run; medians): "
            + "; ".join(
                f"{LABELS[k]}: batches of {median([b.per_batch for b in of]):.1f} calls, "
                f"{median([b.deferred_share for b in of]):.1%} of calls deferred once"
                for k, of in batched.items()
                if of
            )
            + ".",
        ]
    lines += [
        "",
        "Per round (each ratio compares runs seconds apart):",
        "",
        "| round | order | pgbench tps | 1 process /s | 2 processes /s | one/pgbench | two/pgbench | two/one | "
        "two spinners / one |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for number, of_round in enumerate(rounds.rates(), start=1):
        order = " → ".join(m.kind for m in sorted(rounds.measured, key=lambda m: m.place) if m.round == number)
        cells = [f"{of_round[k]:,.0f}" if k in of_round else "—" for k in KINDS]
        ratios = [ratio_text(median(round_ratios([of_round], n, d))) for n, d in RATIOS]
        spin = f"{rounds.yields[number - 1]:.2f}" if number <= len(rounds.yields) else "—"
        lines.append(f"| {number} | {order} | {' | '.join(cells)} | {' | '.join(ratios)} | {spin} |")
    lines.append(
        "| **median** | | "
        + " | ".join(f"{median([m.rate for m in rounds.of(k)]):,.0f}" for k in KINDS)
        + " | "
        + " | ".join(f"**{ratio_text(rounds.ratio(n, d))}**" for n, d in RATIOS)
        + (f" | {median(rounds.yields):.2f} |" if rounds.yields else " | — |")
    )
    lines += [
        "",
        "Two spinners / one: what two CPU-bound processes do at once over what one does alone, measured at the start "
        "of each round (`bench.profile.parallel_yield`: two at once against one alone before and after, 0.3 s "
        "each, the median of three; two independent cores give 2.00). Where it is well below 2, the machine's "
        "second core adds less than a core, and two vouchers processes, which keep both cores busier than one, pay "
        "for it in CPU per redemption.",
    ]
    lines += ["", f"Targets (issue #16), from the medians of the {len(rounds.rates())} rounds' ratios:", ""]
    lines += verdicts(rounds)
    # the service's access log has the redemptions only with VOUCHERS_ACCESS_LOG=all (the default: errors and slow)
    logs = any(m.run and m.run.server_ms for m in rounds.measured)
    lines += [
        "",
        "Every run:",
        "",
        "| round | place | kind | rate | p50 | p99 | "
        + ("in the service p50 / p99 | " if logs else "")
        + "CPU per operation: vouchers processes (idle) / postgres | cores: vouchers / idle / postgres / load "
        "generator / other |",
        "|---:|---:|---|---:|---:|---:|" + ("---:|" if logs else "") + "---:|---|",
    ]
    for m in rounds.measured:
        vouchers = "—" if m.run is None else f"{us_text(m.vouchers_us)} ({us_text(m.idle_us)})"
        p99 = ms_text(m.p99) if m.run else f"— (mean {ms_text(m.mean_ms)})"
        cores = " / ".join(f"{m.cpu.cores(g):.2f}" for g in ("vouchers", IDLE, "postgres", "load generator", "other"))
        lines.append(
            f"| {m.round} | {m.place} | {LABELS[m.kind]} | {rate_text(m.kind, m.rate)} | {ms_text(m.p50)} | {p99} | "
            + (f"{server_percentiles(m.run) if m.run else '—'} | " if logs else "")
            + f"{vouchers} / {us_text(m.us('postgres'))} | {cores} |"
        )
    noisy = max((m.cpu.elsewhere for m in rounds.measured), default=0.0)
    if noisy > NOISE_CORES:
        lines += [
            "",
            f"⚠ Other work on this machine (outside the benchmark) used up to {noisy:.2f} cores during the measured "
            "runs: the rates and latencies of those runs are worse than on a quiet machine.",
        ]
    answered = sum(r.ok_answers for r in results.all_runs)
    logged = (
        f"{results.access_201:,} sent according to the access logs = "
        if results.access_201 or results.access_other
        else "no access log to compare with; "
    )
    lines += [
        "",
        f"Checks: every answer 201 ({answered:,} read by the load generator, warm-ups included; {logged}"
        f"{results.load_redemptions:,} redemption rows written by the load); each run's idempotency records = its "
        "redemption rows; invariants (`check_database`) hold: "
        + ", ".join(f"{entries:,} entries in {seconds:.1f} s" for entries, seconds, _ in results.invariant_checks)
        + ".",
        "",
        "CPU per operation: CPU time over the run's measuring window (from /proc) divided by the operations done; "
        "the vouchers processes' figure counts all three, the ones without load (idle: their sealers seal what the "
        "loaded ones write) in parentheses; postgres: this run's databases' backends and the server's background "
        "processes. Latencies are the load generator's (pgbench: its mean).",
    ]
    return "\n".join(lines)


# --- running it ---------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ledger_rounds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=bounded(1, 30), default=5, help="rounds of the three kinds (default 5)")
    parser.add_argument("--seconds", type=bounded(1, 300), default=8, help="per measured run (default 8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="before each run, not counted (default 2)")
    parser.add_argument("--clients", type=bounded(1, 512), default=32, help="connections and pgbench clients (32)")
    parser.add_argument(
        "--entries",
        type=bounded(0, 20_000_000),
        default=10_000,
        help="ledger entries filled in by SQL before the first round (default 10000, as bench-ledger's main runs)",
    )
    add_stack_arguments(parser)
    parser.add_argument(
        "--group-commit",
        choices=("on", "off"),
        default="on",
        help="VOUCHERS_GROUP_COMMIT of the vouchers processes (default on, the service's default)",
    )
    parser.add_argument(
        "--two-process-lanes",
        type=bounded(1, 64),
        default=1,
        help="VOUCHERS_GROUP_COMMIT_IN_FLIGHT of each process of the pair (default 1, as bench-ledger's)",
    )
    parser.add_argument(
        "--seal-timeout", type=float, default=240.0, help="wait for the sealer after the fill (default 240 s)"
    )
    parser.add_argument("--max-seconds", type=float, default=1200.0, help="budget for the whole run (default 1200)")
    parser.add_argument("--seed", type=int, default=20261127, help="random seed of the data (default 20261127)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' log files")
    args = parser.parse_args(argv)
    check_load_args(parser, args)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    remaining = Deadline(args.max_seconds).check
    space = Workspace.new("bench_ledger_rounds")
    name, pgbench_name, created, processes = space.name, space.pgbench_name, space.created, space.processes
    log_files, log_dir = space.log_files, space.log_dir
    results, rounds = Results(), Rounds()
    ok = False
    try:
        server_url, where, database_url, stack, auth, env, ports = space.open(args, results)
        say(f"obtaining {args.vouchers} M3 vouchers (+1 filler) through registry → eligibility → vouchers")
        asyncio.run(create_vouchers(stack, stack.url("vouchers"), args, results.setup, auth))

        meter = RoundsMeter({processes[ONE].pid}, {name, pgbench_name})
        loader = Loader(database_url, results.setup, meter, args.load_generator, args.wrk_threads, log_dir)
        on = Measuring(args, database_url, processes, log_files, log_dir, meter, loader, results)
        pair_env = {**env, "VOUCHERS_GROUP_COMMIT_IN_FLIGHT": str(args.two_process_lanes)}
        pair = {n: (Stack(database_url, HOST, {**ports, "vouchers": free_port()}), pair_env) for n in PAIR}
        targets = {"one": [ports["vouchers"]], "two": start_vouchers(pair, on)}
        pids = {"one": {processes[ONE].pid}, "two": {processes[n].pid for n in PAIR}}
        say(f"vouchers processes: one on port {ports['vouchers']}, two on ports {', '.join(map(str, targets['two']))}")

        if args.entries:
            fill = Fill(args.entries)
            say(f"filling the ledger to {args.entries:,} entries with SQL")
            assert results.setup.filler is not None
            asyncio.run(fill_ledger(database_url, results.setup.filler, fill, local_year()))
            say(f"  {wait_sealed(database_url, timeout=args.seal_timeout).describe()}")

        remaining("pgbench's initialisation")
        asyncio.run(fresh_database(server_url, pgbench_name))
        created.append(pgbench_name)
        say(f"pgbench: initialising {pgbench_name} (scale {PGBENCH_SCALE})")
        say(f"  initialised in {pgbench_init(server_url, pgbench_name):.1f} s")

        metrics = auth.headers(METRICS_READ, "rounds")  # each run's group-commit counters
        for number in range(1, args.rounds + 1):
            order = round_order(number)
            say(f"round {number} of {args.rounds}: {', '.join(order)}")
            rounds.yields.append(parallel_yield())  # what the machine's second core adds at this moment
            say(f"  two spinners / one: {rounds.yields[-1]:.2f}")
            for place, kind in enumerate(order, start=1):
                remaining(f"round {number}'s {kind} run")
                measured = measure(kind, number, place, args, on, targets, pids, (server_url, pgbench_name), metrics)
                rounds.measured.append(measured)
                say(f"  {kind}: " + describe_measured(measured))
                for problem in measured.run.problems() if measured.run else []:
                    say(f"  ! {problem}")  # counted by end_checks, with the warm-ups'
            this = rounds.rates()[-1]
            say(
                f"  round {number}: "
                + ", ".join(f"{n}/{d} {ratio_text(median(round_ratios([this], n, d)))}" for n, d in RATIOS)
            )

        say("checking the ledger's invariants")
        check_invariants(database_url, results)
        # every run's answers and counts (warm-ups too), the access logs against the rows, after the processes stop
        end_checks(database_url, processes, log_files, log_dir, results)
        say(
            "medians: "
            + "; ".join(f"{LABELS[k]} {rate_text(k, median([m.rate for m in rounds.of(k)]))}" for k in KINDS)
            + "; "
            + ", ".join(f"{n}/{d} {ratio_text(rounds.ratio(n, d))}" for n, d in RATIOS)
        )
        ok = report(markdown(args, argv, results, rounds, where), results.problems)
        return 0 if ok else 1
    except RUN_ERRORS as exc:
        say(f"error: {type(exc).__name__}: {exc}")
        return 1
    finally:
        space.close(keep_logs=args.keep_logs or not ok)


if __name__ == "__main__":
    raise SystemExit(main())
