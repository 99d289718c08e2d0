"""What issuance's routes share: an officer's payment (issuance or grant) as one dependency."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Principal
from shared.db import SessionDep

from .. import clocks, idempotency
from ..deps import BudgetsDep, EligibilityDep, Now, Officer, OptionalKeyHeader
from ..peers import Eligibility
from ..policy.budgets import Budgets
from .schemas import IssueRequest

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Payment:
    """What issuing a voucher or disbursing a grant needs from the request: one dependency for both routes."""

    session: AsyncSession
    eligibility: Eligibility
    budgets: Budgets
    moment: datetime
    principal: Principal
    key: str | None
    #: the time of the decision's enterprise: `moment`, or in sandbox mode its test clock's (clocks.py)
    holder_now: Callable[[str], Awaitable[datetime]] | None = None

    async def once(
        self,
        action: str,
        payload: IssueRequest,
        parameters: tuple[str, ...],
        pay: Callable[[AsyncSession, Eligibility, Budgets, IssueRequest, str, datetime], Awaitable[M]],
    ) -> M | Response:
        """Once per Idempotency-Key, with the decision and `parameters` read from eligibility first (`prepared`,
        before the transaction: no peer call while it is open)."""
        eligibility = await self.eligibility.prepared(payload.decision_id, parameters)
        moment = self.moment
        if self.holder_now is not None:  # the issue day, its year and ceilings are the holder's
            decision = await eligibility.approved_decision(payload.decision_id)  # read above: no call
            moment = await self.holder_now(str(decision["applicant"]))
        return await idempotency.once(
            self.session,
            self.principal.client_id,
            self.key,
            action,
            payload.model_dump(mode="json"),
            lambda: pay(self.session, eligibility, self.budgets, payload, self.principal.actor, moment),
        )


async def payment(
    request: Request,
    session: SessionDep,
    client: EligibilityDep,
    budgets: BudgetsDep,
    moment: Now,
    principal: Officer,
    key: OptionalKeyHeader = None,
) -> Payment:
    sandbox = clocks.in_sandbox(request)

    async def holder_now(holder: str) -> datetime:
        return await clocks.of_holder(request, holder)

    return Payment(session, client, budgets, moment, principal, key, holder_now if sandbox else None)


PaymentDep = Annotated[Payment, Depends(payment)]
