"""PostgreSQL's CPU per group-commit batch by the batch's size: what a batch costs whatever its size, what each call
adds, and the per-call path beside it (issue #16).

    .venv/bin/python -m bench.ledger_batch_cost [--sizes 1,2,4,8,16,32] [--calls 4000] [--rounds 2]

Why it exists: two vouchers processes on two cores write the same load in smaller batches than one process (10.3
calls against 16.4 in `make bench-ledger-rounds`) and spend more of PostgreSQL's CPU per redemption, and the rounds
cannot say how much of a batch's cost does not depend on its size. This asks PostgreSQL directly, with no service
and no HTTP: on a throw-away database (DATABASE_URL's server, or the embedded one; migrated; dropped at the end)
with M3 vouchers inserted in SQL (`bench.redemption_cpu.insert_vouchers`), one connection calls
`vouchers.ledger_batch()` exactly as `services/vouchers/redemptions/group_commit.py` does, with batches of plain
M3 redemptions of each size in turn, and reads its backend's CPU time from /proc (user + system: the commit's WAL
flush is in it). For each size it prints the backend's CPU per batch and per call, and the wall time per batch.

- `--per-call`: the same sizes again with the batch function's set-by-set path turned off (a copy of
  `vouchers.ledger_batch()` created in the throw-away database whose set-by-set branch runs only at or above a
  size it is given), so its batches answer call by call inside one transaction (`vouchers.redeem()` per call);
  and single calls of `vouchers.redeem()` alone (its own transaction), the path a call takes when its lane is
  idle. This shows where set-by-set pays.

Sequential batches on one connection, so the figures are PostgreSQL's own cost, not contention's. The machine's
speed moves between minutes (docs/benchmarks.md): `--rounds` repeats every size, and the sizes of a round run
one after the other, so compare within a round.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench import profile
from bench.common import drop_database, fresh_database, postgres_server, say
from bench.redemption_cpu import VENDOR, insert_vouchers
from services.vouchers.redemptions.group_commit import BATCH_SQL
from services.vouchers.redemptions.repository import REDEEM_SQL
from shared.dbconnect import libpq_url
from shared.migrations import ROOT, upgrade_all

VOUCHERS = 64
#: the set-by-set branch of vouchers.ledger_batch(), and the same with a size below which it is skipped
SET_BY_SET = "IF cardinality(l_deferred) = 0 THEN"
SET_BY_SET_FROM = (
    "IF cardinality(l_deferred) = 0 AND coalesce(array_length(p_op, 1), 0) >= current_setting('bench.set_from')::int "
    "THEN"
)


def plain_redemptions(keys: list[str], codes: list[str], now: datetime) -> list[list[Any]]:
    """`vouchers.ledger_batch()`'s arrays (all but p_defer) for plain M3 redemptions of 1 fen by `VENDOR`, the i-th
    with Idempotency-Key `keys[i]` on voucher `codes[i]`, as group commit sends them."""
    size = len(keys)
    return [
        ["redeem"] * size,
        [VENDOR] * size,
        keys,
        [hashlib.sha256(key.encode()).hexdigest() for key in keys],
        codes,
        [1] * size,
        [f"INV-{key}" for key in keys],
        [None] * size,
        [None] * size,
        [None] * size,
        [None] * size,
        [now] * size,
        [now.date()] * size,
        [f"req-{key}" for key in keys],
    ]


class Caller:
    """Batches and single calls on one connection, each call a fresh Idempotency-Key, the vouchers in turn."""

    def __init__(self, connection: asyncpg.Connection, codes: list[str]) -> None:
        self.connection = connection
        self.codes = codes
        self.count = 0

    def _next(self) -> tuple[str, str]:
        self.count += 1
        return f"bench-{self.count}", self.codes[self.count % len(self.codes)]

    async def batch(self, size: int) -> None:
        calls = [self._next() for _ in range(size)]
        arrays = plain_redemptions([key for key, _ in calls], [code for _, code in calls], datetime.now(UTC))
        rows = await self.connection.fetch(BATCH_SQL, *arrays, True)
        refused = [dict(row) for row in rows if row["status_code"] != 201]
        if len(rows) != size or refused:
            raise RuntimeError(f"a batch of {size} was not answered 201 throughout: {refused[:1]}")

    async def single(self) -> None:
        now = datetime.now(UTC)
        key, code = self._next()
        digest = hashlib.sha256(key.encode()).hexdigest()
        row = await self.connection.fetchrow(
            REDEEM_SQL, VENDOR, key, digest, code, VENDOR, 1, f"INV-{key}", None, None, now, now.date(), f"req-{key}"
        )
        if row is None or row["status_code"] != 201:
            raise RuntimeError(f"a single redemption was not answered 201: {dict(row) if row else None}")


async def measure(pid: int, label: str, size: int, calls: int, run: Callable[[], Awaitable[None]]) -> None:
    batches = max(1, calls // size)
    cpu, wall = profile.cpu_seconds(pid), time.perf_counter()
    for _ in range(batches):
        await run()
    cpu, wall = profile.cpu_seconds(pid) - cpu, time.perf_counter() - wall
    say(
        f"| {label} | {size} | {batches:,} | {cpu / batches * 1e6:,.0f} µs | {cpu / (batches * size) * 1e6:,.0f} µs "
        f"| {wall / batches * 1e3:.2f} ms |"
    )


async def run(args: argparse.Namespace, server_url: str) -> None:
    name = f"bench_batch_cost_{os.getpid()}"
    url = await fresh_database(server_url, name)
    try:
        await asyncio.to_thread(upgrade_all, url)
        codes = await insert_vouchers(libpq_url(url), VOUCHERS)
        connection = await asyncpg.connect(libpq_url(url))
        try:
            if args.per_call:  # a copy of the batch function that can skip its set-by-set branch (module doc)
                source = (ROOT / "migrations/vouchers/functions/ledger_batch.sql").read_text()
                if SET_BY_SET not in source:
                    raise RuntimeError("vouchers.ledger_batch() no longer has the branch this benchmark switches")
                await connection.execute(source.replace(SET_BY_SET, SET_BY_SET_FROM))
                await connection.execute("SET bench.set_from = 1")
            pid = await connection.fetchval("SELECT pg_backend_pid()")
            caller = Caller(connection, codes)
            for size in (1, 16):  # the statements planned, the caches warm
                for _ in range(50):
                    await caller.batch(size)
            say("")
            say("| path | calls per batch | batches | PostgreSQL CPU per batch | per call | wall per batch |")
            say("|---|---:|---:|---:|---:|---:|")
            for number in range(1, args.rounds + 1):
                say(f"| **round {number}** | | | | | |")
                for size in args.sizes:
                    await measure(pid, "set by set", size, args.calls, lambda size=size: caller.batch(size))
                if args.per_call:
                    await connection.execute("SET bench.set_from = 1000000")
                    for size in args.sizes:
                        await measure(pid, "call by call", size, args.calls, lambda size=size: caller.batch(size))
                    await connection.execute("SET bench.set_from = 1")
                    await measure(pid, "`vouchers.redeem()` alone", 1, args.calls, caller.single)
        finally:
            await connection.close()
    finally:
        await drop_database(server_url, name)


def sizes(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(not 1 <= value <= 1000 for value in values):
        raise argparse.ArgumentTypeError("sizes from 1 to 1000, comma-separated")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_batch_cost", description=__doc__)
    parser.add_argument("--sizes", type=sizes, default=[1, 2, 4, 8, 16, 32], help="calls per batch (1,2,4,8,16,32)")
    parser.add_argument("--calls", type=int, default=4_000, help="calls per size and path (default 4000)")
    parser.add_argument("--rounds", type=int, default=2, help="every size this many times (default 2)")
    parser.add_argument("--per-call", action="store_true", help="also call by call, and vouchers.redeem() alone")
    args = parser.parse_args(argv)
    server_url, started, where = postgres_server()
    say(f"PostgreSQL: {where}; {VOUCHERS} M3 vouchers; one connection, batches one after the other")
    try:
        asyncio.run(run(args, server_url))
    finally:
        if started is not None:
            started.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
