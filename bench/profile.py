"""Where a Python process's CPU goes under load: a py-spy sample, summarised (issue #16).

    .venv/bin/python -m bench.ledger_bench --profile      (the vouchers process during a redemption run)

`record(pid, seconds, path)` samples the process with py-spy (`--nonblocking`: the process is
never paused, so the load is not slowed by the sampling itself; idle threads are not sampled, so
the samples are the process's busy time). `summary(path)` attributes each sample to the frame
that was running (its leaf) and groups those by who owns the code: the HTTP server, the
framework, this project's middleware and routes, the database driver, the event loop, logging,
metrics, JSON. Two tables: by group, and the functions with the most samples.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

#: a frame of py-spy's raw (collapsed) format: `function (file:line)`
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")

#: who owns a file, by the first pattern its path matches (order matters)
GROUPS: tuple[tuple[str, str], ...] = (
    ("HTTP server (uvicorn, httptools, h11)", r"(^|/)(uvicorn|httptools|h11)/"),
    ("framework (starlette, fastapi)", r"(^|/)(starlette|fastapi)/"),
    ("validation (pydantic)", r"(^|/)pydantic(_core)?/"),
    ("database driver (asyncpg)", r"(^|/)asyncpg/"),
    ("ORM and SQL toolkit (sqlalchemy, greenlet)", r"(^|/)(sqlalchemy|greenlet)/"),
    (
        "HTTP client to peers (httpx, aiohttp, httpcore, anyio)",
        r"(^|/)(httpx|httpcore|anyio|h2|aiohttp|yarl|multidict|aiohappyeyeballs|propcache)/",
    ),
    ("event loop (asyncio, selectors, uvloop)", r"(^|/)(asyncio|uvloop)/|(^|/)selectors\.py"),
    ("logging", r"(^|/)logging/|shared/logs\.py"),
    ("metrics (prometheus_client, shared/metrics.py)", r"(^|/)prometheus_client/|shared/metrics\.py"),
    ("JSON (json, orjson)", r"(^|/)json/|orjson"),
    (
        "tokens and auth (shared/auth.py, jwt, cryptography)",
        r"shared/auth\.py|shared/tokens\.py|(^|/)(jwt|cryptography)/",
    ),
    ("rate limits (shared/ratelimit.py)", r"shared/ratelimit\.py"),
    ("audit log (shared/audit.py)", r"shared/audit\.py"),
    ("request guard and errors (shared/limits.py, errors.py)", r"shared/(limits|errors|context)\.py"),
    ("tracing (shared/tracing.py, opentelemetry)", r"shared/tracing\.py|(^|/)opentelemetry/"),
    ("the service's own code (services/)", r"(^|/)services/"),
    ("the rest of the kernel (shared/)", r"(^|/)shared/"),
)


def available() -> bool:
    return shutil.which("py-spy") is not None or Path(".venv/bin/py-spy").exists()


def _binary() -> str:
    return shutil.which("py-spy") or ".venv/bin/py-spy"


def record(pid: int, seconds: float, path: Path, rate: int = 250) -> subprocess.Popen[bytes]:
    """Start sampling `pid` for `seconds` into `path` (raw collapsed stacks); the caller waits for it."""
    command = [_binary(), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", str(rate)]
    command += ["--format", "raw", "--output", str(path), "--nonblocking", "--subprocesses"]  # uvicorn's workers
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def group_of(file: str) -> str:
    for name, pattern in GROUPS:
        if re.search(pattern, file):
            return name
    return "other (standard library and the rest)"


def _leaf(stack: str) -> tuple[str, str]:
    frame = stack.rsplit(";", 1)[-1]
    found = _FRAME.match(frame)
    if found is None:
        return frame, ""
    return found["function"], found["file"]


def summary(path: Path, per_operation_us: float | None = None, top: int = 20, operation: str = "redemption") -> str:
    """Markdown tables of the samples in `path`; with the CPU one `operation` took, each share in µs too."""
    by_group: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        function, file = _leaf(stack)
        by_group[group_of(file)] += samples
        by_function[f"`{function}` ({file})"] += samples
        total += samples
    if not total:
        return "(no samples)"

    def share(samples: int) -> str:
        text = f"{samples / total:.1%}"
        return f"{text} | {samples / total * per_operation_us:,.0f} µs" if per_operation_us else text

    unit = f" | per {operation}" if per_operation_us else ""
    lines = [
        f"{total:,} samples of the busy process.",
        "",
        f"| who runs | share{unit} |",
        f"|---|---|{'---|' if unit else ''}",
    ]
    lines += [f"| {name} | {share(samples)} |" for name, samples in by_group.most_common()]
    lines += ["", f"| function (leaf frame) | share{unit} |", f"|---|---|{'---|' if unit else ''}"]
    lines += [f"| {name} | {share(samples)} |" for name, samples in by_function.most_common(top)]
    return "\n".join(lines)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """A process's child processes (uvicorn's workers, with WEB_CONCURRENCY), none if it is gone."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def tree_cpu_seconds(pid: int) -> float:
    """CPU time used so far by a process and its children (a uvicorn supervisor and its workers)."""
    return sum(cpu_seconds(each) for each in [pid, *children(pid)])


def postgres_cpu_seconds() -> float:
    """CPU time used so far by every PostgreSQL process on the machine (the benchmark's server is the busy one)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() == "postgres":
                total += cpu_seconds(int(stat.parent.name))
        except OSError:
            continue
    return total


@dataclass(frozen=True)
class MachineTimes:
    """The machine's CPU time so far, all cores together, in seconds (/proc/stat)."""

    #: running anything: user, nice, system, irq, softirq
    busy: float
    #: time the hypervisor gave another guest while this one had work to run: a run with much of it was measured
    #: on a slower machine than its neighbours (their speed moves by up to a third within minutes: docs/benchmarks.md)
    steal: float
    #: everything, idle and I/O wait included
    total: float


def machine_times() -> MachineTimes:
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    tick = os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + irq + softirq
    return MachineTimes(busy / tick, steal / tick, (busy + idle + iowait + steal) / tick)


#: a CPU-bound loop that counts until its deadline and prints the count (`parallel_yield`)
_SPIN = (
    "import sys, time\n"
    "end = time.perf_counter() + float(sys.argv[1])\n"
    "n = 0\n"
    "while time.perf_counter() < end:\n"
    "    for _ in range(1000):\n"
    "        n += 1\n"
    "print(n)\n"
)


def _spin(processes: int, seconds: float) -> int:
    spinners = [
        subprocess.Popen([sys.executable, "-c", _SPIN, str(seconds)], stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    return sum(int(spinner.communicate()[0]) for spinner in spinners)


def parallel_yield(seconds: float = 0.3, repeats: int = 3) -> float:
    """The work two CPU-bound processes do at once over the work one does alone, `seconds` each: the median of
    `repeats` comparisons, each of two at once against one alone just before and just after.

    Two independent cores give 2.0. On this machine's virtual cores it has measured well below that at moments
    (the two share something on the host): then a second process buys less than a second core's work, and every
    process's CPU per operation rises when both cores are busy. A lone process can also land on the slower of two
    unequal cores, which reads above 2.0: hence the repeats and the median. The rounds of bench/ledger_rounds.py
    measure it beside "two vouchers processes against one" (issue #16), which cannot do better than the machine
    allows.
    """
    ratios = []
    for _ in range(repeats):
        before = _spin(1, seconds)
        together = _spin(2, seconds)
        alone = (before + _spin(1, seconds)) / 2
        ratios.append(together / alone if alone else float("nan"))
    return sorted(ratios)[len(ratios) // 2]
