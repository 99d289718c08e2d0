"""M8 — key software enterprises (第（八）条 支持重点软件企业认定).

Recognised as a "nationally encouraged key software enterprise" or listed in the Shenzhen
key software enterprise list — a registry recognition of kind "key_software_enterprise",
active and the applicant's: a one-time reward of `M8.award_fen`. One-time per enterprise:
any earlier standing M8 decision makes the application ineligible.
"""

from __future__ import annotations

from typing import Any

from ..engine import ParamView, Result, Trace
from ..evidence import M8Evidence
from ..facts import Facts, FactsRequest
from . import claims
from .checks import check_recognition

MEASURE = "M8"
TITLE = {"zh": "重点软件企业认定", "en": "Key software enterprises"}
KIND = "key_software_enterprise"


def claim_keys(evidence: M8Evidence, applicant: str, p: Any) -> list[str]:
    return [claims.key("M8.enterprise", applicant)]


def facts_needed(evidence: M8Evidence) -> FactsRequest:
    return FactsRequest(recognition_ids=(evidence.recognition_id,))


def evaluate(evidence: M8Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    organisation = facts.organisation
    assert organisation is not None
    _, failures = check_recognition("M8", facts, evidence.recognition_id, KIND, trace, owner=organisation.credit_code)
    if failures:
        return Result.ineligible(*failures)
    award: int = p("M8.award_fen")
    trace.step("M8", "一次性奖励金额", "One-time reward", amounts={"amount_fen": award}, outcome="eligible")
    return Result.eligible(award)
