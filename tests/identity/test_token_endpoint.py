"""The registry's OAuth2 token endpoint (client-credentials grant) and JWKS, through HTTP.

Clients are created with `identity.create_client` on a real connection; the tokens the
endpoint gives are checked by the same verifier every service uses, and used on a
protected route.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any
from urllib.parse import quote_plus

import httpx
import jwt
import pytest
from fastapi import FastAPI

from services.registry import identity
from shared.auth import APPROVER, AUDITOR, OFFICER, VENDOR, Principal
from tests.factories import VALID_CODES
from tests.identity.common import assert_problem, client_id

TOKEN = "/oauth/token"
GRANT = {"grant_type": "client_credentials"}


async def _token(http: httpx.AsyncClient, cid: str, secret: str, **form: str) -> httpx.Response:
    return await http.post(TOKEN, data={**GRANT, **form}, auth=(cid, secret))


def _verify(app: FastAPI, token: str) -> Principal:
    principal: Principal = app.state.verifier.verify(token)
    return principal


async def test_http_basic_gives_a_token_that_every_service_accepts(
    anonymous: httpx.AsyncClient, connection: Any, registry_app: FastAPI
) -> None:
    cid = client_id("officer")
    client = await identity.create_client(connection, "王科员", [OFFICER], client_id=cid)

    response = await _token(anonymous, cid, client.client_secret)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == OFFICER
    signer = registry_app.state.token_signer
    assert body["expires_in"] == signer.lifetime_seconds
    principal = _verify(registry_app, body["access_token"])
    assert principal.client_id == cid
    assert principal.name == "王科员"
    assert principal.scopes == frozenset({OFFICER})
    assert principal.organisation is None
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["iss"] == signer.issuer
    assert claims["aud"] == signer.audience
    assert claims["exp"] - claims["iat"] == signer.lifetime_seconds
    assert jwt.get_unverified_header(body["access_token"])["kid"] == signer.kid

    used = await anonymous.get("/v1/organisations", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert used.status_code == 200, used.text


async def test_form_fields_authenticate_too_and_a_vendor_token_names_its_organisation(
    anonymous: httpx.AsyncClient, connection: Any, registry_app: FastAPI
) -> None:
    cid = client_id("vendor")
    client = await identity.create_client(
        connection, "算力供应商", [VENDOR], organisation=VALID_CODES[1], client_id=cid
    )

    response = await anonymous.post(TOKEN, data={**GRANT, "client_id": cid, "client_secret": client.client_secret})

    assert response.status_code == 200, response.text
    principal = _verify(registry_app, response.json()["access_token"])
    assert principal.scopes == frozenset({VENDOR})
    assert principal.organisation == VALID_CODES[1]
    assert principal.vendor == VALID_CODES[1]
    assert principal.applicant is None


async def test_basic_credentials_are_form_decoded(
    anonymous: httpx.AsyncClient, connection: Any, registry_app: FastAPI
) -> None:
    """RFC 6749 §2.3.1: the id and secret are form-encoded before Base64 (a ':' in an id survives)."""
    cid = client_id("odd:id")
    client = await identity.create_client(connection, "odd", [AUDITOR], client_id=cid)
    raw = f"{quote_plus(cid)}:{quote_plus(client.client_secret)}".encode()
    header = "Basic " + base64.b64encode(raw).decode()

    response = await anonymous.post(TOKEN, data=GRANT, headers={"Authorization": header})

    assert response.status_code == 200, response.text
    assert _verify(registry_app, response.json()["access_token"]).client_id == cid


@pytest.mark.parametrize("case", ["wrong secret", "unknown client", "revoked client", "no credentials", "bad basic"])
async def test_bad_client_credentials_are_refused(anonymous: httpx.AsyncClient, connection: Any, case: str) -> None:
    cid = client_id("refused")
    client = await identity.create_client(connection, "refused", [OFFICER], client_id=cid)
    secret = client.client_secret
    kwargs: dict[str, Any] = {"auth": (cid, secret)}
    if case == "wrong secret":
        kwargs = {"auth": (cid, secret[:-1] + ("A" if secret[-1] != "A" else "B"))}
    elif case == "unknown client":
        kwargs = {"auth": (client_id("nobody"), secret)}
    elif case == "revoked client":
        await identity.revoke(connection, cid)
    elif case == "no credentials":
        kwargs = {}
    else:
        kwargs = {"headers": {"Authorization": "Basic not-base64!"}}

    response = await anonymous.post(TOKEN, data=GRANT, **kwargs)

    body = assert_problem(response, 401, "invalid_client")
    assert body["error"] == "invalid_client"  # RFC 6749 §5.2
    assert response.headers["www-authenticate"].startswith("Basic")
    assert "access_token" not in body


async def test_a_revoked_client_worked_before(anonymous: httpx.AsyncClient, connection: Any) -> None:
    cid = client_id("revoked")
    client = await identity.create_client(connection, "revoked", [OFFICER], client_id=cid)
    assert (await _token(anonymous, cid, client.client_secret)).status_code == 200
    await identity.revoke(connection, cid)
    assert_problem(await _token(anonymous, cid, client.client_secret), 401, "invalid_client")


@pytest.mark.parametrize("grant", ["password", "authorization_code", "refresh_token", "CLIENT_CREDENTIALS"])
async def test_other_grants_are_refused(anonymous: httpx.AsyncClient, connection: Any, grant: str) -> None:
    cid = client_id("grant")
    client = await identity.create_client(connection, "grant", [OFFICER], client_id=cid)
    response = await anonymous.post(TOKEN, data={"grant_type": grant}, auth=(cid, client.client_secret))
    body = assert_problem(response, 400, "unsupported_grant_type")
    assert body["error"] == "unsupported_grant_type"


async def test_a_scope_not_granted_is_refused(anonymous: httpx.AsyncClient, connection: Any) -> None:
    cid = client_id("scope")
    client = await identity.create_client(connection, "scope", [OFFICER], client_id=cid)

    response = await _token(anonymous, cid, client.client_secret, scope=f"{OFFICER} admin")

    body = assert_problem(response, 400, "invalid_scope")
    assert body["error"] == "invalid_scope"
    assert body["scope"] == "admin"


async def test_a_client_may_ask_for_less(anonymous: httpx.AsyncClient, connection: Any, registry_app: FastAPI) -> None:
    cid = client_id("narrow")
    client = await identity.create_client(connection, "narrow", [OFFICER, APPROVER], client_id=cid)

    everything = await _token(anonymous, cid, client.client_secret)
    narrowed = await _token(anonymous, cid, client.client_secret, scope=f"{APPROVER} {APPROVER}")

    assert everything.status_code == 200, everything.text
    assert narrowed.status_code == 200, narrowed.text
    assert _verify(registry_app, everything.json()["access_token"]).scopes == {OFFICER, APPROVER}
    assert narrowed.json()["scope"] == APPROVER
    assert _verify(registry_app, narrowed.json()["access_token"]).scopes == {APPROVER}


async def test_rotating_with_grace_keeps_the_old_secret_working(anonymous: httpx.AsyncClient, connection: Any) -> None:
    cid = client_id("grace")
    old = (await identity.create_client(connection, "grace", [OFFICER], client_id=cid)).client_secret

    new = await identity.rotate_secret(connection, cid, grace=timedelta(hours=1))

    assert new != old
    assert (await _token(anonymous, cid, old)).status_code == 200
    assert (await _token(anonymous, cid, new)).status_code == 200


async def test_rotating_without_grace_refuses_the_old_secret_at_once(
    anonymous: httpx.AsyncClient, connection: Any
) -> None:
    cid = client_id("nograce")
    old = (await identity.create_client(connection, "nograce", [OFFICER], client_id=cid)).client_secret
    assert (await _token(anonymous, cid, old)).status_code == 200

    new = await identity.rotate_secret(connection, cid)

    assert_problem(await _token(anonymous, cid, old), 401, "invalid_client")
    assert (await _token(anonymous, cid, new)).status_code == 200


async def test_a_grace_period_ends(anonymous: httpx.AsyncClient, connection: Any) -> None:
    cid = client_id("ended")
    old = (await identity.create_client(connection, "ended", [OFFICER], client_id=cid)).client_secret
    await identity.rotate_secret(connection, cid, grace=timedelta(hours=1))
    await connection.execute(
        "UPDATE registry.clients SET previous_secret_expires_at = now() - interval '1 second' WHERE client_id = $1", cid
    )
    assert_problem(await _token(anonymous, cid, old), 401, "invalid_client")


async def test_the_jwks_publishes_the_signing_key(
    anonymous: httpx.AsyncClient, connection: Any, registry_app: FastAPI
) -> None:
    cid = client_id("jwks")
    client = await identity.create_client(connection, "jwks", [AUDITOR], client_id=cid)
    token = (await _token(anonymous, cid, client.client_secret)).json()["access_token"]

    response = await anonymous.get("/.well-known/jwks.json")

    assert response.status_code == 200, response.text
    keys = {entry["kid"]: entry for entry in response.json()["keys"]}
    kid = jwt.get_unverified_header(token)["kid"]
    assert kid == registry_app.state.token_signer.kid
    assert kid in keys
    entry = keys[kid]
    assert (entry["kty"], entry["crv"], entry["alg"], entry["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert "d" not in entry  # the public half only
    signer = registry_app.state.token_signer
    claims = jwt.decode(token, jwt.PyJWK(entry), algorithms=["EdDSA"], audience=signer.audience)
    assert claims["sub"] == cid
