"""What issuance's routes share: an officer's payment (issuance or grant) as one dependency."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import Depends
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Principal
from shared.db import SessionDep

from .. import idempotency
from ..deps import BudgetsDep, EligibilityDep, KeyHeader, Now, Officer
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
        return await idempotency.once(
            self.session,
            self.principal.client_id,
            self.key,
            action,
            payload.model_dump(mode="json"),
            lambda: pay(self.session, eligibility, self.budgets, payload, self.principal.actor, self.moment),
        )


async def payment(
    session: SessionDep,
    client: EligibilityDep,
    budgets: BudgetsDep,
    moment: Now,
    principal: Officer,
    key: KeyHeader = None,
) -> Payment:
    return Payment(session, client, budgets, moment, principal, key)


PaymentDep = Annotated[Payment, Depends(payment)]
