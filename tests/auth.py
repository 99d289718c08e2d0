"""Tokens for tests: minted with the test session's signing key (conftest.pytest_configure).

`auth(OFFICER, name="alice")` gives request headers for a client with that role;
`as_vendor(code)` and `as_applicant(code)` for clients bound to an organisation. The
token endpoint itself is tested through HTTP (tests/identity/); minting here keeps the other
tests fast and lets them be anyone.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

from shared.auth import ADMIN, APPLICANT, VENDOR
from shared.tokens import TokenSigner


@cache
def signer() -> TokenSigner:
    return TokenSigner(
        Path(os.environ["REGISTRY_SIGNING_KEYS_DIR"]),
        issuer=os.environ.get("AUTH_ISSUER", "longgang-ai-identity"),
        audience=os.environ.get("AUTH_AUDIENCE", "longgang-ai"),
        lifetime_seconds=3600,
    )


@cache
def token(*scopes: str, org: str | None = None, name: str | None = None, client_id: str | None = None) -> str:
    subject = client_id or f"test-{'-'.join(s.replace(':', '_') for s in scopes)}-{name or org or 'client'}"
    return signer().sign(subject, list(scopes), name=name or subject, organisation=org)


def auth(*scopes: str, org: str | None = None, name: str | None = None, **extra: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(*scopes, org=org, name=name)}", **extra}


def as_vendor(credit_code: str, **extra: Any) -> dict[str, str]:
    return auth(VENDOR, org=credit_code, name=f"vendor {credit_code}", **extra)


def as_applicant(credit_code: str, **extra: Any) -> dict[str, str]:
    return auth(APPLICANT, org=credit_code, name=f"applicant {credit_code}", **extra)


def admin(**extra: Any) -> dict[str, str]:
    return auth(ADMIN, name="test admin", **extra)
