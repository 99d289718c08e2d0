"""What if: stored applications re-run under other parameters, as an auditor would check them.

Nothing is stored. The rules are the same pure functions as for decisions, fed the facts
stored with each decision; only what depends on other applications is recomputed:

- **Scope.** `approved`, `pending` (in review or reviewed) or `all` (those, and the rejected
  and ineligible ones — listed with their status, never counted as money), within the
  application ids or the measure and benefit year asked for.
- **Before** is what an application was given: the approval's amount for an approved one
  (an A1 decision's included, its part above the formula shown under clause A1), the
  automatic decision's amount for a pending one.
- **After** is the new rules' amount with the year recomputed as approval does it: each
  enterprise's standing applications of a measure (approved, in review, reviewed — in the
  scope or not) are taken in order of application date, then the order received; each is
  evaluated with the earlier ones' *new* amounts as its year's earlier awards (the rules
  then give the year total to date less what those got), and its share of each annual cap
  (`rules/claims.py`: `cap_uses`, the caps of the new parameters) is taken from what the
  earlier ones left, as the register's conditional UPDATE would. An A1 decision is not
  made again: after is the formula's amount.
- **Budget impact** is after − before per measure. The budget figures stay in the vouchers
  service (`GET /v1/aggregates/budget`): budgets are counted by the year an approval
  reserves them, not the benefit year a simulation groups by, so the comparison is the
  reader's, with the vouchers service's own answer (docs/simulations.md).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import ProblemError
from shared.exports.query import neutral_text

from . import repository
from .engine import Trace
from .errors import PARAMETER_INVALID, PARAMETER_NOT_FOUND, SIMULATION_SCOPE, SIMULATION_TRACE
from .evidence import AnyEvidence, Evidence
from .facts import Facts, PriorAward
from .models import Application, Decision
from .parameters import SPECS, ParameterFileError, ParameterSet, parse_value
from .rules import Evaluation, evaluate_application
from .rules.claims import cap_uses
from .schemas import (
    SimulatedApplication,
    SimulationClauseTotal,
    SimulationCreate,
    SimulationMeasureTotal,
    SimulationRead,
    SimulationTrace,
)
from .service import Policy, current_parameters

EVIDENCE: TypeAdapter[Evidence] = TypeAdapter(AnyEvidence)

STATUSES = {
    "approved": ("approved",),
    "pending": ("in_review", "reviewed"),
    "all": ("in_review", "reviewed", "approved", "rejected", "ineligible"),
}
ORDER = (
    "每个企业每项措施的在审及已核准申请按申请日期、再按收件顺序依次计算；每个申请的年度合计计入之前申请的新金额，"
    "年度上限扣除之前申请已用部分 / Each enterprise's standing applications of a measure are taken by application "
    "date, then the order received; each one's year totals count the earlier ones' new amounts, and each annual cap "
    "gives it what the earlier ones left"
)
#: the CSV's columns, one row per application of the scope
CSV_COLUMNS = (
    "application_id",
    "applicant",
    "measure",
    "benefit_year",
    "as_of",
    "status",
    "counted",
    "before_source",
    "before_outcome",
    "before_fen",
    "before_a1_fen",
    "after_outcome",
    "after_fen",
    "difference_fen",
    "cap_trimmed_fen",
    "earlier_in_year",
)


def overridden(parameters: ParameterSet, overrides: dict[str, Any]) -> ParameterSet:
    """The parameters with each overridden value in effect on every date."""
    changed = dict(parameters.parameters)
    for parameter_id, raw_value in overrides.items():
        if parameter_id not in SPECS:
            raise ProblemError(PARAMETER_NOT_FOUND, id=parameter_id)
        raw = {"effective_from": date(1900, 1, 1), "value": raw_value, "status": "provisional", "source": "simulation"}
        try:
            value = parse_value(f"overrides.{parameter_id}", parameter_id, raw, origin="simulation")
        except ParameterFileError as exc:
            raise ProblemError(PARAMETER_INVALID, problem=str(exc)) from exc
        changed[parameter_id] = replace(changed[parameter_id], history=(value,))
    return replace(parameters, parameters=changed, version=parameters.version + "+simulation")


@dataclass
class _Run:
    """One application's new result, once its enterprise-year has been taken in order."""

    after_outcome: str
    after_fen: int
    cap_trimmed_fen: int
    earlier: list[uuid.UUID]
    trace: list[dict[str, Any]] = field(default_factory=list)


def _evaluate(
    application: Application, decision: Decision, prior: list[PriorAward], parameters: ParameterSet
) -> Evaluation | None:
    """The rules on the stored evidence and facts, with the year's earlier awards as the simulation has them."""
    try:
        evidence = EVIDENCE.validate_python(application.evidence)
        facts = Facts.model_validate(decision.facts)
    except ValidationError:
        return None  # stored before the evidence's or facts' present form: shown as not_evaluable
    try:
        return evaluate_application(
            evidence, application.as_of, facts.model_copy(update={"prior_awards": prior}), parameters
        )
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:  # an override the rules cannot work with
        problem = f"application {application.id}: {type(exc).__name__}: {exc}"
        raise ProblemError(PARAMETER_INVALID, problem=problem) from exc


def _take_caps(
    amount: int, components: dict[str, int], caps: tuple[dict[str, Any], ...], used: dict[tuple[str, int], int]
) -> tuple[int, dict[str, int], list[dict[str, Any]]]:
    """Each cap's share from what the year's earlier applications left (the register's conditional UPDATE)."""
    components = dict(components)
    cuts: list[dict[str, Any]] = []
    for use in cap_uses(amount, components, caps):
        slot = (use["kind"], use["year"])
        room = max(0, use["limit_fen"] - used.get(slot, 0))
        excess = max(0, use["amount_fen"] - room)
        used[slot] = used.get(slot, 0) + use["amount_fen"] - excess
        if excess:
            cuts.append({**use, "room_fen": room, "cut_fen": excess})
            amount -= excess
            left = excess
            for name in [n for n in components if n in use["components"] or "*" in use["components"]]:
                cut = min(left, components[name])
                components[name] -= cut
                left -= cut
    return max(0, amount), components, cuts


def _run_year(rows: list[repository.SimulationRow], parameters: ParameterSet, measure: str) -> dict[uuid.UUID, _Run]:
    """One enterprise's applications of one measure, in order; standing ones count for the later ones."""
    runs: dict[uuid.UUID, _Run] = {}
    prior: list[PriorAward] = []
    earlier: list[tuple[uuid.UUID, int]] = []  # standing applications taken so far, with their benefit year
    used: dict[tuple[str, int], int] = {}
    for application, decision, _ in sorted(rows, key=lambda row: (row[0].as_of, row[0].seq)):
        standing = application.status in repository.STANDING
        same_year = [i for i, year in earlier if year == application.benefit_year]
        evaluation = _evaluate(application, decision, list(prior), parameters)
        if evaluation is None:
            runs[application.id] = _Run("not_evaluable", 0, 0, same_year)
            continue
        result = evaluation.result
        money = result.outcome in ("eligible", "needs_review") and standing
        amount = (result.amount_fen or 0) if money else 0
        amount_after_caps, components, cuts = _take_caps(amount, dict(result.components), result.caps, used)
        if not money:
            cuts = []
        trace = Trace()
        trace.step(
            measure,
            "模拟：按新参数重算；同一企业同一措施的在审及已核准申请按申请日期、收件顺序依次计算",
            "Simulation: the new parameters; the enterprise's standing applications of the measure taken by "
            "application date, then the order received",
            inputs={
                "status": application.status,
                "counted": standing,
                "earlier_in_year": [str(i) for i in same_year],
                "earlier_awards": [award.model_dump(mode="json") for award in prior],
            },
        )
        for cut in cuts:
            trace.step(
                cut["clause"],
                "年度上限：只给同年度之前申请剩下的部分",
                "Annual cap: only what the year's earlier applications left",
                inputs={"cap": cut["kind"], "year": cut["year"], "parameter": cut["parameter"]},
                amounts={"limit_fen": cut["limit_fen"], "room_fen": cut["room_fen"], "cut_fen": cut["cut_fen"]},
                outcome="fail" if cut["room_fen"] == 0 else None,
            )
        steps = trace.as_list()
        runs[application.id] = _Run(
            result.outcome,
            amount_after_caps,
            amount - amount_after_caps,
            same_year,
            [steps[0], *evaluation.trace, *steps[1:]],
        )
        if standing:
            earlier.append((application.id, application.benefit_year))
            if amount_after_caps:
                prior.append(
                    PriorAward(
                        decision_id=decision.id,
                        year=application.benefit_year,
                        amount_fen=amount_after_caps,
                        components=components,
                        basis=result.basis,
                    )
                )
    return runs


def _before(
    application: Application, decision: Decision, approved: int | None, superseded: dict[uuid.UUID, Decision]
) -> tuple[str, int, int]:
    """(source, amount, of which paid by A1 above the formula) of what the application was given."""
    if application.status not in repository.STANDING:
        return "not_money", 0, 0
    if application.status != "approved":
        return "automatic", decision.amount_fen or 0, 0
    amount = approved if approved is not None else (decision.amount_fen or 0)
    if decision.kind != "manual_a1":
        return "approved", amount, 0
    formula = superseded.get(decision.id)
    return "approved_a1", amount, max(0, amount - ((formula.amount_fen or 0) if formula else 0))


async def _superseded(session: AsyncSession, decisions: list[Decision]) -> dict[uuid.UUID, Decision]:
    """For each A1 decision, the automatic decision it replaced (its formula amount)."""
    ids: dict[uuid.UUID, uuid.UUID] = {}
    for decision in decisions:
        if decision.kind == "manual_a1" and decision.trace:
            previous = decision.trace[0].get("inputs", {}).get("supersedes")
            if previous:
                ids[decision.id] = uuid.UUID(previous)
    found = await repository.decisions_by_id(session, list(set(ids.values())))
    return {a1: found[previous] for a1, previous in ids.items() if previous in found}


def _totals(rows: list[SimulatedApplication]) -> tuple[list[SimulationMeasureTotal], list[SimulationClauseTotal]]:
    measures: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    clauses: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        if not row.counted:
            continue
        before, after = row.before_fen or 0, row.after_fen or 0
        for sums, before_part, after_part in (
            (measures[row.measure], before, after),
            (clauses[row.measure], before - row.before_a1_fen, after),
        ):
            sums[0] += 1
            sums[1] += before_part
            sums[2] += after_part
        if row.before_a1_fen:
            clauses["A1"][0] += 1
            clauses["A1"][1] += row.before_a1_fen

    def number(clause: str) -> tuple[int, int]:
        """M1 … M13, then A1 … A4: the text's order."""
        return (0 if clause.startswith("M") else 1), int(clause[1:])

    return (
        [
            SimulationMeasureTotal(
                measure=m, count=c, before_fen=b, after_fen=a, difference_fen=a - b, budget_impact_fen=a - b
            )
            for m, (c, b, a) in sorted(measures.items(), key=lambda item: number(item[0]))
        ],
        [
            SimulationClauseTotal(clause=k, count=c, before_fen=b, after_fen=a, difference_fen=a - b)
            for k, (c, b, a) in sorted(clauses.items(), key=lambda item: number(item[0]))
        ],
    )


async def simulate(session: AsyncSession, policy: Policy, payload: SimulationCreate) -> SimulationRead:
    ids = payload.application_ids
    if ids is None and (payload.measure is None or payload.year is None):
        raise ProblemError(SIMULATION_SCOPE)
    trace_of = payload.trace_of
    if payload.include_trace:
        if ids is None or len(set(ids)) != 1:
            raise ProblemError(SIMULATION_TRACE, id="-")
        trace_of = trace_of or ids[0]
    base = await current_parameters(session, policy.parameters)
    alternative = overridden(base, payload.overrides)
    scope = await repository.applications_for_simulation(
        session, ids, payload.measure, payload.year, STATUSES[payload.status]
    )
    if trace_of is not None and trace_of not in {application.id for application, _, _ in scope}:
        raise ProblemError(SIMULATION_TRACE, id=str(trace_of))
    pairs = {(application.applicant, application.measure) for application, _, _ in scope}
    standing = await repository.standing_for_simulation(
        session, sorted({a for a, _ in pairs}), sorted({m for _, m in pairs})
    )
    years: dict[tuple[str, str], dict[uuid.UUID, repository.SimulationRow]] = defaultdict(dict)
    for row in (*standing, *scope):
        pair = (row[0].applicant, row[0].measure)
        if pair in pairs:
            years[pair][row[0].id] = row
    runs: dict[uuid.UUID, _Run] = {}
    for (_, measure), rows in years.items():
        runs.update(_run_year(list(rows.values()), alternative, measure))
    superseded = await _superseded(session, [decision for _, decision, _ in scope])

    results: list[SimulatedApplication] = []
    for application, decision, approved in scope:
        run = runs[application.id]
        source, before, a1 = _before(application, decision, approved, superseded)
        counted = source != "not_money"
        after = run.after_fen if counted else 0
        results.append(
            SimulatedApplication(
                application_id=application.id,
                measure=application.measure,
                applicant=application.applicant,
                benefit_year=application.benefit_year,
                as_of=application.as_of,
                status=application.status,
                counted=counted,
                before_source=source,  # type: ignore[arg-type]
                before_outcome=decision.outcome,
                before_fen=before,
                before_a1_fen=a1,
                after_outcome=run.after_outcome,
                after_fen=after,
                difference_fen=after - before,
                cap_trimmed_fen=run.cap_trimmed_fen if counted else 0,
                earlier_in_year=run.earlier,
            )
        )
    counted_rows = [r for r in results if r.counted]
    total_before = sum(r.before_fen or 0 for r in counted_rows)
    total_after = sum(r.after_fen or 0 for r in counted_rows)
    by_measure, by_clause = _totals(results)
    trace = None
    if trace_of is not None:
        run = runs[trace_of]
        shown = next(r for r in results if r.application_id == trace_of)
        trace = SimulationTrace(
            application_id=trace_of, outcome=run.after_outcome, amount_fen=shown.after_fen, trace=run.trace
        )
    return SimulationRead(
        count=len(results),
        changed=sum(1 for r in counted_rows if r.difference_fen != 0 or r.before_outcome != r.after_outcome),
        status=payload.status,
        order=ORDER,
        total_before_fen=total_before,
        total_after_fen=total_after,
        total_difference_fen=total_after - total_before,
        parameters_digest=alternative.digest,
        by_measure=by_measure,
        by_clause=by_clause,
        trace=trace,
        applications=results,
    )


def as_csv(report: SimulationRead) -> str:
    """The per-application table: UTF-8, a header row, one row per application; text cells never run as formulas."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.applications:
        values = row.model_dump(mode="json")
        cells: list[Any] = []
        for column in CSV_COLUMNS:
            value = values[column]
            if column == "earlier_in_year":
                value = " ".join(value)
            elif column == "counted":
                value = "true" if value else "false"
            cells.append(neutral_text(value) if isinstance(value, str) else ("" if value is None else value))
        writer.writerow(cells)
    return buffer.getvalue()
