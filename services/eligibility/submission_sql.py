"""The statements of a submission (`service.submit`), as fixed SQL on the session's own connection (issue #16).

They read and write in the request's transaction as prepared statements written once (they were SQLAlchemy
statements in `repository.py`): no SQL construction, cache key or ORM loading per request. The
caller passes the asyncpg connection under its session (`shared.db.raw_connection`) once the session has
begun the transaction (its first statement, `begin`: the applicant's lock, runs through the session). Four round
trips in all (issue #16): `begin`, the claims (with the prior awards for measures with annual caps, one more),
the rows with their events, the commit; the parameter versions only when they changed. JSONB goes
through SQLAlchemy's codec on that connection: JSON text in, Python objects out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Connection
from shared.feed.outbox import OUTBOX_INSERT, NewEvent, asyncpg_arrays, outbox_rows

from .facts import ClaimHolder, PriorAward
from .models import Application, Decision, ParameterVersion
from .repository import STANDING

_PARAMETER_VERSIONS = "SELECT * FROM eligibility.parameter_versions ORDER BY id"

#: standing decisions of this applicant and measure, with the amount of their latest approving review
_PRIOR_AWARDS = """
SELECT d.id, a.benefit_year, d.amount_fen, d.components, d.basis, (
    SELECT r.amount_fen FROM eligibility.reviews r
    WHERE r.application_id = a.id AND r.step = 'approval' AND r.verdict = 'approve'
    ORDER BY r.created_at DESC, r.id DESC LIMIT 1
) AS approved
FROM eligibility.decisions d JOIN eligibility.applications a ON a.current_decision_id = d.id
WHERE a.applicant = $1 AND a.measure = $2 AND a.status = ANY($3::text[])
  AND d.outcome IN ('eligible', 'needs_review')
"""

#: the claim keys held by an application still in review (pending), then by an award in the register (awarded)
_CLAIM_HOLDERS = """
SELECT * FROM (
    SELECT 'pending' AS status, k.key, a.id, a.seq AS n FROM eligibility.applications a
    JOIN eligibility.decisions d ON d.id = a.current_decision_id
    CROSS JOIN LATERAL unnest(d.claims) AS k(key)
    WHERE a.status IN ('in_review', 'reviewed') AND d.claims && $1::text[] AND k.key = ANY($1::text[])
    UNION ALL
    SELECT 'awarded', claim_key, application_id, id FROM eligibility.awards WHERE claim_key = ANY($1::text[])
) held
ORDER BY status DESC, n
"""

#: the submission's first statement: the lock, the transaction's clock and the parameter versions' fingerprint
#: (the table is append-only, its rows never changed or deleted, and its ids never reused: the same count, largest
#: and sum of ids is the same set of rows)
_BEGIN = text(
    "SELECT pg_advisory_xact_lock(hashtext(:key)) AS locked, now() AS at, v.n, v.top, v.total FROM ("
    "SELECT count(*) AS n, coalesce(max(id), 0) AS top, coalesce(sum(id), 0)::bigint AS total "
    "FROM eligibility.parameter_versions) v"
)


@dataclass(frozen=True)
class Start:
    """What a submission's first statement answers besides taking the lock."""

    at: datetime
    versions: tuple[int, int, int]


#: Filled in by PostgreSQL when a submission's rows are inserted (the identity)
_GENERATED = frozenset({"seq"})


def _columns(table: Table) -> tuple[tuple[str, ...], frozenset[str]]:
    names = tuple(column.key for column in table.columns if column.key not in _GENERATED)
    return names, frozenset(column.key for column in table.columns if isinstance(column.type, JSONB))


_APPLICATION, _APPLICATION_JSON = _columns(Application.__table__)  # type: ignore[arg-type]
_DECISION, _DECISION_JSON = _columns(Decision.__table__)  # type: ignore[arg-type]


def _values(names: Sequence[str], first: int) -> str:
    return ", ".join(f"${first + n}" for n in range(len(names)))


#: a submission's two rows and its events in one statement (the outbox's arrays follow the rows' columns)
_INSERT_SUBMISSION = f"""
WITH application AS (
    INSERT INTO eligibility.applications ({", ".join(_APPLICATION)}) VALUES ({_values(_APPLICATION, 1)})
), decision AS (
    INSERT INTO eligibility.decisions ({", ".join(_DECISION)}) VALUES ({_values(_DECISION, 1 + len(_APPLICATION))})
), events AS (
    {OUTBOX_INSERT.format(schema="eligibility", **asyncpg_arrays(1 + len(_APPLICATION) + len(_DECISION)))}
)
SELECT 1
"""


def _arguments(entity: Application | Decision, names: Sequence[str], as_json: frozenset[str]) -> list[Any]:
    values = [getattr(entity, name) for name in names]
    return [json.dumps(value) if name in as_json else value for name, value in zip(names, values, strict=True)]


async def insert_submission(
    connection: Connection, application: Application, decision: Decision, events: Sequence[NewEvent]
) -> None:
    """The application, its decision (with the trace) and its events in one statement: inserts of one command, so
    the decision's foreign key to the application is checked when both rows are there. The clock's columns are
    the caller's (`Start.at`, the transaction's `now()`), as the events already say."""
    arguments = _arguments(application, _APPLICATION, _APPLICATION_JSON)
    arguments += _arguments(decision, _DECISION, _DECISION_JSON)
    schema, columns = outbox_rows(events)
    if schema != "eligibility":
        raise ValueError(f"a submission writes eligibility's events, not {schema}'s")
    await connection.execute(_INSERT_SUBMISSION, *arguments, *columns)


async def begin(session: AsyncSession, applicant: str, measure: str) -> Start:
    """Begin the submission's transaction with the lock that serialises evaluations of one applicant and measure
    (so annual caps see each other); the same round trip answers the transaction's clock (`now()`: what the rows
    `insert_submission` writes are stamped with) and the parameter versions' fingerprint."""
    row = (await session.execute(_BEGIN, {"key": f"eligibility:{applicant}:{measure}"})).one()
    return Start(at=row.at, versions=(row.n, row.top, row.total))


class ParameterVersions:
    """The parameter versions a process read last (`repository.parameter_versions`, unattached rows), under their
    fingerprint: a submission reads them again only when the fingerprint its first statement saw differs."""

    def __init__(self) -> None:
        self._seen: tuple[tuple[int, int, int], list[ParameterVersion]] | None = None

    async def read(self, connection: Connection, start: Start) -> list[ParameterVersion]:
        if self._seen is None or self._seen[0] != start.versions:
            rows = [ParameterVersion(**dict(row)) for row in await connection.fetch(_PARAMETER_VERSIONS)]
            ids = [row.id for row in rows]
            self._seen = ((len(ids), max(ids, default=0), sum(ids)), rows)
        return self._seen[1]


async def prior_awards(connection: Connection, applicant: str, measure: str) -> list[PriorAward]:
    """Decisions for this applicant and measure that still stand (not rejected, not ineligible)."""
    awards: list[PriorAward] = []
    for decision_id, year, amount, components, basis, approved in await connection.fetch(
        _PRIOR_AWARDS, applicant, measure, list(STANDING)
    ):
        value = approved if approved is not None else amount
        if value:
            awards.append(
                PriorAward(decision_id=decision_id, year=year, amount_fen=value, components=components, basis=basis)
            )
    return awards


async def claim_holders(connection: Connection, keys: Sequence[str]) -> dict[str, ClaimHolder]:
    """Who holds each key already: an award in the register, else an application still in review (one statement:
    the pending rows first, each key's first application in submission order; an award replaces them)."""
    if not keys:
        return {}
    holders: dict[str, ClaimHolder] = {}
    for status, claim_key, application_id, _ in await connection.fetch(_CLAIM_HOLDERS, list(keys)):
        if status == "awarded":
            holders[claim_key] = ClaimHolder(application_id=str(application_id), status="awarded")
        else:
            holders.setdefault(claim_key, ClaimHolder(application_id=str(application_id), status="pending"))
    return holders
