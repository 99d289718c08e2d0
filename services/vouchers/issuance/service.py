"""Issuing, granting, voiding and expiring: the ledger's slower, officer-driven flows.

Issuance reads the approved decision and the policy parameters from the eligibility
service *before* writing anything (unreachable → 503, nothing written). Then, in one
transaction: the ceilings (`ceilings.py`: one `allowances` row each, conditional UPDATE), the programme
budget of the measure and year (A2, `budgets/`), the voucher, its accounts and
the entry from the budget. A refused claim rolls everything back and says why, with the
headroom left (M3-6, A2). Voiding, expiry and a grant's reversal give the amount back to
the budget in the same transaction as their entry.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.context import request_id_var
from shared.errors import ProblemError
from shared.instants import local_today

from .. import events
from ..authorisations import service as authorisations
from ..budgets import service as budget_ceilings
from ..errors import VOUCHER_NOT_FOUND
from ..models import Entry, Grant, Voucher
from ..peers import Eligibility
from ..policy.budgets import Budgets
from ..redemptions import service as holds
from ..schemas import GrantRead, VoucherRead
from . import ceilings, repository
from .errors import (
    ALREADY_ISSUED,
    ALREADY_REVERSED,
    CONTRACT_ALREADY_CLAIMED,
    GRANT_NOT_FOUND,
    VOUCHER_NOT_ACTIVE,
    WRONG_INSTRUMENT,
)
from .repository import account
from .schemas import IssueRequest, ReversalRequest, VoidRequest

VOUCHER_MEASURES = ("M1", "M3")
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read over the phone


def new_code(measure: str) -> str:
    """Hard to guess: 100 random bits, grouped for reading."""
    body = "".join(secrets.choice(CODE_ALPHABET) for _ in range(20))
    return f"{measure}-" + "-".join(body[i : i + 5] for i in range(0, 20, 5))


def valid_until(rule: str, issued: date) -> date:
    if rule == "end_of_calendar_year":
        return date(issued.year, 12, 31)
    return date(issued.year + 1, 12, 31)  # end_of_next_calendar_year (provisional default)


def state_of(voucher: Voucher, today: date) -> str:
    """States are derived from amounts and dates, never stored on their own."""
    if voucher.voided_at is not None:
        return "voided"
    if voucher.redeemed_fen == voucher.amount_fen:
        return "redeemed"
    if voucher.expired_at is not None or voucher.valid_until < today:
        return "expired"
    if voucher.redeemed_fen > 0 or voucher.held_fen > 0:
        return "partly_redeemed"
    return "active"


def voucher_read(voucher: Voucher, today: date) -> VoucherRead:
    return VoucherRead.model_validate(
        {
            **{c: getattr(voucher, c) for c in VoucherRead.model_fields if c != "state"},
            "state": state_of(voucher, today),
        }
    )


def m1_facets(decision: dict[str, Any]) -> dict[str, Any]:
    """What an M1 decision's trace says about the voucher, for the aggregates (absent: "unknown")."""
    facets = decision.get("facets") or {}
    paid_to = facets.get("compute_paid_to") or {}
    base = facets.get("compute_base_fen")
    split: dict[str, Any] = {}
    if isinstance(base, int) and base > 0 and isinstance(paid_to, dict):
        district = int(paid_to.get("district", 0)) + int(paid_to.get("both", 0))  # district compute, domestic or not
        domestic = int(paid_to.get("domestic", 0))
        if min(district, domestic) >= 0 and district + domestic <= base:
            split = {"compute_base_fen": base, "compute_district_fen": district, "compute_domestic_fen": domestic}
    revenue_class = facets.get("revenue_class")
    return {"revenue_class": revenue_class if isinstance(revenue_class, str) else None, **split}


def reserved_by_approval(decision: dict[str, Any]) -> uuid.UUID | None:
    """The budget reservation the decision's approval recorded (A2), if any."""
    reservation = decision.get("budget_reservation_id")
    return uuid.UUID(str(reservation)) if reservation else None


async def _pay_decision(
    session: AsyncSession,
    eligibility: Eligibility,
    budgets: Budgets,
    decision_id: uuid.UUID,
    actor: str,
    now: datetime,
    *,
    voucher: bool,
) -> tuple[dict[str, Any], str, int, int | None]:
    """The approved decision (its measure paid by a voucher, or else by a grant), locked and not paid yet, and the
    budget its approval reserved consumed (A2): (decision, measure, amount, the reservation's year or None)."""
    decision = await eligibility.approved_decision(decision_id)
    measure = str(decision["measure"])
    if (measure in VOUCHER_MEASURES) != voucher:
        raise ProblemError(
            WRONG_INSTRUMENT, measure=measure, endpoint="POST /v1/grants" if voucher else "POST /v1/vouchers"
        )
    await repository.lock_decision(session, decision_id)
    existing = await repository.already_issued(session, decision_id)
    if existing:
        raise ProblemError(ALREADY_ISSUED, reference=existing)
    amount = int(decision["amount_fen"])
    reserved_year = await budget_ceilings.consume(
        session, budgets, reserved_by_approval(decision), decision_id, measure, amount, actor, now
    )
    return decision, measure, amount, reserved_year


async def issue_voucher(
    session: AsyncSession,
    eligibility: Eligibility,
    budgets: Budgets,
    payload: IssueRequest,
    actor: str,
    now: datetime,
) -> VoucherRead:
    today = local_today(now)
    decision, measure, amount, reserved_year = await _pay_decision(
        session, eligibility, budgets, payload.decision_id, actor, now, voucher=True
    )
    # A2: without a reservation, today's figure (none → refused before any write)
    figure = None if reserved_year else budget_ceilings.standing(budgets, measure, today.year, today)
    validity = str(await eligibility.parameter("vouchers.validity", today))
    holder = decision["applicant"]
    contract_key = vendor = None
    if measure == "M3":
        contract_key, vendor = await ceilings.m3_ceilings(session, eligibility, decision, amount, today)
    else:
        await ceilings.m1_class_cap(session, decision)
    if figure is not None:
        await budget_ceilings.take(session, budgets, figure, amount)  # last ceiling: its row is the most contended
    code = new_code(measure)
    budget = await account(session, "budget", budget_ceilings.account_ref(measure, reserved_year or today.year))
    holding = await account(session, "voucher", code)
    hold = await account(session, "hold", code)
    if vendor:
        await account(session, "vendor_receivable", vendor)
    voucher = Voucher(
        code=code,
        kind=measure,
        holder=holder,
        vendor=vendor,
        contract_key=contract_key,
        decision_id=payload.decision_id,
        year=today.year if measure == "M3" else int(decision["benefit_year"]),
        amount_fen=amount,
        available_fen=amount,
        held_fen=0,
        redeemed_fen=0,
        returned_fen=0,
        valid_until=valid_until(validity, today),
        account_id=holding,
        hold_account_id=hold,
        budget_account_id=budget,
        parameters_digest=decision["parameters_digest"],
        issued_by=actor,
        **(m1_facets(decision) if measure == "M1" else {}),
    )
    session.add(voucher)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent claim of the same decision or contract
        if "contract_key" in str(exc.orig):
            raise ProblemError(CONTRACT_ALREADY_CLAIMED, contract=str(contract_key)) from exc
        raise ProblemError(ALREADY_ISSUED, reference=str(payload.decision_id)) from exc
    session.add(
        Entry(
            kind="issue",
            from_account_id=budget,
            to_account_id=holding,
            amount_fen=amount,
            voucher_id=voucher.id,
            decision_id=payload.decision_id,
            contract_ref=contract_key,
            actor=actor,
            parameters_digest=decision["parameters_digest"],
            request_id=request_id_var.get(),
        )
    )
    await session.flush()
    if vendor is None:  # M1: the compute providers the holder named on its application may spend it
        providers = authorisations.application_providers(decision)
        await authorisations.authorise_named(session, voucher.id, providers, "application", holder)
    await session.refresh(voucher)
    issued = voucher_read(voucher, today)
    await events.voucher_changed(session, "issued", issued)
    return issued


async def grant(
    session: AsyncSession,
    eligibility: Eligibility,
    budgets: Budgets,
    payload: IssueRequest,
    actor: str,
    now: datetime,
) -> GrantRead:
    """Other measures (M2, M4–M13): a disbursement from the budget, once per decision."""
    today = local_today(now)
    decision, measure, amount, reserved_year = await _pay_decision(
        session, eligibility, budgets, payload.decision_id, actor, now, voucher=False
    )
    if reserved_year is None:
        await budget_ceilings.take(
            session, budgets, budget_ceilings.standing(budgets, measure, today.year, today), amount
        )
    budget = await account(session, "budget", budget_ceilings.account_ref(measure, reserved_year or today.year))
    paid = await account(session, "grant_paid", decision["applicant"])
    entry = Entry(
        kind="grant",
        from_account_id=budget,
        to_account_id=paid,
        amount_fen=amount,
        decision_id=payload.decision_id,
        actor=actor,
        parameters_digest=decision["parameters_digest"],
        request_id=request_id_var.get(),
    )
    session.add(entry)
    await session.flush()
    row = Grant(
        decision_id=payload.decision_id,
        measure=measure,
        holder=decision["applicant"],
        year=int(decision["benefit_year"]),
        amount_fen=amount,
        entry_id=entry.id,
        issued_by=actor,
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ProblemError(ALREADY_ISSUED, reference=str(payload.decision_id)) from exc
    await session.refresh(row)
    disbursed = await _grant_read(session, row)
    await events.grant_changed(session, "disbursed", disbursed)
    return disbursed


async def _grant_read(session: AsyncSession, row: Grant) -> GrantRead:
    reversal = await repository.reversal_of(session, row.entry_id)
    read = GrantRead.model_validate(row, from_attributes=True)
    return read.model_copy(update={"reversed_by_entry_id": reversal})


async def reverse_grant(
    session: AsyncSession, budgets: Budgets, grant_id: int, payload: ReversalRequest, actor: str, now: datetime
) -> GrantRead:
    """A mistaken disbursement is corrected by a reversing entry that references it (never an edit).

    The amount goes back to the budget it left (A2), after the entry: a concurrent reversal of
    the same grant has then already lost on the unique index, and gives nothing back.
    """
    row = await repository.grant(session, grant_id)
    if row is None:
        raise ProblemError(GRANT_NOT_FOUND, id=grant_id)
    original = await session.get(Entry, row.entry_id)
    assert original is not None
    done = await repository.reversal_of(session, original.id)
    if done is not None:
        raise ProblemError(ALREADY_REVERSED, entry_id=done)
    session.add(
        Entry(
            kind="reversal",
            from_account_id=original.to_account_id,
            to_account_id=original.from_account_id,
            amount_fen=original.amount_fen,
            decision_id=original.decision_id,
            actor=actor,
            reverses_entry_id=original.id,
            request_id=request_id_var.get(),
            memo=payload.reason,
        )
    )
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent reversal of the same entry
        raise ProblemError(ALREADY_REVERSED, entry_id=original.id) from exc
    ref = await budget_ceilings.budget_ref(session, original.from_account_id)
    if ref is not None:
        await budget_ceilings.give_back(session, budgets, ref, original.amount_fen, local_today(now))
    reversed_grant = await _grant_read(session, row)
    await events.grant_changed(session, "reversed", reversed_grant, reason=payload.reason, reversed_by=actor)
    return reversed_grant


async def get_voucher(session: AsyncSession, code: str, *, lock: bool = False) -> Voucher:
    voucher = await repository.voucher(session, code, lock=lock)
    if voucher is None:
        raise ProblemError(VOUCHER_NOT_FOUND, code=code)
    return voucher


async def _return_to_budget(session: AsyncSession, voucher: Voucher, kind: str, actor: str | None, memo: str) -> int:
    """The unused amount goes back to the budget account (the entry); the caller gives it back to the row (A2)."""
    amount = voucher.available_fen
    voucher.returned_fen += amount
    voucher.available_fen = 0
    if amount:
        session.add(
            Entry(
                kind=kind,
                from_account_id=voucher.account_id,
                to_account_id=voucher.budget_account_id,
                amount_fen=amount,
                voucher_id=voucher.id,
                decision_id=voucher.decision_id,
                actor=actor,
                request_id=request_id_var.get(),
                memo=memo,
            )
        )
    return amount


async def _give_back(session: AsyncSession, budgets: Budgets, returned: dict[int, int], today: date) -> None:
    """Amounts returned per budget account, given back to their budget rows in one order (no deadlock)."""
    refs = {account_id: await budget_ceilings.budget_ref(session, account_id) for account_id in returned}
    for account_id, ref in sorted(((a, r) for a, r in refs.items() if r is not None), key=lambda pair: pair[1]):
        await budget_ceilings.give_back(session, budgets, ref, returned[account_id], today)


async def void(
    session: AsyncSession, budgets: Budgets, code: str, payload: VoidRequest, actor: str, now: datetime
) -> VoucherRead:
    await holds.lock_open_holds(session, code)  # before the voucher's row, as a capture does
    voucher = await get_voucher(session, code, lock=True)
    state = state_of(voucher, local_today(now))
    if state in ("voided", "expired", "redeemed"):
        zh = {"voided": "作废", "expired": "过期", "redeemed": "兑付完毕"}[state]
        raise ProblemError(VOUCHER_NOT_ACTIVE, state=state, state_zh=zh)
    if voucher.held_fen:  # a vendor's hold never blocks the bureau: released first, with the reason
        await holds.release_all(
            session, voucher.id, voucher.held_fen, "released", now, actor, f"voucher voided: {payload.reason}"
        )
        await session.refresh(voucher)
    returned = await _return_to_budget(session, voucher, "void", actor, payload.reason)
    await _give_back(session, budgets, {voucher.budget_account_id: returned}, local_today(now))
    voucher.voided_at = now
    await session.flush()
    voided = voucher_read(voucher, local_today(now))
    await events.voucher_changed(session, "voided", voided, reason=payload.reason, voided_by=actor)
    return voided


async def expire_due(
    session: AsyncSession, budgets: Budgets, now: datetime, clocks: Mapping[str, datetime] | None = None
) -> int:
    """Release expired holds, then return the unused amount of vouchers past their date.

    `clocks` (sandbox mode, docs/sandbox.md): enterprises bound to a test clock and its time; their holds end and
    their vouchers expire by it, and not by `now`.
    """
    clocks = clocks or {}
    bound = sorted(clocks)
    await repository.expire_holds(session, now, exclude=bound)
    count = await _expire_vouchers(session, budgets, now, exclude=bound)
    by_time: dict[datetime, list[str]] = {}
    for holder, moment in clocks.items():
        by_time.setdefault(moment, []).append(holder)
    for moment, holders in sorted(by_time.items()):
        await repository.expire_holds(session, moment, only=sorted(holders))
        count += await _expire_vouchers(session, budgets, moment, only=sorted(holders))
    return count


async def _expire_vouchers(
    session: AsyncSession, budgets: Budgets, now: datetime, *, exclude: Sequence[str] = (), only: Sequence[str] = ()
) -> int:
    today = local_today(now)
    due = await repository.due_vouchers(session, today, exclude=exclude, only=only)
    expired: list[Voucher] = []
    returned: dict[int, int] = {}
    for voucher in due:
        if voucher.held_fen:  # open holds end with the voucher, the reason recorded in each release
            reason = f"voucher expired after {voucher.valid_until}"
            await holds.release_all(
                session, voucher.id, voucher.held_fen, "expired", now, None, reason, skip_locked=True
            )
            await session.refresh(voucher)
        if voucher.held_fen:
            continue  # a hold being captured right now: next run
        amount = await _return_to_budget(session, voucher, "expire", None, f"expired after {voucher.valid_until}")
        returned[voucher.budget_account_id] = returned.get(voucher.budget_account_id, 0) + amount
        voucher.expired_at = now
        expired.append(voucher)
    await _give_back(session, budgets, returned, today)
    await session.flush()
    await events.vouchers_expired(session, [voucher_read(voucher, today) for voucher in expired])
    return len(expired)
