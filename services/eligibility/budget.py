"""Clause A2: an approval reserves its amount from the programme budget before it commits.

The budget lives in the vouchers service (its ledger holds the ceilings). An approval or an A1
decision runs in three steps, so no network call happens while a transaction is open:

1. the approval's own checks (state, four eyes) in a short transaction, which then ends;
2. `PUT /v1/budget-reservations/{attempt}` on the vouchers service, under a fresh id for this
   attempt — over the budget, the approval is refused (`budget_exhausted`, with what remains)
   and nothing is written anywhere;
3. the approval in a new transaction, recording the attempt's id, committed here.

If step 3 is refused (the award register, an annual cap, a concurrent approval) this attempt's
reservation is released at once. If the process dies between 2 and 3, or the release cannot
reach the vouchers service, the vouchers service's reconciler releases the reservation once no
approval has recorded it. A commit whose outcome is unknown leaves the reservation to the
reconciler, which asks this service.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import ErrorCode, ProblemError
from shared.peers import PeerClient, PeerError, PeerRejected, PeerUnavailable

from .approvals import BudgetNeed
from .errors import BUDGET_ALREADY_RESERVED, BUDGET_EXHAUSTED, NO_BUDGET

logger = logging.getLogger("services.eligibility.budget")

T = TypeVar("T")
#: the vouchers service's refusals of a reservation, answered to the approver under the same code
REFUSALS: dict[str, ErrorCode] = {e.code: e for e in (BUDGET_EXHAUSTED, NO_BUDGET, BUDGET_ALREADY_RESERVED)}
_ENVELOPE = frozenset({"type", "title", "status", "code", "detail", "instance", "request_id", "clause", "errors"})


class ProgrammeBudget:
    """The vouchers service's budget reservations, and nothing more."""

    def __init__(self, client: PeerClient) -> None:
        self.client = client

    async def reserve(self, reservation_id: uuid.UUID, need: BudgetNeed) -> dict[str, Any]:
        body = {"decision_id": str(need.decision_id), "measure": need.measure, "amount_fen": need.amount_fen}
        try:  # PeerUnavailable propagates: 503 + Retry-After, nothing was reserved or approved
            reservation: dict[str, Any] = await self.client.request_json(
                "PUT", f"/v1/budget-reservations/{reservation_id}", json=body
            )
        except PeerRejected as exc:
            problem = exc.body if isinstance(exc.body, dict) else {}
            refusal = REFUSALS.get(str(problem.get("code")))
            if refusal is None:
                raise PeerUnavailable(self.client.name, f"HTTP {exc.status}") from exc
            fields = {k: v for k, v in problem.items() if k not in _ENVELOPE}
            headers = {"Retry-After": "30"} if refusal is BUDGET_ALREADY_RESERVED else None
            raise ProblemError(refusal, headers=headers, **fields) from exc
        return reservation

    async def release(self, reservation_id: uuid.UUID, reason: str) -> None:
        """Best effort: a release that cannot be made now is made by the vouchers service's reconciler."""
        try:
            await self.client.request_json(
                "DELETE", f"/v1/budget-reservations/{reservation_id}", params={"reason": reason[:500]}
            )
        except PeerError as exc:
            logger.warning("budget reservation %s not released now (%s): the reconciler will", reservation_id, exc)

    async def aclose(self) -> None:
        await self.client.aclose()


async def with_reservation(
    session: AsyncSession,
    budget: ProgrammeBudget,
    need: BudgetNeed | None,
    approve: Callable[[uuid.UUID | None], Awaitable[T]],
) -> T:
    """Reserve `need` (if anything is paid), then run and commit `approve(reservation_id)`.

    The checks that produced `need` ran in the session's transaction, which is ended first: no
    connection or lock is held while the vouchers service is called.
    """
    if need is None:
        return await approve(None)
    await session.commit()
    reservation_id = uuid.uuid4()
    await budget.reserve(reservation_id, need)
    try:
        result = await approve(reservation_id)
    except BaseException as exc:
        await session.rollback()
        with contextlib.suppress(Exception):
            await budget.release(reservation_id, _reason(exc))
        raise
    await session.commit()  # an unknown outcome here is left to the reconciler, which asks us
    return result


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ProblemError):
        return f"approval refused: {exc.error.code}"
    return f"approval failed: {type(exc).__name__}"
