"""Bulk exports of registry records for the data platform: `GET /v1/exports/{records}`.

One route per record kind (organisations, revenues, affiliations, vendors, models,
filings, recognitions), NDJSON or CSV, streamed by `shared/exports/` (formats, date
bounds, trailer and errors are described there). Roles: platform, auditor, admin. Each
takes the same filters as the kind's list (`GET /v1/{records}`), and:

- by default the **current rows**, in creation order, each exactly as `GET /v1/{records}/{key}`
  shows it (the state's fields, the public `id` where a kind has one, `version`,
  `valid_from`, `recorded_at`); `from` / `to` select by `recorded_at`, when the version
  now in effect was recorded;
- with `versions=true` the **history**: every version of every record in the order they
  were recorded, as `GET /v1/{records}/{key}/history` shows them (the record's key, then
  `version`, `valid_from`, `recorded_at`, `request_id` and the snapshot `data`); `from` /
  `to` select by `recorded_at`, and the filters apply to each snapshot.
"""

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.sql import sqltypes

from shared.auth import require
from shared.exports.params import EXPORT_RESPONSES, ExportOptions, export_options
from shared.exports.query import EXPORTERS, Column, ColumnKind, ExportQuery
from shared.exports.stream import export_response

from .kinds import Filter, Resource
from .resources import AFFILIATIONS, ALL, RECOGNITIONS
from .schemas import RECOGNITION_CLAUSES

#: Filters whose list form is custom (`Filter.on_row` / `on_snapshot`): their SQL here, by
#: (entity, filter) → (on the current row, on a history snapshot); `p` is the placeholder.
CUSTOM_ROW: dict[tuple[str, str], Callable[[str], str]] = {
    (AFFILIATIONS.entity, "organisation"): lambda p: f"t.credit_code_a = {p} OR t.credit_code_b = {p}",
}
CUSTOM_SNAPSHOT: dict[tuple[str, str], Callable[[str], str]] = {
    (AFFILIATIONS.entity, "organisation"): lambda p: (
        f"v.data ->> 'credit_code_a' = {p} OR v.data ->> 'credit_code_b' = {p}"
    ),
    (RECOGNITIONS.entity, "kind"): lambda p: (
        f"v.data @> jsonb_build_object('details', jsonb_build_object('kind', {p}::text))"
    ),
}


def _kind(column_type: Any) -> ColumnKind:
    if isinstance(column_type, sqltypes.Boolean):
        return "bool"
    if isinstance(column_type, sqltypes.DateTime):
        return "timestamp"
    if isinstance(column_type, sqltypes.Date):
        return "date"
    if isinstance(column_type, sqltypes.JSON):
        return "json"
    if isinstance(column_type, sqltypes.Uuid):
        return "uuid"
    if isinstance(column_type, sqltypes.Integer):
        return "int"
    return "text"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def current_columns(resource: Resource) -> tuple[Column, ...]:
    """The fields of `GET /v1/{records}/{key}`, read from the current row."""
    table = resource.table.__table__
    columns = [Column(name, f't."{row}"', _kind(table.c[row].type)) for name, row in resource.row_keys.items()]
    for name in resource.state.model_fields:
        if name not in table.c:
            raise RuntimeError(f"{resource.plural}: state field {name} has no column to export")
        columns.append(Column(name, f't."{name}"', _kind(table.c[name].type)))
    if resource is RECOGNITIONS:  # its read_extra: the clause of the recognition's kind
        cases = " ".join(f"WHEN {_literal(k)} THEN {_literal(v)}" for k, v in RECOGNITION_CLAUSES.items())
        columns.append(Column("clause", f"CASE t.kind {cases} END"))
    columns += [
        Column("version", "t.version", "int"),
        Column("valid_from", "t.valid_from", "date"),
        Column("recorded_at", "t.updated_at", "timestamp"),
    ]
    return tuple(columns)


def version_columns(resource: Resource) -> tuple[Column, ...]:
    """The record's key, then the fields of `GET /v1/{records}/{key}/history`."""
    columns = []
    for name in resource.key:
        if name in resource.row_keys:
            columns.append(Column(name, f't."{resource.row_keys[name]}"', "uuid"))
        else:
            columns.append(Column(name, f"v.data ->> {_literal(name)}", json_sql=f"v.data -> {_literal(name)}"))
    return (
        *columns,
        Column("version", "v.version", "int"),
        Column("valid_from", "v.valid_from", "date"),
        Column("recorded_at", "v.recorded_at", "timestamp"),
        Column("request_id", "v.request_id"),
        Column("data", "v.data", "json"),
    )


def _row_condition(resource: Resource, spec: Filter) -> Callable[[str], str]:
    custom = CUSTOM_ROW.get((resource.entity, spec.name))
    if custom is not None:
        return custom
    if spec.on_row is not None:
        raise RuntimeError(f"{resource.plural}: filter {spec.name} has a custom list form but no export SQL")
    table = resource.table.__table__
    if spec.name not in table.c:
        raise RuntimeError(f"{resource.plural}: filter {spec.name} is not a column")
    return lambda p: f't."{spec.name}" = {p}'


def _snapshot_condition(resource: Resource, spec: Filter) -> tuple[Callable[[str], str], Callable[[Any], Any] | None]:
    custom = CUSTOM_SNAPSHOT.get((resource.entity, spec.name))
    if custom is not None:
        return custom, None
    if spec.on_snapshot is not None:
        raise RuntimeError(f"{resource.plural}: filter {spec.name} has a custom history form but no export SQL")
    # as the list does (kinds.snapshot_contains): the snapshot contains {name: value}
    return (lambda p: f"v.data @> {p}::jsonb"), (lambda value: json.dumps({spec.name: value}, default=str))


def records_query(resource: Resource, filters: dict[str, Any], *, versions: bool) -> ExportQuery:
    table = resource.table.__table__.fullname  # type: ignore[attr-defined]
    specs = {spec.name: spec for spec in resource.filters}
    if not versions:
        query = ExportQuery(
            resource.plural, current_columns(resource), f"{table} t", order_by="t.id", time_column="t.updated_at"
        )
        for name, value in filters.items():
            query.filter(name, value, _row_condition(resource, specs[name]))
        return query
    query = ExportQuery(
        f"{resource.plural}-versions",
        version_columns(resource),
        f"registry.versions v JOIN {table} t ON t.id = v.entity_id",
        order_by="v.id",
        time_column="v.recorded_at",
    )
    query.where(f"v.entity = {query.param(resource.entity)}")
    for name, value in filters.items():
        condition, bind = _snapshot_condition(resource, specs[name])
        query.filter(name, value, condition, bind=bind)
    return query


def _query_type(resource: Resource, spec: Filter) -> Any:
    """A filter's parameter type; integers bounded by their column (a year is a smallint)."""
    column = resource.table.__table__.c.get(spec.name)
    if spec.value_type is int and column is not None:
        bits = 16 if isinstance(column.type, sqltypes.SmallInteger) else 64
        if isinstance(column.type, sqltypes.Integer) and not isinstance(
            column.type, sqltypes.SmallInteger | sqltypes.BigInteger
        ):
            bits = 32
        limit = 2 ** (bits - 1)
        return Annotated[int | None, Query(ge=-limit, le=limit - 1, description=spec.description)]
    return Annotated[spec.value_type | None, Query(description=spec.description)]


def _filters(resource: Resource) -> Callable[..., Awaitable[dict[str, Any]]]:
    """The kind's list filters as query parameters (as `GET /v1/{records}` takes them)."""

    async def dependency(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    dependency.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                spec.name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=_query_type(resource, spec),
                default=None,
            )
            for spec in resource.filters
        ],
        return_annotation=dict[str, Any],
    )
    return dependency


RESERVED = frozenset({"from", "to", "format", "bom", "versions"})


def add_export_route(router: APIRouter, resource: Resource) -> None:
    clash = RESERVED & {spec.name for spec in resource.filters}
    if clash:
        raise RuntimeError(f"{resource.plural}: filters {sorted(clash)} clash with the export's own parameters")
    for spec in resource.filters:  # fail at start-up, not on the first request
        _row_condition(resource, spec)
        _snapshot_condition(resource, spec)
    Filters = Annotated[dict[str, Any], Depends(_filters(resource))]

    async def export(
        request: Request,
        options: Annotated[ExportOptions, Depends(export_options)],
        filters: Filters,
        versions: Annotated[
            bool, Query(description="Every version (the history, by recorded_at) instead of the current rows")
        ] = False,
    ) -> StreamingResponse:
        given = {name: value for name, value in filters.items() if value is not None}
        query = records_query(resource, given, versions=versions)
        stem = f"registry-{resource.plural}" + ("-versions" if versions else "")
        return await export_response(request, query, options, filename_stem=stem)

    router.add_api_route(
        f"/v1/exports/{resource.plural}",
        export,
        methods=["GET"],
        response_class=StreamingResponse,
        responses=EXPORT_RESPONSES,
        name=f"export_{resource.plural}",
        dependencies=[require(*EXPORTERS)],
        summary=f"Export {resource.plural} (NDJSON or CSV, streamed): current rows or every version",
        description=resource.description + " Current rows by `recorded_at` in [from, to), or with "
        "`versions=true` every version by `recorded_at`; see the exports section of the API docs.",
        tags=["exports"],
    )


router = APIRouter()
for _resource in ALL:
    add_export_route(router, _resource)
