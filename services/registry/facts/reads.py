"""The as-of reads of `POST /v1/facts`, as one SQL statement on the session's own connection (issue #16).

They answer what `records.find_record` and `records.all_records` answer as of a date, record for record and
in the same order: the records of one kind by many keys (`= ANY($n)`, the current row and its snapshot
together, LATERAL), and a kind's list as of a date as `list_records` reads it (each record's latest snapshot on
the date, then the filters on that snapshot), without the paging. All of a call's reads are parts of one
statement, which PostgreSQL answers from one snapshot: the organisation, its revenues and a vendor cannot come
from either side of an import, with no transaction held around them. Through the asyncpg connection under the
session, whose JSONB codec (SQLAlchemy's) takes and gives JSON text/objects.
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

#: a record of `table` by its key column, with its latest snapshot on a date ({entity}, {day}, {keys}: parameters)
_BY_KEYS = """
SELECT t.{key}::text AS key, {uid} AS uid, s.data, s.version, s.valid_from, s.recorded_at, 0::bigint AS n
FROM registry.{table} t
CROSS JOIN LATERAL (
    SELECT v.data, v.version, v.valid_from, v.recorded_at FROM registry.versions v
    WHERE v.entity = {entity} AND v.entity_id = t.id AND v.valid_from <= {day}
    ORDER BY v.valid_from DESC, v.version DESC LIMIT 1
) s
WHERE t.{key} = ANY({keys}::{type}[])
"""

#: every record of `table` as of a date, its snapshot filtered by JSON containment, numbered in id order. With a
#: filter, only the records of which some snapshot matches its first condition are looked at (`{candidates}`, through
#: the index on the snapshots' content): a record whose latest snapshot on the date matches is among them
_AS_OF = """
SELECT NULL::text AS key, {uid} AS uid, snap.data, snap.version, snap.valid_from, snap.recorded_at,
       row_number() OVER (ORDER BY snap.entity_id) AS n
FROM (
    SELECT DISTINCT ON (v.entity_id) v.entity_id, v.data, v.version, v.valid_from, v.recorded_at
    FROM registry.versions v WHERE v.entity = {entity} AND v.valid_from <= {day} {candidates}
    ORDER BY v.entity_id, v.valid_from DESC, v.version DESC
) snap JOIN registry.{table} t ON t.id = snap.entity_id
{where}
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


def _contains(fragment: Mapping[str, Any]) -> str:
    return json.dumps(fragment, default=str)


class Reads:
    """The reads of one `/v1/facts` call, sent as ONE statement (a UNION ALL of one part per read, each row tagged
    with its part and numbered in its order): one round trip, and one snapshot without a transaction around it.

    `by_keys` answers `find_record(resource, {key: k}, as_of=day)` for every k at once (str(k) → the record;
    absent: none); `as_of` answers `all_records(resource, filters, as_of=day)`, where each condition is a list
    of JSON fragments one of which the snapshot contains (`Filter.snapshot_clause`) and every condition holds."""

    def __init__(self) -> None:
        self._parts: list[tuple[str, Resource]] = []
        self._sql: list[str] = []
        self._arguments: list[Any] = []

    def _argument(self, value: Any) -> str:
        self._arguments.append(value)
        return f"${len(self._arguments)}"

    def _add(self, name: str, resource: Resource, sql: str) -> None:
        self._sql.append(f"SELECT {len(self._parts)} AS part, q.* FROM ({sql}) q")
        self._parts.append((name, resource))

    def by_keys(self, name: str, resource: Resource, keys: Iterable[Any], day: date) -> None:
        column, sql_type = _KEYS[resource.entity]
        entity, on, wanted = self._argument(resource.entity), self._argument(day), self._argument(list(keys))
        sql = _BY_KEYS.format(
            key=column, uid=_uid(resource), table=_table(resource), type=sql_type, entity=entity, day=on, keys=wanted
        )
        self._add(name, resource, sql)

    def as_of(self, name: str, resource: Resource, day: date, *conditions: Sequence[Mapping[str, Any]]) -> None:
        entity, on = self._argument(resource.entity), self._argument(day)
        fragments = [[self._argument(_contains(f)) for f in alternatives] for alternatives in conditions]
        clauses = [
            "(" + " OR ".join(f"snap.data @> {f}::jsonb" for f in alternatives) + ")" for alternatives in fragments
        ]
        where = "WHERE " + " AND ".join(clauses) if clauses else ""
        candidates = ""
        if fragments:
            matching = " OR ".join(f"c.data @> {f}::jsonb" for f in fragments[0])
            candidates = (
                f"AND v.entity_id IN (SELECT c.entity_id FROM registry.versions c "
                f"WHERE c.entity = {entity} AND ({matching}))"
            )
        sql = _AS_OF.format(
            uid=_uid(resource), table=_table(resource), entity=entity, day=on, candidates=candidates, where=where
        )
        self._add(name, resource, sql)

    async def fetch(self, connection: Connection) -> dict[str, Answer]:
        """Each part's answer by name: its records in order, and by key for the `by_keys` parts."""
        answers = {name: Answer() for name, _ in self._parts}
        if not self._parts:
            return answers
        statement = "\nUNION ALL\n".join(self._sql) + "\nORDER BY part, n"
        for row in await connection.fetch(statement, *self._arguments):
            name, resource = self._parts[row["part"]]
            payload = _payload(resource, row)
            answers[name].records.append(payload)
            if row["key"] is not None:
                answers[name].by_key[row["key"]] = payload
        return answers


class Answer:
    def __init__(self) -> None:
        self.records: list[Any] = []
        self.by_key: dict[str, Any] = {}
