"""The statements of a submission (`service.submit`), as fixed SQL on the session's own connection (issue #16).

They read and write in the request's transaction as prepared statements written once (they were SQLAlchemy
statements in `repository.py`): no SQL construction, cache key or ORM loading per request. The
caller passes the asyncpg connection under its session (`shared.db.raw_connection`) once the session has
begun the transaction (its first statement, the applicant's lock, runs through the session). JSONB goes
through SQLAlchemy's codec on that connection: JSON text in, Python objects out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import JSONB

from shared.db import Connection

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

#: the claim keys held by an application still in review, then by an award in the register
_PENDING_CLAIMS = """
SELECT k.key, a.id FROM eligibility.applications a
JOIN eligibility.decisions d ON d.id = a.current_decision_id
CROSS JOIN LATERAL unnest(d.claims) AS k(key)
WHERE a.status IN ('in_review', 'reviewed') AND d.claims && $1::text[] AND k.key = ANY($1::text[])
ORDER BY a.seq
"""
_AWARDED_CLAIMS = (
    "SELECT claim_key, application_id FROM eligibility.awards WHERE claim_key = ANY($1::text[]) ORDER BY id"
)

#: Filled in by PostgreSQL when a submission's rows are inserted (the identity, the transaction's clock).
_GENERATED = frozenset({"seq", "submitted_at", "decided_at"})


def _columns(table: Table) -> tuple[tuple[str, ...], frozenset[str]]:
    names = tuple(column.key for column in table.columns if column.key not in _GENERATED)
    return names, frozenset(column.key for column in table.columns if isinstance(column.type, JSONB))


_APPLICATION, _APPLICATION_JSON = _columns(Application.__table__)  # type: ignore[arg-type]
_DECISION, _DECISION_JSON = _columns(Decision.__table__)  # type: ignore[arg-type]


def _values(names: Sequence[str], first: int) -> str:
    return ", ".join(f"${first + n}" for n in range(len(names)))


#: a submission's two rows in one statement
_INSERT_SUBMISSION = f"""
WITH application AS (
    INSERT INTO eligibility.applications ({", ".join(_APPLICATION)}) VALUES ({_values(_APPLICATION, 1)})
    RETURNING submitted_at
), decision AS (
    INSERT INTO eligibility.decisions ({", ".join(_DECISION)}) VALUES ({_values(_DECISION, 1 + len(_APPLICATION))})
    RETURNING decided_at
)
SELECT application.submitted_at, decision.decided_at FROM application, decision
"""


def _arguments(entity: Application | Decision, names: Sequence[str], as_json: frozenset[str]) -> list[Any]:
    values = [getattr(entity, name) for name in names]
    return [json.dumps(value) if name in as_json else value for name, value in zip(names, values, strict=True)]


async def insert_submission(connection: Connection, application: Application, decision: Decision) -> None:
    """The application and its decision (with the trace) in one statement: two inserts of one command, so the
    decision's foreign key to the application is checked when both rows are there. Sets the clock's columns."""
    arguments = _arguments(application, _APPLICATION, _APPLICATION_JSON)
    arguments += _arguments(decision, _DECISION, _DECISION_JSON)
    row = await connection.fetchrow(_INSERT_SUBMISSION, *arguments)
    assert row is not None
    application.submitted_at, decision.decided_at = row["submitted_at"], row["decided_at"]


async def parameter_versions(connection: Connection) -> list[ParameterVersion]:
    """`repository.parameter_versions` (unattached rows)."""
    return [ParameterVersion(**dict(row)) for row in await connection.fetch(_PARAMETER_VERSIONS)]


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
    """Who holds each key already: an award in the register, else an application still in review."""
    if not keys:
        return {}
    holders: dict[str, ClaimHolder] = {}
    for claim_key, application_id in await connection.fetch(_PENDING_CLAIMS, list(keys)):
        holders.setdefault(claim_key, ClaimHolder(application_id=str(application_id), status="pending"))
    for claim_key, application_id in await connection.fetch(_AWARDED_CLAIMS, list(keys)):
        holders[claim_key] = ClaimHolder(application_id=str(application_id), status="awarded")
    return holders
