"""The vouchers process's own CPU per redemption, in process (issue #16): a microbenchmark for code changes.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.redemption_cpu

The vouchers app as `services.vouchers.app.create_app` builds it (every middleware, the first-route
redemption, group commit, the audit writer, the rate limiter's sync) on a throw-away database of
DATABASE_URL's server (migrated, dropped at the end), with M3 vouchers inserted in SQL as the
tests do. N redemptions are then sent one after the other straight into the ASGI app (a scope,
`receive` and `send`: no client, no socket, no HTTP parser), and the process's CPU time
(`time.process_time()`, every thread) is divided by N. The database's round trips are waited for,
not counted: the figure is this process's Python per request, what a change to the request path
moves. Sequential calls, so group commit never batches (one ledger call per redemption).

The event loop is uvloop when installed, as uvicorn's (`--loop auto`) is in production.
`--runs 3` (default) repeats the measured loop on the same app and reports each and the median.
`--compare` also builds the app as it was before issue #16's CPU work (`VOUCHERS_FAST_PATH=false`, the
ledger pool sending asyncpg's reset query on every release) in the same process and measures both in
alternating blocks of `--block` redemptions: a busy machine slows both alike, so their difference holds
where two runs one after the other would differ by more than the change (±15% seen on a shared machine).
The sealer, projector, reconciler and dispatcher are off (their rounds are not per request); the
audit writer and the rate-limit sync run, as in production. Needs DATABASE_URL (never starts the
embedded server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from bench.common import bench_headers, drop_database, fresh_database, say, webhook_secret_env
from devtools import devauth
from shared.dbconnect import libpq_url
from shared.dbroles import login_url
from shared.migrations import upgrade_all

T = TypeVar("T")
VENDOR = "91440300708461136T"
HOLDER = "9144030071526726XG"
PATH_TEMPLATE = "/v1/vouchers/{code}/redemptions"
#: each voucher holds far more than a run redeems (1 fen a redemption)
VOUCHER_FEN = 10**12


async def insert_vouchers(database_url: str, count: int) -> list[str]:
    """M3 vouchers of `VENDOR`, each committed with its issue entry (as tests/exports and tests/hostile insert them)."""
    connection = await asyncpg.connect(database_url)
    codes = [f"M3-BENCHCPU{n:04d}" for n in range(count)]
    try:
        budget = await connection.fetchval(
            "INSERT INTO vouchers.accounts (kind, ref) VALUES ('budget', 'M3:2026') RETURNING id"
        )
        await connection.execute("INSERT INTO vouchers.accounts (kind, ref) VALUES ('vendor_receivable', $1)", VENDOR)
        # the holder's yearly M3 redemption ceiling (redeem.sql), for whatever year the clock says
        await connection.execute(
            "INSERT INTO vouchers.allowances (holder, year, kind, limit_fen, used_fen, clause, parameter) "
            "SELECT $1, y, 'M3.redemptions', $2, 0, 'M3', 'M3.annual_redemption_ceiling_fen' "
            "FROM generate_series(2000, 2100) y",
            HOLDER,
            VOUCHER_FEN,
        )
        for code in codes:
            async with connection.transaction():  # a voucher commits with its issue entry
                holding = await connection.fetchval(
                    "INSERT INTO vouchers.accounts (kind, ref) VALUES ('voucher', $1) RETURNING id", code
                )
                hold = await connection.fetchval(
                    "INSERT INTO vouchers.accounts (kind, ref) VALUES ('hold', $1) RETURNING id", code
                )
                decision = uuid.uuid4()
                voucher_id = await connection.fetchval(
                    "INSERT INTO vouchers.vouchers (code, kind, holder, vendor, decision_id, year, amount_fen, "
                    "available_fen, held_fen, redeemed_fen, returned_fen, valid_until, account_id, hold_account_id, "
                    "budget_account_id) VALUES ($1, 'M3', $2, $3, $4, 2026, $5, $5, 0, 0, 0, '2099-12-31', $6, $7, $8) "
                    "RETURNING id",
                    code,
                    HOLDER,
                    VENDOR,
                    decision,
                    VOUCHER_FEN,
                    holding,
                    hold,
                    budget,
                )
                await connection.execute(
                    "INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, voucher_id, "
                    "decision_id, actor, request_id, parameters_digest) "
                    "VALUES ('issue', $1, $2, $3, $4, $5, 'bench officer', 'bench-issue', 'bench')",
                    budget,
                    holding,
                    VOUCHER_FEN,
                    voucher_id,
                    decision,
                )
    finally:
        await connection.close()
    return codes


class Call:
    """One request straight into the ASGI app; keeps the status and the body."""

    def __init__(self, app: Any, code: str, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.app = app
        self.path = PATH_TEMPLATE.format(code=code)
        self.headers = headers
        self.body = body
        self.status = 0
        self.answer = b""

    async def __call__(self) -> None:
        path = self.path
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": self.headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8003),
            "state": {},
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": self.body, "more_body": False}
            await asyncio.Event().wait()  # a disconnect never comes
            return {"type": "http.disconnect"}

        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        self.answer = b"".join(chunks)


def calls(app: Any, codes: list[str], authorization: str, count: int, tag: str) -> list[Call]:
    made = []
    for n in range(count):
        body = json.dumps({"amount_fen": 1, "invoice_number": f"FP-{tag}-{n}"}).encode()
        headers = [
            (b"host", b"vouchers"),
            (b"authorization", authorization.encode("latin-1")),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"idempotency-key", f"{tag}-{n}".encode()),
            (b"accept", b"*/*"),
            (b"user-agent", b"bench-redemption-cpu"),
        ]
        made.append(Call(app, codes[n % len(codes)], headers, body))
    return made


async def measure(app: Any, codes: list[str], authorization: str, count: int, tag: str) -> float:
    """CPU µs per redemption over `count` sequential calls (all must answer 201)."""
    batch = calls(app, codes, authorization, count, tag)
    started = time.process_time()
    for call in batch:
        await call()
    cpu = time.process_time() - started
    failed = [call for call in batch if call.status != 201]
    if failed:
        raise RuntimeError(f"{len(failed)} calls failed, e.g. HTTP {failed[0].status}: {failed[0].answer[:500]!r}")
    return cpu / count * 1e6


def build(database_url: str, *, fast_path: bool = True) -> Any:
    from services.vouchers.app import create_app
    from services.vouchers.settings import VouchersSettings

    return create_app(
        VouchersSettings(
            database_url=login_url(database_url, "vouchers"),  # type: ignore[arg-type]
            eligibility_url="http://127.0.0.1:9",  # never called: M3 redemptions ask no peer
            registry_url="http://127.0.0.1:9",
            sealer_interval_seconds=0,
            projector_interval_seconds=0,
            reconciliation_interval_seconds=0,
            rate_limit_per_second=1e6,  # the loop is faster than a vendor may be
            rate_limit_burst=10**6,
            fast_path=fast_path,
        )
    )


async def run(database_url: str, args: argparse.Namespace, directory: Path) -> dict[str, list[float]]:
    """Each run's CPU µs per redemption, per app: `now` (the code as it is), and with `--compare` `before`."""
    codes = await insert_vouchers(database_url, args.vouchers)
    authorization = bench_headers(directory, "vendor", org=VENDOR, name="bench vendor")["Authorization"]
    apps = {"now": build(database_url)}
    if args.compare:
        apps["before"] = build(database_url, fast_path=False)
    figures: dict[str, list[float]] = {name: [] for name in apps}
    async with contextlib.AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
        if args.compare:  # asyncpg's reset query on every release, as before issue #16's CPU work
            apps["before"].state.ledger_pool.pool._reset = None
        for name, app in apps.items():
            await measure(app, codes, authorization, args.warmup, f"warmup-{name}-{os.getpid()}")
        block = min(args.block, args.requests) if args.compare else args.requests
        for n in range(args.runs):
            spent = dict.fromkeys(apps, 0.0)
            for start in range(0, args.requests, block):  # interleaved: both see the machine as it is
                count = min(block, args.requests - start)
                for name, app in apps.items():
                    tag = f"run{n}-{start}-{name}-{os.getpid()}"
                    spent[name] += await measure(app, codes, authorization, count, tag) * count
            for name in apps:
                figures[name].append(spent[name] / args.requests)
            say(
                f"run {n + 1}: "
                + ", ".join(f"{name} {figures[name][-1]:.1f}" for name in apps)
                + f" µs CPU per redemption ({args.requests} redemptions each)"
            )
    return figures


def event_loop_run(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when installed, as uvicorn does (`--loop auto`); else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="redemptions per measured run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--vouchers", type=int, default=20, help="redemptions go round these vouchers")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also measure the app as it was before issue #16's CPU work (VOUCHERS_FAST_PATH=false, asyncpg's "
        "reset query on every release), in the same process, in alternating blocks",
    )
    parser.add_argument("--block", type=int, default=250, help="redemptions per block with --compare")
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL")
    if not server:
        sys.exit("DATABASE_URL is needed (e.g. postgresql://postgres@127.0.0.1:5432/postgres)")
    server = libpq_url(server)
    name = f"bench_redemption_cpu_{os.getpid()}"
    database_url = asyncio.run(fresh_database(server, name))
    try:
        with tempfile.TemporaryDirectory(prefix="bench-redemption-cpu-") as temporary:
            directory = Path(temporary)
            _, jwks = devauth.ensure_keys(directory)
            os.environ["AUTH_JWKS"] = str(jwks)
            os.environ.update(webhook_secret_env(directory))
            upgrade_all(database_url)
            figures = event_loop_run(run(database_url, args, directory))
    finally:
        asyncio.run(drop_database(server, name))
    medians = {name: statistics.median(values) for name, values in figures.items()}
    say(
        f"median of {args.runs}: "
        + ", ".join(f"{name} {median:.1f}" for name, median in medians.items())
        + " µs CPU per redemption"
    )
    if "before" in medians:
        saved = medians["before"] - medians["now"]
        say(f"now saves {saved:.1f} µs CPU per redemption ({saved / medians['before']:.0%})")


if __name__ == "__main__":
    main()
