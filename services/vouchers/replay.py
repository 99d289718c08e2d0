"""An officer's issuance or grant sent again with the same `Idempotency-Key` answers what the first did.

The redemption path keeps its first answers inside its SQL functions; issuance and grants go
through the ORM, so they use the same `idempotency` table here: the key is claimed with
`INSERT … ON CONFLICT DO NOTHING` in the request's transaction (a concurrent twin waits for it),
and the success is stored in the same transaction as the voucher or grant it created. A refusal
rolls the claim back with everything else, so a retry after one is tried afresh. The header is
optional for officers (vendors' calls require it): without it, a repeated issuance answers
`already_issued` as before. The decision and parameters are read from eligibility before the key
is claimed (no peer call inside the transaction), so a retry while eligibility is down answers
503 like the first try, and replays once it is back.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import ProblemError

from .errors import IDEMPOTENCY_KEY_REUSED
from .hotpath import request_hash

M = TypeVar("M", bound=BaseModel)

_CLAIM = text(
    "INSERT INTO vouchers.idempotency (client, key, request_hash) VALUES (:client, :key, :hash) "
    "ON CONFLICT DO NOTHING RETURNING key"
)
_STORED = text(
    "SELECT request_hash, status_code, response FROM vouchers.idempotency WHERE client = :client AND key = :key"
)
_ANSWER = text(
    "UPDATE vouchers.idempotency SET status_code = :status, response = CAST(:body AS jsonb) "
    "WHERE client = :client AND key = :key"
)


async def once(
    session: AsyncSession,
    client: str,
    key: str | None,
    action: str,
    payload: dict[str, Any],
    produce: Callable[[], Awaitable[M]],
    status_code: int = 201,
) -> M | JSONResponse:
    """Run `produce` once per (client, key); a repeat with the same request replays its answer."""
    if key is None:
        return await produce()
    params = {"client": client, "key": key, "hash": request_hash(action, "", payload)}
    if (await session.execute(_CLAIM, params)).first() is None:
        stored = (await session.execute(_STORED, params)).one()
        if stored.request_hash != params["hash"] or stored.status_code is None:
            raise ProblemError(IDEMPOTENCY_KEY_REUSED, key=key)
        return JSONResponse(stored.response, status_code=stored.status_code, headers={"Idempotent-Replayed": "true"})
    answer = await produce()
    body = json.loads(answer.model_dump_json())
    await session.execute(_ANSWER, {**params, "status": status_code, "body": json.dumps(body)})
    return answer
