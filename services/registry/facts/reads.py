"""The as-of reads of `POST /v1/facts`, as fixed SQL on the session's own connection (issue #16).

They answer what `records.find_record` and `records.all_records` answer as of a date, record for record and
in the same order, but each is one prepared statement, written once: the records of one kind by many keys
in one statement (`= ANY($n)`, the current row and its snapshot together, LATERAL), and a kind's list as of
a date as `list_records` reads it (each record's latest snapshot on the date, then the filters on that
snapshot), without the paging. They run in the caller's transaction (its read-only snapshot) through the
asyncpg connection under the session, whose JSONB codec (SQLAlchemy's) takes and gives JSON text/objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from asyncpg import Record

from shared.db import Connection

from ..kinds import Resource
from ..states import read_payload

#: a record of `table` by its key column, with its latest snapshot on a date ($1 entity, $2 date, $3 keys)
_BY_KEYS = """
SELECT t.{key} AS key, {uid} AS uid, s.data, s.version, s.valid_from, s.recorded_at
FROM registry.{table} t
CROSS JOIN LATERAL (
    SELECT v.data, v.version, v.valid_from, v.recorded_at FROM registry.versions v
    WHERE v.entity = $1 AND v.entity_id = t.id AND v.valid_from <= $2
    ORDER BY v.valid_from DESC, v.version DESC LIMIT 1
) s
WHERE t.{key} = ANY($3::{type}[])
"""

#: every record of `table` as of a date ($1 entity, $2 date), its snapshot filtered by JSON containment
_AS_OF = """
SELECT {uid} AS uid, snap.data, snap.version, snap.valid_from, snap.recorded_at
FROM (
    SELECT DISTINCT ON (v.entity_id) v.entity_id, v.data, v.version, v.valid_from, v.recorded_at
    FROM registry.versions v WHERE v.entity = $1 AND v.valid_from <= $2
    ORDER BY v.entity_id, v.valid_from DESC, v.version DESC
) snap JOIN registry.{table} t ON t.id = snap.entity_id
{where}
ORDER BY snap.entity_id
"""

#: the key column of a kind's current row, and its SQL type (the kinds `/v1/facts` reads by key)
_KEYS = {"organisation": ("credit_code", "text"), "vendor": ("credit_code", "text"), "recognition": ("uid", "uuid")}
_KEYS |= {"model": ("uid", "uuid")}


def _table(resource: Resource) -> str:
    return str(resource.table.__tablename__)


def _uid(resource: Resource) -> str:
    return "t.uid" if resource.row_keys else "NULL::uuid"


def _payload(resource: Resource, row: Record) -> Any:
    data = row["data"]
    if isinstance(data, str):  # a connection without SQLAlchemy's JSONB codec
        data = json.loads(data)
    keys = dict.fromkeys(resource.row_keys, row["uid"])
    meta = {"version": row["version"], "valid_from": row["valid_from"], "recorded_at": row["recorded_at"]}
    return read_payload(resource, data, keys, meta)


async def find_by_keys(connection: Connection, resource: Resource, keys: Iterable[Any], day: date) -> dict[str, Any]:
    """`find_record(resource, {key: k}, as_of=day)` for every k at once: str(k) → the record (absent: none)."""
    column, sql_type = _KEYS[resource.entity]
    sql = _BY_KEYS.format(key=column, uid=_uid(resource), table=_table(resource), type=sql_type)
    rows = await connection.fetch(sql, resource.entity, day, list(keys))
    return {str(row["key"]): _payload(resource, row) for row in rows}


def _contains(fragment: Mapping[str, Any]) -> str:
    return json.dumps(fragment, default=str)


async def all_as_of(
    connection: Connection, resource: Resource, day: date, *conditions: Sequence[Mapping[str, Any]]
) -> list[Any]:
    """`all_records(resource, filters, as_of=day)`: each condition is a list of JSON fragments, one of which
    the snapshot contains (`Filter.snapshot_clause`); every condition holds."""
    clauses: list[str] = []
    arguments: list[Any] = [resource.entity, day]
    for alternatives in conditions:
        terms = []
        for fragment in alternatives:
            arguments.append(_contains(fragment))
            terms.append(f"snap.data @> ${len(arguments)}::jsonb")
        clauses.append("(" + " OR ".join(terms) + ")")
    where = "WHERE " + " AND ".join(clauses) if clauses else ""
    sql = _AS_OF.format(uid=_uid(resource), table=_table(resource), where=where)
    return [_payload(resource, row) for row in await connection.fetch(sql, *arguments)]
