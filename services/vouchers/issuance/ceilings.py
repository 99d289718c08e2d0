"""The ceilings a voucher's issuance takes, one `allowances` row each (conditional UPDATE).

M3 (model vouchers): at most the contract ratio of the contract's eligible costs, one claim per
contract, the annual claim ceiling (taken here) and the annual redemption ceilings (opened here
for this year and the next, taken on redemption). M1 (compute vouchers): the revenue-class cap
per enterprise and benefit year, across all its vouchers. A refused claim says why, with the
headroom left (M3-6); the caller's transaction rolls everything back.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_DOWN, Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import ProblemError
from shared.money import format_yuan

from ..peers import Eligibility
from .errors import ALREADY_ISSUED, CLAIM_CEILING, CLASS_CAP, CONTRACT_ALREADY_CLAIMED, OVER_CONTRACT_SHARE
from .repository import allowance_exists, contract_claim, ensure_allowance, headroom, take_allowance


def floor_fen(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_DOWN))


async def m3_ceilings(
    session: AsyncSession, eligibility: Eligibility, decision: dict[str, Any], amount: int, today: date
) -> tuple[str, str]:
    """M3 in the ledger: ≤ 30% of the contract, one claim per contract, the annual ceilings."""
    contract = decision["evidence"]["contract"]
    holder = decision["applicant"]
    ratio = Decimal(str(await eligibility.parameter("M3.contract_ratio", today)))
    counted = set(await eligibility.parameter("M3.eligible_cost_components", today))
    base = sum(int(c["amount_fen"]) for c in contract["components"] if c["kind"] in counted)
    maximum = floor_fen(Decimal(base) * ratio)
    if amount > maximum:
        raise ProblemError(
            OVER_CONTRACT_SHARE,
            claim_yuan=format_yuan(amount),
            maximum_yuan=format_yuan(maximum),
            ratio=f"{ratio:%}",
        )
    key = f"{contract['vendor_credit_code']}:{contract['number']}"
    claimed = await contract_claim(session, key)
    if claimed is not None:
        if str(claimed.decision_id) == str(decision["decision_id"]):  # the same decision, claimed concurrently
            raise ProblemError(ALREADY_ISSUED, reference=claimed.code)
        raise ProblemError(CONTRACT_ALREADY_CLAIMED, contract=contract["number"])
    claims_limit = int(await eligibility.parameter("M3.annual_claim_ceiling_fen", today))
    redemption_limits = {
        year: int(await eligibility.parameter("M3.annual_redemption_ceiling_fen", max(today, date(year, 1, 1))))
        for year in (today.year, today.year + 1)
    }
    await ensure_allowance(session, holder, today.year, "M3.claims", claims_limit, "M3", "M3.annual_claim_ceiling_fen")
    for year, limit in redemption_limits.items():
        await ensure_allowance(session, holder, year, "M3.redemptions", limit, "M3", "M3.annual_redemption_ceiling_fen")
    if await take_allowance(session, holder, today.year, "M3.claims", amount) is None:
        limit, used = await headroom(session, holder, today.year, "M3.claims")
        raise ProblemError(
            CLAIM_CEILING,
            year=today.year,
            limit_yuan=format_yuan(limit),
            used_yuan=format_yuan(used),
            headroom_yuan=format_yuan(limit - used),
            headroom_fen=limit - used,
        )
    return key, contract["vendor_credit_code"]


async def m1_class_cap(session: AsyncSession, decision: dict[str, Any]) -> None:
    """M1: the revenue-class cap holds per enterprise and year across all compute vouchers."""
    holder, year = decision["applicant"], int(decision["benefit_year"])
    cap = decision.get("limits", {}).get("class_cap_fen")
    capped = int(decision.get("components", {}).get("capped", decision["amount_fen"]))
    if capped == 0:
        return
    if cap is not None:
        await ensure_allowance(session, holder, year, "M1.class_cap", int(cap), "M1", "M1.revenue_classes")
    elif not await allowance_exists(session, holder, year, "M1.class_cap"):
        return  # no class known for this enterprise and year yet: nothing to count against
    if await take_allowance(session, holder, year, "M1.class_cap", capped) is None:
        limit, used = await headroom(session, holder, year, "M1.class_cap")
        raise ProblemError(CLASS_CAP, year=year, limit_yuan=format_yuan(limit), headroom_yuan=format_yuan(limit - used))
