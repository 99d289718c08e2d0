"""What tracing costs the redemption path: one vouchers process with tracing off, on, and sampled, in one run.

`make bench-tracing` (or `python -m bench.tracing_bench`). The stack is the ledger benchmark's (its data,
its vouchers, its load generator: wrk when installed, bench/ledger_bench.py): registry, eligibility and
a vouchers process issue M3 vouchers through the public APIs; then, in turn, a vouchers process is
started with tracing off (no OTEL_* variable: shared/tracing.py installs nothing), on (every request
traced, OTEL_TRACES_EXPORTER=otlp to a local OTLP/HTTP sink in this process that answers 200 and counts
what it gets, batched as in production) and sampled (the same, 5% of the traces kept:
parentbased_traceidratio), each warmed up and then loaded with redemptions by the same generator for
the same time. The phases take turns (off, on, sampled, off, …: --rounds) so that a drift of the machine
does not look like a cost; the figures are the medians over the rounds, and off's spread between its own
rounds says how much of a difference is noise.

Printed: each run, the medians, the ratios to off (throughput, p50, p99, the vouchers process's CPU per
redemption) and off's spread, and a Markdown block for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from bench.common import (
    HOST,
    bounded,
    free_port,
    machine,
    postgres_server,
    say,
)
from bench.ledger_bench import (
    RUN_ERRORS,
    CpuMeter,
    Loader,
    LoadRun,
    Setup,
    check_load_args,
    clean_up,
    create_vouchers,
    describe,
    migrated_database,
    ms,
    prepare_process,
    report,
    settle,
    start_stack,
)
from devtools import devdb
from devtools.devrun import Stack, start_service, stop_services, wait_ready

#: off: no OTEL_* variable; on: every request traced; sampled: 5% of the traces that start at the service
#: (OTEL_TRACES_SAMPLER=parentbased_traceidratio), what a busy production would run
MODES = ("off", "on", "sampled")
SAMPLED_RATIO = "0.05"


class OtlpSink:
    """Stands for an OpenTelemetry collector: answers every OTLP/HTTP export 200 and counts it."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with sink._lock:
                    sink.requests += 1
                    sink.bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{HOST}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.requests, self.bytes


@dataclass
class Phase:
    mode: str
    round: int
    run: LoadRun
    exports: int = 0  # OTLP requests the sink got during the phase (on)
    export_bytes: int = 0


@dataclass
class Results:
    setup: Setup = field(default_factory=Setup)
    phases: list[Phase] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def of(self, mode: str) -> list[LoadRun]:
        return [p.run for p in self.phases if p.mode == mode]

    def median(self, mode: str, measure: str) -> float:
        runs = self.of(mode)
        values = {
            "rate": [r.rate for r in runs],
            "p50": [r.p50 for r in runs],
            "p99": [r.p99 for r in runs],
            "cpu": [r.cpu_us("vouchers") for r in runs],
        }[measure]
        return statistics.median(values) if values else float("nan")

    def ratio(self, measure: str, mode: str = "on") -> float:
        off = self.median("off", measure)
        return self.median(mode, measure) / off if off else float("nan")

    def noise(self) -> float:
        """The spread of off's throughput between its rounds: largest / smallest − 1."""
        rates = [r.rate for r in self.of("off")]
        return max(rates) / min(rates) - 1 if len(rates) > 1 and min(rates) > 0 else float("nan")


def tracing_env(mode: str, sink: OtlpSink) -> dict[str, str]:
    if mode == "off":
        return {}
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    if mode == "sampled":
        env.update({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": SAMPLED_RATIO})
    return env


def markdown(args: argparse.Namespace, argv: list[str], results: Results, where: str) -> str:
    facts = machine()
    command = "make bench-tracing" + (f" ARGS='{shlex.join(argv)}'" if argv else "")
    rows = []
    for phase in results.phases:
        run = phase.run
        exported = f"{phase.exports:,} exports, {phase.export_bytes / 1e6:.1f} MB" if phase.mode != "off" else "—"
        rows.append(
            f"| {phase.mode} | {phase.round} | {run.rate:,.0f} | {ms(run.p50)} | {ms(run.p99)} | "
            f"{run.cpu_us('vouchers'):,.0f} | {exported} |"
        )
    return "\n".join(
        [
            f"`{command}` — {facts.get('cpu', '?')}, "
            f"{facts.get('nproc', '?')} cores; PostgreSQL: {where}; load: {args.load_generator}, "
            f"{args.clients} connections, {args.seconds} s per run after {args.warmup} s of warm-up, "
            f"{args.rounds} rounds of {', '.join(args.modes)} in turn; one vouchers process "
            f"(group commit {args.group_commit}); "
            f"sampled: {SAMPLED_RATIO} of the traces (parentbased_traceidratio).",
            "",
            "| tracing | round | redemptions/s | p50 | p99 | vouchers CPU µs / redemption | spans exported |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            *(
                f"{mode}/off (medians): throughput {results.ratio('rate', mode):.2f}, "
                f"p50 {results.ratio('p50', mode):.2f}, p99 {results.ratio('p99', mode):.2f}, "
                f"**vouchers CPU per redemption {results.ratio('cpu', mode):.2f}** "
                f"({results.median(mode, 'cpu'):,.0f} against {results.median('off', 'cpu'):,.0f} µs)."
                for mode in args.modes
                if mode != "off"
            ),
            "",
            f"Off against itself (spread of its throughput between rounds, the noise): {results.noise():.1%}.",
        ]
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tracing_bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=bounded(1, 512), default=32, help="connections (default 32)")
    parser.add_argument("--seconds", type=bounded(1, 300), default=15, help="per measured run (default 15)")
    parser.add_argument("--warmup", type=float, default=3.0, help="before each run, not counted (default 3)")
    parser.add_argument("--rounds", type=bounded(1, 10), default=3, help="rounds of every mode (default 3)")
    parser.add_argument(
        "--modes",
        type=lambda text: [m for m in text.split(",") if m],
        default=list(MODES),
        help=f"phases of a round, in order (default {','.join(MODES)}; off must be one)",
    )
    parser.add_argument("--vouchers", type=bounded(1, 1000), default=64, help="redeemed in turn (default 64)")
    parser.add_argument("--enterprises", type=bounded(1, 1000), default=32, help="holding them (default 32)")
    parser.add_argument("--vendors", type=bounded(1, 100), default=8, help="model vendors (default 8)")
    parser.add_argument("--wrk-threads", type=bounded(1, 16), default=2, help="wrk threads (default 2)")
    parser.add_argument("--load-generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--hot-pool-size", type=bounded(1, 200), help="VOUCHERS_HOT_POOL_SIZE")
    parser.add_argument("--log-level", help="VOUCHERS_LOG_LEVEL (default: the service's)")
    parser.add_argument(
        "--group-commit",
        choices=("on", "off"),
        default="on",
        help="VOUCHERS_GROUP_COMMIT of the vouchers processes (default on, the service's default)",
    )
    parser.add_argument("--max-seconds", type=float, default=900.0, help="budget for the whole run (default 900)")
    parser.add_argument("--seed", type=int, default=20261205, help="random seed of the data")
    args = parser.parse_args(argv)
    check_load_args(parser, args)
    if "off" not in args.modes or not set(args.modes) <= set(MODES):
        parser.error(f"--modes: some of {', '.join(MODES)}, off included")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    deadline = time.monotonic() + args.max_seconds

    prepare_process()
    # the phases say whether tracing is on: none of the caller's OTEL_* variables reaches a service
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        del os.environ[name]

    name = f"bench_tracing_{os.getpid()}"
    server_url: str | None = None
    started_server: devdb.EmbeddedPostgres | None = None
    created: list[str] = []
    processes: dict[str, subprocess.Popen[bytes]] = {}
    log_dir = Path(tempfile.mkdtemp(prefix="bench_tracing_"))
    auth_dir = Path(tempfile.mkdtemp(prefix="bench_tracing_auth_"))
    log_files: dict[str, IO[bytes]] = {}
    results = Results()
    ok = False
    try:
        server_url, started_server, where = postgres_server()
        database_url = migrated_database(server_url, name, created)
        ports = {s: free_port() for s in ("registry", "eligibility", "vouchers")}
        stack, auth, env = start_stack(args, database_url, ports, auth_dir, log_dir, processes, log_files)
        say(f"obtaining {args.vouchers} M3 vouchers through registry → eligibility → vouchers")
        asyncio.run(create_vouchers(stack, stack.url("vouchers"), args, results.setup, auth))
        stop_services({"vouchers": processes.pop("vouchers")})  # the measured ones are started per phase

        # one loader for every phase: its runs' Idempotency-Keys never repeat (a repeat would be a replay)
        loader = Loader(
            database_url, results.setup, CpuMeter(set(), {name}), args.load_generator, args.wrk_threads, log_dir
        )
        with OtlpSink() as sink:
            for round_ in range(1, args.rounds + 1):
                for mode in args.modes:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the time budget (--max-seconds) ran out")
                    port = free_port()
                    phase_stack = Stack(database_url, HOST, {**ports, "vouchers": port})
                    log = f"vouchers-{mode}-{round_}"
                    log_files[log] = (log_dir / f"{log}.log").open("wb")
                    process = start_service(
                        phase_stack, "vouchers", log=log_files[log], extra_env={**env, **tracing_env(mode, sink)}
                    )
                    processes["vouchers"] = process
                    wait_ready(phase_stack, {"vouchers": process}, timeout=60)
                    loader.meter = CpuMeter({process.pid}, {name})
                    asyncio.run(settle(database_url))
                    loader.run(f"warm-up ({mode})", [port], args.clients, args.warmup, measured=False)
                    before = sink.counts()
                    run = loader.run(f"tracing {mode}, round {round_}", [port], args.clients, args.seconds)
                    stop_services({"vouchers": processes.pop("vouchers")})  # its last spans are sent at exit
                    after = sink.counts()
                    phase = Phase(mode, round_, run, after[0] - before[0], after[1] - before[1])
                    results.phases.append(phase)
                    say(f"  tracing {mode}, round {round_}: " + describe(run))
                    if mode != "off":
                        say(f"    OTLP sink: {phase.exports:,} exports, {phase.export_bytes:,} bytes")
                        if phase.exports == 0:
                            results.problems.append(f"round {round_}: tracing {mode}, but no span was exported")
                    elif phase.exports:
                        results.problems.append(f"round {round_}: tracing off, yet {phase.exports} exports arrived")
                    results.problems += run.problems()

        for mode in args.modes:
            say(
                f"{mode}: median {results.median(mode, 'rate'):,.0f}/s, vouchers CPU/redemption "
                f"{results.median(mode, 'cpu'):,.0f} µs; /off: throughput {results.ratio('rate', mode):.3f}, "
                f"p50 {results.ratio('p50', mode):.3f}, p99 {results.ratio('p99', mode):.3f}, "
                f"CPU {results.ratio('cpu', mode):.3f}"
            )
        say(f"off's spread between rounds {results.noise():.1%}")
        ok = report(markdown(args, argv, results, where), results.problems)
        return 0 if ok else 1
    except RUN_ERRORS as exc:
        say(f"error: {type(exc).__name__}: {exc}")
        return 1
    finally:
        clean_up(processes, log_files, server_url, created, started_server, auth_dir, log_dir, keep_logs=not ok)


if __name__ == "__main__":
    raise SystemExit(main())
