"""The client administration API's payloads: a client as read never carries its secret or a digest of it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.auth import ALL_SCOPES
from shared.identifiers import CreditCode

from ..identity import KEY_METHOD, SECRET_METHOD
from .keys import MAX_KEYS

#: At most this long may an old secret keep working after a rotation.
MAX_GRACE = timedelta(days=7)

AuthMethod = Literal["client_secret_basic", "private_key_jwt"]
ClientId = Annotated[
    str,
    Field(min_length=3, max_length=100, pattern=r"^[A-Za-z0-9._:-]{3,100}$", examples=["vendor-acme-prod"]),
]
Scope = Annotated[str, Field(max_length=50, json_schema_extra={"enum": list(ALL_SCOPES)})]
AUTH_METHOD_DESCRIPTION = (
    f"`{SECRET_METHOD}` (default): the client's secret (HTTP Basic or form fields), or a signed assertion if it has "
    f"keys; `{KEY_METHOD}`: only an assertion signed with one of its keys (RFC 7523), its secret refused"
)


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PublicKeys(BaseModel):
    """A JWKS document (RFC 7517) of public keys: Ed25519, P-256 or RSA ≥ 2048 bits, each with a unique `kid`."""

    keys: list[dict[str, Any]] = Field(max_length=MAX_KEYS, description=f"At most {MAX_KEYS} public JWKs")


class ClientCreate(Input):
    client_id: ClientId | None = Field(default=None, description="Default: generated (`c-` and 16 hex digits)")
    name: str = Field(min_length=1, max_length=200, description="Who the client is (named in the audit log)")
    scopes: list[Scope] = Field(
        min_length=1,
        max_length=len(ALL_SCOPES),
        description="Its role, or the scopes of a service; `applicant` and `vendor` alone, bound to an "
        "organisation. Not `admin`: administrators are made with the CLI",
    )
    organisation: CreditCode | None = Field(
        default=None,
        description="The credit code an `applicant` (a registered organisation) or `vendor` (a registered "
        "vendor) client acts for; only those",
    )
    jwks: PublicKeys | None = Field(default=None, description="Public keys for `private_key_jwt`")
    token_endpoint_auth_method: AuthMethod = Field(default="client_secret_basic", description=AUTH_METHOD_DESCRIPTION)


class ClientRotate(Input):
    grace_seconds: int = Field(
        default=0,
        ge=0,
        le=int(MAX_GRACE.total_seconds()),
        description="How long the old secret keeps working (at most 7 days); 0: it stops at once",
    )


class ClientKeys(Input):
    """A client's public keys, all of them (they replace those it had), and how it must authenticate."""

    keys: list[dict[str, Any]] = Field(max_length=MAX_KEYS, description=f"At most {MAX_KEYS} public JWKs")
    token_endpoint_auth_method: AuthMethod = Field(default="client_secret_basic", description=AUTH_METHOD_DESCRIPTION)


class ClientRead(BaseModel):
    client_id: str
    name: str
    scopes: list[str]
    organisation: str | None
    token_endpoint_auth_method: AuthMethod
    jwks: PublicKeys | None = Field(description="Its registered public keys (public: no secret in them)")
    status: Literal["active", "revoked"]
    created_at: datetime
    secret_rotated_at: datetime
    previous_secret_valid_until: datetime | None = Field(
        description="Until when the secret before the last rotation still works (null: it does not)"
    )
    revoked_at: datetime | None


class ClientWithSecret(ClientRead):
    client_secret: str | None = Field(
        description="Shown in this answer only: store it now (only its digest is kept). Null for a client that "
        "authenticates with keys only, and when a request is replayed by its Idempotency-Key (rotate to get "
        "another)"
    )
