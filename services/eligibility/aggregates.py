"""Aggregates for the dashboards: application counts and the review queue's age.

Roles `dashboard`, `admin`, `auditor`, `officer`, `approver`; no answer names an enterprise.

- `GET /v1/aggregates/applications?year=` reads the projection `application_counts`
  (kept by triggers in the transaction of each change, migration 0006; each count split
  over up to 32 shards, 0018, and summed here): a few thousand rows at most, whatever
  the number of applications. `year` is the year of submission in
  Shenzhen time (default: this year); each measure's applications of that year are
  counted by the outcome of their automatic decision (eligible + ineligible +
  needs_review = submitted) and by their status now (in_review + reviewed + approved +
  rejected + ineligible_closed = submitted).
- `GET /v1/aggregates/review-queue` reads the waiting applications (in_review, reviewed)
  through the partial index `ix_applications_waiting`: its cost grows with the queue,
  not with all applications. Assumed: the queue stays small next to the applications
  (thousands waiting, not hundreds of thousands); the percentiles sort the waiting ones.

The vouchers service forwards both (same paths), so the dashboard page reads one origin.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.auth import ADMIN, APPROVER, AUDITOR, DASHBOARD, OFFICER, Principal, require
from shared.db import SessionDep
from shared.instants import SHENZHEN

from .rules import RULES

ROLES = (DASHBOARD, ADMIN, AUDITOR, OFFICER, APPROVER)
OUTCOMES = ("eligible", "ineligible", "needs_review")
STATUSES = ("in_review", "reviewed", "approved", "rejected", "ineligible")
WAITING = ("in_review", "reviewed")


def measures() -> list[str]:
    """M1 … M13 in their order."""
    return sorted(RULES, key=lambda measure: int(measure[1:]))


class ApplicationCounts(BaseModel):
    submitted: int = Field(description="Applications submitted in the year")
    eligible: int = Field(description="…whose automatic decision was eligible")
    ineligible: int = Field(description="…whose automatic decision was ineligible")
    needs_review: int = Field(description="…whose automatic decision needed a review")
    in_review: int = Field(description="Status now: waiting for an officer's review")
    reviewed: int = Field(description="Status now: reviewed, waiting for an approver")
    approved: int = Field(description="Status now: approved (A1 decisions included)")
    rejected: int = Field(description="Status now: rejected by an approver")
    ineligible_closed: int = Field(description="Status now: the automatic refusal stands")


class MeasureApplicationCounts(ApplicationCounts):
    measure: str


class ApplicationsAggregate(BaseModel):
    year: int = Field(description="Year of submission, Shenzhen time")
    by_measure: list[MeasureApplicationCounts]
    totals: ApplicationCounts


class QueueAges(BaseModel):
    p50: int = Field(description="Median age of the waiting applications, seconds (0: none waiting)")
    p90: int
    max: int


class MeasureQueue(BaseModel):
    measure: str
    waiting: int
    oldest_age_seconds: int = Field(description="0 when none is waiting")


class ReviewQueueAggregate(BaseModel):
    waiting: int = Field(description="Applications waiting for a review or an approval")
    oldest_submitted_at: datetime | None
    age_seconds: QueueAges
    by_measure: list[MeasureQueue]


def _counts(values: dict[tuple[str, str], int]) -> dict[str, int]:
    """One measure's (or the totals') fields from its (dimension, value) → count."""
    outcomes = {outcome: values.get(("outcome", outcome), 0) for outcome in OUTCOMES}
    statuses = {status: values.get(("status", status), 0) for status in STATUSES}
    return {
        "submitted": sum(statuses.values()),
        **outcomes,
        "in_review": statuses["in_review"],
        "reviewed": statuses["reviewed"],
        "approved": statuses["approved"],
        "rejected": statuses["rejected"],
        "ineligible_closed": statuses["ineligible"],
    }


async def applications(session: AsyncSession, year: int) -> ApplicationsAggregate:
    rows = await session.execute(
        text(
            "SELECT measure, dimension, value, sum(count) FROM eligibility.application_counts WHERE year = :year "
            "GROUP BY measure, dimension, value"
        ),
        {"year": year},
    )
    per_measure: dict[str, dict[tuple[str, str], int]] = {measure: {} for measure in measures()}
    totals: dict[tuple[str, str], int] = {}
    for measure, dimension, value, count in rows.all():
        per_measure.setdefault(measure, {})[(dimension, value)] = int(count)
        totals[(dimension, value)] = totals.get((dimension, value), 0) + int(count)
    return ApplicationsAggregate(
        year=year,
        by_measure=[MeasureApplicationCounts(measure=m, **_counts(values)) for m, values in per_measure.items()],
        totals=ApplicationCounts(**_counts(totals)),
    )


#: one pass over the waiting applications (partial index): per measure, and all of them (measure NULL)
_QUEUE = """
    SELECT measure, count(*) AS waiting, min(submitted_at) AS oldest,
           max(age) AS oldest_age,
           percentile_cont(ARRAY[0.5, 0.9]::float8[]) WITHIN GROUP (ORDER BY age) AS ages
    FROM (
        SELECT measure, submitted_at, extract(epoch FROM now() - submitted_at)::float8 AS age
        FROM eligibility.applications
        WHERE status IN ('in_review', 'reviewed')
    ) waiting
    GROUP BY GROUPING SETS ((measure), ())
"""


async def review_queue(session: AsyncSession) -> ReviewQueueAggregate:
    rows = (await session.execute(text(_QUEUE))).all()
    waiting = {row.measure: row for row in rows if row.measure is not None}
    everything = next((row for row in rows if row.measure is None and row.waiting), None)
    p50, p90 = (float(age) for age in everything.ages) if everything else (0.0, 0.0)
    return ReviewQueueAggregate(
        waiting=int(everything.waiting) if everything else 0,
        oldest_submitted_at=everything.oldest if everything else None,
        age_seconds=QueueAges(
            p50=_seconds(p50), p90=_seconds(p90), max=_seconds(float(everything.oldest_age) if everything else 0.0)
        ),
        by_measure=[
            MeasureQueue(
                measure=measure,
                waiting=int(waiting[measure].waiting) if measure in waiting else 0,
                oldest_age_seconds=_seconds(float(waiting[measure].oldest_age)) if measure in waiting else 0,
            )
            for measure in [*measures(), *sorted(set(waiting) - set(RULES))]
        ],
    )


def _seconds(value: float) -> int:
    return max(0, int(value))


# --- keeping the projection right -----------------------------------------------------------------

_GROUP_BY = """
    SELECT eligibility.local_year(submitted_at) AS year, measure, 'status' AS dimension, status AS value,
           count(*) AS count
    FROM eligibility.applications GROUP BY 1, 2, 4
    UNION ALL
    SELECT eligibility.local_year(a.submitted_at), a.measure, 'outcome', d.outcome, count(*)
    FROM eligibility.applications a
    JOIN eligibility.decisions d ON d.application_id = a.id AND d.kind = 'automatic'
    GROUP BY 1, 2, 4
"""


#: the projection's counts, each the sum of its shards
_PROJECTED = """
    SELECT year, measure, dimension, value, sum(count) AS count FROM eligibility.application_counts
    GROUP BY year, measure, dimension, value
"""


async def differences(target: AsyncSession | AsyncConnection) -> list[dict[str, Any]]:
    """Where the projection and a plain GROUP BY over the applications disagree (a full scan: checks only)."""
    projected = {
        (row["year"], row["measure"], row["dimension"], row["value"]): int(row["count"])
        for row in (await target.execute(text(_PROJECTED))).mappings()
    }
    counted = {
        (row["year"], row["measure"], row["dimension"], row["value"]): int(row["count"])
        for row in (await target.execute(text(_GROUP_BY))).mappings()
    }
    return [
        {"year": key[0], "measure": key[1], "dimension": key[2], "value": key[3], "projected": p, "counted": c}
        for key in sorted(set(projected) | set(counted))
        if (p := projected.get(key, 0)) != (c := counted.get(key, 0))
    ]


async def rebuild_application_counts(target: AsyncSession | AsyncConnection) -> int:
    """Recount the projection from the applications (after a bulk load that bypassed the triggers).

    Runs in the caller's transaction (commit it); returns the number of projection rows.
    """
    return int((await target.execute(text("SELECT eligibility.rebuild_application_counts()"))).scalar_one())


# --- HTTP -------------------------------------------------------------------------------------------

router = APIRouter(tags=["aggregates"])
Reader = Annotated[Principal, require(*ROLES)]


def this_year() -> int:
    return datetime.now(SHENZHEN).year


@router.get(
    "/v1/aggregates/applications",
    response_model=ApplicationsAggregate,
    summary="Applications of a year by measure: automatic outcomes and statuses now (no enterprise named)",
)
async def get_applications(
    _: Reader,
    session: SessionDep,
    year: Annotated[int | None, Query(ge=2000, le=2100, description="Year of submission; default this year")] = None,
) -> ApplicationsAggregate:
    return await applications(session, year if year is not None else this_year())


@router.get(
    "/v1/aggregates/review-queue",
    response_model=ReviewQueueAggregate,
    summary="How many applications wait for review or approval, and for how long",
)
async def get_review_queue(_: Reader, session: SessionDep) -> ReviewQueueAggregate:
    return await review_queue(session)
