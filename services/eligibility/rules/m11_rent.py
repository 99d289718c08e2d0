"""M11 — rent subsidies for above-scale software and internet enterprises renting industrial housing.

The clause is for AI enterprises (支持人工智能企业租用产业用房, 具有人工智能能力): an
`ai_enterprise` recognition in force on the application date, for both kinds of housing
(`M11.ai_enterprises_only`, interpretation).

Registered in Longgang on or after the date (M11-3), no own industrial housing in the
district; for the rented area up to 1,000 m² (2,000 m² if last year's revenue strictly
exceeded the threshold): at most 50% of the rent actually paid for that area, and at most
50 yuan per m² per month (M11-1, M11-2).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..engine import ParamView, Reason, Result, Trace
from ..evidence import M11Evidence
from ..facts import Facts, FactsRequest
from . import claims
from .checks import check_ai_enterprise, floor_fen
from .common import check_benefit_year, reason

MEASURE = "M11"
TITLE = {"zh": "产业用房租金补贴", "en": "Rent subsidies"}
ABOVE_SCALE = ("above_scale_industrial", "above_scale_services")


def claim_keys(evidence: M11Evidence, applicant: str, p: Any) -> list[str]:
    return [claims.key("M11.rent", applicant, evidence.year)]


def facts_needed(evidence: M11Evidence) -> FactsRequest:
    return FactsRequest(revenues=True, recognitions=True)


def evaluate(evidence: M11Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    organisation = facts.organisation
    assert organisation is not None
    failures: list[Reason] = []
    reviews: list[Reason] = []
    # 租用产业用房上年度 … 实际支付租金: last year's rent
    failures += check_benefit_year(
        "M11", evidence.year, facts.as_of, p, trace, back=(1, 1), text=("上年度", "last year")
    )
    if evidence.innovative_housing:
        failures.append(
            reason(
                "M11",
                "innovative_housing",
                "区属创新型产业用房按其管理办法享受租金折扣，不适用本项补贴",
                "District-owned innovative housing has its own discount rules, not this subsidy",
            )
        )
    if not organisation.is_software_internet:
        failures.append(
            reason(
                "M11",
                "not_software_internet",
                "申请人不是软件及互联网企业",
                "The applicant is not a software or internet enterprise",
            )
        )
    # 支持人工智能企业租用产业用房 … 具有人工智能能力的软件及互联网企业: the clause is for AI enterprises
    if p("M11.ai_enterprises_only"):
        failures += check_ai_enterprise(
            "M11", facts, trace, words=("具有人工智能能力的企业", "an enterprise with AI capability")
        )
    if organisation.four_above_category not in ABOVE_SCALE:
        failures.append(reason("M11", "not_above_scale", "申请人不是规模以上企业", "The applicant is not above scale"))
    since = p("M11.registered_on_or_after")
    registered = organisation.registered_on
    if registered is None:
        reviews.append(
            reason("M11", "registration_date_missing", "登记簿中没有注册日期", "The registry has no registration date")
        )
    elif registered < since:
        failures.append(
            reason(
                "M11",
                "registered_too_early",
                f"在龙岗区注册日期 {registered} 早于 {since}",
                f"Registered in Longgang on {registered}, before {since}",
            )
        )
    if organisation.owns_district_industrial_housing is True:
        failures.append(
            reason(
                "M11",
                "owns_housing",
                "申请人在本区有自有产业用房",
                "The applicant owns industrial housing in the district",
            )
        )
    elif organisation.owns_district_industrial_housing is None:
        reviews.append(
            reason(
                "M11",
                "own_housing_unknown",
                "登记簿未记录是否有自有产业用房",
                "The registry does not say whether it owns industrial housing",
            )
        )
    trace.step(
        "M11",
        "申请条件",
        "Conditions",
        inputs={
            "registered_on": str(registered),
            "four_above_category": organisation.four_above_category,
            "is_software_internet": organisation.is_software_internet,
            "owns_district_industrial_housing": organisation.owns_district_industrial_housing,
        },
        outcome="fail" if failures else ("review" if reviews else "pass"),
    )
    if failures:
        return Result.ineligible(*failures)

    threshold: int = p("M11.high_revenue_threshold_fen")
    revenue = facts.revenues.get(evidence.year)
    if revenue is None:
        reviews.append(
            reason(
                "M11",
                "revenue_missing",
                f"登记簿中没有 {evidence.year} 年度营收，按较低面积上限测算",
                f"No {evidence.year} revenue in the registry; computed with the lower area cap",
            )
        )
    high = revenue is not None and revenue > threshold  # 超: strictly greater
    area_cap: int = p("M11.area_cap_high_revenue_m2") if high else p("M11.area_cap_m2")
    area = evidence.area_m2
    eligible_area = min(area, Decimal(area_cap))
    trace.step(
        "M11",
        "可补贴面积",
        "Subsidised area",
        inputs={"area_m2": str(area), "revenue_fen": revenue, "revenue_exceeds_threshold": high},
        amounts={"area_cap_m2": area_cap},
    )

    rent_for_area = floor_fen(Decimal(evidence.rent_paid_fen) * eligible_area / area)
    by_rent = floor_fen(Decimal(rent_for_area) * p("M11.rent_ratio"))
    by_area = floor_fen(Decimal(p("M11.monthly_cap_per_m2_fen")) * eligible_area * evidence.months)
    amount = min(by_rent, by_area)
    trace.step(
        "M11",
        "按实际租金比例与每平方米每月上限取低",
        "Lower of the rent share and the per-m² monthly cap",
        inputs={"eligible_area_m2": str(eligible_area), "months": evidence.months},
        amounts={
            "rent_paid_fen": evidence.rent_paid_fen,
            "rent_for_area_fen": rent_for_area,
            "by_rent_fen": by_rent,
            "by_area_cap_fen": by_area,
            "amount_fen": amount,
        },
        outcome="review" if reviews else "eligible",
    )
    if reviews:
        return Result.needs_review(*reviews, proposed_fen=amount)
    return Result.eligible(amount)
