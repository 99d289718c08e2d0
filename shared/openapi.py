"""The OpenAPI document every service serves: the integrators' contract (issue #15).

FastAPI writes most of it from the routes; `install_openapi` completes what it cannot know, the
same way for the three services, so that a client generated from the document (tests/api/
test_generated_client.py uses openapi-python-client) parses every answer:

- errors: every 4xx/5xx an operation can answer is `application/problem+json` with the `Problem`
  schema (FastAPI would put a response model under the route's media type, `application/json`),
  with `Content-Language`, and `Retry-After` on 429 and 503. Which statuses apply follows from the
  route: 401, 403 and 429 need a token, 409 a write, 413 a body, 400 and 422 some input;
- a stream an operation answers (NDJSON, CSV) and documents without a schema is described as text;
- `Location` on a 201 whose route sets it (`CREATED_AT_LOCATION` in the route's `responses`);
- headers a route refuses to go without although its code reads them as optional, to answer its
  own problem rather than FastAPI's 422 (`document_required_headers`: the Idempotency-Key of a
  vendor's call), are declared required;
- the security scheme is what clients do: OAuth2 client credentials at the token endpoint
  (`AUTH_TOKEN_URL`, or the registry's own `/oauth/token`), and each operation lists the roles
  (scopes) that may call it, any one of them (the tokens are checked as before: shared/auth.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from shared import auth
from shared.auth import iter_routes, route_scopes

GRANT_PATH = "/oauth/token"  # the registry's token endpoint (services/registry/token_endpoint.py)
SCHEME = "OAuth2"
PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"


class FieldProblem(BaseModel):
    """One problem with one input field (the rule's own parameters may come beside these: `min_length`, …)."""

    model_config = ConfigDict(extra="allow")

    field: str = Field(description="Where: `body.amount_fen`, `query.year`, `header.Idempotency-Key`")
    code: str = Field(description="Stable machine-readable code of this field's problem")
    message: str = Field(description="What is wrong, in the answer's language (`Content-Language`: zh or en)")


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of every service is answered.

    `title` and `detail` are in the language `Accept-Language` asks for (Chinese unless English is
    preferred; the answer's `Content-Language` says which). A problem may carry the parameters of
    its code beside these fields (`available_fen` and `requested_fen` with `insufficient_balance`,
    `retry_after` with `rate_limited`, …).
    """

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:longgang-ai:problem:validation_failed"])
    title: str = Field(description="The status in words, in the answer's language")
    status: int = Field(description="The HTTP status")
    code: str = Field(description="Stable machine-readable code (`insufficient_balance`, `forbidden`, …)")
    detail: str = Field(description="What happened, in the answer's language (zh or en)")
    instance: str = Field(description="The request's path")
    request_id: str = Field(description="The server's id of the request (also `X-Request-ID`)")
    clause: str | None = Field(default=None, description="Policy clause id (M1…M15, A1…A4) when one applies")
    errors: list[FieldProblem] | None = Field(default=None, description="Per-field problems (422)")


_PROBLEM_STATUSES = {
    400: "Bad request",
    401: "No valid bearer token (missing, expired, tampered, wrong issuer or audience)",
    403: "The token's role may not do this",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    422: "Invalid input (problem+json with per-field `errors`)",
    429: "Too many requests from this client (rate or requests at once); retry after `Retry-After` seconds",
    503: "A dependency is unavailable; retry after `Retry-After` seconds",
}

#: The app's default error answers; `install_openapi` keeps those that apply to each operation.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": text} for status, text in _PROBLEM_STATUSES.items()
}

#: In a 201 route's `responses`: the answer carries the created resource's `Location`.
CREATED_AT_LOCATION: dict[int | str, dict[str, Any]] = {
    201: {"headers": {"Location": {"description": "The created resource's path", "schema": {"type": "string"}}}}
}

#: Headers of the error answers, defined once in the document's components.
HEADERS: dict[str, dict[str, Any]] = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer", "minimum": 0}},
    "Content-Language": {
        "description": "The language of `title`, `detail` and the field messages (from `Accept-Language`)",
        "schema": {"type": "string", "enum": ["zh", "en"]},
    },
}


def _header(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


F = TypeVar("F", bound=Callable[..., Any])
_REQUIRED_HEADERS = "__openapi_required_headers__"


def document_required_headers(*names: str) -> Callable[[F], F]:
    """Mark an endpoint or dependency that refuses a request without these headers with a problem of its own (so
    its parameter stays optional to FastAPI, which would answer 422 first): the document says required."""

    def mark(function: F) -> F:
        setattr(function, _REQUIRED_HEADERS, names)
        return function

    return mark


def _required_headers(route: APIRoute) -> set[str]:
    found: set[str] = set()
    stack = [route.dependant]
    while stack:
        current = stack.pop()
        found.update(getattr(current.call, _REQUIRED_HEADERS, ()))
        stack.extend(current.dependencies)
    return {name.lower() for name in found}


def _applies(status: int, operation: dict[str, Any], method: str, protected: bool, own: set[int]) -> bool:
    """Whether an operation can answer this error status (its own declared `responses` always can)."""
    path_parameters = any(p["in"] == "path" for p in operation.get("parameters", []))
    if status in own or status == 503:
        return True
    if status in (401, 403, 429):
        return protected
    if status == 404:
        return protected or path_parameters
    if status == 409:
        return protected and method != "get"
    if status == 413:
        return "requestBody" in operation
    if status in (400, 422):
        return protected or bool(operation.get("parameters") or operation.get("requestBody"))
    return True


def _complete_errors(operation: dict[str, Any], method: str, protected: bool, own: set[int]) -> None:
    responses: dict[str, Any] = operation["responses"]
    for key in list(responses):
        if not key.isdigit() or int(key) < 400:
            continue
        status = int(key)
        if not _applies(status, operation, method, protected, own):
            del responses[key]
            continue
        answer = responses[key]
        answer["content"] = {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}
        headers = answer.setdefault("headers", {})
        headers["Content-Language"] = _header("Content-Language")
        if status in (429, 503):
            headers["Retry-After"] = _header("Retry-After")


#: What a stream is, where its operation says no more (the exports say more: shared/exports/params.py).
STREAMS = {
    "application/x-ndjson": "UTF-8, one JSON object per line",
    "text/csv": "UTF-8, RFC 4180, a header row with the column names, then one row per record",
}


def _describe_streams(operation: dict[str, Any]) -> None:
    for answer in operation["responses"].values():
        for media_type, content in answer.get("content", {}).items():
            if media_type in STREAMS and not content.get("schema"):
                content["schema"] = {"type": "string", "description": STREAMS[media_type]}


def _require_headers(operation: dict[str, Any], names: set[str]) -> None:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "header" and parameter["name"].lower() in names:
            parameter["required"] = True
            schema = parameter["schema"]
            variants = [s for s in schema.pop("anyOf", []) if s.get("type") != "null"]
            if variants:
                schema.update(variants[0])
            schema["minLength"] = max(1, schema.get("minLength", 0))


#: The roles (OAuth2 scopes) as the token URL's clients are given them (README, Authentication).
SCOPES = {
    auth.ADMIN: "Administrators",
    auth.OFFICER: "Bureau officers: review applications, issue, grant and void",
    auth.APPROVER: "Bureau approvers: approve reviews, A1 decisions, reverse grants",
    auth.APPLICANT: "An enterprise's system, bound to its organisation",
    auth.VENDOR: "A compute or model vendor's system, bound to its organisation: redeem, hold, capture, release",
    auth.PLATFORM: "The municipal data platform: imports, exports, the change feed",
    auth.DASHBOARD: "Dashboards: the aggregates",
    auth.AUDITOR: "Auditors: read everything, check the ledger",
    auth.REGISTRY_READ: "The services: read the registry's facts",
    auth.DECISIONS_READ: "The vouchers service: read approved decisions",
    auth.BUDGET_RESERVE: "The eligibility service: reserve the programme budget (A2)",
    auth.DASHBOARD_DETAIL: "With dashboard: per-enterprise figures",
    auth.METRICS_READ: "Prometheus: scrape /metrics",
}


def _security_scheme(token_url: str) -> dict[str, Any]:
    return {
        "type": "oauth2",
        "description": "Client credentials (RFC 6749 §4.4): post `grant_type=client_credentials` with the client's "
        "id and secret (HTTP Basic, or `client_id` and `client_secret` in the form) to the token URL, and send the "
        "access token it answers (a JWT, valid 10 minutes: fetch another when it expires) as "
        "`Authorization: Bearer …`. A client has one role, its scope; each operation lists the roles it accepts.",
        "flows": {"clientCredentials": {"tokenUrl": token_url, "scopes": {n: SCOPES[n] for n in auth.ALL_SCOPES}}},
    }


def _drop_unused_schemas(document: dict[str, Any]) -> None:
    """FastAPI's own 422 schemas, unused once every 422 is a Problem."""
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):  # the first refers to the second
        schema = schemas.pop(name, None)
        if schema is not None and f'"#/components/schemas/{name}"' in json.dumps(document):
            schemas[name] = schema


def complete_document(app: FastAPI, document: dict[str, Any], token_url: str) -> dict[str, Any]:
    """Complete FastAPI's document in place (see the module's docstring); returns it."""
    for context in iter_routes(app):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        scopes = route_scopes(context)
        own = {int(status) for status in route.responses if str(status).isdigit()}
        required = _required_headers(route)
        for method in sorted(context.methods or ()):
            operation = document["paths"].get(str(context.path), {}).get(method.lower())
            if operation is None:
                continue
            _complete_errors(operation, method.lower(), scopes is not None, own)
            _describe_streams(operation)
            if required:
                _require_headers(operation, required)
            if scopes is not None:  # any one of the route's roles (OR: one requirement each)
                operation["security"] = [{SCHEME: [scope]} for scope in scopes]
    components = document.setdefault("components", {})
    components["headers"] = HEADERS
    components["securitySchemes"] = {SCHEME: _security_scheme(token_url)}  # not FastAPI's bare HTTPBearer
    _drop_unused_schemas(document)
    return document


def install_openapi(app: FastAPI, token_url: str) -> None:
    """Serve the completed document at /openapi.json (built once, as FastAPI does)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_document(app, generate(), token_url or GRANT_PATH)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
