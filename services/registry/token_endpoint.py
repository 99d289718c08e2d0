"""The project's own OAuth2 token endpoint (client-credentials grant).

    POST /oauth/token            grant_type=client_credentials, client id and secret by
                                 HTTP Basic (or client_id/client_secret form fields), or a
                                 signed assertion (private_key_jwt, RFC 7523: clients/assertions.py);
                                 optional `scope` narrows the client's scopes
    GET  /.well-known/jwks.json  the public keys every service verifies tokens with

The clients are identity.py's. Production may use an external identity provider instead: the
services only need its issuer and public keys (`AUTH_ISSUER`, `AUTH_JWKS`). Every token
request is in the registry's audit log with the client id (issue #12) — the authenticated
client's, or as presented when refused (never the secret).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse
from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.audit import note_presented_client
from shared.auth import Principal
from shared.db import SessionDep
from shared.errors import ErrorCode, problem_response
from shared.limits import KiB, max_body
from shared.tokens import TokenSigner, jwks

from .clients import assertions
from .identity import CLIENT_COLUMNS, SECRET_METHOD, secret_digest

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
