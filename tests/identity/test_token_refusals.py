"""Bad tokens are refused by a protected route of a real app (the registry's GET /v1/organisations).

Each bad token is built from a good one by changing one thing, and the good one is shown
to work, so every refusal is caused by that one change.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.auth import ADMIN, APPLICANT, AUDITOR, DASHBOARD, VENDOR
from shared.tokens import TokenSigner, generate_key
from tests.auth import signer as session_signer
from tests.identity.common import assert_problem

PROTECTED = "/v1/organisations"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _private_key() -> Ed25519PrivateKey:
    signer = session_signer()
    key = serialization.load_pem_private_key((signer.directory / f"{signer.kid}.pem").read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def _claims(**changes: Any) -> dict[str, Any]:
    signer = session_signer()
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": signer.issuer,
        "aud": signer.audience,
        "sub": "refusal-tests",
        "iat": now,
        "exp": now + 300,
        "scope": AUDITOR,
        "name": "refusal tests",
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def _sign(claims: dict[str, Any], *, kid: str | None = "", key: Ed25519PrivateKey | None = None) -> str:
    headers = {} if kid is None else {"kid": kid or session_signer().kid}
    return jwt.encode(claims, key or _private_key(), algorithm="EdDSA", headers=headers)


def _by_hand(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def _hs256(secret: bytes) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": session_signer().kid}
    return _by_hand(header, _claims(scope=ADMIN), lambda data: hmac.new(secret, data, hashlib.sha256).digest())


def _public_key_forms() -> dict[str, bytes]:
    public = _private_key().public_key()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(public))
    return {
        "raw": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        "pem": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk x": jwk["x"].encode(),
    }


def _tamper_payload(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(_unb64(payload))
    claims.update(changes)
    return ".".join([header, _b64(json.dumps(claims).encode()), signature])


def _tamper_signature(token: str) -> str:
    header, payload, signature = token.split(".")
    raw = bytearray(_unb64(signature))
    raw[10] ^= 0x01
    return ".".join([header, payload, _b64(bytes(raw))])


def _foreign_key_token(tmp_path: Path, *, same_kid: bool) -> str:
    """Signed by a key of our own making, which the services' JWKS does not hold."""
    signer = session_signer()
    kid = generate_key(tmp_path / "keys", signer.kid if same_kid else None)
    foreign = TokenSigner(tmp_path / "keys", issuer=signer.issuer, audience=signer.audience, lifetime_seconds=300)
    assert foreign.kid == kid
    return foreign.sign("refusal-tests", [ADMIN])


def _bad_tokens(tmp_path: Path) -> dict[str, str]:
    now = int(time.time())
    good = _sign(_claims(scope=DASHBOARD))  # a dashboard may not list organisations: 403 when it verifies
    return {
        "expired": _sign(_claims(iat=now - 7200, exp=now - 3600)),
        "not yet valid": _sign(_claims(nbf=now + 3600)),
        # issue #12: a validly signed token must also be short-lived (AUTH_MAX_TOKEN_LIFETIME_SECONDS, 3600)
        "a ten-year lifetime": _sign(_claims(iat=now, exp=now + 10 * 365 * 86400)),
        "a lifetime one second above the maximum": _sign(_claims(iat=now - 60, exp=now - 60 + 3601)),
        "a ten-year lifetime, issued long ago": _sign(_claims(iat=now - 5 * 365 * 86400, exp=now + 5 * 365 * 86400)),
        "a ten-year lifetime, as strings": _sign(_claims(iat=str(now), exp=str(now + 10 * 365 * 86400))),
        "issued in the future, so the lifetime looks short": _sign(_claims(iat=now + 86400, exp=now + 86400 + 300)),
        "no expiry": _sign(_claims(exp=None)),
        "no subject": _sign(_claims(sub=None)),
        "tampered payload": _tamper_payload(good, scope=ADMIN),
        "tampered signature": _tamper_signature(_sign(_claims())),
        "signature removed": good.rsplit(".", 1)[0] + ".",
        "wrong issuer": _sign(_claims(iss="https://idp.example.com")),
        "no issuer": _sign(_claims(iss=None)),
        "wrong audience": _sign(_claims(aud="another-system")),
        "no audience": _sign(_claims(aud=None)),
        "alg none": _by_hand({"alg": "none", "kid": session_signer().kid}, _claims(scope=ADMIN), lambda _: b""),
        "alg None": _by_hand({"alg": "None", "kid": session_signer().kid}, _claims(scope=ADMIN), lambda _: b""),
        **{f"HS256 with the public key ({form})": _hs256(secret) for form, secret in _public_key_forms().items()},
        "alg of another key type": _by_hand(
            {"alg": "RS256", "kid": session_signer().kid}, _claims(scope=ADMIN), lambda data: _private_key().sign(data)
        ),
        "unknown kid": _sign(_claims(), kid="no-such-key"),
        "no kid": _sign(_claims(), kid=None),
        "a key not in the JWKS": _foreign_key_token(tmp_path / "a", same_kid=False),
        "a key not in the JWKS, under a published kid": _foreign_key_token(tmp_path / "b", same_kid=True),
        "applicant without org": _sign(_claims(scope=APPLICANT)),
        "vendor without org": _sign(_claims(scope=VENDOR)),
        "scope not a string": _sign(_claims(scope=[ADMIN])),
        "not a JWT": "this-is-not-a-token",
        "two parts": "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0",
    }


CASES = [
    "expired",
    "not yet valid",
    "a ten-year lifetime",
    "a lifetime one second above the maximum",
    "a ten-year lifetime, issued long ago",
    "a ten-year lifetime, as strings",
    "issued in the future, so the lifetime looks short",
    "no expiry",
    "no subject",
    "tampered payload",
    "tampered signature",
    "signature removed",
    "wrong issuer",
    "no issuer",
    "wrong audience",
    "no audience",
    "alg none",
    "alg None",
    "HS256 with the public key (raw)",
    "HS256 with the public key (pem)",
    "HS256 with the public key (jwk x)",
    "alg of another key type",
    "unknown kid",
    "no kid",
    "a key not in the JWKS",
    "a key not in the JWKS, under a published kid",
    "applicant without org",
    "vendor without org",
    "scope not a string",
    "not a JWT",
    "two parts",
]


async def test_the_good_tokens_the_bad_ones_are_made_from_work(anonymous: httpx.AsyncClient) -> None:
    """Without this the refusals below could be refusals of everything."""
    good = await anonymous.get(PROTECTED, headers={"Authorization": f"Bearer {_sign(_claims())}"})
    assert good.status_code == 200, good.text
    dashboard = await anonymous.get(PROTECTED, headers={"Authorization": f"Bearer {_sign(_claims(scope=DASHBOARD))}"})
    assert_problem(dashboard, 403, "forbidden")
    applicant = _sign(_claims(scope=APPLICANT, org="9144030071526726XG"))
    assert_problem(await anonymous.get(PROTECTED, headers={"Authorization": f"Bearer {applicant}"}), 403, "forbidden")


async def test_a_token_of_the_longest_accepted_lifetime_works(anonymous: httpx.AsyncClient) -> None:
    """The maximum itself is allowed (the refusals above are of one second more), with the clock-skew leeway."""
    now = int(time.time())
    for claims in (_claims(iat=now, exp=now + 3600), _claims(iat=now - 3600 + 60, exp=now + 60)):
        response = await anonymous.get(PROTECTED, headers={"Authorization": f"Bearer {_sign(claims)}"})
        assert response.status_code == 200, response.text


async def test_a_lifetime_refusal_says_why(anonymous: httpx.AsyncClient) -> None:
    now = int(time.time())
    token = _sign(_claims(iat=now, exp=now + 10 * 365 * 86400))
    response = await anonymous.get(PROTECTED, headers={"Authorization": f"Bearer {token}", "Accept-Language": "en"})
    assert assert_problem(response, 401, "invalid_token")["detail"] == "The token is invalid: lifetime above 3600 s"


def test_every_bad_token_is_tested(tmp_path: Path) -> None:
    assert sorted(_bad_tokens(tmp_path)) == sorted(CASES)


@pytest.mark.parametrize("case", CASES)
async def test_bad_tokens_are_refused(anonymous: httpx.AsyncClient, tmp_path: Path, case: str) -> None:
    token = _bad_tokens(tmp_path)[case]

    response = await anonymous.get(PROTECTED, headers={"Authorization": f"Bearer {token}"})

    body = assert_problem(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert "items" not in body


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "Token abc", "bearer"],
    ids=["missing", "empty", "bearer without token", "bearer blank", "basic", "other scheme", "lowercase bare"],
)
async def test_no_bearer_token_is_unauthenticated(anonymous: httpx.AsyncClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}

    response = await anonymous.get(PROTECTED, headers=headers)

    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_lowercase_scheme_is_accepted(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get(PROTECTED, headers={"Authorization": f"bearer {_sign(_claims())}"})
    assert response.status_code == 200, response.text


async def test_refusals_are_in_english_on_request(anonymous: httpx.AsyncClient) -> None:
    expired = _sign(_claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600))
    response = await anonymous.get(PROTECTED, headers={"Authorization": f"Bearer {expired}", "Accept-Language": "en"})
    assert assert_problem(response, 401, "invalid_token")["detail"] == "The token is invalid: expired"
