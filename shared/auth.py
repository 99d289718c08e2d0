"""Who is calling: OAuth2 bearer tokens (signed JWTs) verified locally, roles, rate limits.

Clients get short-lived tokens from an OAuth2 token endpoint (client-credentials grant;
the project ships one in the registry service, `services/registry/token_endpoint.py`, but any
identity provider will do: only `AUTH_ISSUER` and the public keys change). Every service
verifies tokens itself against the configured public keys (a JWKS document; the key is
picked by the token's `kid`, so keys rotate by publishing the new one beside the old).

Token claims: `iss`, `aud`, `sub` (the client id), `exp`, `iat`, `jti`, `scope` (space
separated roles), `org` (the credit code an `applicant` or `vendor` client is bound to)
and `name` (who the client is, as recorded in decisions and the audit log).

A token must also be short-lived: one whose lifetime (`exp − iat`) is above
`AUTH_MAX_TOKEN_LIFETIME_SECONDS`, or that is still valid further ahead than that (`exp − now`,
beyond the clock-skew leeway), is refused however well signed (issue #12: a stolen signing
key, or an identity provider misconfigured, must not mint tokens that live for years).

Each route declares who may call it with `require(...)`; `check_routes_protected` refuses
to start an app with a route that declares nothing. Wrong role → 403; a token that is
missing, expired, tampered with, from another issuer or for another audience → 401.
Object-level checks (an applicant's own applications, a vendor's own vouchers) are made
where the object is read, and answer 404 so that existence is not revealed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, Request
from fastapi.routing import RouteContext, iter_route_contexts
from fastapi.security import HTTPBearer
from starlette.routing import Route

from shared.errors import ErrorCode, ProblemError
from shared.ratelimit import (
    APPLICANT_CLASS,
    BUREAU_CLASS,
    PLATFORM_CLASS,
    SERVICE_CLASS,
    SLOT_KEY,
    VENDOR_READ,
    VENDOR_WRITE,
    InFlightSlot,
    RateLimiter,
)
from shared.settings import MAX_TOKEN_LIFETIME_SECONDS

# --- roles (OAuth2 scopes) -----------------------------------------------------------------

ADMIN = "admin"
OFFICER = "officer"  # reviews applications, issues vouchers
APPROVER = "approver"  # approves reviews, A1 decisions
APPLICANT = "applicant"  # bound to one organisation (`org`)
VENDOR = "vendor"  # bound to one vendor organisation (`org`)
PLATFORM = "platform"  # the municipal data platform: imports, exports, change feed
DASHBOARD = "dashboard"  # aggregates only
AUDITOR = "auditor"  # reads everything, verifies the ledger
# service identities: the least a peer service needs
REGISTRY_READ = "registry:read"  # eligibility and vouchers read registry facts
DECISIONS_READ = "decisions:read"  # vouchers reads approved decisions
BUDGET_RESERVE = "budget:reserve"  # eligibility reserves the programme budget when it approves (A2)
# grants on top of a role
DASHBOARD_DETAIL = "dashboard:detail"  # a dashboard client may also see per-enterprise figures
METRICS_READ = "metrics:read"  # Prometheus scrapes /metrics (it speaks client credentials)

ROLES: tuple[str, ...] = (ADMIN, OFFICER, APPROVER, APPLICANT, VENDOR, PLATFORM, DASHBOARD, AUDITOR)
SERVICE_SCOPES: tuple[str, ...] = (REGISTRY_READ, DECISIONS_READ, BUDGET_RESERVE, DASHBOARD_DETAIL, METRICS_READ)
ALL_SCOPES: tuple[str, ...] = ROLES + SERVICE_SCOPES
BOUND_ROLES = frozenset({APPLICANT, VENDOR})  # these need an `org` claim

#: Documents the scheme in OpenAPI; `authenticate` does the checking (with our error format).
BEARER = HTTPBearer(
    bearerFormat="JWT",
    auto_error=False,
    description="An access token from the OAuth2 token endpoint (client-credentials grant): "
    "`POST /oauth/token` on the registry service",
)

#: Paths anyone may call without a token. The dashboard page and its static files are public (like
#: /docs): they show nothing until the page is given a token, with which it calls the aggregates API.
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/docs",
        "/oauth/token",
        "/dashboard",
    }
)
PUBLIC_PREFIXES = ("/.well-known/", "/dashboard/assets/", "/docs/assets/")

UNAUTHENTICATED = ErrorCode(
    "unauthenticated",
    401,
    "需要凭证：请在 Authorization 头中提供 Bearer 令牌",
    "A credential is required: send a Bearer token in the Authorization header",
)
INVALID_TOKEN = ErrorCode("invalid_token", 401, "令牌无效：{reason}", "The token is invalid: {reason}")
FORBIDDEN = ErrorCode(
    "forbidden", 403, "当前角色无权执行此操作（需要：{needed}）", "Your role may not do this (needs one of: {needed})"
)
ORGANISATION_MISMATCH = ErrorCode(
    "organisation_mismatch",
    403,
    "该客户端只能代表其绑定的单位 {org} 操作",
    "This client may act only for the organisation it is bound to ({org})",
)
RATE_LIMITED = ErrorCode(
    "rate_limited", 429, "请求过于频繁，请在 {retry_after} 秒后重试", "Too many requests; retry in {retry_after} s"
)
TOO_MANY_IN_FLIGHT = ErrorCode(
    "too_many_in_flight",
    429,
    "该客户端同时进行的请求过多，请在 {retry_after} 秒后重试",
    "Too many requests from this client at once; retry in {retry_after} s",
)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated client of one request."""

    client_id: str
    name: str
    scopes: frozenset[str]
    organisation: str | None = None
    expires_at: int = 0

    def has(self, *scopes: str) -> bool:
        return not self.scopes.isdisjoint(scopes)

    @property
    def actor(self) -> str:
        """How this client is named in decisions, ledger entries and the audit log."""
        return self.name or self.client_id

    @property
    def vendor(self) -> str | None:
        """The vendor organisation a `vendor` client acts for."""
        return self.organisation if VENDOR in self.scopes else None

    @property
    def applicant(self) -> str | None:
        """The organisation an `applicant` client acts for."""
        return self.organisation if APPLICANT in self.scopes else None

    def sees_everything(self) -> bool:
        """Bureau roles and auditors read every object; applicants and vendors only their own."""
        return self.has(ADMIN, OFFICER, APPROVER, AUDITOR, PLATFORM)


# --- key material -------------------------------------------------------------------------


def load_jwks(source: str) -> dict[str, Any]:
    """A JWKS document from inline JSON or a file path."""
    text = source.strip()
    if not text.startswith("{"):
        text = Path(source).read_text(encoding="utf-8")
    document = json.loads(text)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS document has a `keys` list")
    return document


class TokenVerifier:
    """Checks bearer tokens against public keys; remembers good tokens until they expire.

    A vendor sends the same token with thousands of redemptions: verifying the signature
    once and looking it up afterwards keeps authentication off the hot path's profile.
    """

    ALGORITHMS = ("EdDSA", "ES256", "RS256")
    CACHE_LIMIT = 10_000
    #: How often the JWKS file is looked at again: a key withdrawn from it stops working
    #: within this time (a new key is picked up at once, on the first token naming it).
    RECHECK_SECONDS = 5.0

    def __init__(
        self,
        jwks_source: str,
        *,
        issuer: str,
        audience: str,
        leeway_seconds: int = 30,
        max_lifetime_seconds: int = MAX_TOKEN_LIFETIME_SECONDS,
    ) -> None:
        self.jwks_source = jwks_source
        self.issuer = issuer
        self.audience = audience
        self.leeway_seconds = leeway_seconds
        self.max_lifetime_seconds = max_lifetime_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_stamp: tuple[int, int, int] | None = None
        self._checked_at = 0.0
        self._cache: dict[str, Principal] = {}
        self._reload(force=True)

    def _reload(self, *, force: bool = False) -> None:
        """Read the keys again if the JWKS file changed (a new `kid` after rotation, a key withdrawn).

        The file is recognised by inode, modification time (ns) and size: `write_jwks`
        replaces it, and two writes within one file-system clock tick keep the same mtime.
        """
        source = self.jwks_source.strip()
        self._checked_at = time.monotonic()
        stamp = None
        if not source.startswith("{"):
            info = os.stat(source)
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        if not force and stamp == self._loaded_stamp:
            return
        keys: dict[str, jwt.PyJWK] = {}
        for entry in load_jwks(source)["keys"]:
            key = jwt.PyJWK(entry)
            if key.key_id:
                keys[key.key_id] = key
        if set(keys) != set(self._keys):
            self._cache.clear()  # tokens verified with a withdrawn key must not stay accepted
        self._keys = keys
        self._loaded_stamp = stamp

    def _try_reload(self) -> None:
        """Reload, keeping the current keys if the file is missing or unreadable just now."""
        with contextlib.suppress(OSError, ValueError, jwt.PyJWTError):
            self._reload()

    def _key(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        if key is None:
            self._try_reload()
            key = self._keys.get(kid)
        if key is None:
            raise _invalid("unknown signing key (kid)")
        return key

    def verify(self, token: str) -> Principal:
        if time.monotonic() - self._checked_at >= self.RECHECK_SECONDS:
            self._try_reload()
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + self.leeway_seconds > now:
                return cached
            del self._cache[token]
        try:
            header, algorithm = signed_header(token, self.ALGORITHMS)
        except ValueError as exc:
            raise _invalid(str(exc)) from exc
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise _invalid("no key id (kid)")
        key = self._key(kid)
        if key.algorithm_name != algorithm:
            raise _invalid("algorithm does not match the key")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise _invalid("expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise _invalid("wrong audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise _invalid("wrong issuer") from exc
        except jwt.PyJWTError as exc:
            raise _invalid("signature or claims rejected") from exc
        self._check_lifetime(claims, now)
        principal = principal_from_claims(claims)
        if len(self._cache) >= self.CACHE_LIMIT:
            self._cache.clear()
        self._cache[token] = principal
        return principal

    def _check_lifetime(self, claims: dict[str, Any], now: float) -> None:
        """At most `max_lifetime_seconds` from issue to expiry, and from now to expiry (with the leeway).

        PyJWT has checked that `int()` takes `exp` and `iat` and that `iat` is not in the future.
        """
        expires, issued = int(claims["exp"]), int(claims["iat"])
        if (
            expires - issued > self.max_lifetime_seconds
            or expires - now > self.max_lifetime_seconds + self.leeway_seconds
        ):
            raise _invalid(f"lifetime above {self.max_lifetime_seconds} s")


def signed_header(token: str, algorithms: Iterable[str]) -> tuple[dict[str, Any], str]:
    """A JWT's header, unverified, and its algorithm if it is one of `algorithms` (never `none` nor HMAC here:
    a public key must not serve as an HMAC secret); else ValueError with the reason."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise ValueError("malformed") from exc
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in algorithms:
        raise ValueError(f"algorithm {algorithm!r} is not accepted")
    return header, algorithm


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise _invalid("scope is not a string")
    scopes = frozenset(scope.split())
    organisation = claims.get("org")
    if organisation is not None and not isinstance(organisation, str):
        raise _invalid("org is not a string")
    if scopes & BOUND_ROLES and not organisation:
        raise _invalid("an applicant or vendor token names its organisation (org)")
    name = claims.get("name")
    return Principal(
        client_id=str(claims["sub"]),
        name=name if isinstance(name, str) else str(claims["sub"]),
        scopes=scopes,
        organisation=organisation,
        expires_at=int(claims["exp"]),
    )


def _invalid(reason: str) -> ProblemError:
    return ProblemError(INVALID_TOKEN, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}, reason=reason)


# --- per request ----------------------------------------------------------------------------


def verify_authorization(verifier: TokenVerifier, header: str | None) -> Principal:
    """The principal of an `Authorization: Bearer …` header, or a 401 problem."""
    if not header:
        raise ProblemError(UNAUTHENTICATED, headers={"WWW-Authenticate": "Bearer"})
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(UNAUTHENTICATED, headers={"WWW-Authenticate": "Bearer"})
    return verifier.verify(token.strip())


def authenticate(request: Request) -> Principal:
    """The request's principal (verified once per request, kept in the request state).

    `shared.limits.RequestGuardMiddleware` has verified it before the body was read; this
    verifies only where that middleware is not installed.
    """
    state = request.scope.setdefault("state", {})
    principal: Principal | None = state.get("principal")
    if principal is not None:
        return principal
    principal = verify_authorization(request.app.state.verifier, request.headers.get("authorization"))
    state["principal"] = principal
    return principal


def authorize(request: Request, scopes: Iterable[str], *, rate_limited: bool = False) -> Principal:
    """Authenticate, then check the role (403), then the client's rate and requests in flight (429).

    Every route is limited by its class (`route_class`; shared/ratelimit.py) since issue #12:
    `rate_limited` is kept for the callers that still pass it.
    """
    principal = authenticate(request)
    needed = tuple(scopes)
    if not principal.has(*needed):
        raise ProblemError(FORBIDDEN, needed=", ".join(needed))
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    slot: InFlightSlot | None = request.scope.get(SLOT_KEY)
    if limiter is not None and (slot is None or slot.limiter is None):  # once per request
        key = (principal.client_id, route_class(principal, request.method))
        entered = limiter.enter(*key) if slot is not None else None
        if entered is False:  # refused before it takes a token
            raise ProblemError(TOO_MANY_IN_FLIGHT, headers={"Retry-After": "1"}, retry_after=1)
        wait = limiter.acquire(*key)
        if wait:
            if entered:
                limiter.leave(key)
            seconds = max(1, math.ceil(wait))
            raise ProblemError(RATE_LIMITED, headers={"Retry-After": str(seconds)}, retry_after=seconds)
        if slot is not None:
            slot.limiter = limiter
            slot.key = key if entered else None
    return principal


def route_class(principal: Principal, method: str) -> str:
    """Which limits a request counts against: the most restricted role of its token decides."""
    if VENDOR in principal.scopes:
        return VENDOR_READ if method in ("GET", "HEAD") else VENDOR_WRITE
    if APPLICANT in principal.scopes:
        return APPLICANT_CLASS
    if PLATFORM in principal.scopes:
        return PLATFORM_CLASS
    if principal.has(ADMIN, OFFICER, APPROVER, AUDITOR, DASHBOARD):
        return BUREAU_CLASS
    return SERVICE_CLASS


def require(*scopes: str, rate_limited: bool = False) -> Any:
    """`Depends(...)` for a route: the caller needs one of `scopes`; returns the Principal."""
    if not scopes or any(scope not in ALL_SCOPES for scope in scopes):
        raise ValueError(f"unknown scopes: {scopes}")

    async def dependency(request: Request, _: Annotated[object, Depends(BEARER)]) -> Principal:
        return authorize(request, scopes, rate_limited=rate_limited)

    dependency.__auth_scopes__ = scopes  # type: ignore[attr-defined]
    return Depends(dependency)


def protected(*scopes: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a bare Starlette endpoint that calls `authorize` itself (the startup check reads it)."""

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        function.__auth_scopes__ = scopes  # type: ignore[attr-defined]
        return function

    return mark


def route_scopes(route: Any) -> tuple[str, ...] | None:
    """The scopes a route requires, or None when it declares none.

    `route` is an APIRoute, a Starlette Route, or one of `iter_routes(app)` (whose
    dependant also holds the dependencies given to `include_router`).
    """
    dependant = getattr(route, "dependant", None)
    if dependant is not None:
        stack = [dependant]
        while stack:
            current = stack.pop()
            found = getattr(current.call, "__auth_scopes__", None)
            if found is not None:
                return tuple(found)
            stack.extend(current.dependencies)
        return None
    found = getattr(getattr(route, "endpoint", None), "__auth_scopes__", None)
    return tuple(found) if found is not None else None


def iter_routes(app: FastAPI) -> list[RouteContext]:
    """Every HTTP route the app serves, with its full path.

    FastAPI (0.16x) keeps an included router as one `_IncludedRouter` entry of
    `app.routes`: the routes inside are only reachable through `iter_route_contexts`.
    """
    return [context for context in iter_route_contexts(app.routes) if isinstance(context.original_route, Route)]


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def check_routes_protected(app: FastAPI) -> None:
    """Refuse to serve a route that forgot to say who may call it."""
    missing = [
        f"{sorted(context.methods or [])} {context.path}"
        for context in iter_routes(app)
        if not is_public(str(context.path)) and route_scopes(context) is None
    ]
    if missing:
        raise RuntimeError("routes without an authorisation rule: " + "; ".join(missing))


# --- settings helpers -------------------------------------------------------------------------


def verifier_from_settings(settings: Any) -> TokenVerifier:
    if not settings.auth_jwks:
        raise RuntimeError("AUTH_JWKS is not set: the service cannot verify tokens (see README, Authentication)")
    return TokenVerifier(
        settings.auth_jwks,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        leeway_seconds=settings.auth_leeway_seconds,
        max_lifetime_seconds=settings.auth_max_token_lifetime_seconds,
    )
