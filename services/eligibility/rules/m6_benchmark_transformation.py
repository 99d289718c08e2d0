"""M6 — benchmark digital-transformation projects (第（六）条).

For industrial enterprises (工业企业) that received the city's manufacturing digital-transformation
diagnosis (深圳市工业和信息化局制造业数字化转型咨询诊断项目) and upgrade along its plan: at most
`M6.ratio` of the audited project investment, rounded down, and at most `M6.cap_fen`
(EXAMPLES M6-1: 3,000,000 → 1,000,000).

Both conditions are registry facts on the application date: the enterprise is industrial
(an above-scale industrial enterprise, or an `industrial_enterprise` recognition), and the
diagnosis is the applicant's `digital_diagnosis` recognition the evidence references. One
support per diagnosis (claim key `M6.project`).
"""

from __future__ import annotations

from typing import Any

from ..engine import ParamView, Reason, Result, Trace
from ..evidence import M6Evidence
from ..facts import Facts, FactsRequest
from . import claims
from .checks import check_recognition, recognition_inputs, share
from .common import reason

MEASURE = "M6"
TITLE = {"zh": "人工智能数字化转型标杆项目", "en": "Benchmark digital-transformation projects"}
DIAGNOSIS = "digital_diagnosis"
INDUSTRIAL = "industrial_enterprise"
#: 规模以上工业企业 are industrial enterprises by definition: no further record needed
ABOVE_SCALE_INDUSTRIAL = "above_scale_industrial"


def _project(evidence: M6Evidence) -> str:
    """What one support is for: the diagnosis record (decisions before it was asked for: the reference text)."""
    if evidence.diagnosis_id is not None:
        return str(evidence.diagnosis_id)
    return claims.normalised(evidence.diagnosis_reference)


def claim_keys(evidence: M6Evidence, applicant: str, p: Any) -> list[str]:
    return [claims.key("M6.project", applicant, _project(evidence))]


def facts_needed(evidence: M6Evidence) -> FactsRequest:
    ids = (evidence.diagnosis_id,) if evidence.diagnosis_id is not None else ()
    return FactsRequest(recognitions=True, recognition_ids=ids)


def project_key(evidence: M6Evidence) -> str:
    """The component key that marks a diagnosed project as supported (one support per project)."""
    return f"project:{evidence.diagnosis_reference}"


def check_industrial(facts: Facts, trace: Trace) -> list[Reason]:
    """对工业企业……予以扶持: an above-scale industrial enterprise, or one recognised as industrial on the date."""
    organisation = facts.organisation
    assert organisation is not None
    above_scale = organisation.four_above_category == ABOVE_SCALE_INDUSTRIAL
    recognised = [r for r in facts.recognitions if r.kind == INDUSTRIAL and r.active]
    industrial = above_scale or bool(recognised)
    trace.step(
        "M6",
        "申请人须为工业企业（规模以上工业企业，或登记簿中申请日有效的工业企业认定）",
        "The applicant must be an industrial enterprise (above-scale industrial, or so recognised on the date)",
        inputs={
            "four_above_category": organisation.four_above_category,
            "recognitions": [recognition_inputs(r) for r in recognised],
        },
        outcome="pass" if industrial else "fail",
    )
    if industrial:
        return []
    return [
        reason(
            "M6",
            "not_industrial_enterprise",
            f"M6：登记簿中在 {facts.as_of} 申请人不是工业企业",
            f"M6: the registry did not show the applicant as an industrial enterprise on {facts.as_of}",
        )
    ]


def check_diagnosis(evidence: M6Evidence, facts: Facts, trace: Trace) -> list[Reason]:
    """获得深圳市工业和信息化局制造业数字化转型咨询诊断项目: the applicant's diagnosis record, in force on the date."""
    if evidence.diagnosis_id is None:
        trace.step(
            "M6",
            "须引用登记簿中申请人的制造业数字化转型咨询诊断记录",
            "The application must reference the applicant's diagnosis record in the registry",
            inputs={"diagnosis_reference": evidence.diagnosis_reference, "diagnosis_id": None},
            outcome="fail",
        )
        return [
            reason(
                "M6",
                "diagnosis_not_referenced",
                "M6：申请未引用登记簿中的制造业数字化转型咨询诊断记录（diagnosis_id）",
                "M6: the application references no diagnosis record of the registry (diagnosis_id)",
            )
        ]
    _, failures = check_recognition("M6", facts, evidence.diagnosis_id, DIAGNOSIS, trace, owner=facts.applicant)
    return failures


def evaluate(evidence: M6Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    failures = check_industrial(facts, trace) + check_diagnosis(evidence, facts, trace)
    if failures:
        return Result.ineligible(*failures)
    ratio = p("M6.ratio")
    before_cap = share(evidence.audited_investment_fen, ratio)
    trace.step(
        "M6",
        "按经审计核定的项目投入比例资助，向下取整到分",
        "Share of the audited project investment, rounded down to the fen",
        inputs={"diagnosis_reference": evidence.diagnosis_reference, "diagnosis_id": str(evidence.diagnosis_id)},
        amounts={"audited_investment_fen": evidence.audited_investment_fen, "before_cap_fen": before_cap},
    )
    cap: int = p("M6.cap_fen")
    amount = min(before_cap, cap)
    trace.step(
        "M6",
        "资助上限",
        "Cap",
        amounts={"before_cap_fen": before_cap, "cap_fen": cap, "after_cap_fen": amount, "amount_fen": amount},
        outcome="eligible",
    )
    return Result.eligible(amount, {project_key(evidence): amount})
