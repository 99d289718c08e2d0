"""`POST /v1/facts`: what one application needs from the registry, as of a date, in one call (issue #16).

A read with a body (a thousand vendor codes do not fit a URL): it changes nothing, and a peer may send
it again (shared/peers.py `PeerClient.query_json`). The services' own scope only (`registry:read`):
the bureau reads the same records one by one. `POST /v1/facts/batch` answers several such questions in one
call and one snapshot: a peer with several submissions waiting asks for all of them at once (issue #16).
"""

from __future__ import annotations

from fastapi import APIRouter

from shared.auth import REGISTRY_READ, require
from shared.db import ConnectionsDep

from . import service
from .schemas import MAX_BATCH, FactsBatchQuery, FactsBatchRead, FactsQuery, FactsRead

router = APIRouter(tags=["facts"])


@router.post(
    "/v1/facts",
    response_model=FactsRead,
    dependencies=[require(REGISTRY_READ)],
    summary="The facts an application needs, as of a date, read in one snapshot",
    description=(
        "The organisation and what is asked of it (revenues, active affiliations, vendors by code, its "
        "recognitions, recognitions by id, a model and its filings on two dates, the nationally filed models), "
        "each record as its own read answers it `?as_of=` the date, all read in one snapshot (one statement). "
        "Nothing is written."
    ),
)
async def read_application_facts(connections: ConnectionsDep, query: FactsQuery) -> FactsRead:
    return await service.read_facts(connections, query)


@router.post(
    "/v1/facts/batch",
    response_model=FactsBatchRead,
    dependencies=[require(REGISTRY_READ)],
    summary="Several applications' facts in one call, read in one snapshot",
    description=(
        f"Up to {MAX_BATCH} questions as `POST /v1/facts` takes them; each answer, in the order asked, is what "
        "`POST /v1/facts` answers to that question alone. All are read in one snapshot (one statement). A wrong "
        "question refuses the whole call (422, its place in `errors[].field`). Nothing is written."
    ),
)
async def read_facts_batch(connections: ConnectionsDep, query: FactsBatchQuery) -> FactsBatchRead:
    return FactsBatchRead(facts=await service.read_many_facts(connections, query.queries))
