"""M1 — compute vouchers (算力券): a tiered share of last year's compute fees, capped by revenue class.

Only compute lines paid last year to non-affiliated providers enter the base (M1-1, M1-2).
The base is subsidised at marginal tier ratios, plus bonus points on the part paid to
district or domestic compute (M1-4), capped at the revenue class's cap less what the
enterprise already received for that year (M1-3). A recognised major AI project earns
an extra share, outside the class cap by default (M1-5, interpretation).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from shared.money import format_yuan

from ..engine import ParamView, Reason, Result, Trace
from ..evidence import M1Evidence
from ..facts import Facts, FactsRequest
from .checks import floor_fen
from .common import awarded_in, reason

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
    failures: list[Reason] = []
    expected_year = facts.as_of.year - 1
    if evidence.fiscal_year != expected_year:
        failures.append(
            reason(
                "M1",
                "not_last_year",
                f"补贴基数为上年度（{expected_year}）实际支付的费用，申报年度为 {evidence.fiscal_year}",
                f"The base is the fees paid last year ({expected_year}), not {evidence.fiscal_year}",
            )
        )

    counted_kinds: tuple[str, ...] = p("M1.eligible_line_kinds")
    base = 0
    by_provider_kind = {"district": 0, "domestic": 0, "both": 0}
    excluded: list[dict[str, Any]] = []
    for invoice in evidence.invoices:
        provider = invoice.provider_credit_code
        vendor = facts.vendors.get(provider)
        invoice_total = sum(line.amount_fen for line in invoice.lines)
        why = None
        if provider in facts.affiliates:
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

    exact, parts = tiered_subsidy(base, p("M1.tiers"))
    trace.step(
        "M1",
        "按梯度比例计算（边际）",
        "Tiered ratios (marginal)",
        inputs={"tiers": parts},
        amounts={"base_fen": base, "tiered_fen": floor_fen(exact)},
    )

    bonus_ratios: dict[str, Decimal] = p("M1.bonus_ratios")
    bonus = sum((Decimal(amount) * bonus_ratios[kind] for kind, amount in by_provider_kind.items()), Decimal(0))
    trace.step(
        "M1",
        "本区/国产算力加成（仅对相应部分）",
        "District / domestic compute bonus (on that part only)",
        inputs={"paid_to": by_provider_kind},
        amounts={"bonus_fen": floor_fen(bonus)},
    )

    before_cap = floor_fen(exact + bonus)
    already = awarded_in(facts.prior_awards, evidence.fiscal_year, "capped")
    room = max(0, cls["cap_fen"] - already)
    capped = min(before_cap, room)
    trace.step(
        "M1",
        "按企业类别上限封顶（扣除同年度已获补贴）",
        "Capped at the class cap, less this year's earlier awards",
        amounts={"before_cap_fen": before_cap, "already_awarded_fen": already, "after_cap_fen": capped},
    )

    extra = 0
    projects = [r for r in facts.recognitions if r.kind == "major_ai_project" and r.active]
    if projects:
        extra_ratio: Decimal = p("M1.major_project_extra_ratio")
        extra_cap: int = p("M1.major_project_extra_cap_fen")
        outside: bool = p("M1.major_project_extra_outside_cap")
        extra_before = floor_fen(Decimal(base) * extra_ratio)
        extra = min(extra_before, extra_cap)
        if not outside:
            extra = min(extra, max(0, room - capped))
        trace.step(
            "M1",
            "重大人工智能项目额外补贴",
            "Extra for a recognised major AI project",
            inputs={"projects": [str(r.id) for r in projects], "outside_class_cap": outside},
            amounts={"before_cap_fen": extra_before, "after_cap_fen": extra},
        )
    total = capped + extra
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
    return Result.eligible(total, {"capped": capped, "major_project_extra": extra})
