"""The redemption path vendors call: one SQL function call, one round trip, no ORM.

The design measurements (docs/benchmarks.md) show how little room this path has: the conditional
UPDATEs, the idempotency record and the entry are written by `vouchers.redeem()` in one
transaction, and a successful answer is the JSON the database built, passed through
untouched. Refusals come back as a code and parameters, rendered here as problem+json in
the caller's language. The same (vendor, key) with the same request always gets the
same answer; with a different request, 409.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import Any

import asyncpg
from fastapi import Request
from fastapi.responses import Response

from shared.context import request_id_var
from shared.dbconnect import connect_options
from shared.errors import ErrorCode, problem_response
from shared.instants import SHENZHEN
from shared.money import format_yuan

from .errors import (
    HOLD_NOT_ACTIVE,
    HOLD_NOT_FOUND,
    IDEMPOTENCY_KEY_REUSED,
    INSUFFICIENT_BALANCE,
    REDEMPTION_CEILING,
    VENDOR_NOT_AUTHORISED,
    VOUCHER_EXPIRED,
    VOUCHER_NOT_FOUND,
    VOUCHER_VOIDED,
)
from .metrics import count_redemption

REFUSALS: dict[str, ErrorCode] = {
    error.code: error
    for error in (
        VOUCHER_NOT_FOUND,
        VOUCHER_VOIDED,
        VOUCHER_EXPIRED,
        INSUFFICIENT_BALANCE,
        REDEMPTION_CEILING,
        IDEMPOTENCY_KEY_REUSED,
        HOLD_NOT_FOUND,
        HOLD_NOT_ACTIVE,
        VENDOR_NOT_AUTHORISED,
    )
}
# `vouchers.redeem()` refuses another vendor's voucher as `vendor_not_allowed`; a vendor is not
# told that a voucher it may not redeem exists (issue #5: wrong owner → 404), so it is rendered
# as `voucher_not_found` (also for answers stored under an Idempotency-Key before this rule).
REFUSALS["vendor_not_allowed"] = VOUCHER_NOT_FOUND

REDEEM_SQL = "SELECT status_code, body FROM vouchers.redeem($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
FINISH_SQL = "SELECT status_code, body FROM vouchers.finish_hold($1, $2, $3, $4, $5, $6, $7, $8)"


def request_hash(action: str, target: str, payload: dict[str, Any]) -> str:
    """What makes two requests 'the same' for idempotency: action, target and canonical body."""
    canonical = json.dumps([action, target, payload], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _with_yuan(params: dict[str, Any]) -> dict[str, Any]:
    """Amount parameters also as yuan strings, for the messages."""
    result = dict(params)
    for key, value in params.items():
        if key.endswith("_fen") and isinstance(value, int):
            result[key.removesuffix("_fen") + "_yuan"] = format_yuan(value)
    return result


def action_of(path: str) -> str:
    """The redemption path's action, from the request path (a metrics label)."""
    for suffix, action in _ACTIONS:
        if path.endswith(suffix):
            return action
    return "other"


_ACTIONS = (("/redemptions", "redeem"), ("/holds", "hold"), ("/capture", "capture"), ("/release", "release"))


def render(request: Request, status_code: int, body: str) -> Response:
    """The ledger function's answer as the vendor gets it; counted by action and outcome (no query)."""
    if status_code < 300:
        count_redemption(action_of(request.scope["path"]), "ok")
        return Response(content=body, status_code=status_code, media_type="application/json")
    refusal = json.loads(body)
    # the ledger's own code (`vendor_not_allowed` is answered as `voucher_not_found`); a ceiling is
    # also counted by clause when the problem is answered (metrics.py CEILING_CODES)
    count_redemption(action_of(request.scope["path"]), str(refusal["code"]))
    error = REFUSALS[refusal["code"]]
    params = _with_yuan(refusal.get("params") or {})
    if "status" in params:  # a hold's status, not the HTTP status of the problem
        params["hold_status"] = params.pop("status")
    return problem_response(request, error, **params)


class HotPath:
    """The redemption path's own small asyncpg pool (as the service's login, `vouchers_app`)."""

    def __init__(self, dsn: str, role: str, size: int) -> None:
        self.dsn = dsn.replace("postgresql+asyncpg://", "postgresql://")
        self.role = role
        self.size = size
        self.pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self.size,
            command_timeout=10,
            **connect_options(self.dsn, "vouchers-hotpath", role=self.role),
        )

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def redeem(
        self,
        *,
        vendor: str,
        key: str,
        digest: str,
        code: str,
        amount_fen: int,
        invoice_number: str,
        contract_number: str | None,
        hold_seconds: int | None,
        now: datetime,
    ) -> tuple[int, str]:
        assert self.pool is not None
        row = await self.pool.fetchrow(
            REDEEM_SQL,
            vendor,
            key,
            digest,
            code,
            vendor,
            amount_fen,
            invoice_number,
            contract_number,
            hold_seconds,
            now,
            now.astimezone(SHENZHEN).date(),
            request_id_var.get(),
        )
        assert row is not None
        return int(row["status_code"]), str(row["body"])

    async def finish_hold(
        self, *, vendor: str, key: str, digest: str, redemption_id: int, action: str, now: datetime
    ) -> tuple[int, str]:
        assert self.pool is not None
        row = await self.pool.fetchrow(
            FINISH_SQL, vendor, key, digest, redemption_id, vendor, action, now, request_id_var.get()
        )
        assert row is not None
        return int(row["status_code"]), str(row["body"])


def local_today(now: datetime) -> date:
    return now.astimezone(SHENZHEN).date()
