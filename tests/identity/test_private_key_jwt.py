"""`private_key_jwt` at the token endpoint (RFC 7523, issue #15), through HTTP.

A client registers public keys through the admin API and gets tokens with assertions it signs;
every way an assertion can be wrong is refused as `invalid_client` (401), in the endpoint's
problem+json form with the RFC 6749 `error` member.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi import FastAPI
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from shared.auth import AUDITOR, OFFICER, PLATFORM
from tests.auth import admin, auth
from tests.identity.common import assert_problem, client_id

ADMIN_HEADERS = admin()
AUDIENCE = "http://registry/oauth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
Key = Any


def _key(algorithm: str) -> Key:
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_jwk(key: Key, kid: str) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        entry = OKPAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        entry = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        entry = RSAAlgorithm.to_jwk(public, as_dict=True)
    return {**entry, "kid": kid}


def _assertion(cid: str, key: Key, algorithm: str, kid: str | None, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": cid, "sub": cid, "aud": AUDIENCE, "iat": now, "exp": now + 120, "jti": secrets.token_hex(8)}
    body.update(claims)
    body = {name: value for name, value in body.items() if value is not None}
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid} if kid else None)


async def _token(anonymous: httpx.AsyncClient, assertion: str, **form: str) -> httpx.Response:
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE}
    return await anonymous.post("/oauth/token", data={**data, "client_assertion": assertion, **form})


async def _client(
    anonymous: httpx.AsyncClient, keys: list[dict[str, Any]], method: str = "private_key_jwt", scope: str = PLATFORM
) -> dict[str, Any]:
    body = {
        "client_id": client_id("pkj"),
        "name": "市数据平台",
        "scopes": [scope],
        "jwks": {"keys": keys},
        "token_endpoint_auth_method": method,
    }
    created = await anonymous.post("/v1/clients", json=body, headers=ADMIN_HEADERS)
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256"])
async def test_a_signed_assertion_gets_a_token(
    anonymous: httpx.AsyncClient, registry_app: FastAPI, algorithm: str
) -> None:
    key = _key(algorithm)
    client = await _client(anonymous, [_public_jwk(key, "k1")])
    cid = client["client_id"]
    assert client["client_secret"] is None  # a key-only client has no secret to show
    assert client["jwks"]["keys"][0]["kid"] == "k1"

    response = await _token(anonymous, _assertion(cid, key, algorithm, "k1"))

    assert response.status_code == 200, response.text
    principal = registry_app.state.verifier.verify(response.json()["access_token"])
    assert principal.client_id == cid
    assert principal.scopes == frozenset({PLATFORM})
    # the form's client_id may name the client too; without a kid, the client's keys of the algorithm are tried
    named = await _token(anonymous, _assertion(cid, key, algorithm, None), client_id=cid)
    assert named.status_code == 200, named.text
    audit = await anonymous.get("/v1/audit", params={"client_id": cid}, headers=auth(AUDITOR, name="audit reader"))
    assert [(row["path"], row["status"], row["actor"]) for row in audit.json()["items"]] == [
        ("/oauth/token", 200, "市数据平台"),
        ("/oauth/token", 200, "市数据平台"),
    ]


def _none_token(cid: str) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    now = int(time.time())
    claims = {"iss": cid, "sub": cid, "aud": AUDIENCE, "exp": now + 60, "jti": secrets.token_hex(8)}
    return f"{part({'alg': 'none', 'kid': 'k1'})}.{part(claims)}."


#: Each case, and a word the refusal's detail names it by.
CASES = {
    "expired": "exp",
    "wrong audience": "aud",
    "unknown key": "kid",
    "another key under its kid": "signature",
    "alg none": "'none'",
    "alg HS256": "'HS256'",
    "too long-lived": "ahead",
    "iss not the client": "iss",
    "no jti": "jti",
    "not yet valid": "nbf",
    "garbage": "malformed",
}


@pytest.mark.parametrize("case", CASES)
async def test_a_wrong_assertion_is_refused(anonymous: httpx.AsyncClient, case: str) -> None:
    key = _key("EdDSA")
    cid = (await _client(anonymous, [_public_jwk(key, "k1")]))["client_id"]
    now = int(time.time())
    other = _key("EdDSA")
    assertion = {
        "expired": lambda: _assertion(cid, key, "EdDSA", "k1", iat=now - 200, exp=now - 100),
        "wrong audience": lambda: _assertion(cid, key, "EdDSA", "k1", aud="https://elsewhere.example/token"),
        "unknown key": lambda: _assertion(cid, other, "EdDSA", "k2"),
        "another key under its kid": lambda: _assertion(cid, other, "EdDSA", "k1"),
        "alg none": lambda: _none_token(cid),
        "alg HS256": lambda: _assertion(cid, "a shared secret of at least 32 bytes!", "HS256", "k1"),
        "too long-lived": lambda: _assertion(cid, key, "EdDSA", "k1", exp=now + 3600),
        "iss not the client": lambda: _assertion(cid, key, "EdDSA", "k1", iss="someone-else"),
        "no jti": lambda: _assertion(cid, key, "EdDSA", "k1", jti=None),
        "not yet valid": lambda: _assertion(cid, key, "EdDSA", "k1", nbf=now + 120),
        "garbage": lambda: "not.a.jwt",
    }[case]()

    response = await _token(anonymous, assertion, client_id=cid)

    body = assert_problem(response, 401, "invalid_client")
    assert body["error"] == "invalid_client"
    assert CASES[case] in body["detail"], body["detail"]
    assert "access_token" not in response.text


async def test_a_replayed_assertion_is_refused(anonymous: httpx.AsyncClient) -> None:
    key = _key("ES256")
    cid = (await _client(anonymous, [_public_jwk(key, "k1")]))["client_id"]
    assertion = _assertion(cid, key, "ES256", "k1")

    first = await _token(anonymous, assertion)
    again = await _token(anonymous, assertion)

    assert first.status_code == 200, first.text
    body = assert_problem(again, 401, "invalid_client")
    assert "jti" in body["detail"]
    # a new jti is a new assertion
    assert (await _token(anonymous, _assertion(cid, key, "ES256", "k1"))).status_code == 200


async def test_secret_or_key_as_configured(anonymous: httpx.AsyncClient) -> None:
    key = _key("EdDSA")
    both = await _client(anonymous, [_public_jwk(key, "k1")], method="client_secret_basic", scope=OFFICER)
    cid, secret = both["client_id"], both["client_secret"]
    by_secret = await anonymous.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret))
    assert by_secret.status_code == 200, by_secret.text
    assert (await _token(anonymous, _assertion(cid, key, "EdDSA", "k1"))).status_code == 200
    # one method per request
    mixed = await _token(anonymous, _assertion(cid, key, "EdDSA", "k1"), client_secret=secret, client_id=cid)
    assert_problem(mixed, 401, "invalid_client")

    # keys only from now on: the secret stops working
    keys_only = {"keys": [_public_jwk(key, "k1")], "token_endpoint_auth_method": "private_key_jwt"}
    changed = await anonymous.put(f"/v1/clients/{cid}/jwks", json=keys_only, headers=ADMIN_HEADERS)
    assert changed.status_code == 200, changed.text
    assert changed.json()["token_endpoint_auth_method"] == "private_key_jwt"
    refused = await anonymous.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret))
    assert_problem(refused, 401, "invalid_client")
    assert_problem(await anonymous.post(f"/v1/clients/{cid}/rotate", headers=ADMIN_HEADERS), 409, "client_key_only")

    # a new key replaces the old one (key rotation): the old key's assertions are refused
    new_key = _key("RS256")
    replaced = {"keys": [_public_jwk(new_key, "k2")], "token_endpoint_auth_method": "private_key_jwt"}
    assert (await anonymous.put(f"/v1/clients/{cid}/jwks", json=replaced, headers=ADMIN_HEADERS)).status_code == 200
    assert_problem(await _token(anonymous, _assertion(cid, key, "EdDSA", "k1")), 401, "invalid_client")
    assert (await _token(anonymous, _assertion(cid, new_key, "RS256", "k2"))).status_code == 200

    # revoked: no assertion helps
    assert (await anonymous.post(f"/v1/clients/{cid}/revoke", headers=ADMIN_HEADERS)).status_code == 200
    assert_problem(await _token(anonymous, _assertion(cid, new_key, "RS256", "k2")), 401, "invalid_client")


def _private_jwk(key: Key) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(OKPAlgorithm.to_jwk(key))
    return {**entry, "kid": "leaked"}


@pytest.mark.parametrize(
    ("keys", "code"),
    [
        (lambda: [_private_jwk(_key("EdDSA"))], "private_key_sent"),
        (lambda: [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}], "private_key_sent"),
        (
            lambda: [_public_jwk(rsa.generate_private_key(public_exponent=65537, key_size=1024), "small")],  # noqa: S505 (refused: the point)
            "key_not_accepted",
        ),
        (lambda: [_public_jwk(ec.generate_private_key(ec.SECP384R1()), "p384")], "key_not_accepted"),
        (lambda: [{**_public_jwk(_key("EdDSA"), "k"), "alg": "ES256"}], "key_not_accepted"),
        (lambda: [_public_jwk(_key("EdDSA"), "same"), _public_jwk(_key("EdDSA"), "same")], "key_id_required"),
        (lambda: [{k: v for k, v in _public_jwk(_key("EdDSA"), "x").items() if k != "kid"}], "key_id_required"),
        (lambda: [{"kty": "OKP", "crv": "Ed25519", "x": "!!", "kid": "bad"}], "key_unreadable"),
        (lambda: [], "keys_required"),
    ],
)
async def test_keys_that_are_refused(anonymous: httpx.AsyncClient, keys: Any, code: str) -> None:
    body = {
        "client_id": client_id("badkey"),
        "name": "x",
        "scopes": [PLATFORM],
        "jwks": {"keys": keys()},
        "token_endpoint_auth_method": "private_key_jwt",
    }
    response = await anonymous.post("/v1/clients", json=body, headers=ADMIN_HEADERS)
    problem = assert_problem(response, 422, "validation_failed")
    assert code in [error["code"] for error in problem["errors"]], problem
    assert "c2VjcmV0" not in response.text
