"""The client administration API's SQL (changes themselves go through `services.registry.identity`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

#: What may be read of a client: never a secret nor its digest.
READ_COLUMNS = (
    "seq, client_id, name, scopes, organisation, jwks, token_endpoint_auth_method, created_at, "
    "secret_rotated_at, previous_secret_expires_at, revoked_at"
)


async def client(session: AsyncSession, client_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    """One client as it may be read; `lock`: held until the request's transaction ends (a change follows)."""
    sql = f"SELECT {READ_COLUMNS} FROM registry.clients WHERE client_id = :id" + (" FOR UPDATE" if lock else "")
    row = (await session.execute(text(sql), {"id": client_id})).mappings().one_or_none()
    return None if row is None else dict(row)


async def page(session: AsyncSession, after: int, limit: int, revoked: bool | None) -> list[dict[str, Any]]:
    """Clients in the order they were made, after position `after`, `limit + 1` of them."""
    clause = "" if revoked is None else f" AND revoked_at IS {'NOT ' if revoked else ''}NULL"
    sql = f"SELECT {READ_COLUMNS} FROM registry.clients WHERE seq > :after{clause} ORDER BY seq LIMIT :limit"
    rows = (await session.execute(text(sql), {"after": after, "limit": limit + 1})).mappings().all()
    return [dict(row) for row in rows]


async def claim_request(
    session: AsyncSession, requested_by: str, key: str, action: str, target: str, digest: str
) -> dict[str, Any] | None:
    """Claim an Idempotency-Key for a change; None if it is claimed now, else the request that claimed it first.

    A concurrent request with the same key waits on the primary key until the first commits (then
    finds it) or rolls back (then claims it).
    """
    claimed = await session.execute(
        text(
            "INSERT INTO registry.client_requests (requested_by, idempotency_key, action, target, request_hash) "
            "VALUES (:by, :key, :action, :target, :digest) ON CONFLICT DO NOTHING RETURNING 1"
        ),
        {"by": requested_by, "key": key, "action": action, "target": target, "digest": digest},
    )
    if claimed.first() is not None:
        return None
    row = (
        (
            await session.execute(
                text(
                    "SELECT action, target, request_hash FROM registry.client_requests "
                    "WHERE requested_by = :by AND idempotency_key = :key"
                ),
                {"by": requested_by, "key": key},
            )
        )
        .mappings()
        .one()
    )
    return dict(row)


async def registered(session: AsyncSession, table: str, credit_code: str) -> bool:
    """Whether the registry holds an organisation (`organisations`) or a vendor (`vendors`) by this code."""
    assert table in ("organisations", "vendors")
    sql = f"SELECT EXISTS (SELECT 1 FROM registry.{table} WHERE credit_code = :code)"
    return bool((await session.execute(text(sql), {"code": credit_code})).scalar_one())


async def remember_assertion(session: AsyncSession, client_id: str, jti: str, until: datetime) -> bool:
    """Store an assertion's `jti` until `until`; False if the client used it before (a replay).

    The client's expired ones are dropped on the way: they could not be accepted again anyway.
    """
    await session.execute(
        text("DELETE FROM registry.client_assertions WHERE client_id = :client AND expires_at < now()"),
        {"client": client_id},
    )
    stored = await session.execute(
        text(
            "INSERT INTO registry.client_assertions (client_id, jti, expires_at) VALUES (:client, :jti, :until) "
            "ON CONFLICT DO NOTHING RETURNING 1"
        ),
        {"client": client_id, "jti": jti, "until": until},
    )
    return stored.first() is not None
