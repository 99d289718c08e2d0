"""Authenticate before reading the body; bound each route's body while it streams (issue #12).

FastAPI reads and parses a route's body before the route's dependencies run, so a token checked
by a dependency let anyone make a service read and parse tens of megabytes (≈170 MB of memory
and 1.2 s of CPU per request) before being told 401. `RequestGuardMiddleware` runs before the
router:

1. On every path that is not public (`shared.auth.is_public`) it verifies the bearer token —
   the same verifier, whose cache makes a known token a dictionary lookup — and answers 401
   before a byte of the body is read. The principal is kept in the request state, where
   `shared.auth.authenticate` finds it: one verification per request. Roles (403) and rate
   limits (429) stay with each route's `require(...)`.
2. The body is bounded by the route's own limit: `DEFAULT_MAX_BODY_BYTES` unless the endpoint
   declares another with `@max_body(...)` (bulk imports, applications with their invoices,
   simulations over many applications). A `Content-Length` above it is a 413 at once; a body
   sent without one is counted as it arrives and refused at the first chunk past the limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.routing import RouteContext
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import is_public, iter_routes, verify_authorization
from shared.errors import PAYLOAD_TOO_LARGE, ProblemError, problem_response

KiB = 1024
MiB = 1024 * KiB
#: What a route accepts unless it says otherwise: every single-object payload fits many times over.
DEFAULT_MAX_BODY_BYTES = 64 * KiB

F = TypeVar("F", bound=Callable[..., Any])


def max_body(limit: int) -> Callable[[F], F]:
    """Declare an endpoint's body limit (bytes), when its payload is legitimately above the default."""

    def mark(function: F) -> F:
        function.__max_body_bytes__ = limit  # type: ignore[attr-defined]
        return function

    return mark


class BodyTooLarge(HTTPException):
    """Raised from `receive` past the limit. FastAPI's HTTPException: FastAPI re-raises it from body
    parsing (any other exception there becomes a 400 "error parsing the body")."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413)
        self.limit = limit


async def _too_large(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyTooLarge)
    return problem_response(request, PAYLOAD_TOO_LARGE, limit=exc.limit)


RouteLimit = tuple[re.Pattern[str], frozenset[str], int]
RouteMatch = tuple[re.Pattern[str], frozenset[str], RouteContext]


def declared_limits(app: FastAPI) -> list[RouteLimit]:
    """(path pattern, methods, limit) of every route whose endpoint declares a body limit."""
    return [
        (pattern, methods, int(context.endpoint.__max_body_bytes__))  # type: ignore[union-attr]
        for pattern, methods, context in route_patterns(app)
        if hasattr(context.endpoint, "__max_body_bytes__")
    ]


def route_patterns(app: FastAPI) -> list[RouteMatch]:
    """(path pattern, methods, route) of every route, to name the route of a request refused before routing."""
    found: list[RouteMatch] = []
    for context in iter_routes(app):
        if context.path is not None:
            pattern, _, _ = compile_path(context.path)
            found.append((pattern, frozenset(context.methods or ()), context))
    return found


class RequestGuardMiddleware:
    """Pure ASGI, inside the audit log (refusals are audited) and outside the router."""

    def __init__(self, app: ASGIApp, default_limit: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.default_limit = default_limit
        self._limits: list[RouteLimit] | None = None  # the routes exist once the app serves
        self._routes: list[RouteMatch] | None = None

    def limit_for(self, scope: Scope) -> int:
        if self._limits is None:
            self._limits = declared_limits(scope["app"])
        path, method = scope["path"], scope["method"]
        for pattern, methods, limit in self._limits:
            if method in methods and pattern.match(path):
                return limit
        return self.default_limit

    def _name_route(self, scope: Scope) -> None:
        """Set the route a refused request was for, as routing would have: metrics count it by its
        template (shared/metrics.py), never by the raw path. Only refusals pay for this search."""
        if self._routes is None:
            self._routes = route_patterns(scope["app"])  # kept: metrics key their series by the route's id
        path, method = scope["path"], scope["method"]
        candidates = [context for pattern, methods, context in self._routes if pattern.match(path)]
        allowed = [context for context in candidates if method in (context.methods or ())]
        if allowed or candidates:
            scope["route"] = (allowed or candidates)[0]

    async def _answer(self, scope: Scope, receive: Receive, send: Send, problem: ProblemError) -> None:
        self._name_route(scope)
        request = Request(scope)
        response = problem_response(request, problem.error, headers=problem.headers, **problem.params)
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
        if not is_public(scope["path"]):
            try:
                principal = verify_authorization(
                    scope["app"].state.verifier, authorization.decode("latin-1") if authorization else None
                )
            except ProblemError as refusal:
                await self._answer(scope, receive, send, refusal)
                return
            scope.setdefault("state", {})["principal"] = principal
        limit = self.limit_for(scope)
        if length is not None and length.isdigit() and int(length) > limit:
            await self._answer(scope, receive, send, ProblemError(PAYLOAD_TOO_LARGE, limit=limit))
            return
        seen = 0

        async def bounded_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, bounded_receive, send)
        except BodyTooLarge as exc:  # read outside FastAPI's body parsing (a bare route), not yet answered
            await self._answer(scope, receive, send, ProblemError(PAYLOAD_TOO_LARGE, limit=exc.limit))


def install_request_guard(app: FastAPI, default_limit: int = DEFAULT_MAX_BODY_BYTES) -> None:
    app.add_exception_handler(BodyTooLarge, _too_large)
    app.add_middleware(RequestGuardMiddleware, default_limit=default_limit)
