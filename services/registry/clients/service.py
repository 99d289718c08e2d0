"""Administering OAuth2 clients over HTTP: the checks, then `services.registry.identity`'s functions.

The changes are the CLI's own functions (`create_client`, `rotate_secret`, `revoke`, `set_keys`), run on
the asyncpg connection under the request's transaction, so each writes its audit row (method `API`,
path `/clients/<id>/<action>`, the administrator's client and the request's id) in the transaction of
the change. What only the API adds is checked here first:

- `admin` is the CLI's alone: not created, rotated or given keys here (403 `admin_client_cli_only`), so
  a stolen admin token cannot mint or take over another admin credential; it may revoke one;
- an `applicant` or `vendor` client is bound to an organisation the registry holds (an organisation;
  a vendor), and only those are bound;
- a create or rotate sent again with its `Idempotency-Key` answers the client without changing it
  again and without a secret (shown once: rotate for another); the key names one request.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import ADMIN, ALL_SCOPES, APPLICANT, BOUND_ROLES, Principal
from shared.context import correlation_id_var, request_id_var
from shared.db import raw_connection
from shared.errors import FieldError, ProblemError, validation_problem
from shared.feed.errors import IDEMPOTENCY_KEY_REUSED
from shared.pagination import Page, decode_cursor, encode_cursor

from .. import identity
from . import keys, repository
from .errors import ADMIN_CLIENT_CLI_ONLY, CLIENT_EXISTS, CLIENT_KEY_ONLY, CLIENT_NOT_FOUND, CLIENT_REVOKED
from .schemas import ClientCreate, ClientKeys, ClientRead, ClientRotate, ClientWithSecret, PublicKeys

LISTING = "clients"


def actor_of(principal: Principal) -> identity.Actor:
    """The administrator as the change's audit row names them (and the request, as its own row does)."""
    return identity.Actor(
        principal.actor,
        method="API",
        client_id=principal.client_id,
        roles=tuple(sorted(principal.scopes)),
        organisation=principal.organisation,
        request_id=request_id_var.get() or None,
        correlation_id=correlation_id_var.get(),
    )


def client_read(row: dict[str, Any]) -> ClientRead:
    return ClientRead(
        client_id=row["client_id"],
        name=row["name"],
        scopes=list(row["scopes"]),
        organisation=row["organisation"],
        token_endpoint_auth_method=row["token_endpoint_auth_method"],
        jwks=PublicKeys.model_validate(stored) if (stored := keys.document(row["jwks"])) else None,
        status="revoked" if row["revoked_at"] is not None else "active",
        created_at=row["created_at"],
        secret_rotated_at=row["secret_rotated_at"],
        previous_secret_valid_until=row["previous_secret_expires_at"],
        revoked_at=row["revoked_at"],
    )


def _with_secret(row: dict[str, Any], secret: str | None) -> ClientWithSecret:
    return ClientWithSecret(**client_read(row).model_dump(), client_secret=secret)


def _digest(action: str, target: str | None, payload: Any) -> str:
    canonical = json.dumps({"action": action, "target": target, "payload": payload}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _replayed(
    session: AsyncSession, principal: Principal, key: str | None, action: str, target: str, digest: str
) -> dict[str, Any] | None:
    """The client a request with this Idempotency-Key changed already, or None (the key is now claimed)."""
    if not key:
        return None
    stored = await repository.claim_request(session, principal.client_id, key, action, target, digest)
    if stored is None:
        return None
    if stored["action"] != action or stored["request_hash"] != digest:
        raise ProblemError(IDEMPOTENCY_KEY_REUSED, key=key)
    return await _existing(session, stored["target"])


async def _existing(session: AsyncSession, client_id: str, *, lock: bool = False) -> dict[str, Any]:
    row = await repository.client(session, client_id, lock=lock)
    if row is None:
        raise ProblemError(CLIENT_NOT_FOUND, client_id=client_id)
    return row


def _changeable(row: dict[str, Any]) -> None:
    if ADMIN in row["scopes"]:
        raise ProblemError(ADMIN_CLIENT_CLI_ONLY)
    if row["revoked_at"] is not None:
        raise ProblemError(CLIENT_REVOKED, client_id=row["client_id"])


def _scope_problems(scopes: list[str]) -> list[FieldError]:
    return [
        FieldError(
            f"body.scopes.{index}",
            "unknown_scope",
            f"未知的角色或范围：{scope}（可选：{', '.join(ALL_SCOPES)}）",
            f"Unknown role or scope: {scope} (one of {', '.join(ALL_SCOPES)})",
        )
        for index, scope in enumerate(scopes)
        if scope not in ALL_SCOPES
    ]


async def _binding_problems(session: AsyncSession, scopes: list[str], organisation: str | None) -> list[FieldError]:
    """An applicant or vendor client has that role alone and the organisation it acts for; no other has one."""
    bound = [scope for scope in scopes if scope in BOUND_ROLES]
    if not bound:
        if organisation is None:
            return []
        return [
            FieldError(
                "body.organisation",
                "organisation_not_bound",
                "只有 applicant 或 vendor 客户端绑定单位",
                "Only an applicant or vendor client is bound to an organisation",
            )
        ]
    if len(scopes) > 1:
        return [
            FieldError(
                "body.scopes",
                "bound_role_alone",
                "applicant 或 vendor 客户端只有这一个角色",
                "An applicant or vendor client has that one role only",
            )
        ]
    if organisation is None:
        return [
            FieldError(
                "body.organisation",
                "organisation_required",
                "applicant 或 vendor 客户端须绑定一个单位：请给出其统一社会信用代码",
                "An applicant or vendor client is bound to one organisation: give its credit code",
            )
        ]
    table = "organisations" if bound[0] == APPLICANT else "vendors"
    if await repository.registered(session, table, organisation):
        return []
    what_zh, what_en = ("单位", "organisation") if table == "organisations" else ("供应商", "vendor")
    return [
        FieldError(
            "body.organisation",
            "organisation_not_registered",
            f"登记簿中没有该{what_zh}：{organisation}",
            f"The registry holds no {what_en} {organisation}",
            {"value": organisation},
        )
    ]


def _method_problems(method: str, registered: list[Any], field: str) -> list[FieldError]:
    if method == identity.KEY_METHOD and not registered:
        return [
            FieldError(
                field,
                "keys_required",
                "private_key_jwt 客户端至少登记一把公钥",
                "A private_key_jwt client registers at least one public key",
            )
        ]
    return keys.key_problems(registered, field)


async def create(
    session: AsyncSession, principal: Principal, payload: ClientCreate, idempotency_key: str | None
) -> tuple[ClientWithSecret, bool]:
    """The new client and its secret (None for a key-only client); True if it is a replay."""
    scopes = list(dict.fromkeys(payload.scopes))
    if ADMIN in scopes:
        raise ProblemError(ADMIN_CLIENT_CLI_ONLY)
    registered = payload.jwks.keys if payload.jwks else []
    problems = _scope_problems(scopes) or await _binding_problems(session, scopes, payload.organisation)
    problems += _method_problems(payload.token_endpoint_auth_method, registered, "body.jwks.keys")
    if problems:
        raise validation_problem(problems)
    client_id = payload.client_id or "c-" + secrets.token_hex(8)
    digest = _digest("create", payload.client_id, payload.model_dump(mode="json"))
    replayed = await _replayed(session, principal, idempotency_key, "create", client_id, digest)
    if replayed is not None:
        return _with_secret(replayed, None), True
    try:
        created = await identity.create_client(
            await raw_connection(session),
            payload.name,
            scopes,
            organisation=payload.organisation,
            client_id=client_id,
            actor=actor_of(principal),
            jwks={"keys": registered} if registered else None,
            token_endpoint_auth_method=payload.token_endpoint_auth_method,
        )
    except asyncpg.UniqueViolationError as exc:
        raise ProblemError(CLIENT_EXISTS, client_id=client_id) from exc
    secret = None if payload.token_endpoint_auth_method == identity.KEY_METHOD else created.client_secret
    return _with_secret(await _existing(session, client_id), secret), False


async def read(session: AsyncSession, client_id: str) -> ClientRead:
    return client_read(await _existing(session, client_id))


async def page(session: AsyncSession, cursor: str | None, limit: int, revoked: bool | None) -> Page[ClientRead]:
    after = decode_cursor(LISTING, cursor) if cursor else 0
    rows = await repository.page(session, after, limit, revoked)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[ClientRead](
        items=[client_read(row) for row in rows],
        next_cursor=encode_cursor(LISTING, int(rows[-1]["seq"])) if more and rows else None,
    )


async def rotate(
    session: AsyncSession, principal: Principal, client_id: str, payload: ClientRotate, idempotency_key: str | None
) -> tuple[ClientWithSecret, bool]:
    """A new secret; the old one works `grace_seconds` more. True if it is a replay (no new secret)."""
    digest = _digest("rotate", client_id, payload.model_dump(mode="json"))
    replayed = await _replayed(session, principal, idempotency_key, "rotate", client_id, digest)
    if replayed is not None:
        return _with_secret(replayed, None), True
    row = await _existing(session, client_id, lock=True)
    _changeable(row)
    if row["token_endpoint_auth_method"] == identity.KEY_METHOD:
        raise ProblemError(CLIENT_KEY_ONLY, client_id=client_id)
    secret = await identity.rotate_secret(
        await raw_connection(session),
        client_id,
        grace=timedelta(seconds=payload.grace_seconds),
        actor=actor_of(principal),
    )
    return _with_secret(await _existing(session, client_id), secret), False


async def revoke(session: AsyncSession, principal: Principal, client_id: str) -> ClientRead:
    """No new tokens for the client (an admin client too); a revoked one is answered as it is."""
    row = await _existing(session, client_id, lock=True)
    if row["revoked_at"] is None:
        await identity.revoke(await raw_connection(session), client_id, actor=actor_of(principal))
        row = await _existing(session, client_id)
    return client_read(row)


async def set_keys(session: AsyncSession, principal: Principal, client_id: str, payload: ClientKeys) -> ClientRead:
    """Replace the client's public keys and its authentication method."""
    row = await _existing(session, client_id, lock=True)
    _changeable(row)
    problems = _method_problems(payload.token_endpoint_auth_method, payload.keys, "body.keys")
    if problems:
        raise validation_problem(problems)
    await identity.set_keys(
        await raw_connection(session),
        client_id,
        {"keys": payload.keys} if payload.keys else None,
        payload.token_endpoint_auth_method,
        actor=actor_of(principal),
    )
    return client_read(await _existing(session, client_id))
