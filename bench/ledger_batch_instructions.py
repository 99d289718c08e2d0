"""PostgreSQL's instructions per group-commit batch, counted by valgrind: a cost that does not move with the host
(issue #16).

    .venv/bin/python -m bench.ledger_batch_instructions [--sizes 1,16] [--batches 200] [--compare REV]

Why it exists: this machine's speed moves by up to a factor of two between minutes (docs/benchmarks.md), so a
change of 10% in what PostgreSQL spends per batch cannot be told from the host's moment by timing it
(`bench/ledger_batch_cost.py` times it). Valgrind's callgrind counts the instructions a process runs, the same
total for the same binary, inputs and data whatever else the machine does. It has to run the backend itself, so
this uses PostgreSQL's single-user mode (`postgres --single`), one backend reading SQL from its input:

1. A private cluster (the embedded PostgreSQL's binaries, a temporary directory, a free port): a database
   migrated to head, `bench.redemption_cpu.insert_vouchers`'s 64 M3 vouchers, warm-up batches sent over a
   connection as group commit sends them, then ANALYZE (the statistics a running server's autovacuum keeps), and
   the server stopped. With `--compare REV`, a copy of that cluster gets `vouchers.ledger_batch()` and
   `vouchers.ledger_captures()` as REV's migrations/vouchers/functions/ define them (so both sides run on the
   same data).
2. For each side: under callgrind, the warm-up script alone (a prepared `vouchers.ledger_batch()` call and 50
   batches each of 1 and 16 plain M3 redemptions), and for each size the same script followed by `--batches`
   batches of that size; each on a fresh copy of the cluster. The instructions of the measured batches are the
   difference, divided by their number. Without p_defer, as group commit calls it by default.

It prints instructions per batch and per call for each size, the fixed part (a batch of one less what a further
call adds, from the smallest and largest sizes) and, with `--compare`, the ratio now/REV. Valgrind runs a
process about fifty times slower: the default run takes a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import free_port, fresh_database, say
from bench.ledger_batch_cost import plain_redemptions
from bench.redemption_cpu import insert_vouchers
from devtools import devdb
from services.vouchers.redemptions.group_commit import BATCH_SQL
from shared.dbconnect import libpq_url
from shared.migrations import ROOT, upgrade_all

VOUCHERS = 64
WARM = 50
FUNCTIONS = ("ledger_captures", "ledger_batch")
DATABASE = "bench"
TYPES = (
    "text[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
    "bigint[]",
    "text[]",
    "text[]",
    "int[]",
    "bigint[]",
    "text[]",
    "timestamptz[]",
    "date[]",
    "text[]",
    "boolean",
)
PREPARE = (
    f"PREPARE batch({', '.join(TYPES)}) AS SELECT count(*) FILTER (WHERE status_code = 201) "
    f"FROM vouchers.ledger_batch({', '.join(f'${n}' for n in range(1, len(TYPES) + 1))});\n"
)
NOW = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)


def _literal(value: object, sql_type: str) -> str:
    if value is None:
        return f"NULL::{sql_type}"
    return "'" + str(value).replace("'", "''") + f"'::{sql_type}"


@dataclass
class Calls:
    """Batches of plain M3 redemptions, each call a fresh Idempotency-Key, the vouchers in turn."""

    codes: list[str]
    prefix: str
    count: int = 0

    def arguments(self, size: int) -> list[list[Any]]:
        keys, codes = [], []
        for _ in range(size):
            self.count += 1
            keys.append(f"{self.prefix}-{self.count}")
            codes.append(self.codes[self.count % len(self.codes)])
        return plain_redemptions(keys, codes, NOW)

    def execute(self, size: int) -> str:
        """One batch as an EXECUTE of the prepared call, its arrays written out."""
        parts = [
            "ARRAY[" + ", ".join(_literal(v, sql_type[:-2]) for v in values) + f"]::{sql_type}"
            for values, sql_type in zip(self.arguments(size), TYPES, strict=False)
        ]
        return f"EXECUTE batch({', '.join(parts)}, false);\n"


def _copy(source: Path, target: Path) -> None:
    """A copy of a cluster's directory that keeps its owner (the server's user when we are root)."""
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)


def _functions_at(revision: str) -> list[str]:
    """REV's definitions of the batch functions (migrations/vouchers/functions/)."""
    return [
        subprocess.run(
            ["git", "show", f"{revision}:migrations/vouchers/functions/{name}.sql"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for name in FUNCTIONS
    ]


async def prepare_cluster(work: Path, compare: str | None) -> tuple[Path, Path | None, list[str]]:
    """The cluster every side starts from (step 1 of the module's doc), and with `compare` its copy with REV's
    functions; both stopped."""
    server = devdb.EmbeddedPostgres(data_dir=work / "now", port=free_port())
    try:
        url = await fresh_database(server.start(), DATABASE)
        await asyncio.to_thread(upgrade_all, url)
        codes = await insert_vouchers(libpq_url(url), VOUCHERS)
        connection = await asyncpg.connect(libpq_url(url))
        try:
            warm = Calls(codes, "setup")
            for size in (1, 16) * WARM:  # the tables as a running service leaves them, then their statistics
                rows = await connection.fetch(BATCH_SQL, *warm.arguments(size), False)
                if [row["status_code"] for row in rows] != [201] * size:
                    raise RuntimeError(f"a warm-up batch of {size} was not answered 201 throughout")
            await connection.execute("ANALYZE")
        finally:
            await connection.close()
    finally:
        server.stop()
    if compare is None:
        return server.pgdata, None, codes
    other = devdb.EmbeddedPostgres(data_dir=work / "other", port=free_port())
    other.data_dir.mkdir()
    _copy(server.pgdata, other.pgdata)
    try:
        connection = await asyncpg.connect(other.start().rsplit("/", 1)[0] + f"/{DATABASE}")
        try:
            for source in _functions_at(compare):
                await connection.execute(source)
        finally:
            await connection.close()
    finally:
        other.stop()
    return server.pgdata, other.pgdata, codes


def instructions(cluster: Path, script: Path, work: Path) -> int:
    """Callgrind's instruction count of a single-user backend running `script` on a copy of `cluster`."""
    copy = work / "run"
    if copy.exists():
        shutil.rmtree(copy)
    _copy(cluster, copy)
    out = work / "callgrind" / "out"  # written by the server's user (devdb's when we are root)
    out.parent.mkdir(exist_ok=True)
    out.parent.chmod(0o777)
    try:
        with script.open() as stdin:
            run = subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={out}",
                    devdb.binary("postgres"),
                    "--single",
                    "-D",
                    str(copy),
                    "-c",
                    "fsync=off",  # the WAL flush is the kernel's time, not instructions; off keeps runs short
                    DATABASE,
                ],
                stdin=stdin,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                check=False,
                user=devdb.server_user(),
            )
        if run.returncode != 0:
            raise RuntimeError(f"the single-user backend failed: {run.stderr.decode()[-2000:]}")
        found = re.search(r"^summary: (\d+)$", out.read_text(), re.MULTILINE)
        if found is None:
            raise RuntimeError("callgrind wrote no summary")
        return int(found.group(1))
    finally:
        shutil.rmtree(copy, ignore_errors=True)
        out.unlink(missing_ok=True)


def scripts(work: Path, codes: list[str], sizes: list[int], batches: int) -> tuple[Path, dict[int, Path]]:
    calls = Calls(codes, "warm")
    warm = PREPARE + "".join(calls.execute(1) + calls.execute(16) for _ in range(WARM))
    warm_path = work / "warm.sql"
    warm_path.write_text(warm)
    measured = {}
    for size in sizes:
        batch_calls = Calls(codes, f"m{size}")
        path = work / f"batches-{size}.sql"
        path.write_text(warm + "".join(batch_calls.execute(size) for _ in range(batches)))
        measured[size] = path
    for path in (warm_path, *measured.values()):
        path.chmod(0o644)
    return warm_path, measured


def measure(cluster: Path, work: Path, warm: Path, measured: dict[int, Path], batches: int) -> dict[int, float]:
    """Instructions per batch of each size: each script's count less the warm-up's."""
    base = instructions(cluster, warm, work)
    return {size: (instructions(cluster, path, work) - base) / batches for size, path in measured.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,16", help="calls per batch, comma-separated")
    parser.add_argument("--batches", type=int, default=200, help="measured batches per size")
    parser.add_argument("--compare", help="a git revision whose batch functions run beside today's")
    args = parser.parse_args()
    sizes = sorted({int(size) for size in args.sizes.split(",")})
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="batch-instructions-") as name:
        work = Path(name)
        work.chmod(0o755)
        now, other, codes = asyncio.run(prepare_cluster(work, args.compare))
        warm, measured = scripts(work, codes, sizes, args.batches)
        sides = {"now": now} | ({args.compare: other} if other is not None else {})
        results = {label: measure(cluster, work, warm, measured, args.batches) for label, cluster in sides.items()}
    say(f"instructions per vouchers.ledger_batch() call, {args.batches} batches per size after {WARM} warm-up")
    say("")
    header = "| functions | calls per batch | instructions per batch | per call |"
    if other is not None:
        header += " now / " + args.compare + " |"
    say(header)
    say("|---|---:|---:|---:|" + ("---:|" if other is not None else ""))
    for label, per_batch in results.items():
        for size, count in per_batch.items():
            row = f"| {label} | {size} | {count / 1e6:.3f} M | {count / size / 1e6:.3f} M |"
            if other is not None:
                row += f" {results['now'][size] / results[args.compare][size]:.3f} |" if label == "now" else " |"
            say(row)
    for label, per_batch in results.items():
        if len(per_batch) > 1:
            small, large = sizes[0], sizes[-1]
            further = (per_batch[large] - per_batch[small]) / (large - small)
            say(
                f"- {label}: each further call {further / 1e6:.3f} M instructions; "
                f"the fixed part of a batch {(per_batch[small] - small * further) / 1e6:.3f} M"
            )


if __name__ == "__main__":
    main()
