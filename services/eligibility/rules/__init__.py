"""One module per measure, each a pure `evaluate(evidence, facts, params, trace) -> Result`.

`evaluate_application` adds what every measure shares (A4 validity, the applicant's
registration) and returns the result with its trace. No I/O happens here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from types import ModuleType
from typing import Any

from ..engine import ENGINE_VERSION, ParamView, Result, Trace
from ..evidence import EVIDENCE, Evidence
from ..facts import Facts, FactsRequest
from ..parameters import ParameterSet
from . import (
    m1_compute_vouchers,
    m2_large_models,
    m3_model_vouchers,
    m4_demonstration_projects,
    m5_four_above_transformation,
    m6_benchmark_transformation,
    m7_ai_standards,
    m8_key_software,
    m9_growth,
    m10_first_version_software,
    m11_rent,
    m12_public_platforms,
    m13_major_events,
)
from .claims import claim_reasons, held
from .common import check_applicant, check_declarations, check_validity

RULES: dict[str, ModuleType] = {
    module.MEASURE: module
    for module in (
        m1_compute_vouchers,
        m2_large_models,
        m3_model_vouchers,
        m4_demonstration_projects,
        m5_four_above_transformation,
        m6_benchmark_transformation,
        m7_ai_standards,
        m8_key_software,
        m9_growth,
        m10_first_version_software,
        m11_rent,
        m12_public_platforms,
        m13_major_events,
    )
}

#: Measures whose applicants need not be registered in the district (M13: the event is held there).
OUTSIDE_DISTRICT_ALLOWED = frozenset({"M13"})


@dataclass(frozen=True)
class Evaluation:
    result: Result
    trace: list[dict[str, Any]]
    policy_version: str
    parameters_digest: str
    engine_version: str = ENGINE_VERSION


def _values(parameters: ParameterSet, as_of: date) -> Callable[[str], Any]:
    """Parameter values on a day, untraced: for keys and caps, which the trace records as such."""
    return lambda parameter_id: parameters.value(parameter_id, as_of)[1].value


def claim_keys(evidence: Evidence, applicant: str, parameters: ParameterSet, as_of: date) -> list[str]:
    """The claim keys an application asks for (rules/claims.py), from its evidence: looked up before the rules run."""
    measure: str = evidence.measure  # type: ignore[attr-defined]
    keys: list[str] = RULES[measure].claim_keys(evidence, applicant, _values(parameters, as_of))
    return list(dict.fromkeys(keys))


def annual_caps(evidence: Evidence, facts: Facts, parameters: ParameterSet, as_of: date) -> list[dict[str, Any]]:
    """The annual caps an award of this application uses, whatever its outcome (an A1 decision keeps them)."""
    module = RULES[evidence.measure]  # type: ignore[attr-defined]
    if not hasattr(module, "annual_caps"):
        return []
    return [cap.as_dict() for cap in module.annual_caps(evidence, facts, _values(parameters, as_of))]


def claims_of_record(
    measure: str, applicant: str, evidence: dict[str, Any], components: dict[str, int], trace: list[dict[str, Any]]
) -> list[str]:
    """The keys an award decided before the register paid for, from what its decision recorded (migration 0007)."""
    try:
        parsed: Evidence = EVIDENCE.validate_python(evidence)
    except ValueError:
        return []
    if measure == "M9":
        keys = [
            m9_growth.threshold_claim(applicant, int(name.removeprefix(m9_growth.THRESHOLD_PREFIX)))
            for name in components
            if name.startswith(m9_growth.THRESHOLD_PREFIX)
        ]
        if components.get("growth"):
            keys.append(m9_growth.growth_claim(applicant, parsed.year))  # type: ignore[attr-defined]
        return keys
    if measure == "M7":
        return [m7_ai_standards.standard_key(name) for name in components]
    keys = RULES[measure].claim_keys(parsed, applicant, None)
    if measure == "M1":  # whole invoices the decision left out (affiliated, not a compute vendor …) were not paid
        excluded = {
            str(row.get("invoice"))
            for step in trace
            for row in step.get("inputs", {}).get("excluded", [])
            if isinstance(row, dict) and "invoice" in row and "line" not in row
        }
        keys = [k for k in keys if k.rsplit("|", 1)[-1] not in excluded]
    return list(dict.fromkeys(keys))


def _registered(result: Result, candidates: list[str], facts: Facts, trace: Trace, *, lookup_only: bool) -> Result:
    """Check the keys the result pays for against the register; a result always names its keys.

    A key already awarded makes the application ineligible; one another application is
    waiting on sends it to review (whichever is approved first holds it: the database
    refuses the second). An ineligible result keeps every key asked for, so an A1
    decision on it pays for — and is checked against — the same keys (M9 asks for
    every threshold only to look them up: there, the keys that stood in the way).
    """
    if result.outcome == "ineligible" and result.claims:
        claims = result.claims
    elif result.outcome == "ineligible" and lookup_only:  # M9: only the keys that stood in the way
        claims = tuple(key for key in candidates if key in facts.claimed)
    else:
        claims = result.claims or tuple(candidates)
    holders = held(facts.claimed, claims)
    failures, reviews = claim_reasons(holders)
    trace.step(
        "register",
        "登记簿：本申请所扶持事项（一次性键）不得已获扶持",
        "Award register: what this application pays for must not have been awarded already",
        inputs={"claims": list(claims), "held": {k: v.model_dump() for k, v in holders.items()}},
        outcome="fail" if failures else ("review" if reviews else "pass"),
    )
    result = replace(result, claims=claims)
    if failures and result.outcome != "ineligible":
        return replace(Result.ineligible(*failures), claims=claims, basis=result.basis)
    if failures:
        return replace(result, failures=(*result.failures, *failures))
    if reviews and result.outcome == "eligible":
        return replace(result, outcome="needs_review", review_reasons=(*result.review_reasons, *reviews))
    if reviews:
        return replace(result, review_reasons=(*result.review_reasons, *reviews))
    return result


def facts_needed(evidence: Evidence) -> FactsRequest:
    request: Callable[[Any], FactsRequest] = RULES[evidence.measure].facts_needed  # type: ignore[attr-defined]
    return request(evidence)


def evaluate_application(evidence: Evidence, as_of: date, facts: Facts, parameters: ParameterSet) -> Evaluation:
    measure: str = evidence.measure  # type: ignore[attr-defined]
    trace = Trace()
    params = ParamView(parameters, as_of, trace)
    failures = check_validity(as_of, params, trace)
    district_failures, reviews = check_applicant(
        facts, params, trace, require_district=measure not in OUTSIDE_DISTRICT_ALLOWED
    )
    failures += district_failures
    reviews += check_declarations(evidence, trace)
    if facts.organisation is None:
        result = Result.ineligible(*failures) if failures else Result.needs_review(*reviews)
    else:
        rule: Result = RULES[measure].evaluate(evidence, facts, params, trace)
        if failures or rule.outcome == "ineligible":
            result = replace(Result.ineligible(*failures, *rule.failures), claims=rule.claims)
        elif reviews or rule.outcome == "needs_review":
            result = replace(rule, outcome="needs_review", review_reasons=(*reviews, *rule.review_reasons))
        else:
            result = rule
    candidates = claim_keys(evidence, facts.applicant or "", parameters, as_of)
    lookup_only = getattr(RULES[measure], "CANDIDATE_KEYS_ARE_LOOKUPS", False)
    result = _registered(result, candidates, facts, trace, lookup_only=lookup_only)
    result = replace(result, caps=tuple(annual_caps(evidence, facts, parameters, as_of)))
    return Evaluation(
        result=result,
        trace=trace.as_list(),
        policy_version=parameters.version,
        parameters_digest=parameters.digest,
    )
