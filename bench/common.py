"""What the benchmarks share: test data, percentiles, throw-away databases, machine facts."""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import platform
import random
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools import devauth, devdb
from devtools.devrun import ROOT, ensure_database
from shared.feed.secretbox import ensure_key_file
from shared.identifiers import USCC_ALPHABET, uscc_check_character
from shared.tokens import TokenSigner

HOST = "127.0.0.1"


#: per-client rate limits a benchmark's stack turns off: the seeding is one platform client posting thousands of
#: recognitions, and every submission comes from one officer's token; the limits that protect a shared service from
#: one client (50/s, 500/s) would measure themselves, not the services, and answer the rest 429
ONE_CLIENT_UNLIMITED = {
    "REGISTRY_RATE_LIMIT_PLATFORM_PER_SECOND": "0",
    "ELIGIBILITY_RATE_LIMIT_BUREAU_PER_SECOND": "0",
}


def say(message: str) -> None:
    print(message, flush=True)


def credit_codes(rng: random.Random, count: int) -> list[str]:
    """Distinct valid codes: 91 (enterprise) 440307 (Longgang), 9 random characters, check character."""
    seen: set[str] = set()
    codes: list[str] = []
    while len(codes) < count:
        body = "91440307" + "".join(rng.choice(USCC_ALPHABET) for _ in range(9))
        code = body + uscc_check_character(body)
        if code not in seen:
            seen.add(code)
            codes.append(code)
    return codes


def command_line(module: str, argv: list[str]) -> str:
    """How a benchmark was run, as a reader would type it again (its module, its arguments quoted)."""
    return " ".join([f".venv/bin/python -m {module}", *(shlex.quote(a) for a in argv)])


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


async def fresh_database(server_url: str, name: str) -> str:
    await drop_database(server_url, name)  # a leftover of a killed run with the same pid
    return await ensure_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(server_url, timeout=10)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def analyze(database_url: str, schema: str) -> None:
    """ANALYZE every table of `schema`, as autovacuum does within a minute or so of a bulk load. A benchmark seeds the
    registry seconds before its load starts; without this, the registry's facts function (planned once per
    connection, for any values) was planned on statistics of empty tables: a scan of every organisation and, per
    list, a bitmap of every snapshot of the kind, per call, for the whole run (issue #16) — not the registry that
    submissions meet in service, imported long before and analysed since."""
    import asyncpg

    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        tables = await connection.fetch(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = $1", schema
        )
        await connection.execute(f"ANALYZE {', '.join(table for (table,) in tables)}")
    finally:
        await connection.close()


def keep_local(names: str) -> str:
    """NO_PROXY with loopback added: benchmark traffic never leaves the machine."""
    hosts = [h for h in names.split(",") if h]
    return ",".join(hosts + [h for h in (HOST, "localhost") if h not in hosts])


@contextmanager
def signals_ignored() -> Iterator[None]:
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def machine() -> dict[str, str]:
    cpu = "?"
    memory = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "nproc": nproc or str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def bounded(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer within [low, high]."""

    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


def postgres_server() -> tuple[str, devdb.EmbeddedPostgres | None, str]:
    """DATABASE_URL's server, else the embedded one: (URL, the server if we started it, a description)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, None, "the DATABASE_URL server"
    server = devdb.from_environment(ROOT)
    was_running = server.is_running()
    say(f"embedded PostgreSQL 18 on {HOST}:{server.port} ({'running' if was_running else 'starting'})")
    url = server.start()
    return url, None if was_running else server, "embedded, DATABASE_URL unset"


# --- authentication for a benchmark's own stack ------------------------------------------------


def bench_auth(database_url: str, registry_url: str, directory: Path) -> dict[str, str]:
    """A signing key and the services' own clients for a stack the benchmark starts.

    Sets the variables in os.environ, so services started afterwards (devrun.start_service
    copies os.environ) verify tokens and call their peers with credentials.
    """
    devauth.ensure_keys(directory)
    clients = devauth.ensure_clients(database_url, directory / "clients.json", devauth.SERVICE_CLIENTS)
    environment = {**devauth.service_env(directory, registry_url, clients), **webhook_secret_env(directory)}
    os.environ.update(environment)
    return environment


def webhook_secret_env(directory: Path) -> dict[str, str]:
    """Webhook secrets are stored encrypted: the services refuse to start without a key (the environment's, or
    one kept in `directory`)."""
    key = os.environ.get("WEBHOOK_SECRET_KEY") or ensure_key_file(directory / "webhook-secret-key")
    return {"WEBHOOK_SECRET_KEY": key}


def bench_headers(directory: Path, *scopes: str, org: str | None = None, name: str = "bench") -> dict[str, str]:
    """Authorization headers with a token minted from the benchmark's key (one hour)."""
    signer = TokenSigner(
        directory / "keys",
        issuer=os.environ.get("AUTH_ISSUER", "longgang-ai-identity"),
        audience=os.environ.get("AUTH_AUDIENCE", "longgang-ai"),
        lifetime_seconds=3600,
    )
    return {"Authorization": "Bearer " + signer.sign(name, list(scopes), name=name, organisation=org)}


# --- a load generator in its own process: the benchmark's client must not share a core with its own bookkeeping ---


def post_all(port: int, path: str, headers: dict[str, str], bodies: list[bytes], concurrency: int) -> PostResults:
    """POST every body to 127.0.0.1:`port``path`, `concurrency` keep-alive connections at a time, from a child
    process: raw HTTP/1.1 over asyncio streams (uvloop when installed), about a tenth of httpx's CPU per request,
    so that on two cores the services, not the client, bound the rate. Answers come back in `bodies`' order."""
    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    child = context.Process(target=_post_all_child, args=(port, path, headers, bodies, concurrency, answers))
    child.start()
    try:
        results: PostResults = answers.get()
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    return results


@dataclass
class PostResults:
    seconds: float
    #: per body, in order: (status, or 0 when the connection failed; seconds; the answer's body or the error)
    answers: list[tuple[int, float, bytes]]
    #: the child's own CPU seconds (user + system) over the load
    cpu_seconds: float


def _post_all_child(
    port: int, path: str, headers: dict[str, str], bodies: list[bytes], concurrency: int, answers: Any
) -> None:
    with suppress(ImportError):
        import uvloop

        uvloop.install()
    answers.put(asyncio.run(_post_all(port, path, headers, bodies, concurrency)))


async def _post_all(
    port: int, path: str, headers: dict[str, str], bodies: list[bytes], concurrency: int
) -> PostResults:
    head = f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    results: list[tuple[int, float, bytes]] = [(0, 0.0, b"")] * len(bodies)
    following = iter(range(len(bodies)))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            for index in following:
                body = bodies[index]
                sent = time.perf_counter()
                try:
                    writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                    answer = await reader.readuntil(b"\r\n\r\n")
                    length = CONTENT_LENGTH.search(answer)
                    content = await reader.readexactly(int(length.group(1)) if length else 0)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                    results[index] = (0, time.perf_counter() - sent, repr(exc).encode())
                    return
                results[index] = (int(answer[9:12]), time.perf_counter() - sent, content)
        finally:
            writer.close()

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(min(concurrency, len(bodies)))))
    return PostResults(time.perf_counter() - started, results, time.process_time() - cpu)


#: an HTTP/1.1 answer's body length, from its head (the raw load generators)
CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")
