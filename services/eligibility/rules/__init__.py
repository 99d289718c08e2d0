"""One module per measure, each a pure `evaluate(evidence, facts, params, trace) -> Result`.

`evaluate_application` adds what every measure shares (A4 validity, the applicant's
registration) and returns the result with its trace. No I/O happens here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from types import ModuleType
from typing import Any

from ..engine import ENGINE_VERSION, ParamView, Result, Trace
from ..evidence import Evidence
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
from .common import check_applicant, check_validity

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
    if facts.organisation is None:
        result = Result.ineligible(*failures) if failures else Result.needs_review(*reviews)
    else:
        rule: Result = RULES[measure].evaluate(evidence, facts, params, trace)
        if failures or rule.outcome == "ineligible":
            result = Result.ineligible(*failures, *rule.failures)
        elif reviews or rule.outcome == "needs_review":
            result = Result(
                "needs_review",
                rule.amount_fen,
                review_reasons=(*reviews, *rule.review_reasons),
                components=rule.components,
            )
        else:
            result = rule
    return Evaluation(
        result=result,
        trace=trace.as_list(),
        policy_version=parameters.version,
        parameters_digest=parameters.digest,
    )
