"""Issue #15: the three OpenAPI documents say what the services answer (shared/openapi.py).

The documents are the integrators' contract: a client generated from them must parse every
answer (tests/api/test_generated_client.py generates one and drives a vendor's flow).
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.auth import ALL_SCOPES, iter_routes, route_scopes
from tests.api.apps import PEER_SETTINGS, PLACEHOLDER_URL, SERVICES, build_app, document

METHODS = {"get", "put", "post", "delete", "patch"}
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_every_error_is_a_documented_problem(service: str) -> None:
    spec = document(service)
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # every 422 is a Problem
    for path, method, operation in operations(spec):
        errors = {int(status): answer for status, answer in operation["responses"].items() if int(status) >= 400}
        assert 503 in errors, (path, method)
        for status, answer in errors.items():
            assert answer["content"] == PROBLEM, (path, method, status)
            headers = answer["headers"]
            assert headers["Content-Language"] == {"$ref": "#/components/headers/Content-Language"}
            assert ("Retry-After" in headers) == (status in (429, 503)), (path, method, status)
        if "security" in operation:  # needs a token: refused without one, or for the wrong role, or too often
            assert {401, 403, 429} <= set(errors), (path, method)
        else:
            assert not {403, 429} & set(errors), (path, method)
        if method == "get":
            assert 409 not in errors, (path, method)
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "code", "detail", "instance", "request_id"} <= set(problem["required"])
    assert problem["additionalProperties"] is True  # a code's parameters come beside the fields


def test_a_201_that_sets_location_documents_it() -> None:
    located = {
        ("registry", "/v1/organisations"),
        ("registry", "/v1/webhooks"),
        ("eligibility", "/v1/applications"),
        ("vouchers", "/v1/settlement-batches"),
        ("vouchers", "/v1/webhooks"),
    }
    for service, path in located:
        created = document(service)["paths"][path]["post"]["responses"]["201"]
        assert created["headers"]["Location"]["schema"] == {"type": "string"}, (service, path)


VENDOR_CALLS = {
    ("/v1/vouchers/{code}/redemptions", "201", "RedemptionRead"),
    ("/v1/vouchers/{code}/holds", "201", "RedemptionRead"),
    ("/v1/holds/{hold_id}/{action}", "200", "HoldFinished"),
}


def test_the_redemption_path_documents_its_answers_and_its_required_key() -> None:
    """The routes answer raw bytes from the ledger (for speed); the document types them, and says the
    Idempotency-Key is required (at run time its absence is still answered 400 `idempotency_key_required`)."""
    spec = document("vouchers")
    for path, status, model in VENDOR_CALLS:
        operation = spec["paths"][path]["post"]
        answered = operation["responses"][status]["content"]["application/json"]["schema"]
        assert answered == {"$ref": f"#/components/schemas/{model}"}, path
        (key,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
        assert key["required"] is True, path
        assert (key["schema"]["type"], key["schema"]["minLength"]) == ("string", 1), path
    held = spec["components"]["schemas"]["RedemptionRead"]
    assert {"id", "status", "hold_expires_at", "voucher"} <= set(held["required"])
    authorise = spec["paths"]["/v1/vouchers/{code}/authorisations"]["post"]
    assert [p["required"] for p in authorise["parameters"] if p["name"] == "Idempotency-Key"] == [True]
    issue = spec["paths"]["/v1/vouchers"]["post"]  # an officer's key is optional: without one, no replay
    assert [p["required"] for p in issue["parameters"] if p["name"] == "Idempotency-Key"] == [False]


@pytest.mark.parametrize("service", SERVICES)
def test_the_security_scheme_is_oauth2_client_credentials_at_the_token_endpoint(service: str) -> None:
    """Clients fetch and renew their tokens themselves: the document says where, and which roles each
    operation accepts (any one of them)."""
    spec = document(service)
    assert list(spec["components"]["securitySchemes"]) == ["OAuth2"]
    flow = spec["components"]["securitySchemes"]["OAuth2"]["flows"]["clientCredentials"]
    # the registry hosts the token endpoint; the others name the URL they are configured with (AUTH_TOKEN_URL)
    assert flow["tokenUrl"] == ("/oauth/token" if service == "registry" else PEER_SETTINGS["auth_token_url"])
    assert set(flow["scopes"]) == set(ALL_SCOPES)
    app = build_app(service, PLACEHOLDER_URL, **({} if service == "registry" else PEER_SETTINGS))
    for context in iter_routes(app):
        scopes = route_scopes(context)
        for method in context.methods or ():
            operation = spec["paths"].get(str(context.path), {}).get(method.lower())
            if operation is None:  # not documented (the bare redemption route's twin is)
                continue
            expected = None if scopes is None else [{"OAuth2": [scope]} for scope in scopes]
            assert operation.get("security") == expected, (context.path, method)
