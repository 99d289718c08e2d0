"""The project's OAuth2 clients: rows of `registry.clients`, and the functions that manage them.

Clients are managed with the admin CLI (`python -m services.registry.identity
create|rotate|revoke|list`) or, but for admin clients, the admin API (`/v1/clients`,
services/registry/clients/), both through the functions below (`create_client`,
`rotate_secret`, `revoke`, `set_keys`); the token endpoint that authenticates them is
token_endpoint.py. Secrets are 256-bit random strings, so a SHA-256 digest is enough to store
them (no password hashing needed: there is nothing to brute-force). Revoking a client stops
new tokens at once; tokens already issued end with their short lifetime
(`REGISTRY_TOKEN_LIFETIME_SECONDS`).

Audit (issue #12): creating, rotating and revoking a client writes an audit row in the same
transaction as the change (method `CLI`, path `/clients/<id>/<action>`, the actor `cli:<--actor
or the OS user>`; from the admin API, method `API` and the administrator's client: `Actor`);
refused attempts (unknown client, invalid request) are recorded too.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import json
import os
import re
import secrets
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from shared.audit import storable
from shared.auth import ALL_SCOPES, BOUND_ROLES
from shared.db import Connection
from shared.dbconnect import libpq_url
from shared.identifiers import credit_code_error
from shared.logs import new_request_id

#: How a client authenticates at the token endpoint (RFC 7591's names): `client_secret_basic`, its secret
#: (HTTP Basic or the form's fields) or, if it has registered keys, a signed assertion; `private_key_jwt`,
#: only a signed assertion (RFC 7523; services/registry/clients/assertions.py).
SECRET_METHOD = "client_secret_basic"  # noqa: S105 (a method's name, not a secret)
KEY_METHOD = "private_key_jwt"
CLIENT_COLUMNS = (
    "client_id, name, scopes, organisation, secret_sha256, previous_secret_sha256, previous_secret_expires_at, "
    "revoked_at, jwks, token_endpoint_auth_method"
)


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- administration (the CLI) -------------------------------------------------------------------


#: As the `registry.clients` table checks it.
CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{3,100}")


def cli_actor(name: str | None = None) -> str:
    """Who administers clients outside HTTP, as the audit log names them: `cli:<name or OS user>`."""
    if not name:
        try:
            name = getpass.getuser()
        except (OSError, KeyError):  # no login name in this container
            name = f"uid {os.getuid()}"
    return "cli:" + name


@dataclass(frozen=True)
class Actor:
    """Who administers a client, as the change's own audit row names them.

    The CLI is `Actor(cli_actor(...))` (method `CLI`, no client); the admin API
    (services/registry/clients/) names the administrator's client, roles and request (method `API`).
    """

    name: str
    method: str = "CLI"
    client_id: str | None = None
    roles: tuple[str, ...] = ()
    organisation: str | None = None
    request_id: str | None = None
    correlation_id: str | None = None


def _actor(actor: str | Actor | None) -> Actor:
    if isinstance(actor, Actor):
        return actor
    return Actor(actor or cli_actor())


async def _audit(connection: Connection, actor: str | Actor, action: str, target: str, status: int) -> None:
    """One row of the registry's audit log for a change of a client, written beside the change."""
    who = _actor(actor)
    await connection.execute(
        "INSERT INTO registry.audit_log (at, request_id, correlation_id, client_id, actor, roles, organisation, "
        "method, path, status, outcome, duration_ms) "
        "VALUES (clock_timestamp(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0)",
        who.request_id or new_request_id(),
        who.correlation_id,
        who.client_id,
        storable(who.name, 200),
        list(who.roles),
        who.organisation,
        who.method,
        storable(f"/clients/{target}/{action}", 500),
        status,
        "ok" if status < 400 else "refused",
    )


@dataclass
class NewClient:
    client_id: str
    client_secret: str
    scopes: list[str]
    organisation: str | None


def _check_scopes(scopes: list[str], organisation: str | None) -> None:
    unknown = [scope for scope in scopes if scope not in ALL_SCOPES]
    if unknown or not scopes:
        raise ValueError(f"unknown scopes {unknown}; choose from {', '.join(ALL_SCOPES)}")
    if BOUND_ROLES & set(scopes):
        if not organisation or credit_code_error(organisation) is not None:
            raise ValueError("an applicant or vendor client is bound to one organisation: give its credit code")
        if len(scopes) > 1:
            raise ValueError("an applicant or vendor client has that one role only")


async def create_client(
    connection: Connection,
    name: str,
    scopes: list[str],
    *,
    organisation: str | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    actor: str | Actor | None = None,
    jwks: dict[str, Any] | None = None,
    token_endpoint_auth_method: str = SECRET_METHOD,
) -> NewClient:
    """Audited, with `actor` (default: `cli_actor()`), refusals included.

    `jwks`: public keys the client may sign `private_key_jwt` assertions with (checked by the caller:
    `clients.keys.check_jwks`); `token_endpoint_auth_method` `private_key_jwt` refuses its secret.
    """
    actor = _actor(actor)
    client_id = client_id or "c-" + secrets.token_hex(8)
    try:
        _check_scopes(scopes, organisation)
        if not CLIENT_ID.fullmatch(client_id):
            raise ValueError("a client id is 3 to 100 of A-Z a-z 0-9 . _ : -")
    except ValueError:
        await _audit(connection, actor, "create", client_id, 422)
        raise
    client_secret = client_secret or secrets.token_urlsafe(32)
    try:
        async with connection.transaction():
            await connection.execute(
                "INSERT INTO registry.clients (client_id, name, scopes, organisation, secret_sha256, jwks, "
                "token_endpoint_auth_method) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)",
                client_id,
                name,
                scopes,
                organisation,
                secret_digest(client_secret),
                None if jwks is None else json.dumps(jwks),
                token_endpoint_auth_method,
            )
            await _audit(connection, actor, "create", client_id, 201)
    except asyncpg.UniqueViolationError:
        await _audit(connection, actor, "create", client_id, 409)
        raise
    return NewClient(client_id, client_secret, scopes, organisation)


async def _change(
    connection: Connection, actor: str | Actor | None, action: str, client_id: str, sql: str, *args: Any
) -> None:
    """Change an active client and audit it in one transaction; an unknown or revoked one is audited as refused."""
    async with connection.transaction():
        status = await connection.execute(sql, client_id, *args)
        found = not status.endswith(" 0")
        await _audit(connection, _actor(actor), action, client_id, 200 if found else 404)
    if not found:
        raise LookupError(f"no active client {client_id}")


async def rotate_secret(
    connection: Connection, client_id: str, *, grace: timedelta = timedelta(0), actor: str | Actor | None = None
) -> str:
    """A new secret; the old one keeps working for `grace` (so a deployment can roll over)."""
    secret = secrets.token_urlsafe(32)
    await _change(
        connection,
        actor,
        "rotate",
        client_id,
        "UPDATE registry.clients SET previous_secret_sha256 = secret_sha256, "
        "previous_secret_expires_at = now() + $3::interval, secret_sha256 = $2, secret_rotated_at = now() "
        "WHERE client_id = $1 AND revoked_at IS NULL",
        secret_digest(secret),
        grace,
    )
    return secret


async def revoke(connection: Connection, client_id: str, *, actor: str | Actor | None = None) -> None:
    await _change(
        connection,
        actor,
        "revoke",
        client_id,
        "UPDATE registry.clients SET revoked_at = now() WHERE client_id = $1 AND revoked_at IS NULL",
    )


async def set_keys(
    connection: Connection,
    client_id: str,
    jwks: dict[str, Any] | None,
    token_endpoint_auth_method: str,
    *,
    actor: str | Actor | None = None,
) -> None:
    """Replace an active client's public keys (`private_key_jwt`) and how it must authenticate."""
    await _change(
        connection,
        actor,
        "keys",
        client_id,
        "UPDATE registry.clients SET jwks = $2::jsonb, token_endpoint_auth_method = $3 "
        "WHERE client_id = $1 AND revoked_at IS NULL",
        None if jwks is None else json.dumps(jwks),
        token_endpoint_auth_method,
    )


async def list_clients(connection: Connection) -> list[dict[str, Any]]:
    rows = await connection.fetch(
        "SELECT client_id, name, scopes, organisation, created_at, secret_rotated_at, revoked_at "
        "FROM registry.clients ORDER BY created_at, client_id"
    )
    return [dict(row) for row in rows]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.registry.identity",
        description="Manage OAuth2 clients (REGISTRY_DATABASE_URL or DATABASE_URL names the database)",
    )
    parser.add_argument("--actor", help="who runs this, as the audit log records it (default: the OS user)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a client; prints its id and secret (shown once)")
    create.add_argument("--name", required=True, help="who the client is (recorded in the audit log)")
    create.add_argument("--scope", action="append", required=True, help=f"one of {', '.join(ALL_SCOPES)}")
    create.add_argument("--org", help="credit code an applicant or vendor client is bound to")
    create.add_argument("--id", help="client id (default: generated)")
    rotate = commands.add_parser("rotate", help="give a client a new secret")
    rotate.add_argument("client_id")
    rotate.add_argument("--grace-hours", type=float, default=0.0, help="how long the old secret still works")
    revoke_ = commands.add_parser("revoke", help="revoke a client (no new tokens)")
    revoke_.add_argument("client_id")
    commands.add_parser("list", help="list clients (never secrets)")
    return parser


def _database_url() -> str:
    value = os.environ.get("REGISTRY_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not value:
        raise SystemExit("set REGISTRY_DATABASE_URL or DATABASE_URL")
    return libpq_url(value)


async def _run(args: argparse.Namespace) -> int:
    connection = await asyncpg.connect(_database_url())
    actor = cli_actor(args.actor)
    try:
        if args.command == "create":
            client = await create_client(
                connection, args.name, args.scope, organisation=args.org, client_id=args.id, actor=actor
            )
            print(json.dumps(client.__dict__, ensure_ascii=False))
        elif args.command == "rotate":
            secret = await rotate_secret(
                connection, args.client_id, grace=timedelta(hours=args.grace_hours), actor=actor
            )
            print(json.dumps({"client_id": args.client_id, "client_secret": secret}))
        elif args.command == "revoke":
            await revoke(connection, args.client_id, actor=actor)
            print(json.dumps({"client_id": args.client_id, "revoked": True}))
        else:
            for row in await list_clients(connection):
                print(json.dumps(row, default=str, ensure_ascii=False))
    except (ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except asyncpg.UniqueViolationError:
        print(f"error: a client {args.id} exists already", file=sys.stderr)
        return 2
    finally:
        await connection.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_run(_parser().parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
