"""Kinds of record: how each kind of registry fact is described, once.

A `Resource` describes one kind of record (its table, payload models, natural key, filters,
references); `resources.py` lists them, and `records.py` and `upserts.py` serve every one of
them with the same code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from .models import Base


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
