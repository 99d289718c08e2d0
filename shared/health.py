"""`/healthz` (the process is alive) and `/readyz` (database reachable and migrated to head or newer)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from shared.db import Database
from shared.errors import ErrorCode, problem_response

NOT_READY = ErrorCode("not_ready", 503, "服务未就绪：{reason}", "Not ready: {reason}")

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz(request: Request) -> dict[str, str]:
    return {"status": "ok", "service": request.app.state.service_name}


@router.get("/readyz", summary="Readiness: database reachable and schema at the migration head")
async def readyz(request: Request) -> JSONResponse:
    database: Database = request.app.state.database
    schema: str = request.app.state.schema
    expected: str | None = request.app.state.migration_head
    try:
        async with database.engine.connect() as connection:
            current = (
                await connection.execute(text(f'SELECT version_num FROM "{schema}".alembic_version'))
            ).scalar_one_or_none()
    except Exception as exc:  # any failure here means "not ready", never a 500
        reason = "database unreachable or schema not migrated"
        return problem_response(
            request, NOT_READY, headers={"Retry-After": "2"}, reason=reason, cause=type(exc).__name__
        )
    known: frozenset[str] = request.app.state.known_revisions
    if current != expected and (current is None or current in known):
        # behind this code (or not migrated): not ready. A revision this code does not know is
        # newer — migrations are expand/contract, so the previous release keeps serving during a
        # rolling upgrade and after a rollback (docs/operations.md)
        return problem_response(
            request,
            NOT_READY,
            headers={"Retry-After": "2"},
            reason=f"schema {schema} at {current}, expected {expected}",
        )
    body = {"status": "ready", "service": request.app.state.service_name, "migration": current}
    if current != expected:
        body["note"] = f"schema ahead of this release (expects {expected})"
    return JSONResponse(body)
