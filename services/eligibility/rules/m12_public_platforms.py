"""M12 — public platforms (第（十二）条 支持人工智能公共平台建设).

The owning unit of a public platform recognised *last year* (上年度: the year before the
application date) — an active "public_platform" recognition of the applicant whose
details["year"] is that year — gets a one-time reward by level,
`M12.level_awards_fen[details["level"]]` (M12-1: national 500,000 / provincial 200,000).
One-time per platform: an earlier standing decision carrying the recognition's id as a
component key makes it ineligible.
"""

from __future__ import annotations

from typing import Any

from ..engine import ParamView, Result, Trace
from ..evidence import M12Evidence
from ..facts import Facts, FactsRequest
from . import claims
from .checks import check_recognition
from .common import check_benefit_year, reason

MEASURE = "M12"
TITLE = {"zh": "人工智能公共平台建设", "en": "Public platforms"}
KIND = "public_platform"


def claim_keys(evidence: M12Evidence, applicant: str, p: Any) -> list[str]:
    return [claims.key("M12.platform", evidence.recognition_id)]


def facts_needed(evidence: M12Evidence) -> FactsRequest:
    return FactsRequest(recognition_ids=(evidence.recognition_id,))


def evaluate(evidence: M12Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    organisation = facts.organisation
    assert organisation is not None
    recognition, failures = check_recognition(
        "M12", facts, evidence.recognition_id, KIND, trace, owner=organisation.credit_code
    )
    key = str(evidence.recognition_id)
    awards: dict[str, int] = p("M12.level_awards_fen")
    level = ""
    if recognition is not None and recognition.kind == KIND:
        expected_year = facts.as_of.year - 1
        raw_year = recognition.details.get("year")
        level = str(recognition.details.get("level", ""))
        last_year = str(raw_year) == str(expected_year)
        known_level = level in awards
        trace.step(
            "M12",
            "须为上年度获国家或省级部门认定",
            "Recognised last year by a national or provincial authority",
            inputs={"recognition_year": raw_year, "expected_year": expected_year, "level": level},
            outcome="pass" if last_year and known_level else "fail",
        )
        if not last_year:
            failures.append(
                reason(
                    "M12",
                    "not_recognised_last_year",
                    f"公共平台认定年度为 {raw_year}，不是上年度（{expected_year}）",
                    f"The platform was recognised in {raw_year}, not last year ({expected_year})",
                )
            )
        if last_year and isinstance(raw_year, int):  # 上年度 is checked above; the year must also be in A4's window
            failures += check_benefit_year(
                "M12", raw_year, facts.as_of, p, trace, back=None, text=("上年度", "last year")
            )
        if not known_level:
            failures.append(
                reason(
                    "M12",
                    "level_not_rewarded",
                    f"认定级别 {level or '（无）'} 不在奖励范围内（{'、'.join(awards)}）",
                    f"The recognition level {level or '(none)'} earns no reward ({', '.join(awards)})",
                )
            )
    if failures:
        return Result.ineligible(*failures)
    amount = awards[level]
    trace.step(
        "M12",
        "按认定级别奖励",
        "Reward by level",
        inputs={"level": level},
        amounts={"amount_fen": amount},
        outcome="eligible",
    )
    return Result.eligible(amount, {key: amount})
