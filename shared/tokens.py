"""Signing keys, the token signer, and the client side of the client-credentials grant.

Keys are Ed25519 (`EdDSA`), one PEM file per key id in a directory (`<kid>.pem`); the
newest file signs, every file's public half is published in the JWKS, so rotating is:
add a key, publish the JWKS, wait one token lifetime, remove the old file
(docs/operations.md). Nothing here is hand-rolled crypto: PyJWT and `cryptography` do it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm


def generate_key(directory: Path, kid: str | None = None) -> str:
    """Write a new Ed25519 private key `<kid>.pem` (mode 600); returns the kid."""
    directory.mkdir(parents=True, exist_ok=True)
    kid = kid or datetime.now(UTC).strftime("k%Y%m%d%H%M%S") + secrets.token_hex(2)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = directory / f"{kid}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return kid


def _private_keys(directory: Path) -> list[tuple[str, Ed25519PrivateKey]]:
    """(kid, key), oldest first (by file modification time, then name)."""
    files = sorted(directory.glob("*.pem"), key=lambda path: (path.stat().st_mtime, path.name))
    keys: list[tuple[str, Ed25519PrivateKey]] = []
    for path in files:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: only Ed25519 keys are used")
        keys.append((path.stem, key))
    return keys


def jwks(directory: Path) -> dict[str, Any]:
    """The public JWKS for every key in `directory`."""
    document: list[dict[str, Any]] = []
    for kid, key in _private_keys(directory):
        entry = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
        entry.update({"kid": kid, "alg": "EdDSA", "use": "sig"})
        document.append(entry)
    return {"keys": document}


def write_jwks(directory: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(jwks(directory), indent=2), encoding="utf-8")
    temporary.replace(target)


class TokenSigner:
    """Signs access tokens with the newest key in a directory."""

    def __init__(
        self, directory: Path, *, issuer: str, audience: str, lifetime_seconds: int, kid: str | None = None
    ) -> None:
        """`kid` names the signing key; default the newest file (mounted secrets have arbitrary mtimes: name it)."""
        keys = _private_keys(directory)
        if not keys:
            raise RuntimeError(f"no signing key in {directory} (python -m shared.tokens generate {directory})")
        if kid is not None:
            chosen = [pair for pair in keys if pair[0] == kid]
            if not chosen:
                raise RuntimeError(f"no signing key {kid}.pem in {directory}")
            keys = chosen
        self.kid, self._key = keys[-1]
        self.directory = directory
        self.issuer = issuer
        self.audience = audience
        self.lifetime_seconds = lifetime_seconds

    def sign(
        self,
        subject: str,
        scopes: list[str],
        *,
        name: str | None = None,
        organisation: str | None = None,
        lifetime_seconds: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + (lifetime_seconds or self.lifetime_seconds),
            "jti": secrets.token_hex(12),
            "scope": " ".join(scopes),
            "name": name or subject,
        }
        if organisation:
            claims["org"] = organisation
        claims.update(extra or {})
        return jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self.kid})


# --- the client side: a service calling a peer ------------------------------------------------


class TokenUnavailable(httpx.TransportError):
    """The token endpoint could not give a token: the peer call fails as 'unavailable'."""


class ClientCredentialsAuth(httpx.Auth):
    """httpx auth that gets (and renews) a bearer token with the client-credentials grant."""

    requires_response_body = False

    def __init__(self, token_url: str, client_id: str, client_secret: str, *, timeout_seconds: float = 2.0) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.timeout_seconds = timeout_seconds
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def _fetch(self) -> str:
        async with httpx.AsyncClient(timeout=self.timeout_seconds) as client:
            try:
                response = await client.post(
                    self.token_url,
                    data={"grant_type": "client_credentials"},
                    auth=(self.client_id, self.client_secret),
                )
            except httpx.HTTPError as exc:
                raise TokenUnavailable(f"token endpoint: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise TokenUnavailable(f"token endpoint answered {response.status_code}")
        body = response.json()
        self._token = str(body["access_token"])
        self._expires_at = time.monotonic() + float(body.get("expires_in", 300))
        return self._token

    async def token(self, *, renew: bool = False) -> str:
        async with self._lock:
            if renew or self._token is None or time.monotonic() > self._expires_at - 30:
                return await self._fetch()
            return self._token

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self.token()}"
        response = yield request
        if response.status_code == 401:  # keys rotated or token revoked early: renew once
            request.headers["Authorization"] = f"Bearer {await self.token(renew=True)}"
            yield request


def peer_auth(settings: Any) -> httpx.Auth | None:
    """The service's own client identity for calling peers, when configured.

    The secret comes from `<PREFIX>CLIENT_SECRET`, or else from the JSON file
    `AUTH_CLIENTS_FILE` (`{client_id: {"client_secret": ...}}`, as `devtools.devauth` writes it
    for `make run` and docker compose).
    """
    secret = settings.client_secret.get_secret_value()
    if settings.client_id and not secret and settings.auth_clients_file:
        clients = json.loads(Path(settings.auth_clients_file).read_text(encoding="utf-8"))
        secret = str(clients.get(settings.client_id, {}).get("client_secret", ""))
    if settings.client_id and secret and settings.auth_token_url:
        return ClientCredentialsAuth(
            settings.auth_token_url, settings.client_id, secret, timeout_seconds=settings.peer_timeout_seconds
        )
    return None


def main(argv: list[str] | None = None) -> int:
    """`python -m shared.tokens generate DIR` | `jwks DIR [OUT]`."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) >= 2 and args[0] == "generate":
        print(generate_key(Path(args[1]), args[2] if len(args) > 2 else None))
        return 0
    if len(args) >= 2 and args[0] == "jwks":
        if len(args) > 2:
            write_jwks(Path(args[1]), Path(args[2]))
        else:
            print(json.dumps(jwks(Path(args[1])), indent=2))
        return 0
    print("usage: python -m shared.tokens generate DIR [KID] | jwks DIR [OUT]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
