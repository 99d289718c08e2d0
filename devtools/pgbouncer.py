"""A real PgBouncer (Debian's `pgbouncer`, `make pooler-tool`) in front of a PostgreSQL server.

Used by the pooler tests (tests/pooler/) and the ledger benchmark's run through a pooler.

The settings are the ones deploy/k8s relies on (docs/operations.md, "PgBouncer"): the pool mode
under test, `server_reset_query = DISCARD ALL`, and no `ignore_startup_parameters` — a service
that sent `statement_timeout` or `role` as a startup parameter is refused, as in production.
Authentication is `trust` with the three service logins and the owner in the userlist (the local
PostgreSQL trusts local connections too; the server still checks its own pg_hba). A `probe`
database entry has one server connection, for the tests that show what transaction pooling
does to per-connection state.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from shared.dbroles import LOGIN_ROLES

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PgBouncer:
    def __init__(self, server_url: str, pool_mode: str, *, pool_size: int = 20) -> None:
        if not Path(PGBOUNCER).exists():
            raise RuntimeError("pgbouncer is not installed (make pooler-tool, or apt-get install pgbouncer)")
        parts = urlsplit(server_url)
        self.server_host = parts.hostname or "127.0.0.1"
        self.server_port = parts.port or 5432
        self.owner = parts.username or "postgres"
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.port = _free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"pgbouncer-{pool_mode}-"))
        self.log = self.workdir / "pgbouncer.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.keep_log: Path | None = None

    def url(self, url: str) -> str:
        """`url` (any user, any database of the test server) through this PgBouncer."""
        parts = urlsplit(url)
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit((parts.scheme, f"{user}127.0.0.1:{self.port}", parts.path, parts.query, parts.fragment))

    def probe_url(self, user: str) -> str:
        """A database entry with ONE server connection (to the database `probe_database` names)."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/probe"

    def write_config(self, probe_database: str) -> Path:
        users = [self.owner, *LOGIN_ROLES.values()]
        (self.workdir / "userlist.txt").write_text("".join(f'"{user}" ""\n' for user in users))
        server = f"host={self.server_host} port={self.server_port}"
        config = self.workdir / "pgbouncer.ini"
        config.write_text(
            f"""[databases]
probe = {server} dbname={probe_database} pool_size=1
* = {server}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.workdir / "userlist.txt"}
pool_mode = {self.pool_mode}
default_pool_size = {self.pool_size}
max_client_conn = 1000
server_reset_query = DISCARD ALL
server_check_delay = 10
server_idle_timeout = 5
logfile =
pidfile =
"""
        )
        return config

    def start(self, probe_database: str) -> None:
        config = self.write_config(probe_database)
        os.chmod(self.workdir, 0o755)  # noqa: S103  # pgbouncer drops root for another user, who reads it
        for path in self.workdir.iterdir():
            os.chmod(path, 0o644)
        command = [PGBOUNCER, str(config)]
        if os.geteuid() == 0:  # it will not run as root
            user = "postgres" if _user_exists("postgres") else "nobody"
            command[1:1] = ["-u", user]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log.read_text(errors='replace')[-2000:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen: {self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.log.exists() and self.keep_log is not None:  # beside the services' logs
            shutil.copy(self.log, self.keep_log)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(text[-lines:])


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
