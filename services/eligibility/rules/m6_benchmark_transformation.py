"""M6 — benchmark digital-transformation projects (第（六）条).

For enterprises that received the city's manufacturing digital-transformation diagnosis
and upgrade along its plan: at most `M6.ratio` of the audited project investment, rounded
down, and at most `M6.cap_fen` (EXAMPLES M6-1: 3,000,000 → 1,000,000).
"""

from __future__ import annotations

from typing import Any

from ..engine import ParamView, Result, Trace
from ..evidence import M6Evidence
from ..facts import Facts, FactsRequest
from . import claims
from .checks import share

MEASURE = "M6"
TITLE = {"zh": "人工智能数字化转型标杆项目", "en": "Benchmark digital-transformation projects"}


def claim_keys(evidence: M6Evidence, applicant: str, p: Any) -> list[str]:
    return [claims.key("M6.project", applicant, claims.normalised(evidence.diagnosis_reference))]


def facts_needed(evidence: M6Evidence) -> FactsRequest:
    return FactsRequest()


def project_key(evidence: M6Evidence) -> str:
    """The component key that marks a diagnosed project as supported (one support per project)."""
    return f"project:{evidence.diagnosis_reference}"


def evaluate(evidence: M6Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    ratio = p("M6.ratio")
    before_cap = share(evidence.audited_investment_fen, ratio)
    trace.step(
        "M6",
        "按经审计核定的项目投入比例资助，向下取整到分",
        "Share of the audited project investment, rounded down to the fen",
        inputs={"diagnosis_reference": evidence.diagnosis_reference},
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
