"""M7 — AI standards (第（七）条 支持人工智能技术标准制定).

Software enterprises that lead the publication of international, national or industry AI
standards. Each referenced standard must be an active "ai_standard" recognition of the
applicant (every one that is not makes the application ineligible, each named). A
standard counts when it was published (`recognised_on`) in the year applied for; its
reward is `M7.level_rewards_fen[level]` × `M7.rank_shares[str(rank)]`, rounded down
(provisional: the first leading unit 100%, the second 50%; ranks not in the table earn
nothing and are listed). A standard already rewarded (an earlier decision carrying its
recognition id as a component key) is not rewarded again. The total is capped at
`M7.annual_cap_fen` less what earlier decisions gave for that year; when the cap cuts,
standards are paid in the order they were listed. Components: recognition id → amount.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..engine import ParamView, Result, Trace
from ..evidence import M7Evidence
from ..facts import Facts, FactsRequest
from . import claims
from .checks import recognition_failures, recognition_inputs, share, was_awarded, yuan
from .common import RECENT_YEAR, annual_cap_step, awarded_in, check_benefit_year, reason

MEASURE = "M7"
TITLE = {"zh": "人工智能技术标准制定", "en": "AI standards"}
KIND = "ai_standard"


def standard_key(recognition_id: object) -> str:
    return claims.key("M7.standard", recognition_id)


def claim_keys(evidence: M7Evidence, applicant: str, p: Any) -> list[str]:
    return [standard_key(rid) for rid in dict.fromkeys(evidence.standard_recognition_ids)]


def annual_caps(evidence: M7Evidence, facts: Facts, p: Any) -> list[claims.Cap]:
    return [claims.Cap("M7.annual", evidence.year, p("M7.annual_cap_fen"), (claims.EVERY_COMPONENT,))]


def facts_needed(evidence: M7Evidence) -> FactsRequest:
    return FactsRequest(recognition_ids=tuple(evidence.standard_recognition_ids), prior_awards=True)


def evaluate(evidence: M7Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    organisation = facts.organisation
    assert organisation is not None
    failures = check_benefit_year(
        "M7",
        evidence.year,
        facts.as_of,
        p,
        trace,
        back=(0, p("M7.claim_years_back")),
        text=RECENT_YEAR,
    )
    software = organisation.is_software_internet
    trace.step(
        "M7",
        "申请人须为软件企业",
        "The applicant must be a software enterprise",
        inputs={"is_software_internet": software},
        outcome="pass" if software else "fail",
    )
    if not software:
        failures.append(
            reason("M7", "not_software_enterprise", "申请人不是软件企业", "The applicant is not a software enterprise")
        )

    ids = list(dict.fromkeys(evidence.standard_recognition_ids))  # a standard listed twice counts once
    checked: list[dict[str, Any]] = []
    for rid in ids:
        recognition = facts.referenced.get(str(rid))
        problems = recognition_failures("M7", rid, recognition, KIND, owner=organisation.credit_code)
        failures += problems
        checked.append({"recognition": recognition_inputs(recognition), "failures": [f.code for f in problems]})
    trace.step(
        "M7",
        "每项标准须为申请人有效的人工智能标准认定",
        "Each standard must be an active AI-standard recognition of the applicant",
        inputs={"standards": checked},
        outcome="fail" if any(row["failures"] for row in checked) else "pass",
    )
    if failures:
        return Result.ineligible(*failures)

    level_rewards: dict[str, int] = p("M7.level_rewards_fen")
    rank_shares: dict[str, Decimal] = p("M7.rank_shares")
    rewards: dict[str, int] = {}
    not_rewarded: list[dict[str, Any]] = []
    for rid in ids:
        recognition = facts.referenced[str(rid)]
        assert recognition is not None
        key = str(rid)
        level = str(recognition.details.get("level", ""))
        rank = str(recognition.details.get("rank", ""))
        row: dict[str, Any] = {
            "recognition_id": key,
            "level": level,
            "rank": rank,
            "published_on": recognition.recognised_on.isoformat(),
        }
        if recognition.recognised_on.year != evidence.year:
            not_rewarded.append(row | {"reason": "not_published_in_year"})
        elif was_awarded(facts.prior_awards, key) or standard_key(key) in facts.claimed:
            not_rewarded.append(row | {"reason": "already_rewarded"})
        elif level not in level_rewards:
            not_rewarded.append(row | {"reason": "unknown_level"})
        elif rank not in rank_shares:
            not_rewarded.append(row | {"reason": "rank_not_rewarded"})
        else:
            reward = share(level_rewards[level], rank_shares[rank])
            if reward > 0:
                rewards[key] = reward
            else:
                not_rewarded.append(row | {"reason": "rank_not_rewarded"})
    before_cap = sum(rewards.values())
    trace.step(
        "M7",
        "按标准级别及主导单位排名奖励",
        "Reward by standard level and the leading unit's rank",
        inputs={"year": evidence.year, "rewarded": rewards, "not_rewarded": not_rewarded},
        amounts={"before_cap_fen": before_cap},
    )

    cap: int = p("M7.annual_cap_fen")
    already = awarded_in(facts.prior_awards, evidence.year)
    room = max(0, cap - already)
    components: dict[str, int] = {}
    left = room
    for key, reward in rewards.items():
        paid = min(reward, left)
        if paid > 0:
            components[key] = paid
        left -= paid
    amount = sum(components.values())
    annual_cap_step(
        trace,
        "M7",
        "同一企业同一年度累计上限（扣除同年度已获奖励）",
        "Annual cap per enterprise, less this year's earlier awards",
        {"year": evidence.year, "components": components},
        before_cap=before_cap,
        cap=cap,
        already=already,
        amount=amount,
    )
    if amount > 0:
        return Result.eligible(amount, components).registering([standard_key(k) for k in components])

    why = {row["reason"] for row in not_rewarded}
    if "not_published_in_year" in why:
        failures.append(
            reason(
                "M7",
                "not_published_in_year",
                f"部分标准不是在 {evidence.year} 年度发布的",
                f"Some standards were not published in {evidence.year}",
            )
        )
    if "already_rewarded" in why:
        failures.append(reason("M7", "already_rewarded", "部分标准已获奖励", "Some standards were already rewarded"))
    if "rank_not_rewarded" in why or "unknown_level" in why:
        failures.append(
            reason(
                "M7",
                "rank_not_rewarded",
                "部分标准的级别或主导单位排名不在奖励范围内",
                "Some standards' level or leading-unit rank earns no reward",
            )
        )
    if before_cap > 0:
        failures.append(
            reason(
                "M7",
                "annual_cap_reached",
                f"{evidence.year} 年度奖励已达上限 {yuan(cap)} 元",
                f"The {evidence.year} cap of {yuan(cap)} yuan has been reached",
            )
        )
    return Result.ineligible(*failures)
