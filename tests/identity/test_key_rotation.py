"""Signing keys rotate without restarting the services: TokenVerifier re-reads the JWKS file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jwt
import pytest

from shared.auth import ADMIN, OFFICER, TokenVerifier
from shared.errors import ProblemError
from shared.tokens import TokenSigner, generate_key, jwks, write_jwks

ISSUER = "rotation-test-issuer"
AUDIENCE = "rotation-test"


def _signer(keys: Path) -> TokenSigner:
    return TokenSigner(keys, issuer=ISSUER, audience=AUDIENCE, lifetime_seconds=300)


def _refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(ProblemError) as refused:
        verifier.verify(token)
    assert refused.value.error.code == "invalid_token"
    return str(refused.value.params["reason"])


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    generate_key(directory, "k1")
    return directory


def test_a_new_kid_is_accepted_without_a_restart(keys: Path, tmp_path: Path) -> None:
    published = tmp_path / "jwks.json"
    write_jwks(keys, published)
    verifier = TokenVerifier(str(published), issuer=ISSUER, audience=AUDIENCE)
    old_token = _signer(keys).sign("c1", [OFFICER])
    assert verifier.verify(old_token).client_id == "c1"

    generate_key(keys, "k2")
    new_signer = _signer(keys)
    assert new_signer.kid == "k2"
    new_token = new_signer.sign("c2", [ADMIN])
    assert _refused(verifier, new_token) == "unknown signing key (kid)"  # not published yet

    write_jwks(keys, published)

    assert verifier.verify(new_token).client_id == "c2"
    assert verifier.verify(old_token).client_id == "c1"  # both keys are published during the overlap


def test_a_rewrite_in_the_same_clock_tick_is_seen(keys: Path, tmp_path: Path) -> None:
    """File-system timestamps are coarse: two writes may share an mtime."""
    published = tmp_path / "jwks.json"
    write_jwks(keys, published)
    before = published.stat()
    verifier = TokenVerifier(str(published), issuer=ISSUER, audience=AUDIENCE)

    generate_key(keys, "k2")
    write_jwks(keys, published)
    os.utime(published, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert verifier.verify(_signer(keys).sign("c2", [ADMIN])).client_id == "c2"


def test_a_withdrawn_key_stops_working_even_for_tokens_seen_before(keys: Path, tmp_path: Path) -> None:
    published = tmp_path / "jwks.json"
    write_jwks(keys, published)
    verifier = TokenVerifier(str(published), issuer=ISSUER, audience=AUDIENCE)
    verifier.RECHECK_SECONDS = 0.0  # look at the file on every request (5 s in service)
    compromised = _signer(keys).sign("c1", [ADMIN])
    assert verifier.verify(compromised).client_id == "c1"  # verified once: remembered

    generate_key(keys, "k2")
    (keys / "k1.pem").unlink()
    write_jwks(keys, published)

    assert _refused(verifier, compromised) == "unknown signing key (kid)"
    assert verifier.verify(_signer(keys).sign("c2", [ADMIN])).client_id == "c2"


def test_a_broken_jwks_file_keeps_the_keys_already_loaded(keys: Path, tmp_path: Path) -> None:
    published = tmp_path / "jwks.json"
    write_jwks(keys, published)
    verifier = TokenVerifier(str(published), issuer=ISSUER, audience=AUDIENCE)
    verifier.RECHECK_SECONDS = 0.0
    token = _signer(keys).sign("c1", [OFFICER])

    published.write_text('{"keys": [{"kty": "nonsense", "kid": "x"}]}', encoding="utf-8")
    assert verifier.verify(token).client_id == "c1"
    assert verifier.verify(_signer(keys).sign("c2", [OFFICER])).client_id == "c2"  # not cached: k1 still known
    other = tmp_path / "other"
    generate_key(other, "k9")
    assert _refused(verifier, _signer(other).sign("c9", [OFFICER])) == "unknown signing key (kid)"  # not a 500
    published.unlink()
    assert verifier.verify(_signer(keys).sign("c3", [OFFICER])).client_id == "c3"


def test_an_inline_jwks_document(keys: Path) -> None:
    verifier = TokenVerifier(json.dumps(jwks(keys)), issuer=ISSUER, audience=AUDIENCE)
    assert verifier.verify(_signer(keys).sign("c1", [OFFICER])).scopes == {OFFICER}


def test_the_signing_key_can_be_named(tmp_path: Path) -> None:
    """Mounted secrets have arbitrary modification times: REGISTRY_SIGNING_KID picks the key."""
    first = generate_key(tmp_path, "k-first")
    generate_key(tmp_path, "k-second")
    named = TokenSigner(tmp_path, issuer="i", audience="a", lifetime_seconds=60, kid=first)
    assert named.kid == "k-first"
    assert jwt.get_unverified_header(named.sign("c", ["admin"]))["kid"] == "k-first"
    with pytest.raises(RuntimeError, match="no signing key k-missing"):
        TokenSigner(tmp_path, issuer="i", audience="a", lifetime_seconds=60, kid="k-missing")
