"""Conditions every measure shares: the validity window (A4) and the applicant's registration.

Also small helpers the measure modules use to say things in both languages.
"""

from __future__ import annotations

from datetime import date, timedelta

from ..engine import ParamView, Reason, Trace
from ..facts import Facts, PriorAward


def reason(clause: str, code: str, zh: str, en: str) -> Reason:
    return Reason(clause, code, zh, en)


def validity_window(p: ParamView) -> tuple[date, date]:
    """A4: in force from the start date for `validity_years` years (last day inclusive)."""
    start: date = p("A4.start_date")
    years: int = p("A4.validity_years")
    return start, date(start.year + years, start.month, start.day) - timedelta(days=1)


def check_validity(as_of: date, p: ParamView, trace: Trace) -> list[Reason]:
    start, end = validity_window(p)
    inside = start <= as_of <= end
    trace.step(
        "A4",
        "申请日期须在措施有效期内",
        "The application date must be inside the validity window",
        inputs={"as_of": as_of.isoformat(), "window": [start.isoformat(), end.isoformat()]},
        outcome="pass" if inside else "fail",
    )
    if inside:
        return []
    return [
        reason(
            "A4",
            "outside_validity_window",
            f"申请日期 {as_of} 不在措施有效期（{start} 至 {end}）内",
            f"The application date {as_of} is outside the validity window ({start} to {end})",
        )
    ]


def check_applicant(
    facts: Facts, p: ParamView, trace: Trace, *, require_district: bool = True
) -> tuple[list[Reason], list[Reason]]:
    """The applicant must be in the registry on the date; most measures are for district entities."""
    organisation = facts.organisation
    if organisation is None:
        trace.step(
            "parties",
            "申请人须在登记簿中",
            "The applicant must be in the registry",
            inputs={"as_of": facts.as_of.isoformat()},
            outcome="review",
        )
        return [], [
            reason(
                "parties",
                "applicant_not_registered",
                f"登记簿中在 {facts.as_of} 没有该申请人的记录，需人工核实",
                f"The registry had no record of the applicant on {facts.as_of}; a person must check",
            )
        ]
    if not require_district:
        return [], []
    district: str = p("common.district_code")
    inside = organisation.registered_district == district
    trace.step(
        "preamble",
        "申请人须为本区注册单位",
        "The applicant must be registered in the district",
        inputs={"registered_district": organisation.registered_district},
        outcome="pass" if inside else "fail",
    )
    if inside:
        return [], []
    return [
        reason(
            "preamble",
            "not_in_district",
            f"申请人注册地（{organisation.registered_district}）不在龙岗区（{district}）",
            f"The applicant is registered in {organisation.registered_district}, not in Longgang ({district})",
        )
    ], []


def awarded_in(prior: list[PriorAward], year: int, component: str | None = None) -> int:
    """What earlier decisions already gave in that year (optionally one component)."""
    if component is None:
        return sum(award.amount_fen for award in prior if award.year == year)
    return sum(award.components.get(component, 0) for award in prior if award.year == year)
