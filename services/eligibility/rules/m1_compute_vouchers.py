"""M1 — compute vouchers (算力券): a tiered share of last year's compute fees, capped by revenue class.

The applicant must be an AI-related enterprise (人工智能相关企业: an `ai_enterprise`
recognition in force on the application date). Only compute lines paid last year to
non-affiliated providers enter the base (M1-1, M1-2).
The base is subsidised at marginal tier ratios, plus bonus points on the part paid to
district or domestic compute (M1-4), capped at the revenue class's cap (M1-3). A
recognised major AI project earns an extra share, outside the class cap by default (M1-5,
interpretation), at most `M1.major_project_extra_cap_fen` for the year.

Tiers and caps apply to the enterprise's year as a whole: the year's base is this
application's plus the bases of its earlier standing applications for the same year, and
this application gets the award for that total less what they were given — so fees split
over several applications never earn more than one application would. Each invoice is a
claim key (`M1.invoice`): one held by another application is left out of the base.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from shared.money import format_yuan

from ..engine import ParamView, Result, Trace
from ..evidence import M1Evidence
from ..facts import Facts, FactsRequest
from . import claims
from .checks import check_ai_enterprise, floor_fen
from .common import check_benefit_year, reason

MEASURE = "M1"
TITLE = {"zh": "算力券", "en": "Compute vouchers"}


def facts_needed(evidence: M1Evidence) -> FactsRequest:
    return FactsRequest(
        revenues=True,
        affiliates=True,
        vendor_codes=tuple(invoice.provider_credit_code for invoice in evidence.invoices),
        recognitions=True,
        prior_awards=True,
    )


def invoice_key(applicant: str, year: int, provider: str, number: str) -> str:
    return claims.key("M1.invoice", applicant, year, provider, number)


def claim_keys(evidence: M1Evidence, applicant: str, p: Any) -> list[str]:
    return [
        invoice_key(applicant, evidence.fiscal_year, i.provider_credit_code, i.invoice_number)
        for i in evidence.invoices
    ]


def annual_caps(evidence: M1Evidence, facts: Facts, p: Any) -> list[claims.Cap]:
    """The class cap of the benefit year (the highest class's when revenue is unknown) and the extra's cap."""
    classes = p("M1.revenue_classes")
    revenue = facts.revenues.get(evidence.fiscal_year)
    limit = revenue_class(revenue, classes)["cap_fen"] if revenue is not None else max(c["cap_fen"] for c in classes)
    return [
        claims.Cap("M1.class_cap", evidence.fiscal_year, limit, ("capped",)),
        claims.Cap(
            "M1.major_project_extra",
            evidence.fiscal_year,
            p("M1.major_project_extra_cap_fen"),
            ("major_project_extra",),
        ),
    ]


def tiered_subsidy(base_fen: int, tiers: tuple[dict[str, Any], ...]) -> tuple[Decimal, list[dict[str, Any]]]:
    """Marginal tiers, like tax brackets; exact (rounded once, by the caller)."""
    total = Decimal(0)
    parts: list[dict[str, Any]] = []
    for tier in tiers:
        low, high = tier["from_fen"], tier["to_fen"]
        portion = max(0, (base_fen if high is None else min(base_fen, high)) - low)
        if portion <= 0:
            continue
        share = Decimal(portion) * tier["ratio"]
        total += share
        parts.append({"from_fen": low, "to_fen": high, "portion_fen": portion, "ratio": str(tier["ratio"])})
    return total, parts


def revenue_class(revenue_fen: int, classes: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """A boundary value belongs to the higher class (ranges are [from, to))."""
    for row in classes:
        if row["from_fen"] <= revenue_fen and (row["to_fen"] is None or revenue_fen < row["to_fen"]):
            return row
    raise ValueError(f"no revenue class for {revenue_fen}")  # the table is contiguous from 0


def evaluate(evidence: M1Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    # 按照上年度实际支付算力服务费用: the fees paid in the year before the application
    # 支持人工智能相关企业: only AI-related enterprises
    failures = check_ai_enterprise("M1", facts, trace, words=("人工智能相关企业", "an AI-related enterprise"))
    failures += check_benefit_year(
        "M1", evidence.fiscal_year, facts.as_of, p, trace, back=(1, 1), text=("上年度", "last year")
    )

    counted_kinds: tuple[str, ...] = p("M1.eligible_line_kinds")
    base = 0
    by_provider_kind = {"district": 0, "domestic": 0, "both": 0}
    excluded: list[dict[str, Any]] = []
    applicant = facts.applicant or ""
    counted_keys: list[str] = []
    for invoice in evidence.invoices:
        provider = invoice.provider_credit_code
        vendor = facts.vendors.get(provider)
        invoice_total = sum(line.amount_fen for line in invoice.lines)
        claim = invoice_key(applicant, evidence.fiscal_year, provider, invoice.invoice_number)
        holder = facts.claimed.get(claim)
        why = None
        if holder is not None:
            why = f"invoice_already_claimed:{holder.status}:{holder.application_id}"
        elif provider in facts.affiliates:
            why = "affiliated_provider"
        elif vendor is None or not vendor.is_compute_vendor:
            why = "not_a_registered_compute_vendor"
        elif invoice.paid_on.year != evidence.fiscal_year:
            why = "not_paid_in_fiscal_year"
        if why is not None:
            excluded.append(
                {"invoice": invoice.invoice_number, "provider": provider, "amount_fen": invoice_total, "reason": why}
            )
            continue
        assert vendor is not None
        counted_keys.append(claim)
        for line in invoice.lines:
            if line.kind not in counted_kinds:
                excluded.append(
                    {
                        "invoice": invoice.invoice_number,
                        "line": line.description,
                        "kind": line.kind,
                        "amount_fen": line.amount_fen,
                        "reason": "not_compute",
                    }
                )
                continue
            base += line.amount_fen
            if vendor.district_compute and vendor.domestic_compute:
                by_provider_kind["both"] += line.amount_fen
            elif vendor.district_compute:
                by_provider_kind["district"] += line.amount_fen
            elif vendor.domestic_compute:
                by_provider_kind["domestic"] += line.amount_fen
    trace.step(
        "M1",
        "计算补贴基数：仅计入上年度向非关联方支付的算力费用",
        "Base: compute fees paid last year to non-affiliated providers only",
        inputs={"excluded": excluded, "paid_to": by_provider_kind, "affiliates": facts.affiliates},
        amounts={"base_fen": base},
        outcome="pass" if base > 0 else "fail",
    )
    if base == 0:
        failures.append(
            reason("M1", "no_eligible_compute_fees", "没有可计入的算力费用", "No compute fees qualify for the base")
        )
    if failures:
        return Result.ineligible(*failures)

    year = evidence.fiscal_year
    earlier = [award for award in facts.prior_awards if award.year == year]
    earlier_base = sum(int(award.basis.get("base_fen", 0)) for award in earlier)
    year_paid_to = dict(by_provider_kind)
    for award in earlier:
        for kind, amount in (award.basis.get("paid_to") or {}).items():
            year_paid_to[kind] = year_paid_to.get(kind, 0) + int(amount)
    year_base = earlier_base + base
    earlier_capped = sum(award.components.get("capped", 0) for award in earlier)
    earlier_extra = sum(award.components.get("major_project_extra", 0) for award in earlier)
    trace.step(
        "M1",
        "年度合计：本申请的基数加上同年度在审或已核准申请的基数（梯度与上限按年度整体计算）",
        "Year total: this base plus the bases of the year's standing applications (tiers and caps apply to the year)",
        inputs={"year": year, "earlier_decisions": [str(award.decision_id) for award in earlier]},
        amounts={
            "application_base_fen": base,
            "earlier_base_fen": earlier_base,
            "year_base_fen": year_base,
            "earlier_capped_fen": earlier_capped,
            "earlier_extra_fen": earlier_extra,
        },
    )

    revenue = facts.revenues.get(evidence.fiscal_year)
    if revenue is None:
        trace.step(
            "M1",
            "按上年营收确定企业类别",
            "Revenue class from last year's revenue",
            inputs={"year": evidence.fiscal_year},
            outcome="review",
        )
        return Result.needs_review(
            reason(
                "M1",
                "revenue_missing",
                f"登记簿中没有 {evidence.fiscal_year} 年度营收，无法确定企业类别",
                f"No {evidence.fiscal_year} revenue in the registry: the revenue class cannot be set",
            )
        )
    classes = p("M1.revenue_classes")
    cls = revenue_class(revenue, classes)
    trace.step(
        "M1",
        "按上年营收确定企业类别及上限",
        "Revenue class and its cap",
        inputs={"revenue_fen": revenue, "class": cls["class"]},
        amounts={"class_cap_fen": cls["cap_fen"]},
    )

    exact, parts = tiered_subsidy(year_base, p("M1.tiers"))
    trace.step(
        "M1",
        "按梯度比例计算（边际，按年度合计基数）",
        "Tiered ratios (marginal, on the year's base)",
        inputs={"tiers": parts},
        amounts={"base_fen": year_base, "tiered_fen": floor_fen(exact)},
    )

    bonus_ratios: dict[str, Decimal] = p("M1.bonus_ratios")
    bonus = sum(
        (Decimal(amount) * bonus_ratios[kind] for kind, amount in year_paid_to.items() if kind in bonus_ratios),
        Decimal(0),
    )
    trace.step(
        "M1",
        "本区/国产算力加成（仅对相应部分，按年度合计）",
        "District / domestic compute bonus (on that part only, for the year)",
        inputs={"paid_to": year_paid_to},
        amounts={"bonus_fen": floor_fen(bonus)},
    )

    year_before_cap = floor_fen(exact + bonus)
    year_capped = min(year_before_cap, cls["cap_fen"])
    capped = max(0, year_capped - earlier_capped)
    trace.step(
        "M1",
        "按企业类别上限封顶：年度金额减去同年度已获补贴",
        "Capped at the class cap: the year's amount less this year's earlier awards",
        amounts={
            "before_cap_fen": year_before_cap,
            "year_after_cap_fen": year_capped,
            "already_awarded_fen": earlier_capped,
            "after_cap_fen": capped,
        },
    )

    extra = 0
    projects = [r for r in facts.recognitions if r.kind == "major_ai_project" and r.active]
    if projects:
        extra_ratio: Decimal = p("M1.major_project_extra_ratio")
        extra_cap: int = p("M1.major_project_extra_cap_fen")
        outside: bool = p("M1.major_project_extra_outside_cap")
        extra_before = floor_fen(Decimal(year_base) * extra_ratio)
        year_extra = min(extra_before, extra_cap)
        if not outside:
            year_extra = min(year_extra, max(0, cls["cap_fen"] - year_capped))
        extra = max(0, year_extra - earlier_extra)
        trace.step(
            "M1",
            "重大人工智能项目额外补贴：年度金额减去同年度已获额外补贴",
            "Extra for a recognised major AI project: the year's amount less this year's earlier extras",
            inputs={"projects": [str(r.id) for r in projects], "outside_class_cap": outside},
            amounts={
                "before_cap_fen": extra_before,
                "year_after_cap_fen": year_extra,
                "already_awarded_fen": earlier_extra,
                "after_cap_fen": extra,
            },
        )
    total = capped + extra
    basis = {"base_fen": base, "paid_to": by_provider_kind}
    if evidence.compute_for_equity:
        trace.step(
            "M1",
            "算力作价入股：仅记录，不计算",
            "Compute-for-equity: recorded, not computed",
            inputs={"compute_for_equity": True},
        )
    if total == 0:  # never "eligible with 0": the year's class cap is used up
        trace.step("M1", "算力券金额", "Compute voucher amount", amounts={"amount_fen": 0}, outcome="fail")
        return Result.ineligible(
            reason(
                "M1",
                "class_cap_reached",
                f"{evidence.fiscal_year} 年度企业类别上限 {format_yuan(cls['cap_fen'])} 元已用完",
                f"The {evidence.fiscal_year} class cap of {format_yuan(cls['cap_fen'])} yuan is used up",
            )
        )
    trace.step("M1", "算力券金额", "Compute voucher amount", amounts={"amount_fen": total}, outcome="eligible")
    components = {"capped": capped, "major_project_extra": extra}
    return Result.eligible(total, components).registering(counted_keys, basis=basis)
