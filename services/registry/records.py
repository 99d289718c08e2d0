"""Versioned records: one mechanism for every kind of registry fact.

A `Resource` describes one kind of record (its table, payload models, natural key,
filters, references). The functions below create, update, read (now or as of a date),
list and bulk-upsert any resource, always writing the current row and an append-only
history snapshot in the same transaction. They only `flush()`: the request commits.

As-of semantics: the snapshot that applies on date D is the one with the latest
`valid_from <= D` (ties: the later version). A back-dated change applies from its date
until the next recorded change. `known_at` additionally ignores snapshots recorded
after that instant ("what did the registry say at the time").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import ColumnElement, Select, and_, func, select, text, type_coerce, update
from sqlalchemy.dialects.postgresql import JSONB, distinct_on, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.context import request_id_var
from shared.errors import FieldError, ProblemError, field_errors_from_pydantic, validation_problem
from shared.feed.outbox import NewEvent, emit_many
from shared.instants import SHENZHEN
from shared.pagination import Page, PageParams, decode_cursor, make_page

from .errors import (
    BEFORE_RECORD_EXISTED,
    CONCURRENT_CHANGE,
    EFFECTIVE_DATE_IN_FUTURE,
    RECORD_EXISTS,
    RECORD_NOT_FOUND,
    RECORD_NOT_FOUND_AS_OF,
    REFERENCE_NOT_FOUND,
)
from .events import record_event
from .models import Base, Version


def today() -> date:
    """Dates in the programme are Shenzhen dates."""
    return datetime.now(SHENZHEN).date()


@dataclass(frozen=True)
class Reference:
    """A field that must name an existing record of another table."""

    field: str
    table: type[Base]
    column: str
    target: str
    target_zh: str


@dataclass(frozen=True)
class Filter:
    """A list filter: how it reads on current rows and on history snapshots (JSON)."""

    name: str
    value_type: Any
    description: str
    on_row: Callable[[type[Base], Any], ColumnElement[bool]] | None = None
    on_snapshot: Callable[[ColumnElement[Any], Any], ColumnElement[bool]] | None = None

    def row_clause(self, table: type[Base], value: Any) -> ColumnElement[bool]:
        if self.on_row is not None:
            return self.on_row(table, value)
        column: ColumnElement[Any] = getattr(table, self.name)
        clause: ColumnElement[bool] = column == value
        return clause

    def snapshot_clause(self, data: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
        if self.on_snapshot is not None:
            return self.on_snapshot(data, value)
        return snapshot_contains(data, {self.name: value})


def snapshot_contains(data: ColumnElement[Any], fragment: Mapping[str, Any]) -> ColumnElement[bool]:
    """JSONB containment (`@>`) of a snapshot, as in the history table's GIN-able form."""
    return data.op("@>")(type_coerce(json.loads(json.dumps(fragment, default=str)), JSONB))


@dataclass(frozen=True)
class Resource:
    entity: str
    entity_zh: str
    plural: str
    table: type[Base]
    state: type[BaseModel]
    create: type[BaseModel]
    update: type[BaseModel]
    read: type[BaseModel]
    key: tuple[str, ...]
    #: state fields that are unique together (conflicts, imports' upsert key); defaults to `key`
    natural_key: tuple[str, ...] = ()
    #: fields of the current row that identify it in URLs but are not in the state (uid → id)
    row_keys: Mapping[str, str] = field(default_factory=dict)
    filters: Sequence[Filter] = ()
    references: Sequence[Reference] = ()
    natural_date: Callable[[Any], date | None] = lambda state: None
    to_state: Callable[[Mapping[str, Any]], Mapping[str, Any]] = lambda data: data
    columns: Callable[[BaseModel], dict[str, Any]] = lambda state: state.model_dump(mode="python")
    read_extra: Callable[[Mapping[str, Any]], dict[str, Any]] = lambda data: {}
    description: str = ""

    @property
    def unique_fields(self) -> tuple[str, ...]:
        return self.natural_key or self.key

    def key_label(self, key: Mapping[str, Any], fields: Sequence[str] = ()) -> str:
        return "/".join(str(key[name]) for name in (fields or self.key))

    def key_clause(self, key: Mapping[str, Any]) -> ColumnElement[bool]:
        return and_(*(self._key_column(name) == key[name] for name in self.key))

    def _key_column(self, name: str) -> ColumnElement[Any]:
        column: ColumnElement[Any] = getattr(self.table, self.row_keys.get(name, name))
        return column


# --- building payloads -------------------------------------------------------------------


def build_state(resource: Resource, data: Mapping[str, Any], prefix: Sequence[str | int] = ("body",)) -> BaseModel:
    """Validate a full state; a failure is a 422 naming the fields."""
    try:
        return resource.state.model_validate(dict(resource.to_state(data)))
    except ValidationError as exc:
        raise validation_problem(field_errors_from_pydantic(exc.errors(), prefix)) from exc


def _snapshot(state: BaseModel) -> dict[str, Any]:
    data: dict[str, Any] = state.model_dump(mode="json")
    return data


def _read(resource: Resource, data: Mapping[str, Any], row_keys: Mapping[str, Any], meta: Mapping[str, Any]) -> Any:
    return resource.read.model_validate({**data, **row_keys, **resource.read_extra(data), **meta})


def _row_keys(resource: Resource, row: Any) -> dict[str, Any]:
    return {name: getattr(row, column) for name, column in resource.row_keys.items()}


def _row_data(resource: Resource, row: Any) -> dict[str, Any]:
    fields = resource.state.model_fields
    return {name: getattr(row, name) for name in fields if hasattr(row, name)}


def _check_effective(effective_from: date) -> None:
    if effective_from > today():
        raise ProblemError(EFFECTIVE_DATE_IN_FUTURE, effective_from=effective_from.isoformat())


async def check_references(
    session: AsyncSession, resource: Resource, states: Sequence[BaseModel]
) -> dict[int, FieldError]:
    """Index of each state whose references do not exist → the field error."""
    missing: dict[int, FieldError] = {}
    for reference in resource.references:
        wanted = {getattr(state, reference.field) for state in states}
        column = getattr(reference.table, reference.column)
        found = set((await session.execute(select(column).where(column.in_(wanted)))).scalars())
        for index, state in enumerate(states):
            value = getattr(state, reference.field)
            if value not in found and index not in missing:
                missing[index] = FieldError(
                    reference.field,
                    "reference_not_found",
                    f"引用的{reference.target_zh}不存在：{value}",
                    f"The referenced {reference.target} does not exist: {value}",
                    {"value": str(value)},
                )
    return missing


async def _raise_on_missing_references(session: AsyncSession, resource: Resource, state: BaseModel) -> None:
    missing = await check_references(session, resource, [state])
    if missing:
        error = missing[0]
        reference = next(r for r in resource.references if r.field == error.field)
        raise ProblemError(
            REFERENCE_NOT_FOUND,
            errors=[error],
            target=reference.target,
            target_zh=reference.target_zh,
            value=error.extra["value"],
        )


def _version_row(
    resource: Resource, entity_id: int, version: int, valid_from: date, state: BaseModel
) -> dict[str, Any]:
    return {
        "entity": resource.entity,
        "entity_id": entity_id,
        "version": version,
        "valid_from": valid_from,
        "request_id": request_id_var.get(),
        "data": _snapshot(state),
    }


# --- single-record operations --------------------------------------------------------------


async def create_record(session: AsyncSession, resource: Resource, payload: BaseModel) -> Any:
    given = payload.model_dump(exclude={"effective_from"}, exclude_unset=False)
    state = build_state(resource, given)
    effective_from: date = getattr(payload, "effective_from", None) or resource.natural_date(state) or today()
    _check_effective(effective_from)
    await _raise_on_missing_references(session, resource, state)
    statement = (
        insert(resource.table)
        .values(**resource.columns(state), version=1, valid_from=effective_from)
        .on_conflict_do_nothing()
        .returning(resource.table)
    )
    try:
        row: Any = (await session.execute(statement)).scalar_one_or_none()
    except IntegrityError as exc:
        raise ProblemError(CONCURRENT_CHANGE) from exc
    if row is None:
        raise ProblemError(
            RECORD_EXISTS,
            entity=resource.entity,
            entity_zh=resource.entity_zh,
            key=resource.key_label(state.model_dump(), resource.unique_fields),
        )
    version = _version_row(resource, row.id, 1, effective_from, state)
    recorded_at = (await session.execute(insert(Version).values(**version).returning(Version.recorded_at))).scalar_one()
    event = record_event(resource, "created", _snapshot(state), _row_keys(resource, row), 1, effective_from)
    await emit_many(session, [event])
    return _read(
        resource,
        _snapshot(state),
        _row_keys(resource, row),
        {"version": 1, "valid_from": effective_from, "recorded_at": recorded_at},
    )


async def _current_row(session: AsyncSession, resource: Resource, key: Mapping[str, Any], *, lock: bool = False) -> Any:
    statement = select(resource.table).where(resource.key_clause(key))
    if lock:
        statement = statement.with_for_update()
    row = (await session.execute(statement)).scalar_one_or_none()
    if row is None:
        raise ProblemError(
            RECORD_NOT_FOUND, entity=resource.entity, entity_zh=resource.entity_zh, key=resource.key_label(key)
        )
    return row


def _snapshot_at(resource: Resource, entity_id: Any, as_of: date, known_at: datetime | None) -> Select[Any]:
    statement = select(Version).where(
        Version.entity == resource.entity, Version.entity_id == entity_id, Version.valid_from <= as_of
    )
    if known_at is not None:
        statement = statement.where(Version.recorded_at <= known_at)
    return statement.order_by(Version.valid_from.desc(), Version.version.desc()).limit(1)


async def get_record(
    session: AsyncSession,
    resource: Resource,
    key: Mapping[str, Any],
    *,
    as_of: date | None = None,
    known_at: datetime | None = None,
) -> Any:
    row = await _current_row(session, resource, key)
    if as_of is None and known_at is None:
        return _read(
            resource,
            _row_data(resource, row),
            _row_keys(resource, row),
            {"version": row.version, "valid_from": row.valid_from, "recorded_at": row.updated_at},
        )
    day = as_of or today()
    snapshot = (await session.execute(_snapshot_at(resource, row.id, day, known_at))).scalar_one_or_none()
    if snapshot is None:
        raise ProblemError(
            RECORD_NOT_FOUND_AS_OF,
            entity=resource.entity,
            entity_zh=resource.entity_zh,
            key=resource.key_label(key),
            as_of=day.isoformat(),
        )
    return _read(
        resource,
        snapshot.data,
        _row_keys(resource, row),
        {"version": snapshot.version, "valid_from": snapshot.valid_from, "recorded_at": snapshot.recorded_at},
    )


async def _next_version(session: AsyncSession, resource: Resource, entity_id: int) -> int:
    latest = await session.scalar(
        select(func.max(Version.version)).where(Version.entity == resource.entity, Version.entity_id == entity_id)
    )
    return int(latest or 0) + 1


async def _apply_version(
    session: AsyncSession, resource: Resource, row: Any, state: BaseModel, effective_from: date
) -> tuple[int, datetime]:
    """Append a snapshot; move the current row only if this is now the latest in effect."""
    table: Any = resource.table
    version = await _next_version(session, resource, row.id)
    recorded_at = (
        await session.execute(
            insert(Version)
            .values(**_version_row(resource, row.id, version, effective_from, state))
            .returning(Version.recorded_at)
        )
    ).scalar_one()
    if effective_from >= row.valid_from:
        try:
            await session.execute(
                update(resource.table)
                .where(table.id == row.id)
                .values(**resource.columns(state), version=version, valid_from=effective_from, updated_at=recorded_at)
            )
        except IntegrityError as exc:  # e.g. a model renamed to a name its vendor already uses: the request rolls back
            raise ProblemError(
                RECORD_EXISTS,
                entity=resource.entity,
                entity_zh=resource.entity_zh,
                key=resource.key_label(state.model_dump(), resource.unique_fields),
            ) from exc
    event = record_event(resource, "changed", _snapshot(state), _row_keys(resource, row), version, effective_from)
    await emit_many(session, [event])
    return version, recorded_at


async def update_record(session: AsyncSession, resource: Resource, key: Mapping[str, Any], patch: BaseModel) -> Any:
    row = await _current_row(session, resource, key, lock=True)
    effective_from: date = getattr(patch, "effective_from", None) or today()
    _check_effective(effective_from)
    base = (await session.execute(_snapshot_at(resource, row.id, effective_from, None))).scalar_one_or_none()
    if base is None:
        first = await session.scalar(
            select(func.min(Version.valid_from)).where(Version.entity == resource.entity, Version.entity_id == row.id)
        )
        raise ProblemError(BEFORE_RECORD_EXISTED, effective_from=effective_from.isoformat(), first=str(first))
    changes = patch.model_dump(exclude_unset=True, exclude={"effective_from"})
    state = build_state(resource, {**base.data, **changes})
    if _snapshot(state) == base.data:  # nothing changes: no new version
        return await get_record(session, resource, key, as_of=effective_from)
    await _raise_on_missing_references(session, resource, state)
    version, recorded_at = await _apply_version(session, resource, row, state, effective_from)
    return _read(
        resource,
        _snapshot(state),
        _row_keys(resource, row),
        {"version": version, "valid_from": effective_from, "recorded_at": recorded_at},
    )


async def record_history(session: AsyncSession, resource: Resource, key: Mapping[str, Any]) -> list[Version]:
    row = await _current_row(session, resource, key)
    statement = (
        select(Version).where(Version.entity == resource.entity, Version.entity_id == row.id).order_by(Version.version)
    )
    return list((await session.execute(statement)).scalars())


async def list_records(
    session: AsyncSession,
    resource: Resource,
    filters: Mapping[str, Any],
    page: PageParams,
    *,
    as_of: date | None = None,
    known_at: datetime | None = None,
) -> Page[Any]:
    after = decode_cursor(resource.plural, page.cursor) if page.cursor else 0
    active = {name: value for name, value in filters.items() if value is not None}
    specs = {spec.name: spec for spec in resource.filters}
    table: Any = resource.table
    if as_of is None and known_at is None:
        statement = select(table).where(table.id > after)
        for name, value in active.items():
            statement = statement.where(specs[name].row_clause(table, value))
        rows = list((await session.execute(statement.order_by(table.id).limit(page.limit + 1))).scalars())
        items = [
            (
                row.id,
                _read(
                    resource,
                    _row_data(resource, row),
                    _row_keys(resource, row),
                    {"version": row.version, "valid_from": row.valid_from, "recorded_at": row.updated_at},
                ),
            )
            for row in rows
        ]
    else:
        day = as_of or today()
        conditions = [Version.entity == resource.entity, Version.valid_from <= day, Version.entity_id > after]
        if known_at is not None:
            conditions.append(Version.recorded_at <= known_at)
        latest = (
            select(Version)
            .where(*conditions)
            .ext(distinct_on(Version.entity_id))
            .order_by(Version.entity_id, Version.valid_from.desc(), Version.version.desc())
            .subquery("snap")
        )
        statement = select(latest, table).join(table, table.id == latest.c.entity_id)
        for name, value in active.items():
            statement = statement.where(specs[name].snapshot_clause(latest.c.data, value))
        statement = statement.order_by(latest.c.entity_id).limit(page.limit + 1)
        result = (await session.execute(statement)).all()
        items = [
            (
                record.entity_id,
                _read(
                    resource,
                    record.data,
                    _row_keys(resource, record[-1]),
                    {"version": record.version, "valid_from": record.valid_from, "recorded_at": record.recorded_at},
                ),
            )
            for record in result
        ]
    page_of_pairs = make_page(resource.plural, items, page.limit, lambda item: item[0])
    return Page[Any](items=[item for _, item in page_of_pairs.items], next_cursor=page_of_pairs.next_cursor)


# --- bulk upsert (imports) -------------------------------------------------------------------


@dataclass
class UpsertOutcome:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


async def lock_for_import(session: AsyncSession, resource: Resource) -> None:
    """Serialise writers of this table for the import (readers are not blocked)."""
    table_name = resource.table.__table__.fullname  # type: ignore[attr-defined]
    await session.execute(text(f"LOCK TABLE {table_name} IN SHARE ROW EXCLUSIVE MODE"))


async def _histories(session: AsyncSession, resource: Resource, entity_ids: Sequence[int]) -> dict[int, list[Version]]:
    """Every version of these records, oldest first, by record."""
    result: dict[int, list[Version]] = {}
    if not entity_ids:
        return result
    statement = (
        select(Version)
        .where(Version.entity == resource.entity, Version.entity_id.in_(entity_ids))
        .order_by(Version.entity_id, Version.valid_from, Version.version)
    )
    for version in (await session.execute(statement)).scalars():
        result.setdefault(version.entity_id, []).append(version)
    return result


def _in_effect(versions: Sequence[Version], day: date) -> dict[str, Any] | None:
    """The snapshot in effect on `day` from versions sorted by (valid_from, version)."""
    current: dict[str, Any] | None = None
    for version in versions:
        if version.valid_from > day:
            break
        current = version.data
    return current


async def upsert_states(
    session: AsyncSession,
    resource: Resource,
    rows: Sequence[tuple[BaseModel, date]],
) -> UpsertOutcome:
    """Upsert full states by natural key: new → created, same → unchanged, different → new version."""
    outcome = UpsertOutcome()
    if not rows:
        return outcome
    table: Any = resource.table
    unique = resource.unique_fields
    first_key = getattr(table, unique[0])
    wanted = list({getattr(state, unique[0]) for state, _ in rows})
    existing = {
        tuple(getattr(row, name) for name in unique): row
        for row in (await session.execute(select(table).where(first_key.in_(wanted)))).scalars()
    }
    history = await _histories(session, resource, [row.id for row in existing.values()])
    new: list[tuple[BaseModel, date]] = []
    changed: list[tuple[Any, BaseModel, date]] = []
    for state, effective_from in rows:
        row = existing.get(tuple(getattr(state, name) for name in unique))
        if row is None:
            new.append((state, effective_from))
        elif _snapshot(state) == _in_effect(history.get(row.id, []), effective_from):
            outcome.unchanged += 1  # the same fact on the same date: idempotent
        else:
            changed.append((row, state, effective_from))

    versions: list[dict[str, Any]] = []
    events: list[NewEvent] = []
    if new:
        inserted = (
            await session.execute(
                insert(table).returning(
                    table.id,
                    *(getattr(table, column) for column in resource.row_keys.values()),
                    sort_by_parameter_order=True,
                ),
                [{**resource.columns(state), "version": 1, "valid_from": day} for state, day in new],
            )
        ).all()
        for created, (state, day) in zip(inserted, new, strict=True):
            versions.append(_version_row(resource, created.id, 1, day, state))
            events.append(record_event(resource, "created", _snapshot(state), _row_keys(resource, created), 1, day))
        outcome.created = len(new)
    if changed:
        moves: list[dict[str, Any]] = []
        now = datetime.now(SHENZHEN)
        for row, state, day in changed:
            version = max((v.version for v in history.get(row.id, [])), default=0) + 1
            versions.append(_version_row(resource, row.id, version, day, state))
            events.append(record_event(resource, "changed", _snapshot(state), _row_keys(resource, row), version, day))
            if day >= row.valid_from:
                moves.append(
                    {"id": row.id, **resource.columns(state), "version": version, "valid_from": day, "updated_at": now}
                )
        if moves:
            await session.execute(update(table), moves)
        outcome.updated = len(changed)
    if versions:
        await session.execute(insert(Version), versions)
    await emit_many(session, events)
    return outcome
