"""Settlement's routes: batches, and the statements of vouchers, enterprises and vendors."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from shared.db import SessionDep
from shared.errors import ProblemError
from shared.identifiers import CreditCode
from shared.openapi import CREATED_AT_LOCATION
from shared.pagination import Page

from .. import idempotency
from ..deps import Now, OptionalKeyHeader, VoucherCode
from ..issuance import service as vouchers
from ..visibility import ensure_visible
from . import service
from .deps import BUREAU, BatchId, BatchReader, HolderReader, Pages, Settler, VendorPath, VendorReader
from .errors import SETTLEMENT_BATCH_NOT_FOUND
from .schemas import (
    BatchCreate,
    BatchDetail,
    BatchRead,
    BatchStatus,
    EnterpriseStatement,
    RedemptionStatus,
    VendorStatement,
    VoucherStatement,
)

router = APIRouter()

# --- settlement --------------------------------------------------------------------------------


@router.post(
    "/v1/settlement-batches",
    status_code=201,
    response_model=BatchRead,
    responses=CREATED_AT_LOCATION,
    tags=["settlement"],
    summary="Gather a vendor's captured, unsettled redemptions into a new open batch",
)
async def create_settlement_batch(
    session: SessionDep,
    moment: Now,
    principal: Settler,
    payload: BatchCreate,
    response: Response,
    key: OptionalKeyHeader = None,
) -> BatchRead | Response:
    """With an `Idempotency-Key` (optional), a retry with the same key and body answers the batch the first call
    created (201, `Idempotent-Replayed: true`) instead of `nothing_to_settle` or a second batch of what was
    captured since; the key with another body is 409 `idempotency_key_reused`. A refusal is not kept under the
    key."""

    async def create() -> BatchRead:
        return service.batch_read(
            await service.create_batch(session, payload, principal.actor, moment, principal.client_id)
        )

    answer = await idempotency.once(
        session, principal.client_id, key, "settlement_batch", payload.model_dump(mode="json"), create
    )
    if isinstance(answer, BatchRead):
        response.headers["Location"] = f"/v1/settlement-batches/{answer.id}"
    else:  # a replay: the first call's answer, with the Location of the batch it names
        answer.headers["Location"] = f"/v1/settlement-batches/{json.loads(bytes(answer.body))['id']}"
    return answer


@router.post(
    "/v1/settlement-batches/{batch_id}/close",
    response_model=BatchRead,
    tags=["settlement"],
    summary="Close a batch: one `settle` entry moves its total from the vendor's receivable to settled "
    "(four eyes: not by the officer who created it)",
)
async def close_settlement_batch(session: SessionDep, moment: Now, principal: Settler, batch_id: BatchId) -> BatchRead:
    return service.batch_read(
        await service.close_batch(session, batch_id, principal.actor, moment, principal.client_id)
    )


@router.get(
    "/v1/settlement-batches/{batch_id}",
    response_model=BatchDetail,
    tags=["settlement"],
    summary="A batch, with a page of its redemptions",
)
async def get_settlement_batch(
    session: SessionDep, principal: BatchReader, batch_id: BatchId, page: Pages
) -> BatchDetail:
    batch = await service.get_batch(session, batch_id)
    if not principal.has(*BUREAU) and batch.vendor != principal.vendor:
        raise ProblemError(SETTLEMENT_BATCH_NOT_FOUND, id=batch_id)
    items, cursor = await service.batch_redemptions(session, batch_id, page)
    return BatchDetail(batch=service.batch_read(batch), items=items, next_cursor=cursor)


@router.get(
    "/v1/settlement-batches",
    response_model=Page[BatchRead],
    tags=["settlement"],
    summary="Settlement batches, oldest first (a vendor client: its own)",
)
async def list_settlement_batches(
    session: SessionDep,
    principal: BatchReader,
    page: Pages,
    vendor: Annotated[CreditCode | None, Query()] = None,
    status: BatchStatus | None = None,
) -> Page[BatchRead]:
    return await service.list_batches(session, principal, page, vendor, status)


# --- statements ----------------------------------------------------------------------------------


@router.get(
    "/v1/vouchers/{code}/statement",
    response_model=VoucherStatement,
    tags=["statements"],
    summary="A voucher's entries in order, with the running available, held, redeemed and returned amounts",
)
async def voucher_statement(
    request: Request, session: SessionDep, moment: Now, principal: HolderReader, code: VoucherCode, page: Pages
) -> VoucherStatement:
    voucher = await vouchers.get_voucher(session, code)
    await session.commit()  # only read: no connection is held while the registry may be asked (issue #12)
    await ensure_visible(request, principal, voucher, moment, BUREAU)
    return await service.voucher_statement(session, voucher, moment, page)


@router.get(
    "/v1/enterprises/{credit_code}/years/{year}/statement",
    response_model=EnterpriseStatement,
    tags=["statements"],
    summary="An enterprise's year: vouchers and their totals, redemptions in the year, ceilings, grants",
)
async def enterprise_statement(
    session: SessionDep,
    moment: Now,
    principal: HolderReader,
    credit_code: Annotated[CreditCode, Path(description="The enterprise's credit code")],
    year: Annotated[int, Path(ge=2000, le=2100)],
    page: Pages,
) -> EnterpriseStatement:
    service.own_statement(principal, credit_code, principal.applicant)
    return await service.enterprise_statement(session, credit_code, year, moment, page)


@router.get(
    "/v1/vendors/{credit_code}/statement",
    response_model=VendorStatement,
    tags=["statements"],
    summary="A vendor's redemptions, receivable balance, settled total and batches",
)
async def vendor_statement(
    session: SessionDep,
    principal: VendorReader,
    credit_code: VendorPath,
    page: Pages,
    status: RedemptionStatus | None = None,
) -> VendorStatement:
    service.own_statement(principal, credit_code, principal.vendor)
    return await service.vendor_statement(session, credit_code, page, status)
