"""The OpenAPI document every service serves: the integrators' contract (issue #15).

FastAPI writes most of it from the routes; `install_openapi` completes what it cannot know, the
same way for the three services, so that a client generated from the document (tests/api/
test_generated_client.py uses openapi-python-client) parses every answer:

- errors: every 4xx/5xx an operation can answer is `application/problem+json` with the `Problem`
  schema (FastAPI would put a response model under the route's media type, `application/json`),
  with `Content-Language`, and `Retry-After` on 429 and 503. Which statuses apply follows from the
  route: 401, 403 and 429 need a token, 409 a write, 413 a body, 400 and 422 some input;
- `Location` on a 201 whose route sets it (`CREATED_AT_LOCATION` in the route's `responses`);
- headers a route refuses to go without although its code reads them as optional, to answer its
  own problem rather than FastAPI's 422 (`document_required_headers`: the Idempotency-Key of a
  vendor's call), are declared required;
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from shared.auth import iter_routes, route_scopes

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


def _require_headers(operation: dict[str, Any], names: set[str]) -> None:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "header" and parameter["name"].lower() in names:
            parameter["required"] = True
            schema = parameter["schema"]
            variants = [s for s in schema.pop("anyOf", []) if s.get("type") != "null"]
            if variants:
                schema.update(variants[0])
            schema["minLength"] = max(1, schema.get("minLength", 0))


def _drop_unused_schemas(document: dict[str, Any]) -> None:
    """FastAPI's own 422 schemas, unused once every 422 is a Problem."""
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):  # the first refers to the second
        schema = schemas.pop(name, None)
        if schema is not None and f'"#/components/schemas/{name}"' in json.dumps(document):
            schemas[name] = schema


def complete_document(app: FastAPI, document: dict[str, Any]) -> dict[str, Any]:
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
            if required:
                _require_headers(operation, required)
    document.setdefault("components", {})["headers"] = HEADERS
    _drop_unused_schemas(document)
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once, as FastAPI does)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_document(app, generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
