"""M5 — digital transformation of "four-above" (四上) enterprises (第（五）条).

The applicant must be a four-above enterprise (the registry's `four_above_category`).
Only purchases of products in the district library count — an active recognition of kind
"digital_product", which belongs to the product's vendor, not to the applicant — and only
those paid in the year applied for; every excluded purchase is listed in the trace. The
subsidy is `M5.ratio` of the counted spend (provisional), rounded down, capped at
`M5.annual_cap_fen` per enterprise per year less what earlier decisions gave for that year.
"""

from __future__ import annotations

from typing import Any

from ..engine import ParamView, Reason, Result, Trace
from ..evidence import LibraryPurchase, M5Evidence
from ..facts import Facts, FactsRequest
from . import claims
from .checks import recognition_failures, share, yuan
from .common import RECENT_YEAR, annual_cap_step, awarded_in, check_benefit_year, reason

MEASURE = "M5"
TITLE = {"zh": "四上企业人工智能等方向数字化转型", "en": "Digital transformation of four-above enterprises"}
KIND = "digital_product"


def purchase_key(applicant: str, purchase: LibraryPurchase) -> str:
    return claims.key(
        "M5.purchase", applicant, purchase.product_recognition_id, purchase.paid_on.isoformat(), purchase.amount_fen
    )


def claim_keys(evidence: M5Evidence, applicant: str, p: Any) -> list[str]:
    return [purchase_key(applicant, purchase) for purchase in evidence.purchases]


def annual_caps(evidence: M5Evidence, facts: Facts, p: Any) -> list[claims.Cap]:
    return [claims.Cap("M5.annual", evidence.year, p("M5.annual_cap_fen"), ("subsidy",))]


def facts_needed(evidence: M5Evidence) -> FactsRequest:
    return FactsRequest(
        recognition_ids=tuple(purchase.product_recognition_id for purchase in evidence.purchases),
        prior_awards=True,
    )


def evaluate(evidence: M5Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    organisation = facts.organisation
    assert organisation is not None
    failures: list[Reason] = []
    four_above = organisation.four_above_category is not None
    trace.step(
        "M5",
        "申请人须为“四上”企业",
        'The applicant must be a "four-above" enterprise',
        inputs={"four_above_category": organisation.four_above_category},
        outcome="pass" if four_above else "fail",
    )
    if not four_above:
        failures.append(
            reason(
                "M5",
                "not_four_above",
                "申请人不是“四上”企业（规上工业、规上服务业、资质建筑业、限上批零住餐）",
                'The applicant is not a "four-above" enterprise',
            )
        )

    failures += check_benefit_year(
        "M5",
        evidence.year,
        facts.as_of,
        p,
        trace,
        back=(0, p("M5.claim_years_back")),
        text=RECENT_YEAR,
    )
    spend = 0
    counted: list[dict[str, Any]] = []
    excluded: list[dict[str, Any]] = []
    in_library = 0
    counted_keys: list[str] = []
    for purchase in evidence.purchases:
        rid = purchase.product_recognition_id
        recognition = facts.referenced.get(str(rid))
        row: dict[str, Any] = {
            "product_recognition_id": str(rid),
            "amount_fen": purchase.amount_fen,
            "paid_on": purchase.paid_on.isoformat(),
        }
        problems = recognition_failures("M5", rid, recognition, KIND, owner=None)
        if problems:
            excluded.append(row | {"reason": "not_in_library", "why": [f.code for f in problems]})
            continue
        in_library += 1
        if purchase.paid_on.year != evidence.year:
            excluded.append(row | {"reason": "not_paid_in_year"})
            continue
        claim = purchase_key(facts.applicant or "", purchase)
        holder = facts.claimed.get(claim)
        if holder is not None or claim in counted_keys:
            held_by = holder.application_id if holder else "this application"
            excluded.append(row | {"reason": "purchase_already_claimed", "held_by": held_by})
            continue
        counted_keys.append(claim)
        spend += purchase.amount_fen
        counted.append(row)
    trace.step(
        "M5",
        "仅计入当年支付的项目库产品采购",
        "Only purchases of library products paid in the year count",
        inputs={"year": evidence.year, "counted": counted, "excluded": excluded},
        amounts={"spend_fen": spend},
        outcome="pass" if counted else "fail",
    )
    if in_library == 0:
        failures.append(
            reason(
                "M5",
                "no_library_products",
                "所购产品均不在龙岗区优秀数字化产品项目库内（或已失效）",
                "None of the purchased products is in the district's digital product library (or it is inactive)",
            )
        )
    elif not counted:
        failures.append(
            reason(
                "M5",
                "no_purchases_in_year",
                f"没有在 {evidence.year} 年度支付的项目库产品采购",
                f"No purchase of library products was paid in {evidence.year}",
            )
        )
    if failures:
        return Result.ineligible(*failures)

    ratio = p("M5.ratio")
    earlier = [award for award in facts.prior_awards if award.year == evidence.year]
    earlier_spend = sum(int(award.basis.get("spend_fen", 0)) for award in earlier)
    year_spend = earlier_spend + spend
    before_cap = share(year_spend, ratio)
    trace.step(
        "M5",
        "按年度合计采购金额（本申请加同年度在审或已核准申请）的比例补贴，向下取整到分",
        "Share of the year's spend (this application's and the year's standing applications'), rounded down",
        amounts={
            "spend_fen": spend,
            "earlier_spend_fen": earlier_spend,
            "year_spend_fen": year_spend,
            "before_cap_fen": before_cap,
        },
    )
    cap: int = p("M5.annual_cap_fen")
    already = awarded_in(facts.prior_awards, evidence.year)
    amount = max(0, min(before_cap, cap) - already)
    annual_cap_step(
        trace,
        "M5",
        "每年补贴上限：年度金额减去同年度已获补贴",
        "Annual cap: the year's amount less this year's earlier awards",
        {"year": evidence.year},
        before_cap=before_cap,
        cap=cap,
        already=already,
        amount=amount,
    )
    if amount == 0:
        return Result.ineligible(
            reason(
                "M5",
                "annual_cap_reached",
                f"{evidence.year} 年度补贴已达上限 {yuan(cap)} 元",
                f"The {evidence.year} cap of {yuan(cap)} yuan has been reached",
            )
        )
    return Result.eligible(amount, {"subsidy": amount}).registering(counted_keys, basis={"spend_fen": spend})
