"""Export benchmark: ledger entries streamed as NDJSON and CSV over HTTP, rate and memory as the ledger grows.

    .venv/bin/python -m bench.export_bench [--sizes 10000,100000,1000000]
    make bench-export

One run, on this machine, all on 127.0.0.1:

1. a fresh database `bench_export_<pid>` on DATABASE_URL's server, or on the embedded
   PostgreSQL 18 when DATABASE_URL is unset; migrated; dropped at the end, even on failure;
2. a signing key and its JWKS in a temporary directory (`devtools.devauth.ensure_keys`), and a
   `platform` token minted with `shared.tokens.TokenSigner`;
3. the vouchers service as a real uvicorn process (one worker, default settings, AUTH_JWKS
   pointing at that JWKS), with its background sealer off (`VOUCHERS_SEALER_INTERVAL_SECONDS=0`:
   hashing a million fresh entries would otherwise share the two cores with the exports);
4. for each of --sizes: the ledger is filled with SQL to that many entries, as the tables'
   owner (a valid ledger: 1,000 M1 vouchers issued from a budget, then captured redemptions of
   1 to 1,000 yuan to 20 compute vendors, each with its redemption row and its `redeem` entry,
   the vouchers' amounts moved by the same totals, so the ledger's invariants hold; one memo in
   50 has a comma, double quotes, Chinese and a line break); VACUUM ANALYZE and CHECKPOINT; then
   - **baseline**: `COPY (SELECT * FROM vouchers.entries ORDER BY id) TO STDOUT (FORMAT csv)`
     through asyncpg in this process, the bytes counted and dropped;
   - the export's own query through the same COPY, without HTTP (NDJSON and CSV);
   - the alternative to COPY: the same rows through a server-side cursor, `json.dumps` per
     row in Python (this process, no HTTP);
   - `GET /v1/exports/ledger-entries?format=ndjson` and `?format=csv` over HTTP with the
     platform token (httpx, streamed, bytes and newlines counted): rows/s, MB/s, time to first
     byte, and the vouchers process's peak resident memory during that export (its VmHWM, reset
     before each export through /proc/<pid>/clear_refs);
   - checks: 200, the NDJSON trailer's `rows` equals the ledger's entries and the lines before
     it, the CSV has a header and one record per entry (line breaks counted, less those inside
     memos), and the invariants (`services.vouchers.invariants.check_database`) hold.

It ends with a Markdown block to paste into docs/benchmarks.md. Exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx

from bench.common import (
    HOST,
    credit_codes,
    drop_database,
    free_port,
    fresh_database,
    keep_local,
    machine,
    postgres_server,
    say,
    signals_ignored,
)
from devtools import devauth
from devtools.devrun import Stack, start_service, stop_services, wait_ready
from shared.auth import PLATFORM
from shared.exports.query import ExportFormat, copy_options
from shared.migrations import upgrade_all
from shared.tokens import TokenSigner

VOUCHERS = 1_000
VENDORS = 20
VOUCHER_FEN = 10**13  # far more than the redemptions take
FILL_BATCH = 200_000
START = "2026-01-01T00:00:00+08:00"
STEP_SECONDS = 20  # between two filler entries: 1,000,000 entries span about 231 days
SEED = 20261127
ROUTE = "/v1/exports/ledger-entries"
BASELINE_SQL = "SELECT * FROM vouchers.entries ORDER BY id"
FORMATS: tuple[ExportFormat, ...] = ("ndjson", "csv")


# --- the ledger, filled with SQL ---------------------------------------------------------------

SETUP_SQL = """
WITH budget AS (
    INSERT INTO vouchers.accounts (kind, ref) VALUES ('budget', 'M1:2026') RETURNING id
), vendors AS (
    INSERT INTO vouchers.accounts (kind, ref) SELECT 'vendor_receivable', unnest($1::text[]) RETURNING id
), holding AS (
    INSERT INTO vouchers.accounts (kind, ref)
    SELECT 'voucher', 'BENCH-EXPORT-' || lpad(n::text, 4, '0') FROM generate_series(1, $3::int) n RETURNING id, ref
), held AS (
    INSERT INTO vouchers.accounts (kind, ref)
    SELECT 'hold', 'BENCH-EXPORT-' || lpad(n::text, 4, '0') FROM generate_series(1, $3::int) n RETURNING id, ref
), issued AS (
    INSERT INTO vouchers.vouchers (code, kind, holder, decision_id, year, amount_fen, available_fen, held_fen,
                                   redeemed_fen, returned_fen, valid_until, account_id, hold_account_id,
                                   budget_account_id, issued_by, issued_at)
    SELECT holding.ref, 'M1', ($2::text[])[1 + (n - 1) % array_length($2::text[], 1)], gen_random_uuid(), 2026,
           $4::bigint, $4::bigint, 0, 0, 0, DATE '2027-12-31', holding.id, held.id, budget.id, 'bench officer',
           $5::timestamptz
    FROM (SELECT id, ref, substr(ref, 14)::int AS n FROM holding) holding
    JOIN held ON held.ref = holding.ref, budget
    RETURNING id, account_id, budget_account_id, decision_id, amount_fen, issued_at
)
INSERT INTO vouchers.entries (created_at, kind, from_account_id, to_account_id, amount_fen, voucher_id, decision_id,
                              actor, request_id, memo)
SELECT issued_at, 'issue', budget_account_id, account_id, amount_fen, id, decision_id, 'bench officer',
       md5('issue' || id), '算力券发放 M1'
FROM issued ORDER BY id
"""

FILL_SQL = """
WITH g AS (
    SELECT n, $3::timestamptz + make_interval(secs => n * $4::int) AS at,
           ($2::text[])[1 + n % array_length($2::text[], 1)] AS vendor,
           1 + (n * 7919) % $5::int AS pick
    FROM generate_series($1::bigint, $6::bigint) n
), r AS (
    INSERT INTO vouchers.redemptions (voucher_id, vendor, amount_fen, invoice_number, contract_number, status,
                                      year, created_at, updated_at)
    SELECT v.id, g.vendor, 100 * (1 + (g.n * 104729) % 100000), 'FP-' || g.n, 'HT-' || (g.n % 997), 'captured',
           2026, g.at, g.at
    FROM g JOIN vouchers.vouchers v ON v.code = 'BENCH-EXPORT-' || lpad(g.pick::text, 4, '0')
    RETURNING id, voucher_id, vendor, amount_fen, invoice_number, contract_number, created_at
), e AS (
    INSERT INTO vouchers.entries (created_at, kind, from_account_id, to_account_id, amount_fen, voucher_id,
                                  redemption_id, contract_ref, actor, request_id, memo)
    SELECT r.created_at, 'redeem', v.account_id, a.id, r.amount_fen, r.voucher_id, r.id, r.contract_number,
           r.vendor, md5(r.invoice_number),
           CASE WHEN r.id % 50 = 0 THEN '发票 ' || r.invoice_number || ', "加急", 第一行' || E'\\n' || '第二行' END
    FROM r JOIN vouchers.vouchers v ON v.id = r.voucher_id
    JOIN vouchers.accounts a ON a.kind = 'vendor_receivable' AND a.ref = r.vendor
    ORDER BY r.id
    RETURNING voucher_id, amount_fen
)
UPDATE vouchers.vouchers v SET available_fen = v.available_fen - t.total, redeemed_fen = v.redeemed_fen + t.total
FROM (SELECT voucher_id, sum(amount_fen) AS total FROM e GROUP BY voucher_id) t
WHERE v.id = t.voucher_id
"""


async def _connect(database_url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(database_url, timeout=10)


async def fill(database_url: str, target: int, vendors: list[str], holders: list[str]) -> tuple[int, float]:
    """Grow the ledger to `target` entries (issue entries first, then redemptions); (added, seconds)."""
    connection = await _connect(database_url)
    try:
        started = time.perf_counter()
        before = int(await connection.fetchval("SELECT count(*) FROM vouchers.entries"))
        if before == 0:
            await connection.execute(SETUP_SQL, vendors, holders, VOUCHERS, VOUCHER_FEN, datetime.fromisoformat(START))
        count = int(await connection.fetchval("SELECT count(*) FROM vouchers.entries"))
        start = datetime.fromisoformat(START)
        while count < target:
            first = int(await connection.fetchval("SELECT coalesce(max(id), 0) + 1 FROM vouchers.redemptions"))
            batch = min(FILL_BATCH, target - count)
            async with connection.transaction():
                await connection.execute(FILL_SQL, first, vendors, start, STEP_SECONDS, VOUCHERS, first + batch - 1)
            count += batch
            say(f"  {count:>10,} entries ({(count - before) / (time.perf_counter() - started):,.0f}/s)")
        return count - before, time.perf_counter() - started
    finally:
        await connection.close()


async def settle(database_url: str) -> None:
    connection = await _connect(database_url)
    try:
        for table in ("entries", "redemptions", "vouchers", "accounts"):
            await connection.execute(f"VACUUM (ANALYZE) vouchers.{table}")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def ledger_facts(database_url: str) -> tuple[int, int, int]:
    """(entries, memos with a line break, bytes of the entries table with its indexes)."""
    connection = await _connect(database_url)
    try:
        entries = int(await connection.fetchval("SELECT count(*) FROM vouchers.entries"))
        broken = int(await connection.fetchval("SELECT count(*) FROM vouchers.entries WHERE strpos(memo, E'\\n') > 0"))
        size = int(await connection.fetchval("SELECT pg_total_relation_size('vouchers.entries')"))
        return entries, broken, size
    finally:
        await connection.close()


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Run:
    label: str
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0
    first_byte: float = 0.0
    peak_rss: int | None = None  # kB, the vouchers process's VmHWM during the run
    rss_after: int | None = None  # kB
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds during the run: postgres, vouchers, client
    problems: list[str] = field(default_factory=list)

    def cpu_per_million(self) -> str:
        if not self.rows or not self.cpu:
            return ""
        scale = 1e6 / self.rows
        return " / ".join(f"{self.cpu.get(who, 0.0) * scale:.1f} s" for who in ("postgres", "vouchers", "client"))

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0


@dataclass
class Size:
    entries: int
    memo_breaks: int
    table_bytes: int
    filled: int
    fill_seconds: float
    runs: list[Run] = field(default_factory=list)

    def run(self, label: str) -> Run:
        return next(r for r in self.runs if r.label == label)


def proc_status(pid: int) -> dict[str, int]:
    found: dict[str, int] = {}
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                found[name] = int(value.split()[0])
    return found


def _cpu_seconds(stat: str, children: bool = False) -> float:
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(service_pid: int | None) -> dict[str, float]:
    """CPU seconds so far: the PostgreSQL server's processes (the postmaster with its reaped
    children, so a backend that ends during the run still counts, and its live children), the
    vouchers process, and this process (the client)."""
    postgres = 0.0
    service = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid != service_pid and POSTMASTER[0] is None:
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if pid == service_pid:
            service = _cpu_seconds(stat)
        elif pid == POSTMASTER[0]:
            postgres += _cpu_seconds(stat, children=True)
        elif parent == POSTMASTER[0]:
            postgres += _cpu_seconds(stat)
    return {"postgres": postgres, "vouchers": service, "client": time.process_time()}


#: the PostgreSQL server's postmaster, when it runs on this machine (found through a backend)
POSTMASTER: list[int | None] = [None]


async def find_postmaster(database_url: str) -> None:
    connection = await _connect(database_url)
    try:
        backend = int(await connection.fetchval("SELECT pg_backend_pid()"))
        stat = await asyncio.to_thread(Path(f"/proc/{backend}/stat").read_text)  # while the backend lives
    except OSError:
        return  # not a local server: no PostgreSQL CPU figures
    finally:
        await connection.close()
    POSTMASTER[0] = int(stat[stat.rindex(")") + 2 :].split()[1])


def cpu_since(before: dict[str, float], service_pid: int | None) -> dict[str, float]:
    after = cpu_snapshot(service_pid)
    return {who: after[who] - before[who] for who in before}


def reset_peak(pid: int) -> bool:
    """Reset a process's peak RSS (VmHWM) to its current RSS (Linux ≥ 4.0: clear_refs, value 5)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def copy_directly(database_url: str, sql: str, options: dict[str, Any], run: Run) -> None:
    """COPY through asyncpg, in this process, the bytes counted and dropped."""
    connection = await _connect(database_url)
    try:
        seen = 0
        first: float | None = None
        cpu = cpu_snapshot(None)
        started = time.perf_counter()

        async def sink(data: bytes) -> None:
            nonlocal seen, first
            if first is None:
                first = time.perf_counter() - started
            seen += len(data)

        status = await connection.copy_from_query(sql, output=sink, **options)
        run.seconds = time.perf_counter() - started
        run.cpu = cpu_since(cpu, None)
        run.first_byte = first or run.seconds
        run.bytes = seen
        run.rows = int(str(status).rsplit(" ", 1)[-1])
    finally:
        await connection.close()


async def cursor_in_python(database_url: str, run: Run) -> None:
    """The alternative to COPY: a server-side cursor (asyncpg, prefetch 2,000) and `json.dumps`
    per row in Python, the lines built and dropped; the same columns and order as the export."""
    from services.vouchers.exports import ENTRY_COLUMNS, ENTRY_SOURCE

    select = ", ".join(f"{column.sql} AS {column.name}" for column in ENTRY_COLUMNS)
    sql = f"SELECT {select} FROM {ENTRY_SOURCE} ORDER BY e.id"
    connection = await _connect(database_url)
    try:
        cpu = cpu_snapshot(None)
        started = time.perf_counter()
        async with connection.transaction():
            async for row in connection.cursor(sql, prefetch=2_000):
                record = dict(row)
                record["created_at"] = record["created_at"].isoformat()
                if record["decision_id"] is not None:
                    record["decision_id"] = str(record["decision_id"])
                line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
                if not run.rows:
                    run.first_byte = time.perf_counter() - started
                run.rows += 1
                run.bytes += len(line)
        run.seconds = time.perf_counter() - started
        run.cpu = cpu_since(cpu, None)
    finally:
        await connection.close()


def export_sql(export_format: ExportFormat) -> str:
    from services.vouchers.exports import entries_query

    return entries_query().select_sql(export_format)


def over_http(url: str, token: str, export_format: str, pid: int, size: Size, run: Run) -> None:
    """Stream one export; count bytes and line breaks; keep the last line (the NDJSON trailer)."""
    peak_resettable = reset_peak(pid)
    newlines = 0
    tail = b""
    cpu = cpu_snapshot(pid)
    started = time.perf_counter()
    with (
        httpx.Client(timeout=httpx.Timeout(60.0), headers={"Authorization": f"Bearer {token}"}) as client,
        client.stream("GET", url + ROUTE, params={"format": export_format}) as response,
    ):
        if response.status_code != 200:
            response.read()
            run.problems.append(f"{run.label}: answered {response.status_code}: {response.text[:300]}")
            return
        for chunk in response.iter_raw(256 * 1024):
            if not run.bytes:
                run.first_byte = time.perf_counter() - started
            run.bytes += len(chunk)
            newlines += chunk.count(b"\n")
            tail = (tail + chunk)[-4096:]
    run.seconds = time.perf_counter() - started
    run.cpu = cpu_since(cpu, pid)
    status = proc_status(pid)
    run.peak_rss = status.get("VmHWM") if peak_resettable else None
    run.rss_after = status.get("VmRSS")
    if export_format == "ndjson":
        last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        try:
            trailer = json.loads(last)["end"]
        except (ValueError, KeyError, TypeError):
            run.problems.append(f"{run.label}: no trailer line at the end")
            return
        run.rows = int(trailer["rows"])
        if not run.rows == newlines - 1 == size.entries:
            run.problems.append(
                f"{run.label}: trailer rows {run.rows:,}, {newlines - 1:,} lines before it, {size.entries:,} entries"
            )
    else:
        run.rows = newlines - 1 - size.memo_breaks
        if run.rows != size.entries:
            run.problems.append(f"{run.label}: {run.rows:,} CSV records for {size.entries:,} entries")


def slow_reader(url: str, token: str, pid: int, run: Run, seconds: float = 5.0) -> None:
    """A client that reads 64 KiB every 10 ms (about 6 MB/s) through a small socket buffer, then
    leaves: the export waits for it (backpressure) and the process's memory must not grow."""
    import socket

    peak_resettable = reset_peak(pid)
    transport = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)])
    started = time.perf_counter()
    with (
        httpx.Client(transport=transport, timeout=60, headers={"Authorization": f"Bearer {token}"}) as client,
        client.stream("GET", url + ROUTE) as response,
    ):
        if response.status_code != 200:
            run.problems.append(f"{run.label}: answered {response.status_code}")
            return
        for chunk in response.iter_raw(64 * 1024):
            if not run.bytes:
                run.first_byte = time.perf_counter() - started
            run.bytes += len(chunk)
            run.rows += chunk.count(b"\n")
            if time.perf_counter() - started > seconds:
                break
            time.sleep(0.01)
    run.seconds = time.perf_counter() - started
    status = proc_status(pid)
    run.peak_rss = status.get("VmHWM") if peak_resettable else None
    run.rss_after = status.get("VmRSS")


def measure(database_url: str, url: str, token: str, pid: int, size: Size, slow: bool) -> None:
    baseline = Run("baseline: COPY (SELECT * FROM vouchers.entries ORDER BY id) TO STDOUT (FORMAT csv), asyncpg")
    asyncio.run(copy_directly(database_url, BASELINE_SQL, {"format": "csv"}, baseline))
    size.runs.append(baseline)
    for export_format in FORMATS:
        direct = Run(f"export query, {export_format}, COPY through asyncpg (no HTTP)")
        asyncio.run(copy_directly(database_url, export_sql(export_format), copy_options(export_format), direct))
        size.runs.append(direct)
    alternative = Run("alternative: server-side cursor + json.dumps per row in Python (no HTTP)")
    asyncio.run(cursor_in_python(database_url, alternative))
    size.runs.append(alternative)
    for export_format in FORMATS:
        run = Run(f"GET {ROUTE}?format={export_format}")
        over_http(url, token, export_format, pid, size, run)
        size.runs.append(run)
    if slow:
        run = Run(f"GET {ROUTE}?format=ndjson, slow client (~6 MB/s for 5 s, then gone)")
        slow_reader(url, token, pid, run)
        size.runs.append(run)
    for run in size.runs:
        peak = f", peak RSS {run.peak_rss / 1024:,.1f} MiB" if run.peak_rss else ""
        if run.cpu:
            peak += f", CPU per 1M rows (postgres / vouchers / client) {run.cpu_per_million()}"
        say(
            f"  {run.label}: {run.rows:,} rows in {run.seconds:.2f} s = {run.rate:,.0f} rows/s, "
            f"{run.mb_per_s:,.1f} MB/s, first byte {run.first_byte * 1000:,.0f} ms{peak}"
        )


def check_invariants(database_url: str) -> list[str]:
    from services.vouchers.invariants import check_database

    return [str(v) for v in asyncio.run(check_database(database_url))[:10]]


# --- output --------------------------------------------------------------------------------------


def markdown(argv: list[str], sizes: list[Size], results: dict[str, Any]) -> str:
    from bench.ledger_bench import code_version, versions

    info = machine()
    lines = [
        f"Command: `{shlex.join(['.venv/bin/python', '-m', 'bench.export_bench', *argv])}`"
        + (" (what `make bench-export` runs)" if not argv else "")
        + f" — run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| | |",
        "|---|---|",
        f"| machine | {info['nproc']} cores (nproc), {info['cpu']}, {info['memory']} RAM, {info['os']} |",
        f"| Python | {info['python']}; {versions()}, httpx {httpx.__version__} (the client) |",
        f"| code | {code_version()} |",
        f"| PostgreSQL | {results['postgres']} ({results['where']}) |",
        f"| vouchers process | uvicorn, 1 worker, default settings but the sealer off; RSS after start-up "
        f"{results['rss_start'] / 1024:,.1f} MiB |",
        f"| ledger | {VOUCHERS:,} M1 vouchers issued, then captured redemptions to {VENDORS} vendors "
        "(filled with SQL) |",
        "",
        "| entries | table + indexes | filled in | run | rows/s | MB/s | bytes | first byte | "
        "ratio to baseline | ratio to the same query through COPY | CPU per 1M rows: postgres / vouchers / client "
        "| vouchers peak RSS during the export |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        baseline = size.runs[0]
        direct = {
            fmt: next((r for r in size.runs if r.label.startswith(f"export query, {fmt}")), None) for fmt in FORMATS
        }
        for index, run in enumerate(size.runs):
            slow = "slow client" in run.label
            ratio = (
                f"{run.rate / baseline.rate:.2f}"
                if baseline.rate and index and not slow
                else ("1" if not index else "")
            )
            same = next(
                (direct[f] for f in FORMATS if run.label.startswith("GET") and f"format={f}" in run.label), None
            )
            http_ratio = f"{run.rate / same.rate:.2f}" if same and same.rate and not slow else ""
            peak = (
                f"**{run.peak_rss / 1024:,.1f} MiB**" if run.peak_rss else ("—" if run.label.startswith("GET") else "")
            )
            head = (
                (
                    f"{size.entries:,}",
                    f"{size.table_bytes / 2**20:,.0f} MiB",
                    f"+{size.filled:,} in {size.fill_seconds:.1f} s",
                )
                if index == 0
                else ("", "", "")
            )
            lines.append(
                f"| {' | '.join(head)} | {run.label} | {run.rate:,.0f} | {run.mb_per_s:,.1f} | "
                f"{run.bytes / 2**20:,.1f} MiB | {run.first_byte * 1000:,.0f} ms | {ratio} | {http_ratio} | "
                f"{'' if slow else run.cpu_per_million()} | {peak} |"
            )
    checks = results["checks"]
    lines += ["", f"Checks: {checks}."]
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < VOUCHERS + 1:
        raise argparse.ArgumentTypeError(f"sizes must be above {VOUCHERS} (the issue entries)")
    return sizes


def main(argv: list[str] | None = None) -> int:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", type=parse_sizes, default=[10_000, 100_000, 1_000_000], help="ledger sizes (default 10k,100k,1M)"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the service's log file")
    args = parser.parse_args(argv)

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    for name in ("NO_PROXY", "no_proxy"):
        os.environ[name] = keep_local(os.environ.get(name, ""))

    import random

    rng = random.Random(SEED)
    vendors = credit_codes(rng, VENDORS)
    holders = credit_codes(rng, 200)
    name = f"bench_export_{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="bench_export_"))
    server_url: str | None = None
    started_server = None
    created = False
    processes: dict[str, subprocess.Popen[bytes]] = {}
    log: IO[bytes] | None = None
    problems: list[str] = []
    ok = False
    try:
        server_url, started_server, where = postgres_server()
        database_url = asyncio.run(fresh_database(server_url, name))
        created = True
        say(f"database {name}: migrating")
        upgrade_all(database_url)
        postgres = asyncio.run(_version(database_url))
        asyncio.run(find_postmaster(database_url))

        keys, jwks = devauth.ensure_keys(work / "auth")
        signer = TokenSigner(keys, issuer="longgang-ai-identity", audience="longgang-ai", lifetime_seconds=3600)
        token = signer.sign("bench-platform", [PLATFORM], name="export benchmark (platform)")
        stack = Stack(database_url, HOST, {"vouchers": free_port()})
        log = (work / "vouchers.log").open("wb")
        environment = {
            "AUTH_JWKS": str(jwks),
            "AUTH_ISSUER": "longgang-ai-identity",
            "AUTH_AUDIENCE": "longgang-ai",
            "VOUCHERS_SEALER_INTERVAL_SECONDS": "0",
        }
        processes["vouchers"] = start_service(stack, "vouchers", log=log, extra_env=environment)
        wait_ready(stack, processes, timeout=60)
        pid = processes["vouchers"].pid
        rss_start = proc_status(pid).get("VmRSS", 0)
        say(f"vouchers service ready at {stack.url('vouchers')} (pid {pid}, RSS {rss_start / 1024:,.1f} MiB)")

        sizes: list[Size] = []
        for target in args.sizes:
            say(f"ledger: filling to {target:,} entries with SQL")
            added, seconds = asyncio.run(fill(database_url, target, vendors, holders))
            asyncio.run(settle(database_url))
            entries, breaks, table_bytes = asyncio.run(ledger_facts(database_url))
            size = Size(entries, breaks, table_bytes, added, seconds)
            say(f"  {entries:,} entries ({table_bytes / 2**20:,.0f} MiB with indexes), {breaks:,} memos with a newline")
            measure(database_url, stack.url("vouchers"), token, pid, size, slow=target == args.sizes[-1])
            sizes.append(size)
            for run in size.runs:
                problems += run.problems
        say("checking the ledger's invariants")
        violations = check_invariants(database_url)
        problems += [f"invariant {v}" for v in violations]
        checks = (
            "every export answered 200; each NDJSON trailer's `rows` = the lines before it = the ledger's entries; "
            "each CSV = header + one record per entry; "
            + ("the ledger's invariants hold" if not violations else f"{len(violations)} invariant violations")
        )
        if problems:
            checks = "FAILED: " + "; ".join(problems[:5])
        say("\n--- paste into docs/benchmarks.md " + "-" * 40 + "\n")
        say(markdown(argv, sizes, {"postgres": postgres, "where": where, "rss_start": rss_start, "checks": checks}))
        say("\n" + "-" * 74)
        ok = not problems
        if not ok:
            say("\nFAILED:")
            for problem in problems:
                say(f"  ! {problem}")
        return 0 if ok else 1
    except (RuntimeError, TimeoutError, OSError, httpx.HTTPError, subprocess.TimeoutExpired) as exc:
        say(f"error: {type(exc).__name__}: {exc}")
        return 1
    finally:
        with signals_ignored():
            stop_services(processes)
            if log is not None:
                log.close()
            if created and server_url:
                try:
                    asyncio.run(drop_database(server_url, name))
                    say(f"database {name} dropped")
                except Exception as exc:  # report it, keep cleaning up
                    say(f"! could not drop database {name}: {exc}")
            if started_server is not None:
                started_server.stop()
                say("embedded PostgreSQL stopped (it was not running before)")
            if ok and not args.keep_logs:
                shutil.rmtree(work, ignore_errors=True)
            else:
                say(f"service log kept in {work}")


async def _version(database_url: str) -> str:
    connection = await _connect(database_url)
    try:
        return str(await connection.fetchval("SELECT version()"))
    finally:
        await connection.close()


if __name__ == "__main__":
    raise SystemExit(main())
