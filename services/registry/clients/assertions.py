"""`private_key_jwt` (RFC 7523 §2.2, RFC 7521 §4.2): a client authenticates with a JWT it signed.

The token request carries `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
and `client_assertion`, a JWT that the client signed with one of its registered public keys
(`keys.py`), the key named by the header's `kid` (or, without one, any of its keys of the header's
algorithm). Refused, each as `invalid_client` (401):

- an algorithm other than EdDSA, ES256 or RS256 (`none` and the HMAC family above all: a public key
  must never serve as an HMAC secret), or one that is not the key's;
- a key the client has not registered, or a signature that none of its keys verifies;
- `iss` or `sub` other than the client's id; `aud` that does not name this token endpoint's URL;
- no `exp`, an `exp` past (beyond a 30 s leeway) or more than 5 minutes ahead, or an `iat` more than
  5 minutes before `exp`; a `nbf` or `iat` in the future;
- no `jti`, or a `jti` this client used before: each is remembered until its `exp` (plus the leeway),
  in `registry.client_assertions`, so a captured assertion cannot be replayed while it is valid.
  Two requests racing with one `jti` meet on the table's primary key: the second waits for the first
  to commit, then finds it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import signed_header

from . import keys, repository

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LENGTH = 4096
MAX_LIFETIME_SECONDS = 300
LEEWAY_SECONDS = 30
MAX_JTI_LENGTH = 200


class AssertionRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Verified:
    jti: str
    expires: int


def claimed_client(assertion: str) -> str | None:
    """Who an assertion says it comes from (`sub`, else `iss`), unverified: to find its keys, and for the audit."""
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    for name in ("sub", "iss"):
        value = claims.get(name)
        if isinstance(value, str) and 0 < len(value) <= 200:
            return value
    return None


def _candidates(stored: Any, header: dict[str, Any], algorithm: str) -> list[jwt.PyJWK]:
    registered = keys.loaded(stored)
    kid = header.get("kid")
    named = [key for key in registered if key.key_id == kid] if kid is not None else registered
    return [key for key in named if key.algorithm_name == algorithm]


def _decode(assertion: str, key: jwt.PyJWK, algorithm: str, client_id: str, audience: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            key=key,
            algorithms=[algorithm],
            audience=audience,
            issuer=client_id,
            leeway=LEEWAY_SECONDS,
            options={"require": ["iss", "sub", "aud", "exp", "jti"]},
        )
    except jwt.InvalidSignatureError:
        raise
    except jwt.ExpiredSignatureError as exc:
        raise AssertionRefused("expired (exp)") from exc
    except jwt.InvalidAudienceError as exc:
        raise AssertionRefused(f"aud does not name this token endpoint ({audience})") from exc
    except jwt.InvalidIssuerError as exc:
        raise AssertionRefused("iss is not the client id") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise AssertionRefused(f"no {exc.claim} claim") from exc
    except jwt.ImmatureSignatureError as exc:
        raise AssertionRefused("not valid yet (nbf or iat in the future)") from exc
    except jwt.PyJWTError as exc:
        raise AssertionRefused("malformed claims") from exc
    return claims


def verify(assertion: str, client_id: str, stored_keys: Any, audience: str, now: float | None = None) -> Verified:
    """The assertion's `jti` and `exp` if it is the client's, fresh and for this endpoint; else `AssertionRefused`."""
    now = time.time() if now is None else now
    try:
        header, algorithm = signed_header(assertion, keys.ALGORITHMS)
    except ValueError as exc:
        raise AssertionRefused(f"{exc} (EdDSA, ES256, RS256 are)") from exc
    candidates = _candidates(stored_keys, header, algorithm)
    if not candidates:
        raise AssertionRefused("no registered key of the client by that kid and algorithm")
    claims: dict[str, Any] | None = None
    for key in candidates:
        try:
            claims = _decode(assertion, key, algorithm, client_id, audience)
            break
        except jwt.InvalidSignatureError:
            continue
    if claims is None:
        raise AssertionRefused("the signature does not verify with the client's keys")
    if claims.get("sub") != client_id:
        raise AssertionRefused("sub is not the client id")
    expires = int(claims["exp"])
    if expires - now > MAX_LIFETIME_SECONDS + LEEWAY_SECONDS:
        raise AssertionRefused(f"exp is more than {MAX_LIFETIME_SECONDS} s ahead")
    if "iat" in claims and expires - int(claims["iat"]) > MAX_LIFETIME_SECONDS:
        raise AssertionRefused(f"lifetime (exp - iat) above {MAX_LIFETIME_SECONDS} s")
    jti = claims["jti"]
    if not isinstance(jti, str) or not 1 <= len(jti) <= MAX_JTI_LENGTH:
        raise AssertionRefused(f"jti is a string of 1 to {MAX_JTI_LENGTH} characters")
    return Verified(jti, expires)


async def first_use(session: AsyncSession, client_id: str, verified: Verified) -> bool:
    """Remember the `jti` until the assertion can no longer be accepted; False if it was used before."""
    until = datetime.fromtimestamp(verified.expires + LEEWAY_SECONDS, UTC)
    return await repository.remember_assertion(session, client_id, verified.jti, until)
