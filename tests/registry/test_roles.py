"""Who may call each registry route: every route × every role, against a table written here.

The table is the specification (docs: issue #5's role matrix), independent of the code:
a route added without a row fails `test_the_table_covers_every_route`, and a route whose
`require(...)` differs from its row fails the matrix. Forbidden roles get 403 `forbidden`;
allowed roles get past authorisation (anything but 401/403, and never a 500: an empty
body answered 422 proves the role was let in). No token at all: 401 everywhere.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from shared.auth import (
    ADMIN,
    ALL_SCOPES,
    APPLICANT,
    APPROVER,
    AUDITOR,
    METRICS_READ,
    OFFICER,
    PLATFORM,
    REGISTRY_READ,
    VENDOR,
    is_public,
    iter_routes,
)
from shared.errors import PROBLEM_JSON
from tests.auth import as_applicant, as_vendor, auth
from tests.factories import VALID_CODES, organisation_payload

READ = frozenset({ADMIN, OFFICER, APPROVER, AUDITOR, PLATFORM, REGISTRY_READ})
WRITE = frozenset({ADMIN, OFFICER, PLATFORM})
AUDIT = frozenset({ADMIN, AUDITOR})
#: The change feed and webhooks: registry changes go to the bureau and the data platform only.
INTEGRATORS = frozenset({ADMIN, AUDITOR, PLATFORM})
#: Bulk exports: the data platform, auditors and administrators.
EXPORT = frozenset({ADMIN, AUDITOR, PLATFORM})
#: The facts of one application in one call (issue #16): the services' own scope only.
FACTS = frozenset({REGISTRY_READ})
#: OAuth2 client administration.
CLIENT_ADMIN = frozenset({ADMIN})
KINDS = ("organisations", "revenues", "affiliations", "vendors", "models", "filings", "recognitions")


def _records(plural: str, key: str) -> dict[tuple[str, str], frozenset[str]]:
    """The five routes of one kind of record."""
    return {
        ("POST", f"/v1/{plural}"): WRITE,
        ("GET", f"/v1/{plural}"): READ,
        ("GET", f"/v1/{plural}/{key}"): READ,
        ("PATCH", f"/v1/{plural}/{key}"): WRITE,
        ("GET", f"/v1/{plural}/{key}/history"): READ,
    }


MATRIX: dict[tuple[str, str], frozenset[str]] = {
    # Prometheus, with its own client (metrics:read), and administrators
    ("GET", "/metrics"): frozenset({METRICS_READ, ADMIN}),
    **_records("organisations", "{credit_code}"),
    **_records("revenues", "{credit_code}/{year}"),
    **_records("affiliations", "{id}"),
    **_records("vendors", "{credit_code}"),
    **_records("models", "{id}"),
    **_records("filings", "{number}"),
    **_records("recognitions", "{id}"),
    ("POST", "/v1/facts"): FACTS,
    ("POST", "/v1/facts/batch"): FACTS,
    ("POST", "/v1/imports/organisations"): WRITE,
    ("POST", "/v1/imports/revenues"): WRITE,
    ("POST", "/v1/imports/filings"): WRITE,
    ("GET", "/v1/audit"): AUDIT,
    **{("GET", f"/v1/exports/{kind}"): EXPORT for kind in KINDS},
    ("GET", "/v1/events"): INTEGRATORS,
    ("GET", "/v1/events/types"): INTEGRATORS,
    ("POST", "/v1/webhooks"): INTEGRATORS,
    ("GET", "/v1/webhooks"): INTEGRATORS,
    ("GET", "/v1/webhooks/{webhook_id}"): INTEGRATORS,
    ("DELETE", "/v1/webhooks/{webhook_id}"): INTEGRATORS,
    ("POST", "/v1/webhooks/{webhook_id}/resume"): INTEGRATORS,
    ("POST", "/v1/webhooks/{webhook_id}/rotate"): INTEGRATORS,
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): INTEGRATORS,
    ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): INTEGRATORS,
    # OAuth2 clients (issue #15): administrators only, and not even they make admin clients here
    ("POST", "/v1/clients"): CLIENT_ADMIN,
    ("GET", "/v1/clients"): CLIENT_ADMIN,
    ("GET", "/v1/clients/{client_id}"): CLIENT_ADMIN,
    ("POST", "/v1/clients/{client_id}/rotate"): CLIENT_ADMIN,
    ("POST", "/v1/clients/{client_id}/revoke"): CLIENT_ADMIN,
    ("PUT", "/v1/clients/{client_id}/jwks"): CLIENT_ADMIN,
}

#: Values for path parameters: well-formed, so that allowed roles reach the handler.
PATH_VALUES = {
    "credit_code": VALID_CODES[0],
    "year": "2024",
    "id": str(uuid.UUID(int=1)),
    "number": "Guangdong-TestFiling-202401010001",
    "webhook_id": "1",
    "delivery_id": "1",
    "client_id": "role-matrix-no-such-client",
}


def _served(app: FastAPI) -> set[tuple[str, str]]:
    return {
        (method, str(route.path))
        for route in iter_routes(app)
        if not is_public(str(route.path))
        for method in (route.methods or set()) - {"HEAD"}
    }


def _documented(app: FastAPI) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if not is_public(path)
        for method in operations
    }


def _headers(scope: str) -> dict[str, str]:
    if scope == APPLICANT:
        return as_applicant(VALID_CODES[1])
    if scope == VENDOR:
        return as_vendor(VALID_CODES[2])
    return auth(scope, name=f"role matrix {scope}")


async def _call(
    client: httpx.AsyncClient, method: str, template: str, headers: dict[str, str] | None
) -> httpx.Response:
    path = template.format(**PATH_VALUES)
    if path.startswith("/v1/imports/"):
        request = client.build_request(method, path, content=b"[]", headers={"Content-Type": "application/json"})
    elif method in ("POST", "PATCH", "PUT"):
        request = client.build_request(method, path, json={})
    else:
        request = client.build_request(method, path)
    del request.headers["Authorization"]  # the fixture's default (admin) credential
    if headers is not None:
        request.headers.update(headers)
    return await client.send(request)


def test_the_table_covers_every_route(registry_app: FastAPI) -> None:
    served = _served(registry_app)
    assert _documented(registry_app) <= served  # the route listing misses nothing the OpenAPI document shows
    assert set(MATRIX) == served, {"no row": served - set(MATRIX), "no route": set(MATRIX) - served}


def test_the_table_names_only_known_scopes() -> None:
    for allowed in MATRIX.values():
        assert allowed <= set(ALL_SCOPES)


@pytest.mark.parametrize(("method", "template"), sorted(MATRIX))
async def test_each_role_against_the_route(registry: httpx.AsyncClient, method: str, template: str) -> None:
    allowed = MATRIX[(method, template)]
    outcomes: dict[str, int] = {}
    for scope in ALL_SCOPES:
        response = await _call(registry, method, template, _headers(scope))
        outcomes[scope] = response.status_code
        assert response.status_code < 500, (scope, response.text)
        if scope in allowed:
            assert response.status_code not in (401, 403), (scope, response.text)
        else:
            assert response.status_code == 403, (scope, response.text)
            assert response.headers["content-type"] == PROBLEM_JSON
            assert response.json()["code"] == "forbidden"
    assert {scope for scope, status in outcomes.items() if status != 403} == allowed, outcomes


@pytest.mark.parametrize(("method", "template"), sorted(MATRIX))
async def test_no_token_is_401(registry: httpx.AsyncClient, method: str, template: str) -> None:
    response = await _call(registry, method, template, None)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthenticated"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_an_allowed_role_really_gets_the_data(registry: httpx.AsyncClient) -> None:
    """Not just 'not 403': a peer service's `registry:read` token reads what an officer wrote."""
    payload = organisation_payload()
    created = await registry.post("/v1/organisations", json=payload, headers=auth(OFFICER, name="alice"))
    assert created.status_code == 201, created.text
    read = await registry.get(f"/v1/organisations/{payload['credit_code']}", headers=auth(REGISTRY_READ))
    assert read.status_code == 200, read.text
    assert read.json()["name"] == payload["name"]
    imported = await registry.post("/v1/imports/organisations", json=[organisation_payload()], headers=auth(PLATFORM))
    assert imported.status_code == 200, imported.text
