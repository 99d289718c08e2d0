"""The as-of reads of `POST /v1/facts`, as one call of `registry.facts()` on the session's own connection (#16).

They answer what `records.find_record` and `records.all_records` answer as of a date, record for record and
in the same order: the records of one kind by many keys (the current row and its latest snapshot on the day), and
a kind's list as of a date as `list_records` reads it (each record's latest snapshot on the date, then the filters
on that snapshot), without the paging. All of a call's reads, for all of its questions, are parts of one statement
(the function's, registry migration 0013), which PostgreSQL answers from one snapshot: the organisation, its
revenues and a vendor cannot come from either side of an import, with no transaction held around them. Its text
is the same for every call, and PostgreSQL plans it once per connection, for any values (it planned it again on
every call: ~1.1 ms of its CPU, five times the reading). Through the asyncpg connection under the session, whose
JSONB codec (SQLAlchemy's) takes and gives JSON text/objects."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from asyncpg import Record

from shared.db import Connection

from ..kinds import Resource
from ..resources import AFFILIATIONS, FILINGS, MODELS, ORGANISATIONS, RECOGNITIONS, REVENUES, VENDORS
from ..states import read_payload


@dataclass(frozen=True)
class _Part:
    """One read of `registry.facts()`: by keys (`find_record` for each key), or a kind's list as of a day
    (`all_records`), about a value (`about`: the organisation's credit code, the model's id) or not."""

    name: str
    resource: Resource
    by_keys: bool = False
    about: str | None = None


#: the reads of `registry.facts()` (registry migration 0013), in the order of its arguments (three arrays each:
#: question numbers, the keys or the value asked about, the days) and of its `part` numbers. The conditions of a
#: list are the record lists' filters (`resources.py`) on the snapshot, as there: revenues and recognitions of the
#: credit code; affiliations involving it on either side, active; filings of the model; every model
PARTS: tuple[_Part, ...] = (
    _Part("organisation", ORGANISATIONS, by_keys=True),
    _Part("revenues", REVENUES, about="credit_code"),
    _Part("affiliations", AFFILIATIONS, about="credit_code"),
    _Part("vendors", VENDORS, by_keys=True),
    _Part("recognitions", RECOGNITIONS, about="credit_code"),
    _Part("recognitions_by_id", RECOGNITIONS, by_keys=True),
    _Part("model", MODELS, by_keys=True),
    _Part("filings", FILINGS, about="model_id"),
    _Part("filings_on_as_of", FILINGS, about="model_id"),
    _Part("ranked_models", MODELS),
)
_NUMBER = {part.name: n for n, part in enumerate(PARTS)}

#: the one statement of every facts call: each part's rows in question order, then in the part's own order
STATEMENT = (
    f"SELECT * FROM registry.facts({', '.join(f'${n}' for n in range(1, 3 * len(PARTS) + 1))}) ORDER BY part, q, n"
)


def _payload(resource: Resource, row: Record) -> Any:
    data = row["data"]
    if isinstance(data, str):  # a connection without SQLAlchemy's JSONB codec
        data = json.loads(data)
    keys = dict.fromkeys(resource.row_keys, row["uid"])
    meta = {"version": row["version"], "valid_from": row["valid_from"], "recorded_at": row["recorded_at"]}
    return read_payload(resource, data, keys, meta)


class Reads:
    """The reads of one `/v1/facts` call (or of several questions of `/v1/facts/batch`), sent as ONE statement: a
    call of `registry.facts()`, whose parts (`PARTS`) are each driven by arrays of what the questions ask, each row
    tagged with its part and question and numbered in its order. One round trip, one plan per connection, and one
    snapshot without a transaction around it.

    `by_keys` answers `find_record(resource, {key: k}, as_of=day)` for every k at once (str(k) → the record;
    absent: none); `as_of` answers `all_records(resource, filters, as_of=day)` with the part's filters about
    `value` (`PARTS`)."""

    def __init__(self) -> None:
        self._arrays: list[tuple[list[int], list[str | None], list[date]]] = [([], [], []) for _ in PARTS]

    def _ask(self, question: int, name: str, value: str | None, day: date) -> None:
        numbers, values, days = self._arrays[_NUMBER[name]]
        numbers.append(question)
        values.append(value)
        days.append(day)

    def by_keys(self, question: int, name: str, keys: Iterable[Any], day: date) -> None:
        if not PARTS[_NUMBER[name]].by_keys:
            raise ValueError(f"{name} is not read by key")
        for key in keys:
            self._ask(question, name, str(key), day)

    def as_of(self, question: int, name: str, day: date, value: Any | None = None) -> None:
        part = PARTS[_NUMBER[name]]
        if part.by_keys or (value is None) != (part.about is None):
            raise ValueError(f"{name} is read as of a day, about {part.about or 'nothing'}")
        self._ask(question, name, None if value is None else str(value), day)

    async def fetch(self, connection: Connection) -> dict[tuple[int, str], Answer]:
        """Each question's answer to each part it asked, by (question, part): its records in order, and by key for
        the `by_keys` parts."""
        answers: dict[tuple[int, str], Answer] = {}
        for part, (numbers, _, _) in zip(PARTS, self._arrays, strict=True):
            for question in numbers:
                answers.setdefault((question, part.name), Answer())
        if not answers:
            return answers
        arguments = [array for arrays in self._arrays for array in arrays]
        for row in await connection.fetch(STATEMENT, *arguments):
            part = PARTS[row["part"]]
            payload = _payload(part.resource, row)
            answer = answers[(row["q"], part.name)]
            answer.records.append(payload)
            if row["key"] is not None:
                answer.by_key[row["key"]] = payload
        return answers


class Answer:
    def __init__(self) -> None:
        self.records: list[Any] = []
        self.by_key: dict[str, Any] = {}
