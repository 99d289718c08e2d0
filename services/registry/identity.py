"""The project's own OAuth2 token endpoint (client-credentials grant) and its clients.

    POST /oauth/token            grant_type=client_credentials, client id and secret by
                                 HTTP Basic (or client_id/client_secret form fields), or a
                                 signed assertion (private_key_jwt, RFC 7523: clients/assertions.py);
                                 optional `scope` narrows the client's scopes
    GET  /.well-known/jwks.json  the public keys every service verifies tokens with

Clients are rows of `registry.clients`, managed with the admin CLI
(`python -m services.registry.identity create|rotate|revoke|list`) or, but for admin clients,
the admin API (`/v1/clients`, services/registry/clients/), both through the functions below
(`create_client`, `rotate_secret`, `revoke`, `set_keys`). Secrets are 256-bit
random strings, so a SHA-256 digest is enough to store them (no password hashing needed:
there is nothing to brute-force). Revoking a client stops new tokens at once; tokens
already issued end with their short lifetime (`REGISTRY_TOKEN_LIFETIME_SECONDS`).
Production may use an external identity provider instead: the services only need its
issuer and public keys (`AUTH_ISSUER`, `AUTH_JWKS`).

Audit (issue #12): every token request is in the registry's audit log with the client id —
the authenticated client's, or as presented when refused (never the secret). Creating,
rotating and revoking a client writes an audit row in the same transaction as the change
(method `CLI`, path `/clients/<id>/<action>`, the actor `cli:<--actor or the OS user>`; from the
admin API, method `API` and the administrator's client: `Actor`); refused attempts (unknown client,
invalid request) are recorded too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import getpass
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import unquote_plus

import asyncpg
from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse
from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.audit import note_presented_client, storable
from shared.auth import ALL_SCOPES, BOUND_ROLES, Principal
from shared.db import Connection, SessionDep
from shared.errors import ErrorCode, problem_response
from shared.identifiers import credit_code_error
from shared.limits import KiB, max_body
from shared.logs import new_request_id
from shared.tokens import TokenSigner, jwks

from .clients import assertions

INVALID_CLIENT = ErrorCode(
    "invalid_client", 401, "客户端认证失败（编号或密钥错误，或已吊销）", "Client authentication failed"
)
UNSUPPORTED_GRANT = ErrorCode(
    "unsupported_grant_type",
    400,
    "仅支持 client_credentials 授权方式",
    "Only the client_credentials grant is supported",
)
INVALID_CLIENT_ASSERTION = ErrorCode(
    "invalid_client", 401, "客户端断言无效：{reason}", "The client assertion is refused: {reason}"
)
INVALID_SCOPE = ErrorCode(
    "invalid_scope", 400, "请求的范围超出该客户端的授权：{scope}", "Scope not granted to this client: {scope}"
)

router = APIRouter(tags=["identity"])

#: How a client authenticates at the token endpoint (RFC 7591's names): `client_secret_basic`, its secret
#: (HTTP Basic or the form's fields) or, if it has registered keys, a signed assertion; `private_key_jwt`,
#: only a signed assertion (RFC 7523; services/registry/clients/assertions.py).
SECRET_METHOD = "client_secret_basic"  # noqa: S105 (a method's name, not a secret)
KEY_METHOD = "private_key_jwt"
CLIENT_COLUMNS = (
    "client_id, name, scopes, organisation, secret_sha256, previous_secret_sha256, previous_secret_expires_at, "
    "revoked_at, jwks, token_endpoint_auth_method"
)


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    """HTTP Basic client authentication; RFC 6749 §2.3.1 form-encodes id and secret first."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, separator, secret = decoded.partition(":")
    return (unquote_plus(client_id), unquote_plus(secret)) if separator else None


class _Refused(Exception):
    def __init__(self, code: ErrorCode, headers: dict[str, str] | None = None, **params: Any) -> None:
        super().__init__(code.code)
        self.code = code
        self.headers = headers
        self.params = params


def _oauth_problem(request: Request, refusal: _Refused) -> JSONResponse:
    """A problem+json document that is also an RFC 6749 §5.2 error response (`error`: the code).

    (`error` cannot go through `ProblemError`'s parameters: the name is taken.)
    """
    response = problem_response(request, refusal.code, headers=refusal.headers, **refusal.params)
    body = json.loads(bytes(response.body))
    body["error"] = refusal.code.code
    response.body = response.render(body)
    response.headers["content-length"] = str(len(response.body))
    return response


async def _client_row(session: AsyncSession, client_id: str) -> RowMapping | None:
    result = await session.execute(
        text(f"SELECT {CLIENT_COLUMNS} FROM registry.clients WHERE client_id = :id"), {"id": client_id}
    )
    return result.mappings().one_or_none()


def _secret_matches(row: RowMapping, secret: str) -> bool:
    offered = secret_digest(secret)
    return hmac.compare_digest(offered, row["secret_sha256"]) or (
        row["previous_secret_sha256"] is not None
        and row["previous_secret_expires_at"] is not None
        and row["previous_secret_expires_at"] > datetime.now(UTC)
        and hmac.compare_digest(offered, row["previous_secret_sha256"])
    )


async def _client_by_secret(session: AsyncSession, credentials: tuple[str, str] | None) -> RowMapping:
    refused = _Refused(INVALID_CLIENT, headers={"WWW-Authenticate": 'Basic realm="token"'})
    if credentials is None:
        raise refused
    row = await _client_row(session, credentials[0])
    if row is None or row["revoked_at"] is not None or row["token_endpoint_auth_method"] != SECRET_METHOD:
        raise refused
    if not _secret_matches(row, credentials[1]):
        raise refused
    return row


async def _client_by_assertion(
    request: Request, session: AsyncSession, form: TokenForm, basic: tuple[str, str] | None
) -> RowMapping:
    """RFC 7523 §2.2: the client is whoever signed `client_assertion` with one of its registered keys."""
    if basic is not None or form.client_secret is not None:
        raise _assertion_refused("one client authentication method per request (RFC 6749 §2.3)")
    if form.client_assertion_type != assertions.ASSERTION_TYPE or not form.client_assertion:
        raise _assertion_refused(f"client_assertion_type is {assertions.ASSERTION_TYPE}, with a client_assertion")
    claimed = form.client_id or assertions.claimed_client(form.client_assertion)
    row = None if claimed is None else await _client_row(session, claimed)
    if row is None or row["revoked_at"] is not None or not row["jwks"]:
        raise _assertion_refused("no active client with registered keys by that id")
    try:
        claims = assertions.verify(form.client_assertion, row["client_id"], row["jwks"], _token_endpoint_url(request))
    except assertions.AssertionRefused as refusal:
        raise _assertion_refused(refusal.reason) from refusal
    if not await assertions.first_use(session, row["client_id"], claims):
        raise _assertion_refused("this assertion (jti) was used already")
    return row


def _assertion_refused(reason: str) -> _Refused:
    return _Refused(INVALID_CLIENT_ASSERTION, reason=reason)


def _token_endpoint_url(request: Request) -> str:
    """The audience a client assertion names: `REGISTRY_TOKEN_ENDPOINT_URL`, else this endpoint as reached."""
    configured: str = getattr(request.app.state.settings, "token_endpoint_url", "")
    return configured or str(request.url_for("token"))


@dataclass(frozen=True)
class TokenForm:
    """The token request's form fields (RFC 6749 §4.4.2, §2.3.1; RFC 7521 §4.2)."""

    grant_type: str
    scope: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    client_assertion_type: str | None = None
    client_assertion: str | None = None


async def _authenticate_client(
    request: Request, session: AsyncSession, form: TokenForm
) -> tuple[RowMapping, list[str]]:
    """The client's row and the scopes its token gets, or `_Refused`."""
    if form.grant_type != "client_credentials":
        raise _Refused(UNSUPPORTED_GRANT)
    basic = _basic_credentials(request)
    if form.client_assertion_type is not None or form.client_assertion is not None:
        row = await _client_by_assertion(request, session, form, basic)
    else:
        fields = (form.client_id, form.client_secret) if form.client_id and form.client_secret else None
        row = await _client_by_secret(session, basic or fields)
    granted: list[str] = list(row["scopes"])
    asked = list(dict.fromkeys((form.scope or "").split()))  # in order, once each
    if asked:
        extra = [item for item in asked if item not in granted]
        if extra:
            raise _Refused(INVALID_SCOPE, scope=" ".join(extra))
        granted = asked
    return row, granted


@router.post(
    "/oauth/token",
    summary="Get an access token (OAuth2 client-credentials grant, RFC 6749 §4.4)",
    description="The client authenticates with its secret (HTTP Basic, or the `client_id` and `client_secret` "
    "fields) or, with keys registered (`PUT /v1/clients/{client_id}/jwks`), with a signed assertion "
    "(`private_key_jwt`, RFC 7523): `client_assertion_type=" + assertions.ASSERTION_TYPE + "` and "
    "`client_assertion`, a JWT signed by one of its keys with `iss` and `sub` its client id, `aud` this "
    "endpoint's URL, `exp` at most 5 minutes ahead and a `jti` never used before.",
    responses={
        200: {"description": "`access_token` (a signed JWT), `token_type`, `expires_in`, `scope`"},
        401: {"description": "Client authentication failed (`invalid_client`)"},
    },
)
@max_body(8 * KiB)  # public: a client id, a secret or an assertion, and a scope
async def token(
    request: Request,
    session: SessionDep,
    grant_type: Annotated[str, Form(max_length=50)],
    scope: Annotated[str | None, Form(max_length=500)] = None,
    client_id: Annotated[str | None, Form(max_length=100)] = None,
    client_secret: Annotated[str | None, Form(max_length=200)] = None,
    client_assertion_type: Annotated[str | None, Form(max_length=100)] = None,
    client_assertion: Annotated[str | None, Form(max_length=assertions.MAX_ASSERTION_LENGTH)] = None,
) -> JSONResponse:
    form = TokenForm(grant_type, scope, client_id, client_secret, client_assertion_type, client_assertion)
    try:
        row, granted = await _authenticate_client(request, session, form)
    except _Refused as refusal:
        basic = _basic_credentials(request)
        presented = basic[0] if basic else client_id
        if presented is None and client_assertion:
            presented = assertions.claimed_client(client_assertion)
        note_presented_client(request, presented)
        return _oauth_problem(request, refusal)
    # the audit row names the client (it has no bearer token to be named by)
    request.scope.setdefault("state", {})["principal"] = Principal(
        client_id=row["client_id"], name=row["name"], scopes=frozenset(granted), organisation=row["organisation"]
    )
    signer: TokenSigner = request.app.state.token_signer
    access_token = signer.sign(row["client_id"], granted, name=row["name"], organisation=row["organisation"])
    return JSONResponse(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": signer.lifetime_seconds,
            "scope": " ".join(granted),
        },
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


@router.get("/.well-known/jwks.json", summary="The public keys that sign access tokens (JWKS)")
async def jwks_document(request: Request) -> dict[str, Any]:
    signer: TokenSigner = request.app.state.token_signer
    return jwks(signer.directory)


# --- administration (the CLI) -------------------------------------------------------------------


#: As the `registry.clients` table checks it.
CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{3,100}")


def cli_actor(name: str | None = None) -> str:
    """Who administers clients outside HTTP, as the audit log names them: `cli:<name or OS user>`."""
    if not name:
        try:
            name = getpass.getuser()
        except (OSError, KeyError):  # no login name in this container
            name = f"uid {os.getuid()}"
    return "cli:" + name


@dataclass(frozen=True)
class Actor:
    """Who administers a client, as the change's own audit row names them.

    The CLI is `Actor(cli_actor(...))` (method `CLI`, no client); the admin API
    (services/registry/clients/) names the administrator's client, roles and request (method `API`).
    """

    name: str
    method: str = "CLI"
    client_id: str | None = None
    roles: tuple[str, ...] = ()
    organisation: str | None = None
    request_id: str | None = None
    correlation_id: str | None = None


def _actor(actor: str | Actor | None) -> Actor:
    if isinstance(actor, Actor):
        return actor
    return Actor(actor or cli_actor())


async def _audit(connection: Connection, actor: str | Actor, action: str, target: str, status: int) -> None:
    """One row of the registry's audit log for a change of a client, written beside the change."""
    who = _actor(actor)
    await connection.execute(
        "INSERT INTO registry.audit_log (at, request_id, correlation_id, client_id, actor, roles, organisation, "
        "method, path, status, outcome, duration_ms) "
        "VALUES (clock_timestamp(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0)",
        who.request_id or new_request_id(),
        who.correlation_id,
        who.client_id,
        storable(who.name, 200),
        list(who.roles),
        who.organisation,
        who.method,
        storable(f"/clients/{target}/{action}", 500),
        status,
        "ok" if status < 400 else "refused",
    )


@dataclass
class NewClient:
    client_id: str
    client_secret: str
    scopes: list[str]
    organisation: str | None


def _check_scopes(scopes: list[str], organisation: str | None) -> None:
    unknown = [scope for scope in scopes if scope not in ALL_SCOPES]
    if unknown or not scopes:
        raise ValueError(f"unknown scopes {unknown}; choose from {', '.join(ALL_SCOPES)}")
    if BOUND_ROLES & set(scopes):
        if not organisation or credit_code_error(organisation) is not None:
            raise ValueError("an applicant or vendor client is bound to one organisation: give its credit code")
        if len(scopes) > 1:
            raise ValueError("an applicant or vendor client has that one role only")


async def create_client(
    connection: Connection,
    name: str,
    scopes: list[str],
    *,
    organisation: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    actor: str | Actor | None = None,
    jwks: dict[str, Any] | None = None,
    token_endpoint_auth_method: str = SECRET_METHOD,
) -> NewClient:
    """Audited, with `actor` (default: `cli_actor()`), refusals included.

    `jwks`: public keys the client may sign `private_key_jwt` assertions with (checked by the caller:
    `clients.keys.check_jwks`); `token_endpoint_auth_method` `private_key_jwt` refuses its secret.
    """
    actor = _actor(actor)
    client_id = client_id or "c-" + secrets.token_hex(8)
    try:
        _check_scopes(scopes, organisation)
        if not CLIENT_ID.fullmatch(client_id):
            raise ValueError("a client id is 3 to 100 of A-Z a-z 0-9 . _ : -")
    except ValueError:
        await _audit(connection, actor, "create", client_id, 422)
        raise
    client_secret = client_secret or secrets.token_urlsafe(32)
    try:
        async with connection.transaction():
            await connection.execute(
                "INSERT INTO registry.clients (client_id, name, scopes, organisation, secret_sha256, jwks, "
                "token_endpoint_auth_method) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)",
                client_id,
                name,
                scopes,
                organisation,
                secret_digest(client_secret),
                None if jwks is None else json.dumps(jwks),
                token_endpoint_auth_method,
            )
            await _audit(connection, actor, "create", client_id, 201)
    except asyncpg.UniqueViolationError:
        await _audit(connection, actor, "create", client_id, 409)
        raise
    return NewClient(client_id, client_secret, scopes, organisation)


async def _change(
    connection: Connection, actor: str | Actor | None, action: str, client_id: str, sql: str, *args: Any
) -> None:
    """Change an active client and audit it in one transaction; an unknown or revoked one is audited as refused."""
    async with connection.transaction():
        status = await connection.execute(sql, client_id, *args)
        found = not status.endswith(" 0")
        await _audit(connection, _actor(actor), action, client_id, 200 if found else 404)
    if not found:
        raise LookupError(f"no active client {client_id}")


async def rotate_secret(
    connection: Connection, client_id: str, *, grace: timedelta = timedelta(0), actor: str | Actor | None = None
) -> str:
    """A new secret; the old one keeps working for `grace` (so a deployment can roll over)."""
    secret = secrets.token_urlsafe(32)
    await _change(
        connection,
        actor,
        "rotate",
        client_id,
        "UPDATE registry.clients SET previous_secret_sha256 = secret_sha256, "
        "previous_secret_expires_at = now() + $3::interval, secret_sha256 = $2, secret_rotated_at = now() "
        "WHERE client_id = $1 AND revoked_at IS NULL",
        secret_digest(secret),
        grace,
    )
    return secret


async def revoke(connection: Connection, client_id: str, *, actor: str | Actor | None = None) -> None:
    await _change(
        connection,
        actor,
        "revoke",
        client_id,
        "UPDATE registry.clients SET revoked_at = now() WHERE client_id = $1 AND revoked_at IS NULL",
    )


async def set_keys(
    connection: Connection,
    client_id: str,
    jwks: dict[str, Any] | None,
    token_endpoint_auth_method: str,
    *,
    actor: str | Actor | None = None,
) -> None:
    """Replace an active client's public keys (`private_key_jwt`) and how it must authenticate."""
    await _change(
        connection,
        actor,
        "keys",
        client_id,
        "UPDATE registry.clients SET jwks = $2::jsonb, token_endpoint_auth_method = $3 "
        "WHERE client_id = $1 AND revoked_at IS NULL",
        None if jwks is None else json.dumps(jwks),
        token_endpoint_auth_method,
    )


async def list_clients(connection: Connection) -> list[dict[str, Any]]:
    rows = await connection.fetch(
        "SELECT client_id, name, scopes, organisation, created_at, secret_rotated_at, revoked_at "
        "FROM registry.clients ORDER BY created_at, client_id"
    )
    return [dict(row) for row in rows]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.registry.identity",
        description="Manage OAuth2 clients (REGISTRY_DATABASE_URL or DATABASE_URL names the database)",
    )
    parser.add_argument("--actor", help="who runs this, as the audit log records it (default: the OS user)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a client; prints its id and secret (shown once)")
    create.add_argument("--name", required=True, help="who the client is (recorded in the audit log)")
    create.add_argument("--scope", action="append", required=True, help=f"one of {', '.join(ALL_SCOPES)}")
    create.add_argument("--org", help="credit code an applicant or vendor client is bound to")
    create.add_argument("--id", help="client id (default: generated)")
    rotate = commands.add_parser("rotate", help="give a client a new secret")
    rotate.add_argument("client_id")
    rotate.add_argument("--grace-hours", type=float, default=0.0, help="how long the old secret still works")
    revoke_ = commands.add_parser("revoke", help="revoke a client (no new tokens)")
    revoke_.add_argument("client_id")
    commands.add_parser("list", help="list clients (never secrets)")
    return parser


def _database_url() -> str:
    value = os.environ.get("REGISTRY_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not value:
        raise SystemExit("set REGISTRY_DATABASE_URL or DATABASE_URL")
    return value.replace("postgresql+asyncpg://", "postgresql://")


async def _run(args: argparse.Namespace) -> int:
    connection = await asyncpg.connect(_database_url())
    actor = cli_actor(args.actor)
    try:
        if args.command == "create":
            client = await create_client(
                connection, args.name, args.scope, organisation=args.org, client_id=args.id, actor=actor
            )
            print(json.dumps(client.__dict__, ensure_ascii=False))
        elif args.command == "rotate":
            secret = await rotate_secret(
                connection, args.client_id, grace=timedelta(hours=args.grace_hours), actor=actor
            )
            print(json.dumps({"client_id": args.client_id, "client_secret": secret}))
        elif args.command == "revoke":
            await revoke(connection, args.client_id, actor=actor)
            print(json.dumps({"client_id": args.client_id, "revoked": True}))
        else:
            for row in await list_clients(connection):
                print(json.dumps(row, default=str, ensure_ascii=False))
    except (ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except asyncpg.UniqueViolationError:
        print(f"error: a client {args.id} exists already", file=sys.stderr)
        return 2
    finally:
        await connection.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_run(_parser().parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
