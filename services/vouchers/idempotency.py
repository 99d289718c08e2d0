"""One `Idempotency-Key` mechanism: what makes two requests the same (`request_hash`), and an officer's
issuance or grant sent again with the same key answering what the first did (`once`).

One mechanism with the redemption path: the key is claimed by the same SQL function,
`vouchers.claim_key()` (a concurrent twin waits for the first, then reads its answer; another
request under the same key is refused `idempotency_key_reused`), and the answer is stored by
`vouchers.remember()`, in the request's transaction, with the voucher or grant it created. Unlike
a redemption, a refusal rolls the claim back with everything else, so a retry after one is tried
afresh (an issuance refused for a budget or a ceiling may succeed later). The header is
optional for officers (vendors' calls require it): without it, a repeated issuance answers
`already_issued` as before. The decision and parameters are read from eligibility before the key
is claimed (no peer call inside the transaction), so a retry while eligibility is down answers
503 like the first try, and replays once it is back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import ProblemError

from .errors import IDEMPOTENCY_KEY_REUSED

M = TypeVar("M", bound=BaseModel)


def request_hash(action: str, target: str, payload: dict[str, Any]) -> str:
    """What makes two requests 'the same' for idempotency: action, target and canonical body."""
    canonical = json.dumps([action, target, payload], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


_CLAIM = text("SELECT fresh, status_code, body FROM vouchers.claim_key(:client, :key, :hash)")
_REMEMBER = text("SELECT vouchers.remember(:client, :key, :status, CAST(:body AS jsonb))")


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
    claim = await claim_key(session, client, key, request_hash(action, "", payload))
    if not claim.fresh:
        if claim.status_code in (None, 409):  # another request under this key (409), or no stored answer
            raise ProblemError(IDEMPOTENCY_KEY_REUSED, key=key)
        stored = json.loads(claim.body)
        return JSONResponse(stored, status_code=claim.status_code, headers={"Idempotent-Replayed": "true"})
    answer = await produce()
    body = answer.model_dump_json()
    await remember(session, client, key, status_code, body)
    return answer


async def claim_key(session: AsyncSession, client: str, key: str, digest: str) -> Row[Any]:
    """`vouchers.claim_key()`: (fresh, status_code, body); not fresh, the key's first request's stored answer."""
    return (await session.execute(_CLAIM, {"client": client, "key": key, "hash": digest})).one()


async def remember(session: AsyncSession, client: str, key: str, status_code: int, body: str) -> None:
    """`vouchers.remember()`: the answer (JSON text) a retry with the key replays."""
    await session.execute(_REMEMBER, {"client": client, "key": key, "status": status_code, "body": body})
