"""Clause A2: the programme budget of each measure and year is a ceiling, held by the database.

One `allowances` row per measure and budget year (holder `programme`, kind `budget.<measure>`,
clause A2, parameter `budgets.yaml:<measure>`), the technique of the M3 and M1 ceilings: issuing
a voucher or a grant takes its amount with one conditional UPDATE in the entry's own
transaction, with `CHECK (used_fen <= limit_fen)` behind it; voiding, expiry and a grant's
reversal give the amount back to the row of the budget account's year (`M3:2026` → M3, 2026).
`used_fen` is what the budget account has committed: issued + granted − returned, the figure
the ledger shows (`GET /v1/ledger/invariants` checks that they agree).

**The limit is the figure standing on the day of the commitment** (budgets.yaml's latest dated
value for that year). A commitment succeeds only if `used + amount <= figure`, and the same
UPDATE sets `limit_fen` to the figure: a raised figure gives room at once, a lowered one is the
limit from the next commitment on. A figure lowered below what is already committed invalidates
nothing (no row is rewritten below its `used_fen`): the row keeps its earlier limit, every new
commitment is refused with `budget_exhausted` and 0 remaining until returns bring the
commitments under the figure, and `GET /v1/aggregates/budget` reports the year `over_budget`.

**Rows are created lazily**, by the first commitment or return on the budget account (the
migration cannot read budgets.yaml), race-safe: `INSERT … ON CONFLICT DO NOTHING` with
`used_fen` from `vouchers.budget_committed(ref)` (migration 0009: the account's committed
entries, other transactions' only). Every later commitment or return goes through the row, so
the row and the ledger move together. History that already exceeds the budget is kept: the row
is created with limit = max(figure, used).
"""

from __future__ import annotations

import logging
from datetime import date

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import ProblemError
from shared.money import format_yuan

from .errors import BUDGET_EXHAUSTED, NO_BUDGET
from .models import Account, Allowance
from .policy.budgets import Budget, Budgets

logger = logging.getLogger("services.vouchers.budget_ceilings")

HOLDER = "programme"
CLAUSE = "A2"

_ENSURE = text(
    """
    INSERT INTO vouchers.allowances (holder, year, kind, limit_fen, used_fen, clause, parameter)
    SELECT :holder, :year, :kind, greatest(:figure, ledger.used), ledger.used, :clause, :parameter
    FROM (SELECT vouchers.budget_committed(:ref) AS used) ledger
    ON CONFLICT (holder, year, kind) DO NOTHING
    """
)
#: the ceiling: one conditional UPDATE, checked against the figure standing today, which becomes the limit
_TAKE = text(
    """
    UPDATE vouchers.allowances SET used_fen = used_fen + :amount, limit_fen = :figure
    WHERE holder = :holder AND year = :year AND kind = :kind AND used_fen + :amount <= :figure
    RETURNING used_fen
    """
)
_GIVE_BACK = text(
    """
    UPDATE vouchers.allowances SET used_fen = used_fen - :amount
    WHERE holder = :holder AND year = :year AND kind = :kind AND used_fen >= :amount
    RETURNING used_fen
    """
)
_EMPTY = text("UPDATE vouchers.allowances SET used_fen = 0 WHERE holder = :holder AND year = :year AND kind = :kind")


def kind_of(measure: str) -> str:
    return f"budget.{measure}"


def account_ref(measure: str, year: int) -> str:
    """The budget account the money leaves from and returns to (`accounts.ref`)."""
    return f"{measure}:{year}"


def parse_ref(ref: str) -> tuple[str, int] | None:
    """`M3:2026` → ("M3", 2026); None for anything else."""
    measure, _, year = ref.partition(":")
    return (measure, int(year)) if measure and year.isdigit() else None


def _key(measure: str, year: int) -> dict[str, object]:
    return {"holder": HOLDER, "year": year, "kind": kind_of(measure)}


def standing(budgets: Budgets, measure: str, year: int, today: date) -> Budget:
    """The budget figure for the measure and year on `today`; none standing → `no_budget` (A2)."""
    figure = budgets.budget(measure, year, today)
    if figure is None:
        raise ProblemError(
            NO_BUDGET,
            measure=measure,
            year=year,
            budget_file_version=budgets.version,
            _label_zh=budgets.label(measure, "zh"),
            _label_en=budgets.label(measure, "en"),
        )
    return figure


async def _ensure(session: AsyncSession, measure: str, year: int, figure_fen: int) -> None:
    await session.execute(
        _ENSURE,
        {
            **_key(measure, year),
            "figure": figure_fen,
            "clause": CLAUSE,
            "parameter": f"budgets.yaml:{measure}",
            "ref": account_ref(measure, year),
        },
    )


async def committed(session: AsyncSession, measure: str, year: int) -> int | None:
    """What the budget row says is committed (None: no row yet)."""
    used = await session.scalar(
        select(Allowance.used_fen).where(
            Allowance.holder == HOLDER, Allowance.year == year, Allowance.kind == kind_of(measure)
        )
    )
    return None if used is None else int(used)


async def take(session: AsyncSession, budgets: Budgets, figure: Budget, amount: int) -> None:
    """Commit `amount` of the budget `figure` stands for, or refuse with what remains (nothing is written)."""
    measure, year = figure.measure, figure.year
    await _ensure(session, measure, year, figure.budget_fen)
    taken = (
        await session.execute(_TAKE, {**_key(measure, year), "amount": amount, "figure": figure.budget_fen})
    ).first()
    if taken is not None:
        return
    used = await committed(session, measure, year) or 0
    remaining = max(0, figure.budget_fen - used)
    raise ProblemError(
        BUDGET_EXHAUSTED,
        measure=measure,
        year=year,
        budget_fen=figure.budget_fen,
        committed_fen=used,
        remaining_fen=remaining,
        requested_fen=amount,
        budget_yuan=format_yuan(figure.budget_fen),
        remaining_yuan=format_yuan(remaining),
        requested_yuan=format_yuan(amount),
        _label_zh=budgets.label(measure, "zh"),
        _label_en=budgets.label(measure, "en"),
    )


async def give_back(session: AsyncSession, budgets: Budgets, ref: str, amount: int, today: date) -> None:
    """Return `amount` to the budget row of the account `ref` (voided, expired, reversed): never refused."""
    parsed = parse_ref(ref)
    if parsed is None or amount <= 0:
        return
    measure, year = parsed
    figure = budgets.budget(measure, year, today)
    await _ensure(session, measure, year, figure.budget_fen if figure else 0)
    if (await session.execute(_GIVE_BACK, {**_key(measure, year), "amount": amount})).first() is None:
        # the row counted less than comes back: commitments it never saw (a process older than
        # migration 0009 issuing meanwhile). A return is never refused; the invariants name the row.
        logger.error("budget row %s counted less than the %s fen returned: set to 0", ref, amount)
        await session.execute(_EMPTY, _key(measure, year))


async def budget_ref(session: AsyncSession, account_id: int) -> str | None:
    """The `measure:year` of a budget account (None if the account is not a budget)."""
    ref = await session.scalar(select(Account.ref).where(Account.id == account_id, Account.kind == "budget"))
    return None if ref is None else str(ref)
