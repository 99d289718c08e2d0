"""Test clocks in the registry (issue #15, docs/sandbox.md): served in sandbox mode only, administrators
manage them, forward only, one clock per enterprise; the services' own scope reads an enterprise's clock.
Start-up refuses sandbox mode in production. The end-to-end year crossing is tests/e2e/test_sandbox.py."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import text

from shared.auth import ADMIN, ALL_SCOPES, APPLICANT, OFFICER, REGISTRY_READ, VENDOR, iter_routes
from shared.dbroles import login_url
from shared.errors import PROBLEM_JSON
from tests.auth import as_applicant, as_vendor, auth
from tests.conftest import _rollback_client
from tests.factories import VALID_CODES, organisation_payload

CLOCK_ADMIN = frozenset({ADMIN})
CLOCK_READ = frozenset({ADMIN, REGISTRY_READ})
MATRIX: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/v1/test-clocks"): CLOCK_ADMIN,
    ("GET", "/v1/test-clocks"): CLOCK_ADMIN,
    ("GET", "/v1/test-clocks/{clock_id}"): CLOCK_ADMIN,
    ("POST", "/v1/test-clocks/{clock_id}/advance"): CLOCK_ADMIN,
    ("DELETE", "/v1/test-clocks/{clock_id}"): CLOCK_ADMIN,
    ("PUT", "/v1/test-clocks/{clock_id}/enterprises/{credit_code}"): CLOCK_ADMIN,
    ("DELETE", "/v1/test-clocks/{clock_id}/enterprises/{credit_code}"): CLOCK_ADMIN,
    ("GET", "/v1/test-clock-bindings"): CLOCK_READ,
    ("GET", "/v1/test-clock-bindings/{credit_code}"): CLOCK_READ,
}


@pytest_asyncio.fixture(scope="session")
async def sandbox_registry_app(database_url: str) -> AsyncIterator[FastAPI]:
    from services.registry.app import create_app
    from services.registry.settings import RegistrySettings

    app = create_app(RegistrySettings(database_url=login_url(database_url, "registry"), sandbox_mode=True))
    yield app
    await app.state.database.dispose()


@pytest_asyncio.fixture
async def sandbox(sandbox_registry_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _rollback_client(sandbox_registry_app, "http://registry"):
        yield client


async def _organisation(client: httpx.AsyncClient) -> str:
    payload = organisation_payload()
    created = await client.post("/v1/organisations", json=payload)
    assert created.status_code == 201, created.text
    return str(payload["credit_code"])


async def _clock(client: httpx.AsyncClient, frozen_time: str = "2026-12-30T10:00:00+08:00") -> dict[str, object]:
    created = await client.post("/v1/test-clocks", json={"frozen_time": frozen_time, "name": "year end"})
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/test-clocks/{created.json()['id']}"
    body: dict[str, object] = created.json()
    return body


def test_the_routes_are_served_in_sandbox_mode_only(registry_app: FastAPI, sandbox_registry_app: FastAPI) -> None:
    def served(app: FastAPI) -> set[tuple[str, str]]:
        return {(m, str(r.path)) for r in iter_routes(app) for m in (r.methods or set()) - {"HEAD"}}

    assert not served(registry_app) & set(MATRIX)  # production's document (and its snapshot) is unchanged
    assert set(MATRIX) <= served(sandbox_registry_app)
    assert "/v1/test-clocks" not in registry_app.openapi()["paths"]


async def test_a_clock_is_created_read_listed_advanced_forward_only_and_deleted(sandbox: httpx.AsyncClient) -> None:
    clock = await _clock(sandbox)
    assert clock["frozen_time"] == "2026-12-30T02:00:00Z"
    assert (clock["name"], clock["created_by"], clock["enterprises"], clock["advanced_at"]) == (
        "year end",
        "test admin",
        [],
        None,
    )
    path = f"/v1/test-clocks/{clock['id']}"
    assert (await sandbox.get(path)).json() == clock
    listed = await sandbox.get("/v1/test-clocks", params={"limit": 500})
    assert clock["id"] in [item["id"] for item in listed.json()["items"]]

    advanced = await sandbox.post(path + "/advance", json={"frozen_time": "2027-01-02T09:00:00+08:00"})
    assert advanced.status_code == 200, advanced.text
    assert advanced.json()["frozen_time"] == "2027-01-02T01:00:00Z"
    assert advanced.json()["advanced_at"] is not None
    for earlier in ("2027-01-02T09:00:00+08:00", "2026-12-31T00:00:00Z"):  # the same time, or before: refused
        refused = await sandbox.post(
            path + "/advance", json={"frozen_time": earlier}, headers={"Accept-Language": "en"}
        )
        assert (refused.status_code, refused.json()["code"]) == (409, "test_clock_backwards"), refused.text
        assert refused.headers["content-type"] == PROBLEM_JSON
        assert "only moves forward" in refused.json()["detail"]
    assert (await sandbox.get(path)).json()["frozen_time"] == "2027-01-02T01:00:00Z"
    naive = await sandbox.post(path + "/advance", json={"frozen_time": "2028-01-01T00:00:00"})
    assert naive.status_code == 422, naive.text

    assert (await sandbox.delete(path)).status_code == 204
    gone = await sandbox.get(path)
    assert (gone.status_code, gone.json()["code"]) == (404, "test_clock_not_found")
    assert (await sandbox.post(path + "/advance", json={"frozen_time": "2029-01-01T00:00:00Z"})).status_code == 404


async def test_the_database_refuses_a_clock_going_backwards(sandbox_registry_app: FastAPI) -> None:
    """Whoever asks (here the service's own login, in SQL): the trigger holds outside the API too."""
    async with sandbox_registry_app.state.database.engine.connect() as connection:
        clock_id = uuid.uuid4()
        await connection.execute(
            text(
                "INSERT INTO registry.test_clocks (id, frozen_time, created_by) "
                "VALUES (:id, '2026-12-30T00:00:00Z', 'test')"
            ),
            {"id": clock_id},
        )
        with pytest.raises(Exception, match="only moves forward"):
            await connection.execute(
                text("UPDATE registry.test_clocks SET frozen_time = frozen_time - interval '1 day' WHERE id = :id"),
                {"id": clock_id},
            )
        await connection.rollback()


async def test_enterprises_are_bound_to_one_clock_and_peers_read_it(sandbox: httpx.AsyncClient) -> None:
    code, other = await _organisation(sandbox), await _organisation(sandbox)
    clock, second = await _clock(sandbox), await _clock(sandbox, "2030-01-01T00:00:00Z")
    bind = f"/v1/test-clocks/{clock['id']}/enterprises/{code}"
    unbound = await sandbox.get(f"/v1/test-clock-bindings/{code}", headers=auth(REGISTRY_READ))
    assert unbound.json() == {"credit_code": code, "test_clock": None}  # the real clock

    first = await sandbox.put(bind)
    assert first.status_code == 201, first.text
    assert (first.json()["credit_code"], first.json()["frozen_time"]) == (code, "2026-12-30T02:00:00Z")
    again = await sandbox.put(bind)
    assert (again.status_code, again.json()) == (200, first.json())
    elsewhere = await sandbox.put(f"/v1/test-clocks/{second['id']}/enterprises/{code}")
    assert (elsewhere.status_code, elsewhere.json()["code"]) == (409, "test_clock_bound_elsewhere")
    missing = await sandbox.put(f"/v1/test-clocks/{clock['id']}/enterprises/{VALID_CODES[3]}")
    assert (missing.status_code, missing.json()["code"]) == (404, "test_clock_organisation_not_found")
    malformed = await sandbox.put(f"/v1/test-clocks/{clock['id']}/enterprises/9144030071526726XA")
    assert malformed.status_code == 422
    no_clock = await sandbox.put(f"/v1/test-clocks/{uuid.uuid4()}/enterprises/{other}")
    assert (no_clock.status_code, no_clock.json()["code"]) == (404, "test_clock_not_found")

    read = await sandbox.get(f"/v1/test-clock-bindings/{code}", headers=auth(REGISTRY_READ))
    assert read.status_code == 200, read.text
    assert read.json()["test_clock"]["id"] == clock["id"]
    assert read.json()["test_clock"]["enterprises"] == [code]
    await sandbox.post(f"/v1/test-clocks/{clock['id']}/advance", json={"frozen_time": "2027-01-01T00:00:00+08:00"})
    listed = await sandbox.get("/v1/test-clock-bindings", headers=auth(REGISTRY_READ))
    times = {item["credit_code"]: item["frozen_time"] for item in listed.json()["items"]}
    assert times[code] == "2026-12-31T16:00:00Z"
    assert other not in times

    assert (await sandbox.delete(bind)).status_code == 204
    again_gone = await sandbox.delete(bind)
    assert (again_gone.status_code, again_gone.json()["code"]) == (404, "test_clock_not_bound")
    assert (await sandbox.get(f"/v1/test-clock-bindings/{code}")).json()["test_clock"] is None
    # deleting a clock unbinds its enterprises
    assert (await sandbox.put(f"/v1/test-clocks/{second['id']}/enterprises/{other}")).status_code == 201
    assert (await sandbox.delete(f"/v1/test-clocks/{second['id']}")).status_code == 204
    assert (await sandbox.get(f"/v1/test-clock-bindings/{other}")).json()["test_clock"] is None


def _headers(scope: str) -> dict[str, str]:
    if scope == APPLICANT:
        return as_applicant(VALID_CODES[1])
    if scope == VENDOR:
        return as_vendor(VALID_CODES[2])
    return auth(scope, name=f"role matrix {scope}")


@pytest.mark.parametrize(("method", "template"), sorted(MATRIX))
async def test_each_role_against_the_route(sandbox: httpx.AsyncClient, method: str, template: str) -> None:
    """Only administrators manage clocks; administrators and the services' own scope read bindings."""
    path = template.format(clock_id=uuid.UUID(int=1), credit_code=VALID_CODES[0])
    allowed = MATRIX[(method, template)]
    for scope in ALL_SCOPES:
        request = sandbox.build_request(method, path, json={} if method in ("POST", "PUT") else None)
        request.headers.update(_headers(scope))
        response = await sandbox.send(request)
        assert response.status_code < 500, (scope, response.text)
        if scope in allowed:
            assert response.status_code not in (401, 403), (scope, response.text)
        else:
            assert (response.status_code, response.json()["code"]) == (403, "forbidden"), (scope, response.text)
    anonymous = sandbox.build_request(method, path)
    del anonymous.headers["Authorization"]
    assert (await sandbox.send(anonymous)).status_code == 401


async def test_an_officer_cannot_create_or_advance_a_clock(sandbox: httpx.AsyncClient) -> None:
    officer = auth(OFFICER, name="officer-chen")
    refused = await sandbox.post("/v1/test-clocks", json={"frozen_time": "2026-12-30T00:00:00Z"}, headers=officer)
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    clock = await _clock(sandbox)
    advance = await sandbox.post(
        f"/v1/test-clocks/{clock['id']}/advance", json={"frozen_time": "2027-06-01T00:00:00Z"}, headers=officer
    )
    assert advance.status_code == 403
    assert (await sandbox.get(f"/v1/test-clocks/{clock['id']}")).json()["frozen_time"] == "2026-12-30T02:00:00Z"


def test_settings_refuse_sandbox_mode_in_production(database_url: str) -> None:
    from services.eligibility.settings import EligibilitySettings
    from services.registry.settings import RegistrySettings
    from services.vouchers.settings import VouchersSettings

    for settings in (RegistrySettings, EligibilitySettings, VouchersSettings):
        with pytest.raises(ValidationError, match="test clocks are refused in production"):
            settings(database_url=database_url, sandbox_mode=True, deployment_environment="production")
        assert settings(database_url=database_url, sandbox_mode=True).sandbox_mode
        assert not settings(database_url=database_url, deployment_environment="production").sandbox_mode


@pytest.mark.parametrize("service", ["registry", "eligibility", "vouchers"])
def test_a_service_refuses_to_start_in_sandbox_mode_with_production_settings(database_url: str, service: str) -> None:
    """From the environment, as a deployment sets it: the app factory fails and names the variables."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SANDBOX_MODE": "true",
        "DEPLOYMENT_ENVIRONMENT": "production",
    }
    started = subprocess.run(
        [sys.executable, "-c", f"from services.{service}.app import create_app; create_app()"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode != 0
    assert "SANDBOX_MODE is on with DEPLOYMENT_ENVIRONMENT=production" in started.stderr, started.stderr
    assert database_url.rsplit("@", 1)[-1] not in started.stderr  # never a value of the settings


def test_the_deployments_are_production() -> None:
    """deploy/k8s (both overlays) says production, so a SANDBOX_MODE set there stops every service."""
    from tests.test_k8s import K8S, OVERLAYS, environment, render

    for overlay in OVERLAYS:
        objects = render(K8S / "overlays" / overlay)
        for workload in [obj for obj in objects if obj["kind"] == "Deployment"]:
            env = environment(objects, workload)
            assert env["DEPLOYMENT_ENVIRONMENT"] == "production", (overlay, workload["metadata"]["name"])
            assert env.get("SANDBOX_MODE", "false") == "false"


def test_the_sandbox_operations_are_named_for_people(sandbox_registry_app: FastAPI) -> None:
    paths = sandbox_registry_app.openapi()["paths"]
    ids = {
        operation["operationId"]
        for path, item in paths.items()
        if path.startswith("/v1/test-clock")
        for operation in item.values()
    }
    assert ids == {
        "create_test_clock",
        "list_test_clocks",
        "get_test_clock",
        "advance_test_clock",
        "delete_test_clock",
        "bind_enterprise_to_test_clock",
        "unbind_enterprise_from_test_clock",
        "list_test_clock_bindings",
        "get_enterprise_test_clock",
    }
