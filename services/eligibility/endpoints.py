"""REST endpoints of the eligibility service.

Who may call what (roles are token scopes, shared/auth.py):

- submit an application: an applicant (for its own organisation only), an officer, an admin;
- read applications and decisions: applicants (their own; others' are 404), officers,
  approvers, admins, auditors, the data platform; the review queue: officers, approvers, admins;
- review: officers, admins; approve and A1: approvers, admins, never on one's own review;
- approved decisions (for issuing vouchers): the vouchers service (`decisions:read`), officers,
  approvers, admins, auditors;
- the policy and its parameters: everyone; new parameter versions: admins; what-if: officers,
  approvers, admins, auditors.

Whoever acts is the authenticated client, never a name in the request body.
"""

import json
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response

from shared.app import state_dependency
from shared.auth import (
    ADMIN,
    APPLICANT,
    APPROVER,
    AUDITOR,
    DECISIONS_READ,
    OFFICER,
    PLATFORM,
    REGISTRY_READ,
    ROLES,
    Principal,
    require,
)
from shared.db import ConnectionsDep, SessionDep
from shared.errors import FieldError, validation_problem
from shared.identifiers import CreditCode
from shared.limits import KiB, MiB, max_body
from shared.openapi import CREATED_AT_LOCATION
from shared.pagination import Page, PageParams, decode_cursor, decode_cursor_keys, encode_cursor, make_page, page_params

from . import approvals, decisions, parameter_versions, repository, service, simulation
from .budget import ProgrammeBudget, with_reservation
from .clauses import CLAUSES
from .facts import RegistryFacts
from .parameters import SPECS, ParameterSet
from .rules import RULES
from .rules.claims import CAP_KINDS, CLAIM_KINDS
from .schemas import (
    ApplicationCreate,
    ApplicationRead,
    ApprovalCreate,
    ApprovedDecisionRead,
    AwardRead,
    CapKindRead,
    ClaimKindRead,
    ClauseRead,
    DecisionRead,
    DoubleAwardsRead,
    ManualDecisionCreate,
    ParameterRead,
    ParameterValueRead,
    ParameterVersionCreate,
    PolicyRead,
    ReviewCreate,
    SimulationCreate,
    SimulationRead,
    SimulationStatus,
)
from .service import Policy

router = APIRouter()
#: The policy is public information: every role and peer service may read it (not the add-on grants).
POLICY_READERS = (*ROLES, REGISTRY_READ, DECISIONS_READ)
Pages = Annotated[PageParams, Depends(page_params)]
Status = Literal["in_review", "reviewed", "approved", "rejected", "ineligible"]
Measure = Annotated[str, Query(pattern=r"^M(1[0-3]|[1-9])$")]


get_policy = state_dependency("policy", Policy)
get_registry = state_dependency("registry_facts", RegistryFacts)
PolicyDep = Annotated[Policy, Depends(get_policy)]
RegistryDep = Annotated[RegistryFacts, Depends(get_registry)]
BudgetDep = Annotated[ProgrammeBudget, Depends(state_dependency("programme_budget", ProgrammeBudget))]

#: who may read applications and decisions (applicants only their own)
READERS = (APPLICANT, OFFICER, APPROVER, ADMIN, AUDITOR, PLATFORM)
Submitter = Annotated[Principal, require(APPLICANT, OFFICER, ADMIN)]
Reader = Annotated[Principal, require(*READERS)]
Reviewer = Annotated[Principal, require(OFFICER, ADMIN)]
Approver = Annotated[Principal, require(APPROVER, ADMIN)]


@router.post(
    "/v1/applications",
    status_code=201,
    response_model=ApplicationRead,
    responses=CREATED_AT_LOCATION,
    tags=["applications"],
    summary="Submit an application: evaluated at once against the registry's facts as of its date",
)
@max_body(4 * MiB)  # M1 evidence lists invoices line by line: some 20,000 lines
async def submit_application(
    principal: Submitter,
    connections: ConnectionsDep,
    policy: PolicyDep,
    registry: RegistryDep,
    payload: ApplicationCreate,
    response: Response,
) -> ApplicationRead:
    created = await service.submit(connections, policy, registry, payload, principal)
    response.headers["Location"] = f"/v1/applications/{created.id}"
    return created


@router.get(
    "/v1/applications",
    response_model=Page[ApplicationRead],
    tags=["applications"],
    summary="Applications, oldest first (an applicant client sees only its own organisation's)",
)
async def list_applications(
    principal: Reader,
    session: SessionDep,
    page: Pages,
    measure: Measure | None = None,
    applicant: Annotated[CreditCode | None, Query()] = None,
    status: Status | None = None,
) -> Page[ApplicationRead]:
    after = decode_cursor("applications", page.cursor) if page.cursor else 0
    if not principal.sees_everything():
        if applicant is not None and applicant != principal.applicant:
            return Page[ApplicationRead](items=[], next_cursor=None)
        applicant = principal.applicant
    rows = await repository.list_applications(
        session, {"measure": measure, "applicant": applicant, "status": status}, after, page.limit
    )
    listed = make_page("applications", rows, page.limit, lambda a: a.seq)
    return Page[ApplicationRead](
        items=await service.read_applications(session, listed.items), next_cursor=listed.next_cursor
    )


@router.get(
    "/v1/review-queue",
    response_model=Page[ApplicationRead],
    tags=["review"],
    summary="Applications awaiting review or approval, highest priority first, then oldest",
)
async def review_queue(
    _: Annotated[Principal, require(OFFICER, APPROVER, ADMIN)], session: SessionDep, page: Pages
) -> Page[ApplicationRead]:
    after = decode_cursor_keys("review-queue", page.cursor, 2) if page.cursor else None
    rows = await repository.review_queue(session, (after[0], after[1]) if after else None, page.limit)
    has_more = len(rows) > page.limit
    rows = rows[: page.limit]
    cursor = encode_cursor("review-queue", list(repository.queue_key(rows[-1]))) if has_more and rows else None
    return Page[ApplicationRead](items=await service.read_applications(session, rows), next_cursor=cursor)


#: who may read the award register (it names applicants: not the applicants themselves, not vendors)
REGISTER_READERS = (OFFICER, APPROVER, ADMIN, AUDITOR, PLATFORM)


@router.get(
    "/v1/awards",
    response_model=Page[AwardRead],
    tags=["awards"],
    summary="The award register: one row per claim key an approved award pays for (docs/awards.md)",
)
async def list_awards(
    _: Annotated[Principal, require(*REGISTER_READERS)],
    session: SessionDep,
    page: Pages,
    measure: Measure | None = None,
    applicant: Annotated[CreditCode | None, Query()] = None,
    claim_key: Annotated[str | None, Query(min_length=3, max_length=600)] = None,
    application_id: uuid.UUID | None = None,
) -> Page[AwardRead]:
    after = decode_cursor("awards", page.cursor) if page.cursor else 0
    filters = {"measure": measure, "applicant": applicant, "claim_key": claim_key, "application_id": application_id}
    rows = await repository.awards(session, filters, after, page.limit)
    listed = make_page("awards", rows, page.limit, lambda a: a.id)
    return Page[AwardRead](
        items=[AwardRead.model_validate(a, from_attributes=True) for a in listed.items], next_cursor=listed.next_cursor
    )


@router.get(
    "/v1/awards/double",
    response_model=DoubleAwardsRead,
    tags=["awards"],
    summary="Keys awarded more than once: A1 overrides (with their reasons) and doubles found in history",
)
async def double_awards(_: Annotated[Principal, require(*REGISTER_READERS)], session: SessionDep) -> DoubleAwardsRead:
    rows = await repository.double_awards(session)
    return DoubleAwardsRead(
        keys=len({row.claim_key for row in rows}),
        items=[AwardRead.model_validate(row, from_attributes=True) for row in rows],
    )


@router.get("/v1/applications/{application_id}", response_model=ApplicationRead, tags=["applications"])
async def get_application(principal: Reader, session: SessionDep, application_id: uuid.UUID) -> ApplicationRead:
    return await service.read_application(session, application_id, principal)


@router.post(
    "/v1/applications/{application_id}/reviews",
    response_model=ApplicationRead,
    tags=["review"],
    summary="An officer's review (recommend approve or reject, with a reason); the reviewer is the caller",
)
async def review_application(
    principal: Reviewer, session: SessionDep, application_id: uuid.UUID, payload: ReviewCreate
) -> ApplicationRead:
    return await approvals.review(session, application_id, payload, principal)


@router.post(
    "/v1/applications/{application_id}/approvals",
    response_model=ApplicationRead,
    tags=["review"],
    summary="An approver's decision on the review; the approver is the caller, never the reviewer",
)
async def approve_application(
    principal: Approver, session: SessionDep, budget: BudgetDep, application_id: uuid.UUID, payload: ApprovalCreate
) -> ApplicationRead:
    """An approval reserves its amount from the programme budget before it commits (A2, budget.py)."""
    need = await approvals.approval_budget(session, application_id, payload, principal)
    return await with_reservation(
        session,
        budget,
        need,
        lambda reservation: approvals.approve(session, application_id, payload, principal, reservation),
    )


@router.post(
    "/v1/applications/{application_id}/manual-decisions",
    response_model=ApplicationRead,
    tags=["review"],
    summary="A1 一事一议: a case-by-case decision outside the formulas, with a written reason",
)
async def manual_decision(
    principal: Approver,
    session: SessionDep,
    policy: PolicyDep,
    application_id: uuid.UUID,
    payload: ManualDecisionCreate,
    budget: BudgetDep,
) -> ApplicationRead:
    """An A1 decision reserves its amount from the programme budget before it commits (A2, budget.py)."""
    decision_id = uuid.uuid4()
    need = await approvals.manual_decision_budget(session, application_id, payload, principal, decision_id)
    return await with_reservation(
        session,
        budget,
        need,
        lambda reservation: approvals.manual_decision(
            session, policy, application_id, payload, principal, decision_id, reservation
        ),
    )


@router.get("/v1/decisions/{decision_id}", response_model=DecisionRead, tags=["decisions"])
async def get_decision(principal: Reader, session: SessionDep, decision_id: uuid.UUID) -> DecisionRead:
    return await decisions.get_decision(session, decision_id, principal)


@router.get(
    "/v1/approved-decisions/{decision_id}",
    response_model=ApprovedDecisionRead,
    tags=["decisions"],
    summary="An approved decision, for issuing vouchers and grants (404 unless approved and current)",
)
async def get_approved_decision(
    _: Annotated[Principal, require(DECISIONS_READ, OFFICER, APPROVER, ADMIN, AUDITOR)],
    session: SessionDep,
    decision_id: uuid.UUID,
) -> ApprovedDecisionRead:
    return await decisions.approved_decision(session, decision_id)


# --- policy ---------------------------------------------------------------------------------


def _parameter_read(parameters: ParameterSet, parameter_id: str) -> ParameterRead:
    parameter = parameters.parameters[parameter_id]
    users = sorted(m for m in RULES if parameter.clause == m) or ["all"]
    return ParameterRead(
        id=parameter_id,
        clause=parameter.clause,
        label={"zh": parameter.label_zh, "en": parameter.label_en},
        kind=SPECS[parameter_id].kind,
        history=[
            ParameterValueRead(
                effective_from=v.effective_from,
                effective_to=v.effective_to,
                value=service.jsonable_value(v.value),
                status=v.status,
                source=v.source,
                origin=v.origin,
            )
            for v in parameter.history
        ],
        used_by=users,
    )


#: where each clause that is not a measure's own rule is checked
_COMMON_RULES = {"preamble", "A3", "A4"}


def _policy_read(parameters: ParameterSet) -> PolicyRead:
    """Every clause of the text, in its order, with what the service does for it (services/eligibility/clauses.py)."""
    clauses = [
        ClauseRead(
            id=clause.id,
            title=dict(RULES[clause.id].TITLE) if clause.id in RULES else {"zh": clause.zh, "en": clause.en},
            treatment=clause.treatment,
            pays=clause.pays,
            service_does={"zh": clause.does_zh, "en": clause.does_en},
            rule_module=RULES[clause.id].__name__
            if clause.id in RULES
            else ("services.eligibility.rules.common" if clause.id in _COMMON_RULES else None),
            parameters=sorted(pid for pid, p in parameters.parameters.items() if p.clause == clause.id),
        )
        for clause in CLAUSES.values()
    ]
    return PolicyRead(
        policy=parameters.policy,
        version=parameters.version,
        parameters_digest=parameters.digest,
        validity_window=(parameters.validity_start, parameters.validity_end),
        clauses=clauses,
        parameters=[_parameter_read(parameters, pid) for pid in sorted(parameters.parameters)],
        claim_kinds=[
            ClaimKindRead(kind=k.kind, clause=k.clause, parts=list(k.parts), once_only={"zh": k.zh, "en": k.en})
            for k in CLAIM_KINDS.values()
        ],
        cap_kinds=[
            CapKindRead(kind=c.kind, clause=c.clause, parameter=c.parameter, label={"zh": c.zh, "en": c.en})
            for c in CAP_KINDS.values()
        ],
    )


@router.get(
    "/v1/policy",
    response_model=PolicyRead,
    tags=["policy"],
    summary="Clauses, their rules and every parameter with its value history",
)
async def get_policy_document(
    _: Annotated[Principal, require(*POLICY_READERS)], session: SessionDep, policy: PolicyDep
) -> PolicyRead:
    return _policy_read(await service.current_parameters(session, policy.parameters))


@router.get("/v1/policy/parameters/{parameter_id}", response_model=ParameterRead, tags=["policy"])
async def get_parameter(
    _: Annotated[Principal, require(*POLICY_READERS)],
    session: SessionDep,
    policy: PolicyDep,
    parameter_id: Annotated[str, Path(max_length=100)],
) -> ParameterRead:
    parameters = await service.current_parameters(session, policy.parameters)
    if parameter_id not in parameters.parameters:
        from shared.errors import ProblemError

        from .errors import PARAMETER_NOT_FOUND

        raise ProblemError(PARAMETER_NOT_FOUND, id=parameter_id)
    return _parameter_read(parameters, parameter_id)


@router.post(
    "/v1/policy/parameters/{parameter_id}/versions",
    status_code=201,
    response_model=ParameterRead,
    tags=["policy"],
    summary="Load a new version of a parameter, effective from a future date (audited)",
)
@max_body(256 * KiB)  # a parameter's value may be a table
async def add_parameter_version(
    principal: Annotated[Principal, require(ADMIN)],
    session: SessionDep,
    policy: PolicyDep,
    parameter_id: Annotated[str, Path(max_length=100)],
    payload: ParameterVersionCreate,
) -> ParameterRead:
    parameters = await parameter_versions.add_parameter_version(session, policy, parameter_id, payload, principal)
    return _parameter_read(parameters, parameter_id)


@router.post(
    "/v1/simulations",
    response_model=SimulationRead,
    tags=["policy"],
    summary="What if: re-evaluate stored applications under other parameters (nothing is stored)",
)
@max_body(8 * MiB)  # up to 100,000 application ids
async def simulate(
    _: Annotated[Principal, require(OFFICER, APPROVER, ADMIN, AUDITOR)],
    session: SessionDep,
    policy: PolicyDep,
    payload: SimulationCreate,
) -> SimulationRead:
    return await simulation.simulate(session, policy, payload)


CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/csv": {"schema": {"type": "string"}}},
        "description": "UTF-8, a header row, one row per application (columns in docs/simulations.md)",
    }
}


def _csv(report: SimulationRead) -> Response:
    return Response(
        simulation.as_csv(report),
        media_type="text/csv; charset=utf-8; header=present",
        headers={"Content-Disposition": 'attachment; filename="simulation.csv"'},
    )


@router.post(
    "/v1/simulations/export",
    response_class=Response,
    responses=CSV_RESPONSE,
    tags=["policy"],
    summary="What if, as CSV: the per-application table of the same simulation (nothing is stored)",
)
@max_body(8 * MiB)  # up to 100,000 application ids
async def export_simulation(
    _: Annotated[Principal, require(OFFICER, APPROVER, ADMIN, AUDITOR)],
    session: SessionDep,
    policy: PolicyDep,
    payload: SimulationCreate,
) -> Response:
    return _csv(await simulation.simulate(session, policy, payload))


@router.get(
    "/v1/simulations/export",
    response_class=Response,
    responses=CSV_RESPONSE,
    tags=["policy"],
    summary="What if, as CSV, from a link: measure and year (or application ids), status, overrides as JSON",
)
async def export_simulation_link(
    _: Annotated[Principal, require(OFFICER, APPROVER, ADMIN, AUDITOR)],
    session: SessionDep,
    policy: PolicyDep,
    measure: Annotated[str | None, Query(pattern=r"^M(1[0-3]|[1-9])$")] = None,
    year: Annotated[int | None, Query(ge=2000, le=2100, description="benefit year, with measure")] = None,
    application_id: Annotated[list[uuid.UUID] | None, Query(max_length=1000)] = None,
    status: Annotated[SimulationStatus, Query()] = "all",
    overrides: Annotated[str, Query(max_length=16_384, description='a JSON object, e.g. {"M5.ratio": "0.4"}')] = "{}",
) -> Response:
    try:
        parsed = json.loads(overrides)
    except (ValueError, RecursionError):  # not JSON, or nested past what the parser follows
        parsed = None
    if not isinstance(parsed, dict):
        raise validation_problem(
            [FieldError("query.overrides", "json_object", "应为 JSON 对象", "overrides must be a JSON object", {})]
        )
    payload = SimulationCreate(
        application_ids=application_id, measure=measure, year=year, status=status, overrides=parsed
    )
    return _csv(await simulation.simulate(session, policy, payload))
