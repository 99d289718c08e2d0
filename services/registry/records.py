"""Versioned records: one mechanism for every kind of registry fact.

A `Resource` (`kinds.py`) describes one kind of record (its table, payload models, natural
key, filters, references). The functions below create, update, read (now or as of a date)
and list any resource (`upserts.py` bulk-upserts them for imports), always writing the
current row and an append-only history snapshot in the same transaction. They only
`flush()`: the request commits.

As-of semantics: the snapshot that applies on date D is the one with the latest
`valid_from <= D` (ties: the later version). A back-dated change applies from its date
until the next recorded change. `known_at` additionally ignores snapshots recorded
after that instant ("what did the registry say at the time").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import ProblemError
from shared.feed.outbox import emit_many
from shared.pagination import MAX_LIMIT, Page, PageParams, decode_cursor, make_page

from .errors import BEFORE_RECORD_EXISTED, CONCURRENT_CHANGE, RECORD_EXISTS, RECORD_NOT_FOUND, RECORD_NOT_FOUND_AS_OF
from .events import record_event
from .kinds import Resource
from .models import Version
from .states import (
    build_state,
    check_effective,
    raise_on_missing_references,
    read_payload,
    row_data,
    row_keys,
    snapshot_of,
    today,
    version_row,
)


async def create_record(session: AsyncSession, resource: Resource, payload: BaseModel) -> Any:
    given = payload.model_dump(exclude={"effective_from"}, exclude_unset=False)
    state = build_state(resource, given)
    effective_from: date = getattr(payload, "effective_from", None) or resource.natural_date(state) or today()
    check_effective(effective_from)
    await raise_on_missing_references(session, resource, state)
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
    version = version_row(resource, row.id, 1, effective_from, state)
    recorded_at = (await session.execute(insert(Version).values(**version).returning(Version.recorded_at))).scalar_one()
    event = record_event(resource, "created", snapshot_of(state), row_keys(resource, row), 1, effective_from)
    await emit_many(session, [event])
    return read_payload(
        resource,
        snapshot_of(state),
        row_keys(resource, row),
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


async def find_record(
    session: AsyncSession,
    resource: Resource,
    key: Mapping[str, Any],
    *,
    as_of: date | None = None,
    known_at: datetime | None = None,
) -> Any | None:
    """A record now (or as of a date, as known at an instant); None when there was none."""
    row: Any = (await session.execute(select(resource.table).where(resource.key_clause(key)))).scalar_one_or_none()
    if row is None:
        return None
    if as_of is None and known_at is None:
        return read_payload(
            resource,
            row_data(resource, row),
            row_keys(resource, row),
            {"version": row.version, "valid_from": row.valid_from, "recorded_at": row.updated_at},
        )
    day = as_of or today()
    snapshot = (await session.execute(_snapshot_at(resource, row.id, day, known_at))).scalar_one_or_none()
    if snapshot is None:
        return None
    return read_payload(
        resource,
        snapshot.data,
        row_keys(resource, row),
        {"version": snapshot.version, "valid_from": snapshot.valid_from, "recorded_at": snapshot.recorded_at},
    )


async def get_record(
    session: AsyncSession,
    resource: Resource,
    key: Mapping[str, Any],
    *,
    as_of: date | None = None,
    known_at: datetime | None = None,
) -> Any:
    """`find_record`, or 404: no such record, or none yet as of the date."""
    found = await find_record(session, resource, key, as_of=as_of, known_at=known_at)
    if found is not None:
        return found
    await _current_row(session, resource, key)  # no such record at all: RECORD_NOT_FOUND
    day = as_of or today()
    raise ProblemError(
        RECORD_NOT_FOUND_AS_OF,
        entity=resource.entity,
        entity_zh=resource.entity_zh,
        key=resource.key_label(key),
        as_of=day.isoformat(),
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
            .values(**version_row(resource, row.id, version, effective_from, state))
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
    event = record_event(resource, "changed", snapshot_of(state), row_keys(resource, row), version, effective_from)
    await emit_many(session, [event])
    return version, recorded_at


async def update_record(session: AsyncSession, resource: Resource, key: Mapping[str, Any], patch: BaseModel) -> Any:
    row = await _current_row(session, resource, key, lock=True)
    effective_from: date = getattr(patch, "effective_from", None) or today()
    check_effective(effective_from)
    base = (await session.execute(_snapshot_at(resource, row.id, effective_from, None))).scalar_one_or_none()
    if base is None:
        first = await session.scalar(
            select(func.min(Version.valid_from)).where(Version.entity == resource.entity, Version.entity_id == row.id)
        )
        raise ProblemError(BEFORE_RECORD_EXISTED, effective_from=effective_from.isoformat(), first=str(first))
    changes = patch.model_dump(exclude_unset=True, exclude={"effective_from"})
    state = build_state(resource, {**base.data, **changes})
    if snapshot_of(state) == base.data:  # nothing changes: no new version
        return await get_record(session, resource, key, as_of=effective_from)
    await raise_on_missing_references(session, resource, state)
    version, recorded_at = await _apply_version(session, resource, row, state, effective_from)
    return read_payload(
        resource,
        snapshot_of(state),
        row_keys(resource, row),
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
                read_payload(
                    resource,
                    row_data(resource, row),
                    row_keys(resource, row),
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
                read_payload(
                    resource,
                    record.data,
                    row_keys(resource, record[-1]),
                    {"version": record.version, "valid_from": record.valid_from, "recorded_at": record.recorded_at},
                ),
            )
            for record in result
        ]
    page_of_pairs = make_page(resource.plural, items, page.limit, lambda item: item[0])
    return Page[Any](items=[item for _, item in page_of_pairs.items], next_cursor=page_of_pairs.next_cursor)


async def all_records(
    session: AsyncSession,
    resource: Resource,
    filters: Mapping[str, Any],
    *,
    as_of: date | None = None,
    known_at: datetime | None = None,
) -> list[Any]:
    """Every record `list_records` pages through, in order (the pages read in the caller's transaction)."""
    items: list[Any] = []
    cursor: str | None = None
    while True:
        page = await list_records(
            session, resource, filters, PageParams(cursor=cursor, limit=MAX_LIMIT), as_of=as_of, known_at=known_at
        )
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor
