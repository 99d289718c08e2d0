"""M2 — self-developed large models (第（二）条 支持自主开发大模型).

(a) A district enterprise, university or institute that develops large models and wins a
national S&T major project, a National Key R&D Programme project or a National S&T Award:
a one-time reward of *at most* 5,000,000 per entity "after approval" (经核准通过后). The
amount is an officer's decision, so an eligible achievement goes to review with the cap
(`M2.a_cap_fen`) as the proposed amount. One-time per entity: a standing earlier award
carrying component "a" makes the application ineligible.

(b) Industry large models that pass the national large-model filing: the first N
(`M2.b_first_n`, ten) get `M2.b_award_fen` once (EXAMPLES M2-1: the 11th is ineligible).
Ranking (`M2.b_ranking`, interpretation "filing_date"): the registry's
`national_filing_rank` when it has one; otherwise 1 + the number of other filed models
with an earlier national filing date. The text breaks ties by application time, which the
registry does not hold: a model filed on the same date counts as earlier only if its id
sorts before this model's id (a stable, documented stand-in; an officer can correct the
rank in the registry). Each of the first ten is a model, so an entity is rewarded once per
ranked model (claim key `M2b.model`), never twice for the same model.
"""

from __future__ import annotations

from typing import Any

from ..engine import ParamView, Reason, Result, Trace
from ..evidence import M2Evidence
from ..facts import Facts, FactsRequest, ModelFacts
from . import claims
from .checks import yuan
from .common import reason

MEASURE = "M2"
TITLE = {"zh": "支持自主开发大模型", "en": "Self-developed large models"}
APPLICANT_KINDS = ("enterprise", "university", "research_institute")


def claim_keys(evidence: M2Evidence, applicant: str, p: Any) -> list[str]:
    if evidence.track == "a":
        return [claims.key("M2a.entity", applicant)]
    return [claims.key("M2b.model", evidence.model_id)]


def facts_needed(evidence: M2Evidence) -> FactsRequest:
    if evidence.track == "b":
        return FactsRequest(model_id=evidence.model_id, ranked_models=True)
    return FactsRequest()


def filing_rank(model: ModelFacts, ranked: list[ModelFacts]) -> tuple[int, str]:
    """The model's place in the national filing order, and where it came from."""
    if model.national_filing_rank is not None:
        return model.national_filing_rank, "registry_rank"
    filed = model.national_filing_date
    assert filed is not None
    earlier = 0
    for other in ranked:
        if other.id == model.id or other.national_filing_date is None:
            continue
        if other.national_filing_date < filed or (
            other.national_filing_date == filed and str(other.id) < str(model.id)
        ):
            earlier += 1
    return 1 + earlier, "filing_date_then_id"


def _kind_failures(facts: Facts, trace: Trace) -> list[Reason]:
    organisation = facts.organisation
    assert organisation is not None
    ok = organisation.kind in APPLICANT_KINDS
    trace.step(
        "M2",
        "申请人须为企业、高校或科研院所",
        "The applicant must be an enterprise, university or research institute",
        inputs={"kind": organisation.kind, "allowed": list(APPLICANT_KINDS)},
        outcome="pass" if ok else "fail",
    )
    if ok:
        return []
    return [
        reason(
            "M2",
            "applicant_kind",
            f"申请人类别 {organisation.kind} 不是企业、高校或科研院所",
            f"The applicant is a {organisation.kind}, not an enterprise, university or research institute",
        )
    ]


def _track_a(evidence: M2Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    failures = _kind_failures(facts, trace)
    if failures:
        return Result.ineligible(*failures)
    cap: int = p("M2.a_cap_fen")
    trace.step(
        "M2",
        "（a）奖励金额经核准确定，最高不超过上限",
        "(a) The amount is set on approval, at most the cap",
        inputs={"achievement": evidence.achievement, "achievement_name": evidence.achievement_name},
        amounts={"proposed_fen": cap, "cap_fen": cap},
        outcome="review",
    )
    review = reason(
        "M2",
        "amount_set_on_approval",
        f"成果符合（a）项条件；奖励金额经核准确定，最高不超过 {yuan(cap)} 元",
        f"The achievement qualifies under M2(a); the amount is set on approval, at most {yuan(cap)} yuan",
    )
    return Result("needs_review", cap, review_reasons=(review,), components={"a": cap})


def _track_b(evidence: M2Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    organisation = facts.organisation
    assert organisation is not None
    failures = _kind_failures(facts, trace)
    model = facts.model
    model_inputs: dict[str, Any] = {"model_id": str(evidence.model_id), "found": model is not None}
    if model is None:
        failures.append(
            reason(
                "M2",
                "model_not_found",
                f"登记簿中在申请日没有模型 {evidence.model_id}",
                f"The registry had no model {evidence.model_id} on the application date",
            )
        )
    else:
        model_inputs |= {
            "vendor_credit_code": model.vendor_credit_code,
            "national_filing_date": model.national_filing_date.isoformat() if model.national_filing_date else None,
            "national_filing_rank": model.national_filing_rank,
        }
        if model.vendor_credit_code != organisation.credit_code:
            failures.append(
                reason(
                    "M2",
                    "model_not_applicants",
                    f"模型 {model.name} 属于 {model.vendor_credit_code}，不属于申请人",
                    f"The model {model.name} belongs to {model.vendor_credit_code}, not to the applicant",
                )
            )
        if model.national_filing_date is None:
            failures.append(
                reason(
                    "M2",
                    "not_nationally_filed",
                    f"模型 {model.name} 尚未通过国家大模型备案登记",
                    f"The model {model.name} has not passed the national large-model filing",
                )
            )
    trace.step(
        "M2",
        "（b）模型须为申请人所有且已通过国家大模型备案登记",
        "(b) The model must be the applicant's and have passed the national filing",
        inputs=model_inputs,
        outcome="fail" if failures else "pass",
    )

    if model is not None and model.national_filing_date is not None:
        ranking: str = p("M2.b_ranking")
        first_n: int = p("M2.b_first_n")
        if ranking == "filing_date":
            rank, how = filing_rank(model, facts.ranked_models)
        else:  # pragma: no cover - the parameter's only choice today
            raise ValueError(f"unknown M2.b_ranking {ranking}")
        inside = rank <= first_n
        trace.step(
            "M2",
            "（b）按备案时间排序，仅前 N 名获奖",
            "(b) Ranked by filing date; only the first N are awarded",
            inputs={
                "ranking": ranking,
                "rank_source": how,
                "rank": rank,
                "first_n": first_n,
                "tie_break": "same filing date: the model whose id sorts first ranks first",
                "ranked_models": len(facts.ranked_models),
            },
            outcome="pass" if inside else "fail",
        )
        if not inside:
            failures.append(
                reason(
                    "M2",
                    "not_in_first_ten",
                    f"模型按国家备案时间排第 {rank} 名，前 {first_n} 名的奖励已发放完毕",
                    f"The model ranks {rank} by national filing date; only the first {first_n} are awarded",
                )
            )

    if failures:
        return Result.ineligible(*failures)
    award: int = p("M2.b_award_fen")
    trace.step("M2", "（b）奖励金额", "(b) Award", amounts={"amount_fen": award}, outcome="eligible")
    return Result.eligible(award, {"b": award})


def evaluate(evidence: M2Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    if evidence.track == "a":
        return _track_a(evidence, facts, p, trace)
    return _track_b(evidence, facts, p, trace)
