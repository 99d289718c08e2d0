"""What the vouchers routes share: the clock, the app's ledger pool, peers and budgets, and the
voucher-code and Idempotency-Key rules.

Each rule is written once, as the annotated type FastAPI validates a documented route's parameter
with; the bare redemption route validates with the same types (`redemptions/deps.py`), so it
refuses what its documented twin refuses, with the same problems.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Header, Path, Request

from shared.app import state_dependency
from shared.auth import ADMIN, OFFICER, Principal, require
from shared.errors import ProblemError

from .errors import IDEMPOTENCY_KEY_REQUIRED
from .peers import Eligibility
from .policy.budgets import Budgets
from .pool import LedgerPool


async def now(request: Request) -> datetime:
    """The app's clock (tests set their own): every route reads the time through it."""
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


Now = Annotated[datetime, Depends(now)]
EligibilityDep = Annotated[Eligibility, Depends(state_dependency("eligibility", Eligibility))]
LedgerPoolDep = Annotated[LedgerPool, Depends(state_dependency("ledger_pool", LedgerPool))]
#: the programme budgets (A2, policy/budgets.yaml): approvals' reservations, issuance and grants are held to them
BudgetsDep = Annotated[Budgets, Depends(state_dependency("budgets", Budgets))]
#: Bureau staff who issue, void and release holds (officers) and administrators.
Officer = Annotated[Principal, require(OFFICER, ADMIN)]

CODE_MIN_LENGTH = 3
CODE_MAX_LENGTH = 64
CODE_CHARACTERS = "A-Z0-9-"
#: A voucher's code (`M1-…`, `M3-…`) in a path.
VoucherCode = Annotated[
    str, Path(min_length=CODE_MIN_LENGTH, max_length=CODE_MAX_LENGTH, pattern=f"^[{CODE_CHARACTERS}]+$")
]

KEY_MAX_LENGTH = 200
#: Every mutating vendor or holder call carries one (`IDEMPOTENCY_KEY_REQUIRED` when it is missing).
KeyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=KEY_MAX_LENGTH, description="Required; reuse it when retrying"),
]

#: An officer's call that may carry one: with it, a retry answers what the first call did (idempotency.py).
OptionalKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=KEY_MAX_LENGTH,
        description="Optional; with it, a retry with the same key and body answers the first call's result",
    ),
]


def idempotency_key(value: str | None) -> str:
    """The key of a call that needs one (400 `idempotency_key_required` without it)."""
    if not value:
        raise ProblemError(IDEMPOTENCY_KEY_REQUIRED)
    return value
