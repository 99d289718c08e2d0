"""Two processes of each service on a PostgreSQL of their own, which the test may kill and restart.

The database server is an `EmbeddedPostgres` (devtools/devdb.py) on a free port with its data in
a temporary directory: the test stops and starts it at will, so it is never the machine's
shared server nor the one `make run` uses. Processes are real uvicorn processes started by
`devtools.devrun.start_service`, each with its own log file; any of them can be killed
(SIGKILL), stopped (SIGTERM), paused (SIGSTOP) and restarted on the same port.

Who talks to whom, by default (every process of a service is interchangeable — the services keep
no state of their own, which is the point):

    vouchers-0 → eligibility-0, registry-1        vouchers-1 → eligibility-1, registry-0
    eligibility-0 → registry-0                    eligibility-1 → registry-1
    tokens: each process from one registry process or the other

Another topology can be given (one process of each: `ONE_EACH`), and any peer URL replaced before
the processes start (`peer_urls`: a fault proxy in between, tests/resilience/test_slow_peers.py).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devtools import devdb
from devtools.devrun import Stack, ensure_database, start_service, stop_services, wait_ready
from shared.migrations import upgrade_all
from tests.conftest import free_port, provision_service_clients

DATABASE = "resilience"
Topology = dict[tuple[str, int], dict[str, tuple[str, int]]]
#: (service, index) → the peers it calls: {env var: (service, index)}
TOPOLOGY: Topology = {
    ("registry", 0): {},
    ("registry", 1): {},
    # approvals reserve the budget (A2) in the vouchers service
    ("eligibility", 0): {"REGISTRY_URL": ("registry", 0), "VOUCHERS_URL": ("vouchers", 1)},
    ("eligibility", 1): {"REGISTRY_URL": ("registry", 1), "VOUCHERS_URL": ("vouchers", 0)},
    ("vouchers", 0): {"ELIGIBILITY_URL": ("eligibility", 0), "REGISTRY_URL": ("registry", 1)},
    ("vouchers", 1): {"ELIGIBILITY_URL": ("eligibility", 1), "REGISTRY_URL": ("registry", 0)},
}
ONE_EACH: Topology = {
    ("registry", 0): {},
    ("eligibility", 0): {"REGISTRY_URL": ("registry", 0), "VOUCHERS_URL": ("vouchers", 0)},
    ("vouchers", 0): {"ELIGIBILITY_URL": ("eligibility", 0), "REGISTRY_URL": ("registry", 0)},
}


@dataclass
class Process:
    service: str
    index: int
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    paused: bool = False

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Cluster:
    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None, topology: Topology = TOPOLOGY) -> None:
        self.workdir = workdir
        self.topology = topology
        self.peer_urls: dict[str, dict[str, str]] = {}  # process name → {env var: URL}, replacing the topology's
        self.server = devdb.EmbeddedPostgres(data_dir=workdir / "pg", port=free_port())
        self.database_url = ""
        self.extra_env = extra_env or {}
        self.processes: dict[str, Process] = {}
        self.failed = False  # set by the test: keep the logs and the data
        self.started_in = 0.0  # seconds to start the database and every process
        for service, index in topology:
            process = Process(service, index, free_port(), workdir / f"{service}-{index}.log")
            self.processes[process.name] = process

    # --- the database ---

    def start_database(self) -> str:
        server_url = self.server.start()
        self.database_url = asyncio.run(ensure_database(server_url, DATABASE))
        upgrade_all(self.database_url)
        return self.database_url

    def stop_database(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast` (clients are disconnected, a clean shutdown) or `immediate` (a crash)."""
        subprocess.run(
            [devdb.binary("pg_ctl"), "-D", str(self.server.pgdata), "-m", mode, "-w", "stop"],
            check=True,
            user=devdb.server_user(),
            stdout=subprocess.DEVNULL,
        )

    def restart_database(self, mode: str, down_seconds: float) -> None:
        self.stop_database(mode)
        time.sleep(down_seconds)
        self.server.start()  # after `immediate`, crash recovery replays the WAL first

    # --- the processes ---

    def url(self, name: str) -> str:
        return self.processes[name].url

    def urls(self, service: str) -> list[str]:
        return [p.url for p in self.processes.values() if p.service == service]

    def _environment(self, process: Process, auth: dict[str, str]) -> dict[str, str]:
        env = {**auth, **self.extra_env}
        for variable, (service, index) in self.topology[(process.service, process.index)].items():
            env[variable] = self.processes[f"{service}-{index}"].url
        env.update(self.peer_urls.get(process.name, {}))
        registries = sorted(name for name, p in self.processes.items() if p.service == "registry")
        token_from = registries[(process.index + (process.service == "vouchers")) % len(registries)]
        env["AUTH_TOKEN_URL"] = self.processes[token_from].url + "/oauth/token"
        return env

    def start_all(self) -> None:
        """The registry processes first (they issue the tokens), then the others."""
        registries = [name for name, p in self.processes.items() if p.service == "registry"]
        for name in registries:
            self.start(name)
        self.wait_ready(registries)
        auth = provision_service_clients(self.database_url, self.url(registries[0]))
        for process in self.processes.values():
            process.env = self._environment(process, auth)
        for name in self.processes:
            if name not in registries:
                self.start(name)
        self.wait_ready(list(self.processes))

    def start(self, name: str) -> None:
        process = self.processes[name]
        stack = Stack(self.database_url, "127.0.0.1", {process.service: process.port})
        with process.log.open("ab") as log:
            process.popen = start_service(stack, process.service, log=log, extra_env=process.env)
        process.paused = False

    def wait_ready(self, names: list[str], timeout: float = 90.0) -> None:
        for name in names:
            process = self.processes[name]
            assert process.popen is not None
            stack = Stack(self.database_url, "127.0.0.1", {process.service: process.port})
            wait_ready(stack, {process.service: process.popen}, timeout=timeout)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        process = self.processes[name]
        assert process.popen is not None
        if process.paused:
            process.popen.send_signal(signal.SIGCONT)
        process.popen.send_signal(sig)
        process.popen.wait(timeout=30)
        process.paused = False

    def pause(self, name: str) -> None:
        process = self.processes[name]
        assert process.popen is not None
        process.popen.send_signal(signal.SIGSTOP)
        process.paused = True

    def resume(self, name: str) -> None:
        process = self.processes[name]
        assert process.popen is not None
        process.popen.send_signal(signal.SIGCONT)
        process.paused = False

    def all_ready(self) -> bool:
        for process in self.processes.values():
            try:
                if httpx.get(process.url + "/readyz", timeout=2.0).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
        return True

    def stop(self) -> None:
        for process in self.processes.values():
            if process.paused and process.popen is not None:
                process.popen.send_signal(signal.SIGCONT)
        stop_services({name: p.popen for name, p in self.processes.items() if p.popen is not None})
        self.server.stop()

    def log_tail(self, lines: int = 30) -> str:
        """The errors each process logged (or its last lines), for a failure message."""
        parts = []
        for process in self.processes.values():
            text = process.log.read_text(errors="replace").splitlines() if process.log.exists() else []
            errors = [line[:2000] for line in text if '"level": "error"' in line]
            parts.append(f"--- {process.name} ({process.log}) ---\n" + "\n".join((errors or text)[-lines:]))
        return "\n".join(parts)
