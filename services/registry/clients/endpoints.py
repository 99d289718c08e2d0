"""The client administration API's routes (administrators only; service.py says what each checks)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Response

from shared.auth import ADMIN, Principal, require
from shared.db import SessionDep
from shared.openapi import CREATED_AT_LOCATION
from shared.pagination import Page, PageParams, page_params

from . import service
from .schemas import ClientCreate, ClientKeys, ClientRead, ClientRotate, ClientWithSecret

router = APIRouter(tags=["clients"])

Administrator = Annotated[Principal, require(ADMIN)]
ClientIdPath = Annotated[str, Path(min_length=3, max_length=100, pattern=r"^[A-Za-z0-9._:-]{3,100}$")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Reuse it when retrying: the request is not made twice (the answer then has no secret)",
    ),
]


def _replayed(response: Response, replayed: bool) -> None:
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"


@router.post(
    "/v1/clients",
    status_code=201,
    response_model=ClientWithSecret,
    responses=CREATED_AT_LOCATION,
    summary="Create an OAuth2 client (its secret is shown only in this answer; not an admin client)",
)
async def create_client(
    session: SessionDep,
    principal: Administrator,
    payload: ClientCreate,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> ClientWithSecret:
    created, replayed = await service.create(session, principal, payload, idempotency_key)
    response.headers["Location"] = f"/v1/clients/{quote(created.client_id, safe='')}"
    _replayed(response, replayed)
    return created


@router.get("/v1/clients", response_model=Page[ClientRead], summary="OAuth2 clients (never a secret)")
async def list_clients(
    session: SessionDep,
    _: Administrator,
    page: Annotated[PageParams, Depends(page_params)],
    revoked: Annotated[bool | None, Query(description="Only revoked (true) or only active (false) clients")] = None,
) -> Page[ClientRead]:
    return await service.page(session, page.cursor, page.limit, revoked)


@router.get("/v1/clients/{client_id}", response_model=ClientRead, summary="An OAuth2 client (never its secret)")
async def get_client(session: SessionDep, _: Administrator, client_id: ClientIdPath) -> ClientRead:
    return await service.read(session, client_id)


@router.post(
    "/v1/clients/{client_id}/rotate",
    response_model=ClientWithSecret,
    summary="Give a client a new secret (shown only in this answer); the old one works for the grace period",
)
async def rotate_client_secret(
    session: SessionDep,
    principal: Administrator,
    client_id: ClientIdPath,
    response: Response,
    payload: Annotated[ClientRotate | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> ClientWithSecret:
    rotated, replayed = await service.rotate(session, principal, client_id, payload or ClientRotate(), idempotency_key)
    _replayed(response, replayed)
    return rotated


@router.post(
    "/v1/clients/{client_id}/revoke",
    response_model=ClientRead,
    summary="Revoke a client: no new tokens from now (issued ones end with their lifetime; idempotent)",
)
async def revoke_client(session: SessionDep, principal: Administrator, client_id: ClientIdPath) -> ClientRead:
    return await service.revoke(session, principal, client_id)


@router.put(
    "/v1/clients/{client_id}/jwks",
    response_model=ClientRead,
    summary="Replace a client's public keys for private_key_jwt (RFC 7523) and how it must authenticate",
)
async def put_client_keys(
    session: SessionDep, principal: Administrator, client_id: ClientIdPath, payload: ClientKeys
) -> ClientRead:
    return await service.set_keys(session, principal, client_id, payload)
