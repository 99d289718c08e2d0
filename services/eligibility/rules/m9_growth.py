"""M9 — growth rewards for AI internet and software enterprises (第（九）条).

Threshold reward: revenue that *first* exceeds (超过: strictly greater) a threshold of
`M9.thresholds` in the year Y applied for — revenue(Y) > T while every earlier year's
revenue in the registry is ≤ T — earns its award once; a threshold carried by an earlier
standing decision (component "threshold_<over_fen>") is never rewarded again (M9-2).
Several thresholds newly crossed in one year (`M9.multiple_thresholds`, interpretation):
"highest" pays the highest one's award only (default; M9-1), "sum" pays them all,
"difference" pays the highest one's award less the award of the highest threshold rewarded
before (or 0), so that the rewards over the years add up to the highest award.

Growth reward: revenue(Y) grew by at least `M9.growth_min_ratio` (以上: 20% itself counts)
over revenue(Y−1) → `M9.growth_award_ratio` of the increase, rounded down, at most
`M9.growth_cap_fen` less what earlier decisions gave as growth for Y. Not computed when
revenue(Y−1) is missing or not positive (the trace says so).

M9-1: 18,000,000 in 2024 and 120,000,000 in 2025 → 1,000,000 (100M newly crossed, the
highest) + 1,020,000 (1% of 102,000,000) = 2,020,000.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any

from ..engine import ParamView, Reason, Result, Trace
from ..evidence import M9Evidence
from ..facts import Facts, FactsRequest, PriorAward
from . import claims
from .checks import check_ai_enterprise, share, yuan
from .common import awarded_in, check_benefit_year, reason

MEASURE = "M9"
TITLE = {"zh": "支持人工智能企业发展壮大", "en": "Growth rewards"}
THRESHOLD_PREFIX = "threshold_"
#: `claim_keys` names every threshold so the register can be asked; an award pays for those it crosses
CANDIDATE_KEYS_ARE_LOOKUPS = True


def facts_needed(evidence: M9Evidence) -> FactsRequest:
    return FactsRequest(revenues=True, prior_awards=True, recognitions=True)


def threshold_key(over_fen: int) -> str:
    return f"{THRESHOLD_PREFIX}{over_fen}"


def threshold_claim(applicant: str, over_fen: int) -> str:
    return claims.key("M9.threshold", applicant, over_fen)


def growth_claim(applicant: str, year: int) -> str:
    return claims.key("M9.growth", applicant, year)


def claim_keys(evidence: M9Evidence, applicant: str, p: Any) -> list[str]:
    """Every threshold of the parameter set (which ones are crossed depends on revenue) and the year's growth."""
    thresholds: tuple[dict[str, int], ...] = p("M9.thresholds")
    return [threshold_claim(applicant, row["over_fen"]) for row in thresholds] + [
        growth_claim(applicant, evidence.year)
    ]


def rewarded_thresholds(prior: list[PriorAward]) -> dict[int, int]:
    """Thresholds earlier decisions rewarded: over_fen → the amount they recorded."""
    found: dict[int, int] = {}
    for award in prior:
        for key, amount in award.components.items():
            suffix = key.removeprefix(THRESHOLD_PREFIX)
            if key.startswith(THRESHOLD_PREFIX) and suffix.isdigit():
                found[int(suffix)] = found.get(int(suffix), 0) + amount
    return found


def _threshold_part(
    evidence: M9Evidence, facts: Facts, revenue: int, p: ParamView, trace: Trace
) -> tuple[dict[str, int], list[int], Reason | None]:
    """The threshold reward, the thresholds it uses up (every one newly crossed, paid or not), or why none."""
    year = evidence.year
    thresholds: tuple[dict[str, int], ...] = p("M9.thresholds")
    mode: str = p("M9.multiple_thresholds")
    earlier = {y: r for y, r in sorted(facts.revenues.items()) if y < year}
    before = rewarded_thresholds(facts.prior_awards)
    for row in thresholds:  # the register also knows thresholds paid by A1 decisions or other paths
        if threshold_claim(facts.applicant or "", row["over_fen"]) in facts.claimed:
            before.setdefault(row["over_fen"], row["award_fen"])
    rows: list[dict[str, Any]] = []
    newly: list[dict[str, int]] = []
    for row in thresholds:
        over = row["over_fen"]
        above_before = [y for y, r in earlier.items() if r > over]
        if revenue <= over:
            status = "not_exceeded"
        elif over in before:
            status = "already_rewarded"
        elif above_before:
            status = "exceeded_before"
        else:
            status = "newly_crossed"
            newly.append(row)
        rows.append({**row, "status": status, "exceeded_in": above_before})

    components: dict[str, int] = {}
    if newly:
        top = newly[-1]  # thresholds strictly increase
        if mode == "sum":
            components = {threshold_key(row["over_fen"]): row["award_fen"] for row in newly}
        elif mode == "difference":
            awards = {row["over_fen"]: row["award_fen"] for row in thresholds}
            previous = 0
            if before:
                highest_before = max(before)
                previous = awards.get(highest_before, before[highest_before])
            components = {threshold_key(top["over_fen"]): max(0, top["award_fen"] - previous)}
        else:  # "highest"
            components = {threshold_key(top["over_fen"]): top["award_fen"]}
    components = {key: amount for key, amount in components.items() if amount > 0}
    amount = sum(components.values())
    trace.step(
        "M9",
        "营业收入首次超过门槛（严格大于）的一次性奖励",
        "One-time reward for revenue first exceeding (strictly) a threshold",
        inputs={
            "year": year,
            "revenue_fen": revenue,
            "earlier_revenues_fen": earlier,
            "thresholds": rows,
            "rewarded_before": sorted(before),
            "multiple_thresholds": mode,
            "components": components,
        },
        amounts={"threshold_award_fen": amount},
        outcome="pass" if amount > 0 else "none",
    )
    if amount > 0:
        return components, [row["over_fen"] for row in newly], None
    return (
        {},
        [],
        reason(
            "M9",
            "no_new_threshold",
            f"{year} 年度营业收入 {yuan(revenue)} 元没有首次超过尚未奖励的门槛",
            f"The {year} revenue of {yuan(revenue)} yuan did not first exceed any threshold not yet rewarded",
        ),
    )


def _growth_part(
    evidence: M9Evidence, facts: Facts, revenue: int, p: ParamView, trace: Trace
) -> tuple[int, Reason | None]:
    year = evidence.year
    previous = facts.revenues.get(year - 1)
    if previous is None or previous <= 0:
        trace.step(
            "M9",
            "营收增速奖励：需要上一年度营业收入（大于零）",
            "Growth reward: needs last year's revenue (above zero)",
            inputs={"year": year, "previous_year": year - 1, "previous_revenue_fen": previous},
            outcome="not_computed",
        )
        return 0, reason(
            "M9",
            "no_previous_revenue",
            f"登记簿中没有 {year - 1} 年度的正营业收入，无法计算增速",
            f"No positive {year - 1} revenue in the registry: growth cannot be computed",
        )
    minimum: Decimal = p("M9.growth_min_ratio")
    increase = revenue - previous
    grown = Decimal(increase) >= Decimal(previous) * minimum  # 以上: the minimum itself counts
    growth = (Decimal(increase) / Decimal(previous)).quantize(Decimal("0.0001"), rounding=ROUND_DOWN)
    trace.step(
        "M9",
        "营收增速须达到门槛（含）",
        "Revenue growth must reach the minimum (inclusive)",
        inputs={"year": year, "growth_ratio": str(growth), "minimum": str(minimum)},
        amounts={"revenue_fen": revenue, "previous_revenue_fen": previous, "increase_fen": increase},
        outcome="pass" if grown else "fail",
    )
    if not grown:
        return 0, reason(
            "M9",
            "growth_below_minimum",
            f"营收增速 {growth:%} 未达到 {minimum:%}",
            f"Revenue growth of {growth:%} is below {minimum:%}",
        )
    before_cap = share(increase, p("M9.growth_award_ratio"))
    cap: int = p("M9.growth_cap_fen")
    already = awarded_in(facts.prior_awards, year, "growth")
    if growth_claim(facts.applicant or "", year) in facts.claimed:
        already = max(already, cap)  # the year's growth reward is held by another award (register)
    # the year's growth reward is paid once: a later application for the same year gets only
    # what an earlier one did not (e.g. after a corrected revenue figure), never the same again
    amount = max(0, min(before_cap, cap) - already)
    trace.step(
        "M9",
        "按营收增量比例奖励，向下取整到分，封顶（扣除同年度已获增速奖励）",
        "Share of the increase, rounded down, capped (less this year's earlier growth rewards)",
        amounts={
            "increase_fen": increase,
            "before_cap_fen": before_cap,
            "cap_fen": cap,
            "already_awarded_fen": already,
            "after_cap_fen": amount,
        },
    )
    if amount > 0:
        return amount, None
    return 0, reason(
        "M9",
        "growth_already_awarded",
        f"{year} 年度增速奖励已发放",
        f"The {year} growth reward was already paid",
    )


def evaluate(evidence: M9Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    organisation = facts.organisation
    assert organisation is not None
    software = organisation.is_software_internet
    trace.step(
        "M9",
        "申请人须为软件和互联网企业",
        "The applicant must be a software or internet enterprise",
        inputs={"is_software_internet": software},
        outcome="pass" if software else "fail",
    )
    failures: list[Reason] = []
    if not software:
        failures.append(
            reason(
                "M9",
                "not_software_internet",
                "申请人不是软件和互联网企业",
                "The applicant is not a software or internet enterprise",
            )
        )
    # 支持人工智能类的互联网和软件企业: the whole clause is for AI internet and software enterprises
    failures += check_ai_enterprise("M9", facts, trace, words=("人工智能类企业", "an AI enterprise"))
    year = evidence.year
    failures += check_benefit_year(
        "M9",
        year,
        facts.as_of,
        p,
        trace,
        back=(1, p("M9.claim_years_back")),
        text=("上年度（最近一个完整年度）", "last year (the latest complete year)"),
    )
    revenue = facts.revenues.get(year)
    if revenue is None:
        trace.step("M9", "申报年度营业收入", "Revenue of the year", inputs={"year": year}, outcome="review")
        if failures:
            return Result.ineligible(*failures)
        return Result.needs_review(
            reason(
                "M9",
                "revenue_missing",
                f"登记簿中没有 {year} 年度营业收入",
                f"No {year} revenue in the registry",
            )
        )

    components, crossed, threshold_reason = _threshold_part(evidence, facts, revenue, p, trace)
    growth, growth_reason = _growth_part(evidence, facts, revenue, p, trace)
    if growth > 0:
        components["growth"] = growth
    amount = sum(components.values())
    trace.step(
        "M9",
        "奖励合计：门槛奖励 + 增速奖励",
        "Total: threshold reward + growth reward",
        inputs={"components": components},
        amounts={"threshold_fen": amount - growth, "growth_fen": growth, "amount_fen": amount},
        outcome="eligible" if amount > 0 and not failures else "fail",
    )
    if amount == 0:
        failures += [r for r in (threshold_reason, growth_reason) if r is not None]
    if failures:
        return Result.ineligible(*failures)
    applicant = facts.applicant or ""
    # "highest": the lower thresholds crossed in the same year are used up by the highest one's award
    keys = [threshold_claim(applicant, over) for over in crossed]
    if growth > 0:
        keys.append(growth_claim(applicant, year))
    return Result.eligible(amount, components).registering(keys)
