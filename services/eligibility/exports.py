"""Bulk exports of decisions and applications for the data platform.

`GET /v1/exports/decisions` and `GET /v1/exports/applications`, NDJSON or CSV, streamed by
`shared/exports/` (formats, date bounds, trailer and errors are described there).
Roles: platform, auditor, admin. Read-only.

- **decisions**: every decision (automatic and A1 manual), by `decided_at` in [from, to),
  ordered by (decided_at, id), with its application's applicant, measure, benefit year
  and as-of date. Columns: id, application_id, applicant, measure, benefit_year, as_of,
  kind, outcome, amount_fen, components, failures, review_reasons, facts, policy_version,
  parameters_digest, engine_version, decided_by, reason, client_id, request_id,
  decided_at; with `trace=true` also `trace` (every step of the evaluation: large).
- **applications**: every application, by `submitted_at` in [from, to), in submission
  order (seq). Columns: id, seq, measure, applicant, as_of, benefit_year, status,
  priority, submitted_by, submitted_at, current_decision_id, evidence.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from shared.auth import require
from shared.exports.params import EXPORT_RESPONSES, ExportOptions, export_options
from shared.exports.query import EXPORTERS, Column, ExportQuery
from shared.exports.stream import export_response
from shared.identifiers import CreditCode

DECISION_COLUMNS: tuple[Column, ...] = (
    Column("id", "d.id", "uuid"),
    Column("application_id", "d.application_id", "uuid"),
    Column("applicant", "a.applicant"),
    Column("measure", "a.measure"),
    Column("benefit_year", "a.benefit_year", "int"),
    Column("as_of", "a.as_of", "date"),
    Column("kind", "d.kind"),
    Column("outcome", "d.outcome"),
    Column("amount_fen", "d.amount_fen", "int"),
    Column("components", "d.components", "json"),
    Column("failures", "d.failures", "json"),
    Column("review_reasons", "d.review_reasons", "json"),
    Column("facts", "d.facts", "json"),
    Column("policy_version", "d.policy_version"),
    Column("parameters_digest", "d.parameters_digest"),
    Column("engine_version", "d.engine_version"),
    Column("decided_by", "d.decided_by"),
    Column("reason", "d.reason"),
    Column("client_id", "d.client_id"),
    Column("request_id", "d.request_id"),
    Column("decided_at", "d.decided_at", "timestamp"),
)
TRACE = Column("trace", "d.trace", "json")
DECISION_SOURCE = "eligibility.decisions d JOIN eligibility.applications a ON a.id = d.application_id"

APPLICATION_COLUMNS: tuple[Column, ...] = (
    Column("id", "a.id", "uuid"),
    Column("seq", "a.seq", "int"),
    Column("measure", "a.measure"),
    Column("applicant", "a.applicant"),
    Column("as_of", "a.as_of", "date"),
    Column("benefit_year", "a.benefit_year", "int"),
    Column("status", "a.status"),
    Column("priority", "a.priority", "int"),
    Column("submitted_by", "a.submitted_by"),
    Column("submitted_at", "a.submitted_at", "timestamp"),
    Column("current_decision_id", "a.current_decision_id", "uuid"),
    Column("evidence", "a.evidence", "json"),
)

Measure = Annotated[str | None, Query(pattern=r"^[MA][0-9]{1,2}$", description="M1…M15, A1…A4")]
Applicant = Annotated[CreditCode | None, Query(description="The applicant's credit code")]

router = APIRouter(tags=["exports"])


def decisions_query(
    *,
    measure: str | None = None,
    outcome: str | None = None,
    kind: str | None = None,
    applicant: str | None = None,
    trace: bool = False,
) -> ExportQuery:
    columns = (*DECISION_COLUMNS, TRACE) if trace else DECISION_COLUMNS
    query = ExportQuery(
        "decisions", columns, DECISION_SOURCE, order_by="d.decided_at, d.id", time_column="d.decided_at"
    )
    query.filter("measure", measure, lambda p: f"a.measure = {p}")
    query.filter("outcome", outcome, lambda p: f"d.outcome = {p}")
    query.filter("kind", kind, lambda p: f"d.kind = {p}")
    query.filter("applicant", applicant, lambda p: f"a.applicant = {p}")
    return query


def applications_query(
    *, measure: str | None = None, status: str | None = None, applicant: str | None = None
) -> ExportQuery:
    query = ExportQuery(
        "applications",
        APPLICATION_COLUMNS,
        "eligibility.applications a",
        order_by="a.seq",
        time_column="a.submitted_at",
    )
    query.filter("measure", measure, lambda p: f"a.measure = {p}")
    query.filter("status", status, lambda p: f"a.status = {p}")
    query.filter("applicant", applicant, lambda p: f"a.applicant = {p}")
    return query


@router.get(
    "/v1/exports/decisions",
    response_class=StreamingResponse,
    responses=EXPORT_RESPONSES,
    dependencies=[require(*EXPORTERS)],
    summary="Export decisions (NDJSON or CSV, streamed), by decided_at in [from, to)",
)
async def export_decisions(
    request: Request,
    options: Annotated[ExportOptions, Depends(export_options)],
    measure: Measure = None,
    outcome: Annotated[Literal["eligible", "ineligible", "needs_review"] | None, Query()] = None,
    kind: Annotated[Literal["automatic", "manual_a1"] | None, Query()] = None,
    applicant: Applicant = None,
    trace: Annotated[bool, Query(description="Add each decision's trace (every evaluation step; large)")] = False,
) -> StreamingResponse:
    query = decisions_query(measure=measure, outcome=outcome, kind=kind, applicant=applicant, trace=trace)
    return await export_response(request, query, options, filename_stem="eligibility-decisions")


@router.get(
    "/v1/exports/applications",
    response_class=StreamingResponse,
    responses=EXPORT_RESPONSES,
    dependencies=[require(*EXPORTERS)],
    summary="Export applications (NDJSON or CSV, streamed), by submitted_at in [from, to)",
)
async def export_applications(
    request: Request,
    options: Annotated[ExportOptions, Depends(export_options)],
    measure: Measure = None,
    status: Annotated[Literal["in_review", "reviewed", "approved", "rejected", "ineligible"] | None, Query()] = None,
    applicant: Applicant = None,
) -> StreamingResponse:
    query = applications_query(measure=measure, status=status, applicant=applicant)
    return await export_response(request, query, options, filename_stem="eligibility-applications")
