"""M13 — major AI events held in Longgang (第（十三）条 支持人工智能领域重大活动开办).

Competitions, forums, conferences and seminars held in Longgang with major international
or national influence (both conditions, each reported when it fails), as the registry's
`major_event` record says (organisers, date, venue and its district, influence); the
applicant must be one of its organisers, and the co-organisers share one subsidy (claim key
`M13.event_record` = the record): `M13.ratio` of the
audited event cost, rounded down, at most `M13.cap_fen` per event (M13-1: 800,000 →
400,000; 1,200,000 → 500,000). The organiser need not be registered in the district (the
event is held there: `rules.OUTSIDE_DISTRICT_ALLOWED`). The cost is audited, so the event
must have taken place by the application date.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from ..engine import ParamView, Reason, Result, Trace
from ..evidence import M13Evidence
from ..facts import Facts, FactsRequest
from . import claims
from .checks import check_recognition, share
from .common import RECENT_YEAR, check_benefit_year, inside_validity, reason

MEASURE = "M13"
TITLE = {"zh": "人工智能领域重大活动开办", "en": "Major AI events held in Longgang"}
#: 具有重大国际、国内影响力: the influence levels that qualify (evidence vocabulary).
MAJOR_INFLUENCE = ("international", "national")
EVENT_KIND = "major_event"


def claim_keys(evidence: M13Evidence, applicant: str, p: Any) -> list[str]:
    """The event record: its co-organisers share one subsidy (decisions before the record: date and name)."""
    if evidence.event_id is not None:
        return [claims.key("M13.event_record", evidence.event_id)]
    assert evidence.held_on is not None
    assert evidence.event_name is not None
    return [
        claims.key("M13.event", evidence.held_on.isoformat(), claims.normalised(evidence.event_name)),
        claims.key("M13.organiser_day", applicant, evidence.held_on.isoformat()),
    ]


def facts_needed(evidence: M13Evidence) -> FactsRequest:
    return FactsRequest(recognition_ids=(evidence.event_id,) if evidence.event_id is not None else ())


def event_key(evidence: M13Evidence) -> str:
    """The component key that marks an event as subsidised (one subsidy per event)."""
    if evidence.event_id is not None:
        return f"event:{evidence.event_id}"
    return f"event:{evidence.held_on}:{evidence.event_name}"


def _event(evidence: M13Evidence, facts: Facts, trace: Trace) -> tuple[dict[str, Any] | None, list[Reason]]:
    """The registry's record of the event, and the applicant among its organisers."""
    if evidence.event_id is None:
        trace.step(
            "M13",
            "须引用登记簿中的重大活动记录（主办方、日期、地点、名称）",
            "The application must reference the registry's record of the event (organisers, date, venue, name)",
            inputs={"event_name": evidence.event_name, "held_on": str(evidence.held_on), "event_id": None},
            outcome="fail",
        )
        return None, [
            reason(
                "M13",
                "event_not_recorded",
                "M13：申请未引用登记簿中的重大活动记录（event_id）",
                "M13: the application references no registry record of the event (event_id)",
            )
        ]
    record, failures = check_recognition("M13", facts, evidence.event_id, EVENT_KIND, trace, owner=None)
    if record is None or failures:
        return None, failures
    organisers = [str(code) for code in record.details.get("organisers", [])]
    applicant = facts.applicant or ""
    if applicant not in organisers and applicant != record.credit_code:
        return None, [
            reason(
                "M13",
                "not_an_organiser",
                f"申请人 {applicant} 不是该活动的主办方（{', '.join(organisers)}）",
                f"The applicant {applicant} is not one of the event's organisers ({', '.join(organisers)})",
            )
        ]
    return record.details, []


def evaluate(evidence: M13Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    event, failures = _event(evidence, facts, trace)
    if event is None:
        return Result.ineligible(*failures)
    held_on = date.fromisoformat(str(event["held_on"]))
    district: str = p("common.district_code")
    if event.get("district") != district:
        failures.append(
            reason("M13", "not_held_in_longgang", "活动不在龙岗区举办", "The event was not held in Longgang")
        )
    if event.get("influence") not in MAJOR_INFLUENCE:
        failures.append(
            reason(
                "M13",
                "influence_not_major",
                "活动不具有重大国际、国内影响力",
                "The event does not have major international or national influence",
            )
        )
    if held_on > facts.as_of:
        failures.append(
            reason(
                "M13",
                "event_not_held_yet",
                f"活动日期 {held_on} 晚于申请日期 {facts.as_of}：补贴按审计金额计算",
                f"The event date {held_on} is after the application date {facts.as_of}: "
                "the subsidy is on the audited cost",
            )
        )
    failures += check_benefit_year(
        "M13",
        held_on.year,
        facts.as_of,
        p,
        trace,
        back=(0, p("M13.claim_years_back")),
        text=RECENT_YEAR,
    )
    if not inside_validity(held_on, p):
        failures.append(
            reason(
                "M13",
                "event_outside_validity",
                f"活动日期 {held_on} 不在措施有效期内（A4）",
                f"The event date {held_on} is outside the validity window (A4)",
            )
        )
    trace.step(
        "M13",
        "须在龙岗区举办且具有重大国际、国内影响力（登记簿的活动记录）",
        "Held in Longgang, with major international or national influence (the registry's event record)",
        inputs={
            "event_id": str(evidence.event_id),
            "name": event.get("name"),
            "held_on": held_on.isoformat(),
            "venue": event.get("venue"),
            "district": event.get("district"),
            "influence": event.get("influence"),
            "organisers": event.get("organisers"),
        },
        outcome="fail" if failures else "pass",
    )
    if failures:
        return Result.ineligible(*failures)
    before_cap = share(evidence.audited_cost_fen, p("M13.ratio"))
    trace.step(
        "M13",
        "按活动审计金额比例补贴，向下取整到分（联合主办方共享一次补贴）",
        "Share of the audited event cost, rounded down to the fen (co-organisers share one subsidy)",
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
