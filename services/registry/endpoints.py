"""REST endpoints: the same five per record kind, plus bulk import.

POST   /v1/{records}                 create (201, Location)
GET    /v1/{records}                 list: filters, cursor pagination, ?as_of=, ?known_at=
GET    /v1/{records}/{key}           read, now or ?as_of=DATE (&known_at=INSTANT)
PATCH  /v1/{records}/{key}           change from ?effective_from (in the body), a new version
GET    /v1/{records}/{key}/history   every version
POST   /v1/imports/{organisations|revenues|filings}   bulk upsert, CSV or JSON

Who may call them (shared/auth.py): reads (list, get, history) the bureau's roles, the
auditor, the data platform and peer services (`registry:read`); writes and imports the
administrator, officers and the data platform. Applicants, vendors and dashboards: 403.
Registry facts are public-register data about organisations, so there is no per-object
rule here: whoever may read one record may read them all.
"""

import inspect
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, BackgroundTasks, Body, Depends, Path, Query, Request, Response
from pydantic import BaseModel

from shared.auth import ADMIN, APPROVER, AUDITOR, OFFICER, PLATFORM, REGISTRY_READ, require
from shared.db import SessionDep
from shared.identifiers import CreditCode
from shared.instants import Instant
from shared.limits import MiB, max_body
from shared.openapi import CREATED_AT_LOCATION
from shared.pagination import Page, PageParams, page_params

from . import imports, records, schemas
from .kinds import Resource
from .resources import ALL, FILINGS, ORGANISATIONS, REVENUES
from .schemas import VersionRead

KEY_TYPES: dict[str, Any] = {
    "credit_code": CreditCode,
    "year": schemas.Year,
    "id": uuid.UUID,
    "number": Annotated[str, Path(min_length=3, max_length=120)],
}

AsOf = Annotated[
    date | None,
    Query(description="Read the record as it was in effect on this date (YYYY-MM-DD)"),
]
KnownAt = Annotated[
    Instant | None,
    Query(
        description="Ignore changes recorded after this instant (ISO 8601 with a UTC offset): what the registry "
        "said then"
    ),
]


#: Who may read registry records, and who may change them (create, patch, import).
READERS: tuple[str, ...] = (ADMIN, OFFICER, APPROVER, AUDITOR, PLATFORM, REGISTRY_READ)
WRITERS: tuple[str, ...] = (ADMIN, OFFICER, PLATFORM)


def _signature(params: list[inspect.Parameter], returns: Any) -> inspect.Signature:
    return inspect.Signature(params, return_annotation=returns)


def _key_dependency(resource: Resource) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def dependency(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    dependency.__signature__ = _signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=KEY_TYPES[name]) for name in resource.key],
        dict[str, Any],
    )
    return dependency


def _filter_dependency(resource: Resource) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def dependency(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    dependency.__signature__ = _signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                spec.name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[spec.value_type | None, Query(description=spec.description)],
                default=None,
            )
            for spec in resource.filters
        ],
        dict[str, Any],
    )
    return dependency


def _key_path(resource: Resource) -> str:
    return "/".join("{" + name + "}" for name in resource.key)


def add_record_routes(router: APIRouter, resource: Resource) -> None:
    plural = resource.plural
    read_model: Any = resource.read
    create_model: Any = resource.create
    update_model: Any = resource.update
    Key = Annotated[dict[str, Any], Depends(_key_dependency(resource))]
    Filters = Annotated[dict[str, Any], Depends(_filter_dependency(resource))]
    item_path = f"/v1/{plural}/{_key_path(resource)}"
    tags: list[str | Any] = [plural]

    async def create(session: SessionDep, request: Request, response: Response, payload: Any) -> Any:
        created = await records.create_record(session, resource, payload)
        response.headers["Location"] = str(request.url_for(f"get_{resource.entity}", **_url_key(resource, created)))
        return created

    create.__annotations__["payload"] = Annotated[create_model, Body()]
    router.add_api_route(
        f"/v1/{plural}",
        create,
        methods=["POST"],
        status_code=201,
        response_model=read_model,
        name=f"create_{resource.entity}",
        responses=CREATED_AT_LOCATION,
        dependencies=[require(*WRITERS)],
        summary=f"Create a {resource.entity}",
        description=resource.description,
        tags=tags,
    )

    async def list_(
        session: SessionDep,
        filters: Filters,
        page: Annotated[PageParams, Depends(page_params)],
        as_of: AsOf = None,
        known_at: KnownAt = None,
    ) -> Any:
        return await records.list_records(session, resource, filters, page, as_of=as_of, known_at=known_at)

    router.add_api_route(
        f"/v1/{plural}",
        list_,
        methods=["GET"],
        response_model=Page[read_model],
        name=f"list_{plural}",
        dependencies=[require(*READERS)],
        summary=f"List {plural}",
        description=resource.description + " Ordered by creation; stable under concurrent inserts.",
        tags=tags,
    )

    async def get(session: SessionDep, key: Key, as_of: AsOf = None, known_at: KnownAt = None) -> Any:
        return await records.get_record(session, resource, key, as_of=as_of, known_at=known_at)

    router.add_api_route(
        item_path,
        get,
        methods=["GET"],
        response_model=read_model,
        name=f"get_{resource.entity}",
        dependencies=[require(*READERS)],
        summary=f"Read a {resource.entity}, now or as of a date",
        tags=tags,
    )

    async def patch(session: SessionDep, key: Key, payload: Any) -> Any:
        return await records.update_record(session, resource, key, payload)

    patch.__annotations__["payload"] = Annotated[update_model, Body()]
    router.add_api_route(
        item_path,
        patch,
        methods=["PATCH"],
        response_model=read_model,
        name=f"update_{resource.entity}",
        dependencies=[require(*WRITERS)],
        summary=f"Change a {resource.entity} from a date (a new version)",
        tags=tags,
    )

    async def history(session: SessionDep, key: Key) -> list[VersionRead]:
        versions = await records.record_history(session, resource, key)
        return [
            VersionRead(
                version=v.version,
                valid_from=v.valid_from,
                recorded_at=v.recorded_at,
                request_id=v.request_id,
                data=v.data,
            )
            for v in versions
        ]

    router.add_api_route(
        item_path + "/history",
        history,
        methods=["GET"],
        response_model=list[VersionRead],
        name=f"history_{resource.entity}",
        dependencies=[require(*READERS)],
        summary=f"Every version of a {resource.entity}",
        tags=tags,
    )


def _url_key(resource: Resource, read: BaseModel) -> dict[str, str]:
    """The record's key as path segments for `url_for`: percent-encoded, since a key may hold any character
    (a filing number in Chinese, say) and a header is latin-1 only."""
    return {name: quote(str(getattr(read, name)), safe="") for name in resource.key}


router = APIRouter()
for _resource in ALL:
    add_record_routes(router, _resource)

ImportMode = Literal["all_or_nothing", "best_effort"]


def _import_route(resource: Resource) -> None:
    async def import_(
        session: SessionDep,
        request: Request,
        background: BackgroundTasks,
        mode: Annotated[
            ImportMode,
            Query(description="all_or_nothing: any bad row → 422, nothing written. best_effort: write the good rows"),
        ] = "all_or_nothing",
    ) -> schemas.ImportReport:
        report = await imports.run_import(session, resource, request, mode)
        if report.created + report.updated >= imports.ANALYZE_AFTER_ROWS:  # after the commit and the answer
            background.add_task(imports.analyze_imported, request.app.state.database, resource)
        return report

    router.add_api_route(
        f"/v1/imports/{resource.plural}",
        max_body(32 * MiB)(import_),  # up to 20,000 rows (imports.MAX_ROWS)
        methods=["POST"],
        response_model=schemas.ImportReport,
        name=f"import_{resource.plural}",
        dependencies=[require(*WRITERS)],
        summary=f"Bulk upsert {resource.plural} (idempotent, by natural key)",
        description=(
            f"Upsert {resource.plural} by {', '.join(resource.key)}. Re-importing the same file changes nothing "
            "(rows are counted as unchanged). A per-row error report names every bad row."
        ),
        tags=["imports"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "text/csv": {
                        "schema": {
                            "type": "string",
                            "description": f"UTF-8 (a byte order mark is ignored), RFC 4180: a header row naming "
                            f"columns among the fields of {resource.create.__name__} (another column: 422 "
                            "`import_unknown_columns`), then one row per record, at most "
                            f"{imports.MAX_ROWS}; an empty cell is an absent field, a `*_fen` cell an integer's digits",
                        }
                    },
                    "application/json": {
                        "schema": {
                            "type": "array",
                            "items": {"$ref": f"#/components/schemas/{resource.create.__name__}"},
                            "maxItems": imports.MAX_ROWS,
                            "description": 'The records (`{"rows": [...]}` is read as well)',
                        }
                    },
                },
            }
        },
    )


for _resource in (ORGANISATIONS, REVENUES, FILINGS):
    _import_route(_resource)
