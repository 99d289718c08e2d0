"""Conditions every measure shares: the validity window (A4) and the applicant's registration.

Also small helpers the measure modules use to say things in both languages.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from ..engine import ParamView, Reason, Trace
from ..evidence import Evidence
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


#: how the benefit-year check names "this year or one still claimable" (M5, M7, M13: `*.claim_years_back`)
RECENT_YEAR = ("申请当年或此前可申报的年度", "the application's year or one it may still claim")


def check_benefit_year(
    clause: str,
    year: int,
    as_of: date,
    p: ParamView,
    trace: Trace,
    *,
    back: tuple[int, int] | None,
    text: tuple[str, str],
) -> list[Reason]:
    """The year an award pays for must be the one its clause names and fall in the measures' validity (A4).

    `back` is (nearest, furthest) years before the application's year: (1, 1) is 上年度, the
    year before; (0, 1) this year or the last; None when another check fixes the year. A year
    overlaps the validity window when any day of it is inside (the measures start on a day
    within their first year).
    """
    start, end = validity_window(p)
    nearest, furthest = (as_of.year - back[0], as_of.year - back[1]) if back else (year, year)
    named = furthest <= year <= nearest
    inside = start.year <= year <= end.year
    trace.step(
        clause,
        f"受益年度须为{text[0]}，且在措施有效期内",
        f"The benefit year must be {text[1]}, inside the validity window",
        inputs={
            "year": year,
            "allowed_years": [furthest, nearest],
            "window": [start.isoformat(), end.isoformat()],
        },
        outcome="pass" if named and inside else "fail",
    )
    failures: list[Reason] = []
    if not named:
        allowed = str(nearest) if nearest == furthest else f"{furthest}–{nearest}"
        failures.append(
            reason(
                clause,
                "benefit_year_not_allowed",
                f"{clause}：受益年度须为{text[0]}（{allowed}），申报为 {year}",
                f"{clause}: the benefit year must be {text[1]} ({allowed}), not {year}",
            )
        )
    if not inside:
        failures.append(
            reason(
                clause,
                "benefit_year_outside_validity",
                f"{clause}：受益年度 {year} 不在措施有效期（{start} 至 {end}，A4）内",
                f"{clause}: the benefit year {year} is outside the validity window ({start} to {end}, A4)",
            )
        )
    return failures


def inside_validity(day: date, p: ParamView) -> bool:
    """A4: the day is inside the measures' validity window."""
    start, end = validity_window(p)
    return start <= day <= end


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


def annual_cap_step(
    trace: Trace,
    clause: str,
    zh: str,
    en: str,
    inputs: dict[str, Any],
    *,
    before_cap: int,
    cap: int,
    already: int,
    amount: int,
) -> None:
    """The trace step of an annual cap less the year's earlier awards (M5, M7, M10): the same four amounts."""
    trace.step(
        clause,
        zh,
        en,
        inputs=inputs,
        amounts={
            "before_cap_fen": before_cap,
            "annual_cap_fen": cap,
            "already_awarded_fen": already,
            "after_cap_fen": amount,
        },
        outcome="eligible" if amount > 0 else "fail",
    )


def check_declarations(evidence: Evidence, trace: Trace) -> list[Reason]:
    """A3: the applicant's declaration that the same item has no other district funding, shown to the reviewer.

    The measures prevail over inconsistent district rules (附则（三）), so one item is funded
    under one of them. A declaration of other funding sends the application to review; no
    declaration is shown as such and decides nothing (applications before it was asked for).
    """
    declarations = getattr(evidence, "declarations", None)
    declared = None if declarations is None else declarations.no_other_district_funding
    trace.step(
        "A3",
        "申请人声明：同一事项未获区其他专项资金扶持",
        "The applicant's declaration: the same item has no other district funding",
        inputs={"no_other_district_funding": declared},
        outcome={True: "pass", False: "review", None: "not_declared"}[declared],
    )
    if declared is not False:
        return []
    return [
        reason(
            "A3",
            "other_district_funding_declared",
            "申请人声明同一事项已获区其他扶持，需人工核实适用哪项规定（以本措施为准）",
            "The applicant declares other district funding for the same item; a person must check which rule "
            "applies (these measures prevail)",
        )
    ]
