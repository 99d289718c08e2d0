"""Test clocks' routes, mounted only in sandbox mode (services/registry/app.py): administrators manage clocks
and bindings; the services' own scope (`registry:read`) and administrators read an enterprise's clock."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from shared.auth import ADMIN, REGISTRY_READ, Principal, require
from shared.db import SessionDep
from shared.identifiers import CreditCode
from shared.openapi import CREATED_AT_LOCATION
from shared.pagination import Page, PageParams, page_params

from . import service
from .schemas import ClockAdvance, ClockBindingRead, ClockCreate, ClockRead, EnterpriseClockRead

router = APIRouter(tags=["test clocks"])

Administrator = Annotated[Principal, require(ADMIN)]
ClockId = Annotated[uuid.UUID, Path(description="The test clock's id")]
CreditCodePath = Annotated[CreditCode, Path(description="The enterprise's Unified Social Credit Code")]
Pages = Annotated[PageParams, Depends(page_params)]


@router.post(
    "/v1/test-clocks",
    status_code=201,
    response_model=ClockRead,
    responses=CREATED_AT_LOCATION,
    summary="Create a test clock frozen at an instant (sandbox mode only)",
)
async def create_test_clock(
    session: SessionDep, principal: Administrator, payload: ClockCreate, response: Response
) -> ClockRead:
    created = await service.create(session, principal, payload)
    response.headers["Location"] = f"/v1/test-clocks/{created.id}"
    return created


@router.get("/v1/test-clocks", response_model=Page[ClockRead], summary="Test clocks, in the order they were made")
async def list_test_clocks(session: SessionDep, _: Administrator, page: Pages) -> Page[ClockRead]:
    return await service.page(session, page.cursor, page.limit)


@router.get("/v1/test-clocks/{clock_id}", response_model=ClockRead, summary="A test clock and its enterprises")
async def get_test_clock(session: SessionDep, _: Administrator, clock_id: ClockId) -> ClockRead:
    return await service.read(session, clock_id)


@router.post(
    "/v1/test-clocks/{clock_id}/advance",
    response_model=ClockRead,
    summary="Advance a test clock to a later instant (never backwards: 409 test_clock_backwards)",
)
async def advance_test_clock(
    session: SessionDep, _: Administrator, clock_id: ClockId, payload: ClockAdvance
) -> ClockRead:
    return await service.advance(session, clock_id, payload)


@router.delete(
    "/v1/test-clocks/{clock_id}",
    status_code=204,
    summary="Delete a test clock: its enterprises return to the real clock",
)
async def delete_test_clock(session: SessionDep, _: Administrator, clock_id: ClockId) -> Response:
    await service.delete(session, clock_id)
    return Response(status_code=204)


@router.put(
    "/v1/test-clocks/{clock_id}/enterprises/{credit_code}",
    response_model=ClockBindingRead,
    responses={201: {"model": ClockBindingRead, "description": "Bound now"}},
    summary="Bind an enterprise to a test clock (200 if it already is; one clock per enterprise)",
)
async def bind_enterprise_to_test_clock(
    session: SessionDep, principal: Administrator, clock_id: ClockId, credit_code: CreditCodePath, response: Response
) -> ClockBindingRead:
    binding, created = await service.bind(session, principal, clock_id, credit_code)
    response.status_code = 201 if created else 200
    return binding


@router.delete(
    "/v1/test-clocks/{clock_id}/enterprises/{credit_code}",
    status_code=204,
    summary="Unbind an enterprise from a test clock: it returns to the real clock",
)
async def unbind_enterprise_from_test_clock(
    session: SessionDep, _: Administrator, clock_id: ClockId, credit_code: CreditCodePath
) -> Response:
    await service.unbind(session, clock_id, credit_code)
    return Response(status_code=204)


@router.get(
    "/v1/test-clock-bindings",
    response_model=Page[ClockBindingRead],
    dependencies=[require(ADMIN, REGISTRY_READ)],
    summary="Every enterprise bound to a test clock, with its clock's time",
)
async def list_test_clock_bindings(session: SessionDep, page: Pages) -> Page[ClockBindingRead]:
    return await service.bindings(session, page.cursor, page.limit)


@router.get(
    "/v1/test-clock-bindings/{credit_code}",
    response_model=EnterpriseClockRead,
    dependencies=[require(ADMIN, REGISTRY_READ)],
    summary="What time it is for an enterprise: its test clock, or null (the real clock)",
)
async def get_enterprise_test_clock(session: SessionDep, credit_code: CreditCodePath) -> EnterpriseClockRead:
    return await service.clock_of(session, credit_code)
