"""The public keys a client signs its token-endpoint assertions with (`private_key_jwt`, RFC 7523).

A client registers a JWKS document (RFC 7517) of at most `MAX_KEYS` public keys, each with a `kid`:
Ed25519 (`OKP`, alg `EdDSA`), P-256 (`EC`, alg `ES256`) or RSA of at least 2048 bits (alg `RS256`) —
the algorithms the services verify access tokens with. A key that carries private material is
refused, not stripped: whoever sent it has leaked it and should make another. PyJWT and
`cryptography` read the keys; nothing here is hand-rolled crypto.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from shared.auth import TokenVerifier
from shared.errors import FieldError

ALGORITHMS: tuple[str, ...] = TokenVerifier.ALGORITHMS
MAX_KEYS = 5
MIN_RSA_BITS = 2048
#: Members of a private (or symmetric) JWK: RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: Key type and curve → the one algorithm it is used with.
ACCEPTED = {("OKP", "Ed25519"): "EdDSA", ("EC", "P-256"): "ES256", ("RSA", None): "RS256"}


def _problem(field: str, entry: Any, seen: set[str]) -> FieldError | None:
    """What is wrong with one key of a JWKS sent to be registered, or None."""
    if not isinstance(entry, dict):
        return FieldError(field, "key_unreadable", "公钥须为 JSON 对象（JWK）", "A key is a JSON object (a JWK)")
    if PRIVATE_MEMBERS & set(entry):
        return FieldError(
            field,
            "private_key_sent",
            "这是私钥（含 d、p、q 或 k 等成员）：只发送公钥，并换一把新密钥，因为这把已经泄露",
            "This is private key material (d, p, q, k, …): send the public key only, and make a new key "
            "since this one has left its owner",
        )
    kid = entry.get("kid")
    if not isinstance(kid, str) or not 1 <= len(kid) <= 100 or kid in seen:
        return FieldError(
            field,
            "key_id_required",
            "每把公钥须有唯一的 kid（1–100 字符）",
            "Each key has a unique kid (1 to 100 characters)",
        )
    seen.add(kid)
    kty = entry.get("kty")
    algorithm = ACCEPTED.get((kty, entry.get("crv") if kty != "RSA" else None)) if isinstance(kty, str) else None
    if algorithm is None or entry.get("alg", algorithm) != algorithm or entry.get("use", "sig") != "sig":
        return FieldError(
            field,
            "key_not_accepted",
            "仅接受用于签名的 Ed25519（EdDSA）、P-256（ES256）或 RSA（RS256）公钥",
            "Only signing keys of Ed25519 (EdDSA), P-256 (ES256) or RSA (RS256) are accepted",
        )
    try:
        key = jwt.PyJWK(entry, algorithm)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return FieldError(field, "key_unreadable", "无法读取该公钥", "The key cannot be read")
    if isinstance(key.key, RSAPublicKey) and key.key.key_size < MIN_RSA_BITS:
        return FieldError(
            field,
            "key_not_accepted",
            f"RSA 公钥至少 {MIN_RSA_BITS} 位",
            f"An RSA key has at least {MIN_RSA_BITS} bits",
        )
    return None


def key_problems(keys: list[Any], field: str) -> list[FieldError]:
    """Every problem of a JWKS's `keys` (at `field`) sent to be registered (none: it may be stored as it is)."""
    if len(keys) > MAX_KEYS:
        return [
            FieldError(
                field,
                "too_many_keys",
                f"最多登记 {MAX_KEYS} 把公钥",
                f"At most {MAX_KEYS} keys",
            )
        ]
    seen: set[str] = set()
    return [problem for index, entry in enumerate(keys) if (problem := _problem(f"{field}.{index}", entry, seen))]


def document(value: Any) -> dict[str, Any] | None:
    """A stored JWKS as a dictionary (a `jsonb` read through a text query arrives as a string)."""
    if value is None:
        return None
    parsed = json.loads(value) if isinstance(value, str | bytes) else value
    return parsed if isinstance(parsed, dict) else None


def loaded(stored: Any) -> list[jwt.PyJWK]:
    """The registered keys, ready to verify with (each checked when it was registered)."""
    found = document(stored)
    keys: list[jwt.PyJWK] = []
    for entry in (found or {}).get("keys", []):
        kty = entry.get("kty")
        algorithm = ACCEPTED.get((kty, entry.get("crv") if kty != "RSA" else None))
        if algorithm is not None:
            with contextlib.suppress(jwt.PyJWTError, ValueError, TypeError, KeyError):  # checked when registered
                keys.append(jwt.PyJWK(entry, algorithm))
    return keys
