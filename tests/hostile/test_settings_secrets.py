"""A service that cannot start says why without printing secrets (issue #12, finding 12).

pydantic's "field required" error printed every variable the settings had read, so a missing
database URL showed `VOUCHERS_CLIENT_SECRET` in clear; a bad database URL showed its password.
The services are started as `make run` starts them (uvicorn, the real settings from the
environment) and what they print is searched for the secrets.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from devtools.devrun import ROOT
from services.vouchers.settings import VouchersSettings
from shared.migrations import SERVICES

# short: pydantic shortens long values in its messages, which would hide a leak from this test
CLIENT_SECRET = "cs-7f3a9q"
DB_PASSWORD = "pw-4k8m2z"


def _start(service: str, environment: dict[str, str]) -> str:
    """What the service prints (stdout and stderr) when it is started with only this environment and fails."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **environment}
    finished = subprocess.run(
        [sys.executable, "-m", "uvicorn", f"services.{service}.app:create_app", "--factory", "--port", "9"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode != 0, "the service started"
    return (finished.stdout + finished.stderr).decode("utf-8", "replace")


@pytest.mark.parametrize("service", SERVICES)
def test_a_missing_database_url_does_not_print_the_client_secret(service: str) -> None:
    prefix = service.upper()
    output = _start(service, {f"{prefix}_CLIENT_ID": "svc", f"{prefix}_CLIENT_SECRET": CLIENT_SECRET})
    assert f"{prefix}_DATABASE_URL" in output  # it says what is wrong
    assert "Field required" in output
    assert CLIENT_SECRET not in output


@pytest.mark.parametrize("service", SERVICES)
def test_a_bad_setting_does_not_print_the_database_password_or_the_secret(service: str) -> None:
    prefix = service.upper()
    output = _start(
        service,
        {
            "DATABASE_URL": f"mysql://svc:{DB_PASSWORD}@db/x",  # not PostgreSQL: refused
            f"{prefix}_CLIENT_SECRET": CLIENT_SECRET,
            f"{prefix}_DB_POOL_SIZE": "many",
        },
    )
    assert f"{prefix}_DATABASE_URL" in output
    assert "db_pool_size" in output
    assert DB_PASSWORD not in output
    assert CLIENT_SECRET not in output


def test_settings_show_no_secret_in_their_repr() -> None:
    settings = VouchersSettings(
        database_url=f"postgresql://svc:{DB_PASSWORD}@db/longgang",  # type: ignore[arg-type]
        read_database_url=f"postgresql://ro:{DB_PASSWORD}@replica/longgang",  # type: ignore[arg-type]
        client_secret=CLIENT_SECRET,  # type: ignore[arg-type]
    )
    assert DB_PASSWORD not in repr(settings)
    assert CLIENT_SECRET not in repr(settings)
    assert CLIENT_SECRET not in str(settings.model_dump())
    assert settings.client_secret.get_secret_value() == CLIENT_SECRET
    assert DB_PASSWORD in settings.async_database_url  # what the service connects with is intact
