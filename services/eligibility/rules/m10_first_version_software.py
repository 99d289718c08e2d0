"""M10 — first-version (首版次) AI software sales (第（十）条).

Track first_sale: a product in the Longgang first-version catalogue (an active
"first_version_software" recognition of the applicant) whose first sale was achieved:
`M10.first_sale_ratio` of the audited amount received within one year after the first
sale (M10-1: 10,000,000 → 2,000,000). Track city_matching: an enterprise that received
Shenzhen's first-version support last year: `M10.city_matching_ratio` of the city amount.
Each track is capped separately at `M10.annual_cap_fen` per enterprise per year, less what
earlier decisions gave on that track for that year (M10-2: 20,000,000 → 3,000,000).
Amounts round down to the fen. Components: track → amount.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from ..engine import ParamView, Reason, Result, Trace
from ..evidence import M10Evidence
from ..facts import Facts, FactsRequest
from . import claims
from .checks import check_recognition, share, yuan
from .common import annual_cap_step, awarded_in, check_benefit_year, inside_validity, reason

MEASURE = "M10"
TITLE = {"zh": "人工智能产品首版次销售", "en": "First-version AI software sales"}
KIND = "first_version_software"
CITY_KIND = "city_first_version_support"


def claim_keys(evidence: M10Evidence, applicant: str, p: Any) -> list[str]:
    if evidence.track == "first_sale":
        return [claims.key("M10.first_sale", evidence.recognition_id)]
    return [claims.key("M10.city_matching", applicant, evidence.year)]


def annual_caps(evidence: M10Evidence, facts: Facts, p: Any) -> list[claims.Cap]:
    return [claims.Cap(f"M10.{evidence.track}", evidence.year, p("M10.annual_cap_fen"), (evidence.track,))]


def facts_needed(evidence: M10Evidence) -> FactsRequest:
    if evidence.recognition_id is not None:
        return FactsRequest(recognition_ids=(evidence.recognition_id,), prior_awards=True)
    return FactsRequest(prior_awards=True)


def _city_support(evidence: M10Evidence, facts: Facts, trace: Trace) -> tuple[int | None, list[Reason]]:
    """The city's support the applicant received in the benefit year: a registry record, not a declaration."""
    if evidence.recognition_id is None:
        trace.step(
            "M10",
            "须引用登记簿中申请人所获深圳市首版次软件扶持记录",
            "The application must reference the registry's record of the applicant's Shenzhen first-version support",
            inputs={"declared_city_support_fen": evidence.city_support_fen, "recognition_id": None},
            outcome="fail",
        )
        return None, [
            reason(
                "M10",
                "city_support_not_recorded",
                "M10：申请未引用登记簿中的深圳市首版次软件扶持记录（recognition_id），自报金额不予配套",
                "M10: the application references no registry record of the city's first-version support "
                "(recognition_id); a declared amount is not matched",
            )
        ]
    entry, failures = check_recognition("M10", facts, evidence.recognition_id, CITY_KIND, trace, owner=facts.applicant)
    if entry is None or failures:
        return None, failures
    year = entry.details.get("year")
    if year != evidence.year:
        failures.append(
            reason(
                "M10",
                "city_support_year_mismatch",
                f"深圳市首版次扶持记录的年度为 {year}，不是申报的受益年度 {evidence.year}",
                f"The city's support record is of {year}, not of the benefit year {evidence.year}",
            )
        )
        return None, failures
    return int(entry.details.get("amount_fen", 0)), []


def _first_sale_failures(raw: Any, facts: Facts, p: ParamView, trace: Trace) -> list[Reason]:
    """实现首次销售: the catalogue entry's first sale happened by the application date, inside the validity (A4)."""
    try:
        first_sale_on = date.fromisoformat(str(raw))
    except ValueError:
        trace.step("M10", "首次销售日期", "Date of the first sale", inputs={"first_sale_on": raw}, outcome="fail")
        return [
            reason(
                "M10",
                "first_sale_date_missing",
                "登记簿中该首版次目录记录没有首次销售日期（first_sale_on）",
                "The registry's catalogue entry has no date of first sale (first_sale_on)",
            )
        ]
    happened = first_sale_on <= facts.as_of
    inside = inside_validity(first_sale_on, p)
    trace.step(
        "M10",
        "首次销售须已实现，且在措施有效期内",
        "The first sale must have happened, inside the validity window",
        inputs={"first_sale_on": first_sale_on.isoformat(), "as_of": facts.as_of.isoformat()},
        outcome="pass" if happened and inside else "fail",
    )
    failures: list[Reason] = []
    if not happened:
        failures.append(
            reason(
                "M10",
                "first_sale_not_yet",
                f"首次销售日期 {first_sale_on} 晚于申请日期 {facts.as_of}",
                f"The first sale on {first_sale_on} is after the application date {facts.as_of}",
            )
        )
    if not inside:
        failures.append(
            reason(
                "M10",
                "first_sale_outside_validity",
                f"首次销售日期 {first_sale_on} 不在措施有效期内（A4）",
                f"The first sale on {first_sale_on} is outside the validity window (A4)",
            )
        )
    return failures


def evaluate(evidence: M10Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    organisation = facts.organisation
    assert organisation is not None
    if evidence.track == "first_sale":
        assert evidence.recognition_id is not None
        assert evidence.received_within_year_fen is not None
        entry, failures = check_recognition(
            "M10", facts, evidence.recognition_id, KIND, trace, owner=organisation.credit_code
        )
        failures += check_benefit_year(
            "M10",
            evidence.year,
            facts.as_of,
            p,
            trace,
            back=(0, 1),
            text=("申请当年或上年度", "this year or last year"),
        )
        first_sale_on = entry.details.get("first_sale_on") if entry is not None else None
        failures += _first_sale_failures(first_sale_on, facts, p, trace)
        if failures:
            return Result.ineligible(*failures)
        base = evidence.received_within_year_fen
        before_cap = share(base, p("M10.first_sale_ratio"))
        trace.step(
            "M10",
            "首次销售后1年内审定到账额的比例，向下取整到分",
            "Share of the audited amount received within a year of the first sale, rounded down",
            inputs={"track": evidence.track},
            amounts={"received_within_year_fen": base, "before_cap_fen": before_cap},
        )
    else:
        # 对上一年度获得深圳市首版次软件扶持项目的企业: the city's support of last year, as the registry records it
        failures = check_benefit_year(
            "M10", evidence.year, facts.as_of, p, trace, back=(1, 1), text=("上一年度", "last year")
        )
        support, support_failures = _city_support(evidence, facts, trace)
        failures += support_failures
        if failures or support is None:
            return Result.ineligible(*failures)
        base = support
        before_cap = share(base, p("M10.city_matching_ratio"))
        trace.step(
            "M10",
            "按上一年度所获深圳市首版次扶持金额（登记簿记录）的比例配套，向下取整到分",
            "Matching share of last year's Shenzhen first-version support (the registry's record), rounded down",
            inputs={"track": evidence.track, "declared_city_support_fen": evidence.city_support_fen},
            amounts={"city_support_fen": base, "before_cap_fen": before_cap},
        )

    cap: int = p("M10.annual_cap_fen")
    already = awarded_in(facts.prior_awards, evidence.year, component=evidence.track)
    room = max(0, cap - already)
    amount = min(before_cap, room)
    annual_cap_step(
        trace,
        "M10",
        "同一企业同一年度上限（各项分别计算，扣除同年度本项已获扶持）",
        "Annual cap per enterprise (each track), less this year's earlier awards on the track",
        {"track": evidence.track, "year": evidence.year},
        before_cap=before_cap,
        cap=cap,
        already=already,
        amount=amount,
    )
    if before_cap == 0:
        return Result.ineligible(
            reason(
                "M10", "nothing_to_support", "计算基数为零，没有可扶持的金额", "The base is zero: nothing to support"
            )
        )
    if amount == 0:
        return Result.ineligible(
            reason(
                "M10",
                "annual_cap_reached",
                f"{evidence.year} 年度本项扶持已达上限 {yuan(cap)} 元",
                f"The {evidence.year} cap of {yuan(cap)} yuan on this track has been reached",
            )
        )
    return Result.eligible(amount, {evidence.track: amount})
