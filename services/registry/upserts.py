"""Bulk upsert by natural key, for imports: new → created, the same → unchanged, different → a new version.

As `records.py` does for one record: the current row moves only when the new version is the
latest in effect, every version is an append-only snapshot, and an event is written per
version, all in the import's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.feed.outbox import NewEvent, emit_many
from shared.instants import SHENZHEN

from .events import record_event
from .kinds import Resource
from .models import Version
from .states import row_keys, snapshot_of, version_row


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
        elif snapshot_of(state) == _in_effect(history.get(row.id, []), effective_from):
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
            versions.append(version_row(resource, created.id, 1, day, state))
            events.append(record_event(resource, "created", snapshot_of(state), row_keys(resource, created), 1, day))
        outcome.created = len(new)
    if changed:
        moves: list[dict[str, Any]] = []
        now = datetime.now(SHENZHEN)
        for row, state, day in changed:
            version = max((v.version for v in history.get(row.id, [])), default=0) + 1
            versions.append(version_row(resource, row.id, version, day, state))
            events.append(record_event(resource, "changed", snapshot_of(state), row_keys(resource, row), version, day))
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
