"""M4 — AI software application demonstration projects (第（四）条).

A project selected by a higher-level authority as an AI innovation application
demonstration (or an outstanding AI S&T achievement application) — a registry
recognition of kind "demonstration_project", active and the applicant's — earns
`M4.award_fen` per project, once: an earlier standing decision carrying the
recognition's id as a component key makes it ineligible.
"""

from __future__ import annotations

from typing import Any

from ..engine import ParamView, Result, Trace
from ..evidence import M4Evidence
from ..facts import Facts, FactsRequest
from . import claims
from .checks import check_recognition

MEASURE = "M4"
TITLE = {"zh": "人工智能软件应用示范项目", "en": "AI software application demonstration projects"}
KIND = "demonstration_project"


def claim_keys(evidence: M4Evidence, applicant: str, p: Any) -> list[str]:
    return [claims.key("M4.project", evidence.recognition_id)]


def facts_needed(evidence: M4Evidence) -> FactsRequest:
    return FactsRequest(recognition_ids=(evidence.recognition_id,))


def evaluate(evidence: M4Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    organisation = facts.organisation
    assert organisation is not None
    _, failures = check_recognition("M4", facts, evidence.recognition_id, KIND, trace, owner=organisation.credit_code)
    key = str(evidence.recognition_id)
    if failures:
        return Result.ineligible(*failures)
    award: int = p("M4.award_fen")
    trace.step("M4", "每个项目扶持金额", "Award per project", amounts={"amount_fen": award}, outcome="eligible")
    return Result.eligible(award, {key: award})
