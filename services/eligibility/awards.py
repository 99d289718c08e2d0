"""The award register: what an approval pays for, once per claim key and within the year's caps.

Filled in by `approvals.py` (approve, A1) in the approval's own transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Principal
from shared.errors import ProblemError
from shared.money import format_yuan

from . import repository
from .errors import ALREADY_AWARDED, ANNUAL_CAP_REACHED, OVERRIDE_NOT_CLAIMED
from .models import Application, Decision
from .rules.claims import cap_uses, kind_of
from .service import request_id


async def award(
    session: AsyncSession,
    application: Application,
    decision: Decision,
    amount_fen: int,
    principal: Principal,
    path: str,
    overrides: dict[str, str],
) -> None:
    """Register what an approval pays for: its claim keys (once each) and its share of the year's caps.

    The database decides: the unique key index makes a second award on a key impossible
    (a concurrent approval waits for the first and then finds the key taken), and each cap
    is taken by one conditional UPDATE. Any refusal rolls the whole approval back.
    """
    unknown = sorted(set(overrides) - set(decision.claims))
    if unknown:
        raise ProblemError(OVERRIDE_NOT_CLAIMED, claim_key=unknown[0])
    row = {
        "measure": application.measure,
        "applicant": application.applicant,
        "benefit_year": application.benefit_year,
        "application_id": application.id,
        "decision_id": decision.id,
        "amount_fen": amount_fen,
        "path": path,
        "actor": principal.actor,
        "request_id": request_id(),
    }
    plain = [
        {**row, "claim_key": key, "clause": kind_of(key).clause} for key in decision.claims if key not in overrides
    ]
    taken = await repository.register_awards(session, plain)
    if taken:
        key = min(taken)
        holder = await repository.standing_award(session, key)
        raise ProblemError(
            ALREADY_AWARDED,
            claim_key=key,
            clause=kind_of(key).clause,
            holder=str(holder.application_id) if holder else "?",
        )
    for key, why in sorted(overrides.items()):
        holder = await repository.standing_award(session, key)
        overriding = {"overrides_id": holder.id, "override_reason": why} if holder else {}
        if not await repository.register_override(
            session, {**row, "claim_key": key, "clause": kind_of(key).clause, **overriding}
        ):
            raise ProblemError(
                ALREADY_AWARDED, claim_key=key, clause=kind_of(key).clause, holder="(a concurrent decision)"
            )
    for use in cap_uses(amount_fen, decision.components, decision.caps):
        if await repository.year_cap(session, application.applicant, use["kind"], use["year"]) is None:
            await _open_year_cap(session, application, decision, use)
        if await repository.take_year_cap(session, application.applicant, use) is None:
            cap = await repository.year_cap(session, application.applicant, use["kind"], use["year"])
            limit, used = (cap.limit_fen, cap.used_fen) if cap else (use["limit_fen"], 0)
            raise ProblemError(
                ANNUAL_CAP_REACHED,
                clause=use["clause"],
                year=use["year"],
                cap=use["kind"],
                limit_yuan=format_yuan(limit),
                used_yuan=format_yuan(used),
                remaining_yuan=format_yuan(limit - used),
                remaining_fen=limit - used,
                amount_yuan=format_yuan(use["amount_fen"]),
            )


async def _open_year_cap(
    session: AsyncSession, application: Application, decision: Decision, use: dict[str, Any]
) -> None:
    """A year's first approval opens its cap row, counting the awards approved before the register existed."""
    earlier = await repository.awards_before_register(session, application.applicant, application.measure, use["year"])
    used = sum(
        part["amount_fen"]
        for amount, components in earlier
        for part in cap_uses(amount, components, decision.caps)
        if part["kind"] == use["kind"]
    )
    await repository.open_year_cap(session, application.applicant, use, used)
