"""The chain's routes: verify, checkpoint keys, seal lag, checkpoints, export."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from shared.auth import ADMIN, AUDITOR, PLATFORM, Principal, require
from shared.db import SessionDep, raw_connection
from shared.instants import local_today
from shared.pagination import Page, PageParams, page_params

from ..deps import LedgerPoolDep, Now
from ..invariants import check_invariants
from ..pool import LedgerPool
from ..settings import VouchersSettings
from . import service
from .anchor import CheckpointSigner, SignedCheckpoints
from .schemas import CheckpointRead, CheckpointRequest, PublishedCheckpoint, SealLagRead, VerifyReport
from .sealer import Sealer

NDJSON = "application/x-ndjson"

router = APIRouter(tags=["ledger"])
#: Checking the ledger and publishing its head: auditors (and administrators).
Auditor = Annotated[Principal, require(AUDITOR, ADMIN)]


async def read_sink(request: Request) -> SignedCheckpoints | None:
    """The sink's lines, each signature checked with the service's published keys (None: no sink)."""
    return await service.read_sink(request.app.state.checkpoint_sink, request.app.state.checkpoint_signer)


@router.get(
    "/v1/ledger/verify",
    response_model=VerifyReport,
    summary="Recompute the hash chain from the entries; a report (200) whether or not it matches",
    dependencies=[require(AUDITOR, ADMIN)],
)
async def verify(request: Request) -> VerifyReport:
    signed = await read_sink(request)
    return await service.verify(request.app.state.ledger_pool, request.app.state.settings, signed)


@router.get(
    "/.well-known/ledger-checkpoint-keys.json",
    summary="The public keys that sign ledger checkpoints (JWKS; public, for auditors to keep a copy of)",
)
async def checkpoint_keys(request: Request) -> dict[str, Any]:
    signer: CheckpointSigner | None = request.app.state.checkpoint_signer
    return {"keys": []} if signer is None else signer.public_keys()


@router.get(
    "/v1/ledger/seal-lag",
    response_model=SealLagRead,
    summary="How far the sealer is behind (metrics)",
    dependencies=[require(AUDITOR, ADMIN)],
)
async def get_seal_lag(request: Request, session: SessionDep) -> SealLagRead:
    sealer: Sealer | None = getattr(request.app.state, "sealer", None)
    return await service.seal_lag_report(await raw_connection(session), sealer)


@router.post(
    "/v1/ledger/checkpoints",
    status_code=201,
    response_model=PublishedCheckpoint,
    summary="Publish the head of the chain for a day (verified since the previous checkpoint first), "
    "signed, written to the sink and to the change feed",
)
async def create_checkpoint(
    request: Request, moment: Now, principal: Auditor, payload: CheckpointRequest
) -> PublishedCheckpoint:
    signer: CheckpointSigner | None = request.app.state.checkpoint_signer
    sink: Path | None = request.app.state.checkpoint_sink
    return await service.publish_checkpoint(
        request.app.state.ledger_pool,
        request.app.state.settings,
        signer,
        sink,
        day=payload.day,
        today=local_today(moment),
        actor=principal.actor,
    )


@router.get(
    "/v1/ledger/checkpoints",
    response_model=Page[CheckpointRead],
    summary="Published checkpoints, oldest first",
    dependencies=[require(AUDITOR, ADMIN)],
)
async def list_checkpoints(
    session: SessionDep, page: Annotated[PageParams, Depends(page_params)]
) -> Page[CheckpointRead]:
    return await service.list_checkpoints(session, page)


@router.get(
    "/v1/ledger/export",
    response_class=StreamingResponse,
    summary="Stream the sealed entries with their seals as NDJSON (check with `python -m services.vouchers.verify`)",
    responses={200: {"content": {NDJSON: {}}, "description": "header, entries in seq order, checkpoints, end"}},
    dependencies=[require(AUDITOR, ADMIN, PLATFORM)],
)
async def export(
    request: Request,
    checkpoints: Annotated[bool, Query(description="Add the published checkpoints after the entries")] = True,
) -> StreamingResponse:
    settings: VouchersSettings = request.app.state.settings
    ledger_pool: LedgerPool = request.app.state.ledger_pool
    connection, head, unsealed = await service.open_export(ledger_pool, settings)
    day = local_today(datetime.now(UTC)).isoformat()
    return StreamingResponse(
        service.export_lines(connection, head, unsealed, checkpoints, service.VERIFY_BATCH_SIZE),
        media_type=NDJSON,
        headers={"Content-Disposition": f'attachment; filename="vouchers-ledger-{day}.ndjson"'},
    )


@router.get(
    "/v1/ledger/invariants",
    summary="Check the ledger against its projections: sums, balances, ceilings, redemptions (auditors)",
    dependencies=[require(AUDITOR, ADMIN)],
)
async def check_ledger_invariants(ledger: LedgerPoolDep) -> dict[str, object]:
    async with ledger.ready.acquire() as connection:
        violations = await check_invariants(connection)
    return {"ok": not violations, "violations": [{"check": v.check, "row": v.row} for v in violations]}
