"""Eligibility flows: submit and decide, and read applications; the policy in force.

Review, approval and A1 are in `approvals.py`, the award register they fill in `awards.py`,
decisions as the vouchers service reads them in `decisions.py`, new parameter versions in
`parameter_versions.py`, simulations in `simulation.py`.

I/O lives here and in `facts.py`; the rules stay pure. Each function only flushes: the
request dependency commits. Facts come from the registry before anything is written, so
a registry outage (503) leaves nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import ADMIN, OFFICER, ORGANISATION_MISMATCH, Principal
from shared.context import request_id_var
from shared.db import Connections
from shared.errors import ProblemError
from shared.instants import SHENZHEN, local_today
from shared.testclocks import EnterpriseClocks

from . import events, repository, submission_sql
from .engine import Trace
from .errors import (
    APPLICATION_NOT_FOUND,
    AS_OF_BEFORE_POLICY,
    AS_OF_IN_FUTURE,
    AS_OF_OFFICER_ONLY,
    AS_OF_REASON_REQUIRED,
    SUBMISSION_CONTENDED,
)
from .evidence import Evidence
from .facts import Facts, RegistryFacts
from .models import Application, Decision, ParameterVersion, Review
from .parameters import ParameterSet, Value, jsonable, parse_value
from .priority import PriorityRubric
from .rules import Evaluation, claim_keys, evaluate_application, facts_needed
from .schemas import ApplicationCreate, ApplicationRead, DecisionRead, ReviewRead


def jsonable_value(value: Any) -> Any:
    return jsonable(value)


def request_id() -> str | None:
    """This request's id, as recorded in the audit log (None outside a request)."""
    value = request_id_var.get()
    return None if value == "-" else value


def visible(principal: Principal, applicant: str) -> bool:
    """Bureau roles see every application; an applicant client only its own organisation's."""
    return principal.sees_everything() or principal.applicant == applicant


def today() -> date:
    return datetime.now(SHENZHEN).date()


@dataclass(frozen=True)
class Policy:
    """The parameter file and rubric loaded (and checked) at start-up, and the clock.

    `clocks` answers an enterprise's test clock in sandbox mode (shared/testclocks.py; no registry, no call,
    otherwise): an application by an enterprise bound to one is received on that clock's day (A4).
    """

    parameters: ParameterSet
    rubric: PriorityRubric
    today: Callable[[], date] = field(default=today)
    clocks: EnterpriseClocks = field(default_factory=lambda: EnterpriseClocks(None))
    #: the parameter versions this process read last (a submission reads them again only when they changed)
    parameter_versions: submission_sql.ParameterVersions = field(default_factory=submission_sql.ParameterVersions)

    async def received_on(self, applicant: str) -> tuple[date, bool]:
        """The day an application by this enterprise is received, and whether its test clock says so."""
        moment = await self.clocks.clock_of(applicant)
        return (self.today(), False) if moment is None else (local_today(moment), True)


def benefit_year(evidence: Evidence, as_of: date) -> int:
    """The year an award counts against (annual caps): the evidence's year, else the application's."""
    for name in ("year", "fiscal_year"):
        value = getattr(evidence, name, None)
        if isinstance(value, int):
            return value
    return as_of.year


async def current_parameters(session: AsyncSession, base: ParameterSet) -> ParameterSet:
    return _with_versions(base, await repository.parameter_versions(session))


def _with_versions(base: ParameterSet, rows: list[ParameterVersion]) -> ParameterSet:
    if not rows:
        return base
    return base.with_versions((row.parameter_id, _stored_value(row)) for row in rows)


def _stored_value(row: ParameterVersion) -> Value:
    raw = {
        "effective_from": row.effective_from,
        "value": row.value,
        "status": row.status,
        "source": row.source,
    }
    return parse_value(f"parameter_versions[{row.id}]", row.parameter_id, raw, origin=f"version:{row.id}")


# --- reading ---------------------------------------------------------------------------------


def decision_read(decision: Decision | submission_sql.NewDecision) -> DecisionRead:
    return DecisionRead.model_validate(decision, from_attributes=True)


def application_read(
    application: Application | submission_sql.NewApplication,
    decision: Decision | submission_sql.NewDecision | None,
    reviews: list[Review],
) -> ApplicationRead:
    return ApplicationRead(
        id=application.id,
        measure=application.measure,
        applicant=application.applicant,
        as_of=application.as_of,
        as_of_reason=application.as_of_reason,
        as_of_recorded_by=application.as_of_recorded_by,
        benefit_year=application.benefit_year,
        evidence=application.evidence,
        submitted_by=application.submitted_by,
        submitted_at=application.submitted_at,
        status=application.status,  # type: ignore[arg-type]
        priority=application.priority,
        decision=decision_read(decision) if decision else None,
        reviews=[ReviewRead.model_validate(review, from_attributes=True) for review in reviews],
    )


async def read_applications(session: AsyncSession, applications: list[Application]) -> list[ApplicationRead]:
    decisions = await repository.decisions_by_id(
        session, [a.current_decision_id for a in applications if a.current_decision_id]
    )
    reviews = await repository.reviews_of(session, [a.id for a in applications])
    return [
        application_read(
            a, decisions.get(a.current_decision_id) if a.current_decision_id else None, reviews.get(a.id, [])
        )
        for a in applications
    ]


async def read_application(
    session: AsyncSession, application_id: uuid.UUID, principal: Principal | None = None
) -> ApplicationRead:
    """One application; another organisation's is as unknown as a missing one (404) to an applicant."""
    application = await repository.get_application(session, application_id)
    if application is None or (principal is not None and not visible(principal, application.applicant)):
        raise ProblemError(APPLICATION_NOT_FOUND, id=str(application_id))
    return (await read_applications(session, [application]))[0]


# --- submitting -------------------------------------------------------------------------------


def _decision_row(
    decision_id: uuid.UUID,
    application_id: uuid.UUID,
    evaluation: Evaluation,
    facts: Facts,
    principal: Principal,
    decided_at: datetime,
) -> submission_sql.NewDecision:
    result = evaluation.result
    return submission_sql.NewDecision(
        id=decision_id,
        application_id=application_id,
        kind="automatic",
        outcome=result.outcome,
        amount_fen=result.amount_fen,
        failures=[r.as_dict() for r in result.failures],
        review_reasons=[r.as_dict() for r in result.review_reasons],
        components=dict(result.components),
        trace=evaluation.trace,
        facts=facts.model_dump(mode="json"),
        policy_version=evaluation.policy_version,
        parameters_digest=evaluation.parameters_digest,
        engine_version=evaluation.engine_version,
        client_id=principal.client_id,
        request_id=request_id(),
        claims=list(result.claims),
        caps=list(result.caps),
        basis=result.basis,
        decided_at=decided_at,
    )


def _application_date(payload: ApplicationCreate, received_on: date, principal: Principal, policy: Policy) -> date:
    """A4: the application is dated the day it is received; only an officer records an earlier day, saying why."""
    as_of = payload.as_of or received_on
    if as_of > received_on:
        raise ProblemError(AS_OF_IN_FUTURE, as_of=as_of.isoformat())
    if as_of < received_on:
        if not principal.has(OFFICER, ADMIN):
            raise ProblemError(AS_OF_OFFICER_ONLY, as_of=as_of.isoformat(), today=received_on.isoformat())
        if payload.as_of_reason is None:
            raise ProblemError(AS_OF_REASON_REQUIRED, as_of=as_of.isoformat(), today=received_on.isoformat())
    if as_of < policy.parameters.covered_from:
        first = policy.parameters.covered_from.isoformat()
        raise ProblemError(AS_OF_BEFORE_POLICY, as_of=as_of.isoformat(), first=first)
    return as_of


def _dated(
    received_on: date, as_of: date, payload: ApplicationCreate, principal: Principal, test_clock: bool = False
) -> list[dict[str, Any]]:
    """The trace's first step: which day the application counts as made, and who decided it if not today."""
    trace = Trace()
    if as_of == received_on and test_clock:
        trace.step(
            "A4",
            "申请日期：收件当日（测试时钟，深圳时间；沙盒模式）",
            "Application date: the day received (the enterprise's test clock, Shenzhen time; sandbox mode)",
            inputs={"received_on": received_on.isoformat(), "as_of": as_of.isoformat(), "test_clock": True},
        )
    elif as_of == received_on:
        trace.step(
            "A4",
            "申请日期：收件当日（服务器时间，深圳）",
            "Application date: the day received (server clock, Shenzhen time)",
            inputs={"received_on": received_on.isoformat(), "as_of": as_of.isoformat()},
        )
    else:
        trace.step(
            "A4",
            "申请日期由工作人员登记为更早的日期（逾期登记的纸质申请）",
            "Application date recorded earlier by an officer (a paper application registered late)",
            inputs={
                "received_on": received_on.isoformat(),
                "as_of": as_of.isoformat(),
                "recorded_by": principal.actor,
                "reason": payload.as_of_reason,
            },
            outcome="review",
        )
    return trace.as_list()


#: how many times a submission reads and decides again because another one of its applicant and measure came in
#: meanwhile (each time, that other one was written: a submission retries only when another makes progress)
SUBMISSION_ATTEMPTS = 16


def _decided(
    payload: ApplicationCreate,
    principal: Principal,
    policy: Policy,
    facts: Facts,
    parameters: ParameterSet,
    received_on: date,
    as_of: date,
    dated: list[dict[str, Any]],
    at: datetime,
) -> tuple[submission_sql.NewApplication, submission_sql.NewDecision]:
    """The application and its automatic decision (pure: the rules on what was read), stamped `at`."""
    evidence: Evidence = payload.evidence
    measure: str = evidence.measure  # type: ignore[attr-defined]
    evaluation = evaluate_application(evidence, as_of, facts, parameters)
    evaluation = replace(evaluation, trace=dated + evaluation.trace)
    back_dated = as_of != received_on
    decision_id = uuid.uuid4()
    application = submission_sql.NewApplication(
        id=uuid.uuid4(),
        measure=measure,
        applicant=payload.applicant,
        as_of=as_of,
        as_of_reason=payload.as_of_reason if back_dated else None,
        as_of_recorded_by=principal.actor if back_dated else None,
        benefit_year=benefit_year(evidence, as_of),
        evidence=evidence.model_dump(mode="json"),
        submitted_by=principal.actor,
        status="ineligible" if evaluation.result.outcome == "ineligible" else "in_review",
        priority=policy.rubric.score(evaluation.result, measure),
        current_decision_id=decision_id,
        submitted_at=at,
    )
    return application, _decision_row(decision_id, application.id, evaluation, facts, principal, at)


async def submit(
    connections: Connections, policy: Policy, registry: RegistryFacts, payload: ApplicationCreate, principal: Principal
) -> ApplicationRead:
    if not principal.has(OFFICER, ADMIN) and payload.applicant != principal.applicant:
        raise ProblemError(ORGANISATION_MISMATCH, org=principal.organisation or "-")
    received_on, test_clock = await policy.received_on(payload.applicant)  # in sandbox mode, a registry call
    as_of = _application_date(payload, received_on, principal, policy)
    evidence: Evidence = payload.evidence
    measure: str = evidence.measure  # type: ignore[attr-defined]
    # the registry first, before this request touches the database: no lock or transaction is held while a peer
    # answers (issue #12)
    request = facts_needed(evidence)
    facts = await registry.fetch(payload.applicant, as_of, request)
    # the rest is fixed SQL on a raw connection, two statements in autocommit, the connection lent for them alone
    # (issue #16)
    dated = _dated(received_on, as_of, payload, principal, test_clock)
    async with connections.acquire() as connection:
        for _ in range(SUBMISSION_ATTEMPTS):
            # the claim keys with the parameter versions read last; the read tells whether they are still current
            known = policy.parameter_versions.last
            parameters = _with_versions(policy.parameters, known)
            keys = claim_keys(evidence, payload.applicant, parameters, as_of)
            seen = await submission_sql.read(
                connection, payload.applicant, measure, keys, prior_awards=request.prior_awards
            )
            facts.prior_awards = seen.prior_awards
            facts.claimed = seen.claimed
            versions = await policy.parameter_versions.read(connection, seen)  # again only if a version was added
            if versions is not known:
                parameters = _with_versions(policy.parameters, versions)
                current_keys = claim_keys(evidence, payload.applicant, parameters, as_of)
                if current_keys != keys:
                    facts.claimed = await submission_sql.claim_holders(connection, current_keys)
            application, decision = _decided(
                payload, principal, policy, facts, parameters, received_on, as_of, dated, seen.at
            )
            read = application_read(application, decision, [])
            changes = [events.application_event(change, read) for change in ("submitted", "decided")]
            if await submission_sql.insert_submission(connection, application, decision, changes, seen.last):
                return read
            # another submission of this applicant and measure came in since the read: decide again, seeing it
    raise ProblemError(SUBMISSION_CONTENDED, applicant=payload.applicant, measure=measure)
