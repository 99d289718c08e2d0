"""M13 — major AI events held in Longgang (第（十三）条 支持人工智能领域重大活动开办).

Competitions, forums, conferences and seminars held in Longgang with major international
or national influence (both conditions, each reported when it fails): `M13.ratio` of the
audited event cost, rounded down, at most `M13.cap_fen` per event (M13-1: 800,000 →
400,000; 1,200,000 → 500,000). The organiser need not be registered in the district (the
event is held there: `rules.OUTSIDE_DISTRICT_ALLOWED`). The cost is audited, so the event
must have taken place by the application date.
"""

from __future__ import annotations

from typing import Any

from ..engine import ParamView, Reason, Result, Trace
from ..evidence import M13Evidence
from ..facts import Facts, FactsRequest
from . import claims
from .checks import share
from .common import RECENT_YEAR, check_benefit_year, inside_validity, reason

MEASURE = "M13"
TITLE = {"zh": "人工智能领域重大活动开办", "en": "Major AI events held in Longgang"}
#: 具有重大国际、国内影响力: the influence levels that qualify (evidence vocabulary).
MAJOR_INFLUENCE = ("international", "national")


def claim_keys(evidence: M13Evidence, applicant: str, p: Any) -> list[str]:
    """The event by date and name (co-organisers share it) and the organiser's day (a new name is no new event)."""
    return [
        claims.key("M13.event", evidence.held_on.isoformat(), claims.normalised(evidence.event_name)),
        claims.key("M13.organiser_day", applicant, evidence.held_on.isoformat()),
    ]


def facts_needed(evidence: M13Evidence) -> FactsRequest:
    return FactsRequest()


def event_key(evidence: M13Evidence) -> str:
    """The component key that marks an event as subsidised (one subsidy per event)."""
    return f"event:{evidence.held_on.isoformat()}:{evidence.event_name}"


def evaluate(evidence: M13Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    failures: list[Reason] = []
    if not evidence.held_in_longgang:
        failures.append(
            reason("M13", "not_held_in_longgang", "活动不在龙岗区举办", "The event was not held in Longgang")
        )
    if evidence.influence not in MAJOR_INFLUENCE:
        failures.append(
            reason(
                "M13",
                "influence_not_major",
                "活动不具有重大国际、国内影响力",
                "The event does not have major international or national influence",
            )
        )
    if evidence.held_on > facts.as_of:
        failures.append(
            reason(
                "M13",
                "event_not_held_yet",
                f"活动日期 {evidence.held_on} 晚于申请日期 {facts.as_of}：补贴按审计金额计算",
                f"The event date {evidence.held_on} is after the application date {facts.as_of}: "
                "the subsidy is on the audited cost",
            )
        )
    failures += check_benefit_year(
        "M13",
        evidence.held_on.year,
        facts.as_of,
        p,
        trace,
        back=(0, p("M13.claim_years_back")),
        text=RECENT_YEAR,
    )
    if not inside_validity(evidence.held_on, p):
        failures.append(
            reason(
                "M13",
                "event_outside_validity",
                f"活动日期 {evidence.held_on} 不在措施有效期内（A4）",
                f"The event date {evidence.held_on} is outside the validity window (A4)",
            )
        )
    trace.step(
        "M13",
        "须在龙岗区举办且具有重大国际、国内影响力",
        "Held in Longgang, with major international or national influence",
        inputs={
            "event_name": evidence.event_name,
            "held_on": evidence.held_on.isoformat(),
            "held_in_longgang": evidence.held_in_longgang,
            "influence": evidence.influence,
        },
        outcome="fail" if failures else "pass",
    )
    if failures:
        return Result.ineligible(*failures)
    before_cap = share(evidence.audited_cost_fen, p("M13.ratio"))
    trace.step(
        "M13",
        "按活动审计金额比例补贴，向下取整到分",
        "Share of the audited event cost, rounded down to the fen",
        amounts={"audited_cost_fen": evidence.audited_cost_fen, "before_cap_fen": before_cap},
    )
    cap: int = p("M13.cap_fen")
    amount = min(before_cap, cap)
    trace.step(
        "M13",
        "单个活动上限",
        "Cap per event",
        amounts={"before_cap_fen": before_cap, "cap_fen": cap, "after_cap_fen": amount, "amount_fen": amount},
        outcome="eligible",
    )
    return Result.eligible(amount, {event_key(evidence): amount})
