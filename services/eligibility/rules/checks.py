"""Helpers the measure modules M2–M13 share: rounding, one-time awards, referenced recognitions.

Pure functions, no policy numbers. Kept apart from `common.py` (the conditions every
measure shares) so that module stays as it is.
"""

from __future__ import annotations

import uuid
from decimal import ROUND_DOWN, Decimal
from typing import Any

from shared.money import format_yuan

from ..engine import Reason, Trace
from ..facts import Facts, PriorAward, RecognitionFacts
from .common import reason


def floor_fen(amount: Decimal) -> int:
    """Round down to the fen (docs/policy.md, "Money"): no cap is ever exceeded."""
    return int(amount.to_integral_value(rounding=ROUND_DOWN))


def share(amount_fen: int, ratio: Decimal) -> int:
    """amount × ratio, exact, rounded down once."""
    return floor_fen(Decimal(amount_fen) * ratio)


def yuan(amount_fen: int) -> str:
    """fen → '1,234,567.89' for messages."""
    return format_yuan(amount_fen)


def was_awarded(prior: list[PriorAward], component: str) -> bool:
    """True if an earlier standing decision carries this component key (whatever its amount)."""
    return any(component in award.components for award in prior)


def recognition_inputs(recognition: RecognitionFacts | None) -> dict[str, Any]:
    if recognition is None:
        return {"found": False}
    return {
        "found": True,
        "id": str(recognition.id),
        "kind": recognition.kind,
        "credit_code": recognition.credit_code,
        "recognised_on": recognition.recognised_on.isoformat(),
        "active": recognition.active,
        "details": recognition.details,
    }


def recognition_failures(
    clause: str,
    recognition_id: uuid.UUID,
    recognition: RecognitionFacts | None,
    kind: str,
    owner: str | None,
) -> list[Reason]:
    """Every way a referenced recognition fails: absent, another kind, inactive, someone else's.

    `owner` is the credit code it must belong to, or None when it may belong to anyone
    (M5: a library product belongs to its vendor).
    """
    if recognition is None:
        return [
            reason(
                clause,
                "recognition_not_found",
                f"登记簿中在申请日没有认定记录 {recognition_id}",
                f"The registry had no recognition {recognition_id} on the application date",
            )
        ]
    failures: list[Reason] = []
    if recognition.kind != kind:
        failures.append(
            reason(
                clause,
                "wrong_recognition_kind",
                f"认定记录 {recognition_id} 的类别为 {recognition.kind or '（无）'}，应为 {kind}",
                f"Recognition {recognition_id} is of kind {recognition.kind or '(none)'}, not {kind}",
            )
        )
    if not recognition.active:
        failures.append(
            reason(
                clause,
                "recognition_inactive",
                f"认定记录 {recognition_id} 在申请日已失效",
                f"Recognition {recognition_id} was not active on the application date",
            )
        )
    if owner is not None and recognition.credit_code != owner:
        failures.append(
            reason(
                clause,
                "recognition_not_applicants",
                f"认定记录 {recognition_id} 属于 {recognition.credit_code}，不属于申请人 {owner}",
                f"Recognition {recognition_id} belongs to {recognition.credit_code}, not to the applicant {owner}",
            )
        )
    return failures


def check_recognition(
    clause: str,
    facts: Facts,
    recognition_id: uuid.UUID,
    kind: str,
    trace: Trace,
    *,
    owner: str | None,
) -> tuple[RecognitionFacts | None, list[Reason]]:
    """Look up a referenced recognition, check it, and record the step."""
    recognition = facts.referenced.get(str(recognition_id))
    failures = recognition_failures(clause, recognition_id, recognition, kind, owner)
    whose_zh, whose_en = ("申请人", " of the applicant") if owner is not None else ("", "")
    trace.step(
        clause,
        f"引用的认定记录须为{whose_zh}有效的 {kind}",
        f"The referenced recognition must be an active {kind}{whose_en}",
        inputs={
            "recognition_id": str(recognition_id),
            "expected_kind": kind,
            "owner": owner,
            "recognition": recognition_inputs(recognition),
        },
        outcome="fail" if failures else "pass",
    )
    return recognition, failures


#: the registry's recognition that an enterprise is an AI enterprise (人工智能企业认定 / 白名单)
AI_ENTERPRISE = "ai_enterprise"


def check_ai_enterprise(clause: str, facts: Facts, trace: Trace, *, words: tuple[str, str]) -> list[Reason]:
    """The applicant must hold an active AI-enterprise recognition on the application date.

    `words` is how the clause names it (M1 人工智能相关企业, M9 人工智能类, M11 具有人工智能能力):
    the text never defines them, so the registry's dated recognition is what proves them.
    """
    held_on = [r for r in facts.recognitions if r.kind == AI_ENTERPRISE and r.active]
    trace.step(
        clause,
        f"申请人须为{words[0]}（登记簿中申请日有效的人工智能企业认定）",
        f"The applicant must be {words[1]} (an AI-enterprise recognition in force on the application date)",
        inputs={"as_of": facts.as_of.isoformat(), "recognitions": [recognition_inputs(r) for r in held_on]},
        outcome="pass" if held_on else "fail",
    )
    if held_on:
        return []
    return [
        reason(
            clause,
            "not_ai_enterprise",
            f"{clause}：登记簿中在 {facts.as_of} 没有申请人有效的人工智能企业认定（{words[0]}）",
            f"{clause}: the registry had no AI-enterprise recognition of the applicant in force on {facts.as_of} "
            f"({words[1]})",
        )
    ]
