"""`make run`: database, migrations and the three services, in one foreground command.

    python -m devtools.devrun            # serve; Ctrl-C stops everything
    python -m devtools.devrun --demo     # ... and load the demo data set
    python -m devtools.devrun --migrate-only

Without DATABASE_URL it starts the embedded PostgreSQL 18 (data kept under .data/) and
uses a database named `longgang` on it; with DATABASE_URL it uses that server as is.
Ports: REGISTRY_PORT (8001), ELIGIBILITY_PORT (8002), VOUCHERS_PORT (8003); HOST (127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from devtools import devauth, devdb
from shared import dbroles
from shared.feed.secretbox import ensure_key_file
from shared.http_protocol import DEFAULT_HTTP_PROTOCOL
from shared.migrations import SERVICES, upgrade_all

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORTS = {"registry": 8001, "eligibility": 8002, "vouchers": 8003}
DEV_DATABASE = "longgang"


@dataclass
class Stack:
    database_url: str
    host: str
    ports: dict[str, int]

    def url(self, service: str) -> str:
        return f"http://{self.host}:{self.ports[service]}"

    def service_env(self) -> dict[str, str]:
        """`DATABASE_URL` is the owner's; each service logs in as its own role (shared/dbroles.py)."""
        env = dict(os.environ)
        env["DATABASE_URL"] = self.database_url
        env.update(self.login_env())
        for service in self.ports:
            env[f"{service.upper()}_URL"] = self.url(service)
        return env

    def login_env(self) -> dict[str, str]:
        """`<SERVICE>_DATABASE_URL`: the owner's URL with the service's login (and `<SERVICE>_DB_PASSWORD`)."""
        passwords = dbroles.passwords_from_environment()
        return {
            f"{service.upper()}_DATABASE_URL": dbroles.login_url(self.database_url, service, passwords.get(service))
            for service in SERVICES
        }


async def ensure_database(server_url: str, name: str) -> str:
    import asyncpg

    connection = await asyncpg.connect(server_url)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return server_url.rsplit("/", 1)[0] + "/" + name


def resolve_database(started: list[devdb.EmbeddedPostgres]) -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    server = devdb.from_environment(ROOT)
    was_running = server.is_running()
    print(f"starting embedded PostgreSQL 18 on 127.0.0.1:{server.port} (data in {server.data_dir})", flush=True)
    server_url = server.start()
    if not was_running:
        started.append(server)
    return asyncio.run(ensure_database(server_url, DEV_DATABASE))


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def start_service(
    stack: Stack, service: str, log: IO[bytes] | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start one service; its stdout and stderr go to `log` when given (else they are inherited)."""
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        f"services.{service}.app:create_app",
        "--factory",
        "--host",
        stack.host,
        "--port",
        str(stack.ports[service]),
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "5",
    ]
    env = {**stack.service_env(), **(extra_env or {})}
    command += ["--http", env.get("HTTP_PROTOCOL") or DEFAULT_HTTP_PROTOCOL]  # shared/http_protocol.py
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)


def wait_ready(stack: Stack, processes: dict[str, subprocess.Popen[bytes]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    pending = set(processes)
    while pending and time.monotonic() < deadline:
        for service in sorted(pending):
            if processes[service].poll() is not None:
                raise RuntimeError(f"{service} exited with code {processes[service].returncode}")
            try:
                if httpx.get(stack.url(service) + "/readyz", timeout=1.0).status_code == 200:
                    pending.discard(service)
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    if pending:
        raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")


def stop_services(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def prepare_auth(directory: Path, database_url: str, registry_url: str) -> dict[str, str]:
    """Keys, JWKS and the local clients (services' own and the demo's); the services' env."""
    devauth.ensure_keys(directory)
    wanted = {**devauth.SERVICE_CLIENTS, **devauth.demo_clients(devauth.DEMO_VENDOR)}
    clients = devauth.ensure_clients(database_url, directory / "clients.json", wanted)
    return devauth.service_env(directory, registry_url, clients)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", action="store_true", help="load the demo data set once the services are up")
    parser.add_argument("--migrate-only", action="store_true", help="migrate and exit")
    parser.add_argument(
        "--identity",
        nargs=argparse.REMAINDER,
        help="run the client admin CLI on the local database (create|rotate|revoke|list ...)",
    )
    args = parser.parse_args(argv)

    started: list[devdb.EmbeddedPostgres] = []
    processes: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        database_url = resolve_database(started)
        print("migrating: " + ", ".join(SERVICES), flush=True)
        upgrade_all(database_url)
        if args.migrate_only:
            return 0
        if args.identity is not None:
            from services.registry import identity

            os.environ["REGISTRY_DATABASE_URL"] = database_url
            return identity.main(args.identity)
        host = os.environ.get("HOST", "127.0.0.1")
        ports = {s: int(os.environ.get(f"{s.upper()}_PORT", p)) for s, p in DEFAULT_PORTS.items()}
        stack = Stack(database_url, host, ports)
        auth_dir = Path(os.environ.get("AUTH_DIR", ROOT / ".data" / "auth"))
        os.environ.update(prepare_auth(auth_dir, database_url, stack.url("registry")))
        # ledger checkpoints are signed with the vouchers service's own key and appended to a file
        # outside the database (docs/security.md: Checkpoints anchored outside the database)
        ledger_dir = ROOT / ".data" / "vouchers"
        keys_dir = Path(os.environ.get("VOUCHERS_CHECKPOINT_KEYS_DIR", ledger_dir / "checkpoint-keys"))
        os.environ["VOUCHERS_CHECKPOINT_KEYS_DIR"] = str(devauth.ensure_checkpoint_key(keys_dir))
        os.environ.setdefault("VOUCHERS_CHECKPOINT_SINK", str(ledger_dir / "ledger-checkpoints.jsonl"))
        # webhook secrets are stored encrypted: a local key, made once (shared/feed/secretbox.py)
        os.environ.setdefault("WEBHOOK_SECRET_KEY", ensure_key_file(auth_dir / "webhook-secret-key"))
        # a developer's webhook receiver runs on this machine: allow loopback targets locally
        os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")
        busy = [f"{s} ({p})" for s, p in ports.items() if port_in_use(host, p)]
        if busy:
            raise RuntimeError(
                "ports already in use: " + ", ".join(busy) + " (is another `make run` running? "
                "set REGISTRY_PORT / ELIGIBILITY_PORT / VOUCHERS_PORT to use others)"
            )
        for service in SERVICES:
            processes[service] = start_service(stack, service)
        wait_ready(stack, processes)
        if args.demo:
            from devtools.demo import load_demo, load_flows

            clients = json.loads((auth_dir / "clients.json").read_text(encoding="utf-8"))
            print(load_demo(stack.url("registry"), clients), flush=True)
            print(
                load_flows(stack.url("registry"), stack.url("eligibility"), stack.url("vouchers"), clients),
                flush=True,
            )
        print("\nall three services are ready:", flush=True)
        for service in SERVICES:
            print(f"  {service:<12} {stack.url(service)}   (API docs: {stack.url(service)}/docs)", flush=True)
        print(f"  clients and secrets: {auth_dir / 'clients.json'} (README: Authentication)", flush=True)
        print("press Ctrl-C to stop\n", flush=True)
        while not stopping:
            for service, process in processes.items():
                if process.poll() is not None:
                    print(f"{service} exited with code {process.returncode}; stopping", file=sys.stderr)
                    return 1
            time.sleep(0.3)
        return 0
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping services", flush=True)
        stop_services(processes)
        for server in started:
            print("stopping embedded PostgreSQL (data kept)", flush=True)
            server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
