"""The statements of a submission (`service.submit`), as fixed SQL on the connection under the request's session.

Two round trips, both in autocommit (issue #16): `read` (one statement, one snapshot: the clock, the parameter
versions' fingerprint, the newest application of the applicant and measure, who holds the claim keys, the standing
decisions), then `insert_submission` (one statement: the application, its decision with the trace, and its events).
Submissions of one applicant and measure still see each other (annual caps, the year's base, keys in review): the
insert first calls `eligibility.submission_gate` (migration 0017), which takes the applicant's lock for the measure
and writes nothing if an application came in since the read; the service then reads and evaluates again. No lock
or transaction is held while the service evaluates, and no BEGIN or COMMIT is sent: each statement is its own
transaction. (Under a session that has begun a transaction — the tests' savepoints — they run in it instead, and
the gate's lock is held until it ends: the same guarantee.) The parameter versions are read again only when they
changed. JSONB goes through SQLAlchemy's codec on that connection: JSON text in, Python objects out.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic_core import to_json
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import Connection
from shared.feed.outbox import OUTBOX_INSERT, NewEvent, asyncpg_arrays, outbox_rows

from .facts import ClaimHolder, PriorAward
from .models import Application, Decision, ParameterVersion
from .repository import STANDING

_PARAMETER_VERSIONS = "SELECT * FROM eligibility.parameter_versions ORDER BY id"

#: The planner settings of the connections these statements run on (`Database(statement_settings=…)`). Each statement
#: is prepared once per connection and, after five executions, runs on a generic plan made from the statistics of
#: that moment and kept until the next ANALYZE of a table it reads. On a database freshly migrated, or grown since
#: autovacuum last analysed it, the tables look nearly empty, and that plan read the whole of `decisions` for the
#: claims and again for the prior awards, per submission, for as long as the connection lived (issue #16: ~0.6 ms
#: of PostgreSQL's CPU per submission at 10,000 decisions, growing with the table). Every statement here reads by
#: key, so they are planned without sequential scans, as the ledger's hot functions are (vouchers migration 0024).
#: Behind PgBouncer no statement is kept (asyncpg's statement cache is off there): each is planned for its own values.
BY_KEY = {"enable_seqscan": "off"}

#: [status, key, application id] for each of the keys `{keys}` held: by an application still in review
#: (pending), by an award in the register (awarded); pending first, in submission order, then awarded. The
#: decisions holding a key are found by their claims' index, then each one's application by its primary key: the
#: lateral subquery is kept as such (OFFSET 0), since the plan made once for any keys (a prepared statement's
#: generic plan) cannot tell how few decisions hold them and otherwise reads every application in review
#: (tests/eligibility/test_submission_plans.py).
_HOLDERS = """
SELECT coalesce(jsonb_agg(jsonb_build_array(h.status, h.key, h.id) ORDER BY h.status DESC, h.n), '[]'::jsonb) FROM (
    SELECT 'pending' AS status, k.key, a.id, a.seq AS n FROM eligibility.decisions d
    CROSS JOIN LATERAL (
        SELECT a.id, a.seq FROM eligibility.applications a
        WHERE a.id = d.application_id AND a.current_decision_id = d.id AND a.status IN ('in_review', 'reviewed')
        OFFSET 0
    ) a
    CROSS JOIN LATERAL unnest(d.claims) AS k(key)
    WHERE d.claims && {keys} AND k.key = ANY({keys})
    UNION ALL
    SELECT 'awarded', w.claim_key, w.application_id, w.id FROM eligibility.awards w WHERE w.claim_key = ANY({keys})
) h
"""

#: standing decisions of applicant $1 and measure $2 (statuses $5), with the amount of their latest approving review
_PRIOR_AWARDS = """
SELECT coalesce(jsonb_agg(jsonb_build_object(
    'decision_id', s.id, 'year', s.benefit_year, 'amount_fen', s.amount_fen, 'components', s.components,
    'basis', s.basis, 'approved', s.approved) ORDER BY s.seq), '[]'::jsonb)
FROM (
    SELECT d.id, a.seq, a.benefit_year, d.amount_fen, d.components, d.basis, (
        SELECT r.amount_fen FROM eligibility.reviews r
        WHERE r.application_id = a.id AND r.step = 'approval' AND r.verdict = 'approve'
        ORDER BY r.created_at DESC, r.id DESC LIMIT 1
    ) AS approved
    FROM eligibility.decisions d JOIN eligibility.applications a ON a.current_decision_id = d.id
    WHERE a.applicant = $1 AND a.measure = $2 AND a.status = ANY($5::text[])
      AND d.outcome IN ('eligible', 'needs_review')
) s
"""

#: what a submission decides on, in one snapshot: applicant $1, measure $2, claim keys $3, prior awards wanted $4
_READ = f"""
SELECT now() AS at,
    (SELECT ARRAY[count(*), coalesce(max(v.id), 0), coalesce(sum(v.id), 0)]::bigint[]
     FROM eligibility.parameter_versions v) AS versions,
    (SELECT coalesce(max(a.seq), 0) FROM eligibility.applications a WHERE a.applicant = $1 AND a.measure = $2) AS last,
    ({_HOLDERS.format(keys="$3::text[]")}) AS holders,
    CASE WHEN $4::boolean THEN ({_PRIOR_AWARDS}) END AS prior
"""

#: the claims read alone (keys computed again after a new parameter version)
_CLAIM_HOLDERS = _HOLDERS.format(keys="$1::text[]")


@dataclass(frozen=True)
class Read:
    """What a submission decides on, read in one snapshot."""

    #: the statement's clock: what the rows `insert_submission` writes are stamped with
    at: datetime
    #: the parameter versions' fingerprint (count, largest and sum of ids: the table is append-only, ids never reused)
    versions: tuple[int, int, int]
    #: the newest application of this applicant and measure (its `seq`; 0: none): what `insert_submission` checks
    last: int
    #: who holds each of the claim keys asked for
    claimed: dict[str, ClaimHolder]
    #: the standing decisions of this applicant and measure (asked for only by measures with annual caps)
    prior_awards: list[PriorAward]


@dataclass(frozen=True, slots=True)
class NewApplication:
    """An `applications` row as a submission writes it (by `insert_submission`, fixed SQL, not the ORM: an ORM
    object costs ~45 µs to build and its attributes more to read, on the path issue #16 measures). One field per
    column but `seq` (tests/eligibility/test_submission_rows.py keeps them so)."""

    id: uuid.UUID
    measure: str
    applicant: str
    as_of: date
    as_of_reason: str | None
    as_of_recorded_by: str | None
    benefit_year: int
    evidence: dict[str, Any]
    submitted_by: str | None
    submitted_at: datetime
    status: str
    priority: int
    current_decision_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class NewDecision:
    """A `decisions` row as a submission writes it (an automatic decision; see `NewApplication`)."""

    id: uuid.UUID
    application_id: uuid.UUID
    kind: str
    outcome: str
    amount_fen: int | None
    failures: list[dict[str, Any]]
    review_reasons: list[dict[str, Any]]
    components: dict[str, int]
    trace: list[dict[str, Any]]
    facts: dict[str, Any]
    policy_version: str
    parameters_digest: str
    engine_version: str
    decided_at: datetime
    client_id: str | None
    request_id: str | None
    claims: list[str]
    caps: list[dict[str, Any]]
    basis: dict[str, Any]
    #: an officer's (A1 decisions only)
    decided_by: str | None = None
    reason: str | None = None


#: Filled in by PostgreSQL when a submission's rows are inserted (the identity)
_GENERATED = frozenset({"seq"})
_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def _columns(table: Table) -> tuple[tuple[str, ...], tuple[str, ...], frozenset[str]]:
    columns = [column for column in table.columns if column.key not in _GENERATED]
    names = tuple(column.key for column in columns)
    types = tuple(column.type.compile(dialect=_DIALECT) for column in columns)
    return names, types, frozenset(column.key for column in columns if isinstance(column.type, JSONB))


_APPLICATION, _APPLICATION_TYPES, _APPLICATION_JSON = _columns(Application.__table__)  # type: ignore[arg-type]
_DECISION, _DECISION_TYPES, _DECISION_JSON = _columns(Decision.__table__)  # type: ignore[arg-type]


def _values(types: Sequence[str], first: int) -> str:
    """Parameters typed as their columns: an INSERT … SELECT gives its parameters no column to take a type from."""
    return ", ".join(f"${first + n}::{type_}" for n, type_ in enumerate(types))


_FIRST_DECISION = 1 + len(_APPLICATION)
_FIRST_EVENT = _FIRST_DECISION + len(_DECISION)
_SEEN = _FIRST_EVENT + 5  # after the outbox's five arrays
_APPLICANT = 1 + _APPLICATION.index("applicant")
_MEASURE = 1 + _APPLICATION.index("measure")

_WRITTEN = " WHERE EXISTS (SELECT FROM application)"

#: a submission's two rows and its events in one statement, written only if the gate lets them through (migration
#: 0017: the applicant's lock for the measure, then no newer application than the read's `last`); answers 1 if
#: written, 0 if not. The decision's foreign key to the application is checked at the statement's end, both there.
_INSERT_SUBMISSION = f"""
WITH application AS (
    INSERT INTO eligibility.applications ({", ".join(_APPLICATION)})
    SELECT {_values(_APPLICATION_TYPES, 1)}
    WHERE eligibility.submission_gate(${_APPLICANT}, ${_MEASURE}, ${_SEEN}::bigint)
    RETURNING 1
), decision AS (
    INSERT INTO eligibility.decisions ({", ".join(_DECISION)})
    SELECT {_values(_DECISION_TYPES, _FIRST_DECISION)}
   {_WRITTEN}
), events AS (
    {OUTBOX_INSERT.format(schema="eligibility", where=_WRITTEN, **asyncpg_arrays(_FIRST_EVENT))}
)
SELECT count(*) FROM application
"""


def _arguments(entity: NewApplication | NewDecision, names: Sequence[str], as_json: frozenset[str]) -> list[Any]:
    """The row's values in column order, JSONB columns as JSON text (pydantic's encoder: the trace of a decision is
    several KB, mostly Chinese, which `json.dumps` escaped character by character)."""
    values = [getattr(entity, name) for name in names]
    return [to_json(value).decode() if name in as_json else value for name, value in zip(names, values, strict=True)]


async def insert_submission(
    connection: Connection, application: NewApplication, decision: NewDecision, events: Sequence[NewEvent], seen: int
) -> bool:
    """The application, its decision (with the trace) and its events in one statement, if no application of its
    applicant and measure came in since the read that saw `seen` as the newest (`Read.last`); False: nothing was
    written, read and evaluate again. The clock's columns are the caller's (`Read.at`), as the events already say."""
    arguments = _arguments(application, _APPLICATION, _APPLICATION_JSON)
    arguments += _arguments(decision, _DECISION, _DECISION_JSON)
    schema, columns = outbox_rows(events)
    if schema != "eligibility":
        raise ValueError(f"a submission writes eligibility's events, not {schema}'s")
    written: int = await connection.fetchval(_INSERT_SUBMISSION, *arguments, *columns, seen)
    return written == 1


async def read(
    connection: Connection, applicant: str, measure: str, keys: Sequence[str], *, prior_awards: bool
) -> Read:
    """What a submission of `applicant` for `measure` decides on (one statement, one snapshot, no lock): who holds
    `keys`, the standing decisions if `prior_awards`, the newest application's `seq`, the clock and the parameter
    versions' fingerprint."""
    row = await connection.fetchrow(_READ, applicant, measure, list(keys), prior_awards, list(STANDING))
    assert row is not None  # a SELECT without FROM answers one row
    n, top, total = row["versions"]
    return Read(
        at=row["at"],
        versions=(n, top, total),
        last=row["last"],
        claimed=_holders(row["holders"]),
        prior_awards=_prior_awards(row["prior"] or []),
    )


class ParameterVersions:
    """The parameter versions a process read last (`repository.parameter_versions`, unattached rows), under their
    fingerprint: a submission reads them again only when the fingerprint its first statement saw differs."""

    def __init__(self) -> None:
        self._seen: tuple[tuple[int, int, int], list[ParameterVersion]] | None = None

    @property
    def last(self) -> list[ParameterVersion]:
        """The versions read last (none before the first read): what a submission computes its claim keys with
        before its first statement tells whether they are still current."""
        return [] if self._seen is None else self._seen[1]

    def current(self, seen: Read) -> bool:
        """Whether the versions read last are the ones the submission's read saw."""
        return self._seen is not None and self._seen[0] == seen.versions

    async def read(self, connection: Connection, seen: Read) -> list[ParameterVersion]:
        """The versions the submission's read saw: those read last if still current, else read again."""
        if not self.current(seen):
            rows = [ParameterVersion(**dict(row)) for row in await connection.fetch(_PARAMETER_VERSIONS)]
            ids = [row.id for row in rows]
            self._seen = ((len(ids), max(ids, default=0), sum(ids)), rows)
        return self.last


def _prior_awards(rows: list[dict[str, Any]]) -> list[PriorAward]:
    """Decisions for this applicant and measure that still stand (not rejected, not ineligible), at the amount
    approved if they were approved; those worth nothing left out."""
    awards: list[PriorAward] = []
    for row in rows:
        value = row["approved"] if row["approved"] is not None else row["amount_fen"]
        if value:
            awards.append(
                PriorAward(
                    decision_id=row["decision_id"],
                    year=row["year"],
                    amount_fen=value,
                    components=row["components"],
                    basis=row["basis"],
                )
            )
    return awards


def _holders(rows: list[list[str]]) -> dict[str, ClaimHolder]:
    """Who holds each key already: an award in the register, else the first application still in review (the
    rows come pending first, in submission order, then awarded: an award replaces them)."""
    holders: dict[str, ClaimHolder] = {}
    for status, claim_key, application_id in rows:
        if status == "awarded":
            holders[claim_key] = ClaimHolder(application_id=application_id, status="awarded")
        else:
            holders.setdefault(claim_key, ClaimHolder(application_id=application_id, status="pending"))
    return holders


async def claim_holders(connection: Connection, keys: Sequence[str]) -> dict[str, ClaimHolder]:
    """Who holds each key already, read alone (`read` reads it with the rest)."""
    if not keys:
        return {}
    return _holders(await connection.fetchval(_CLAIM_HOLDERS, list(keys)))
