"""Clause A2: the reconciler releases budget reservations no approval recorded.

An approval attempt that neither committed nor released its reservation (a process killed in
between) is found here: once it is older than the grace period, the eligibility service is asked
whether an approval recorded it, and it is released if not.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.errors import ProblemError
from shared.peers import PeerUnavailable
from shared.periodic import Periodic, start_jobs, stop_jobs

from ..errors import DECISION_NOT_APPROVED
from ..peers import Eligibility
from ..policy.budgets import Budgets
from . import repository, service

logger = logging.getLogger("services.vouchers.budgets.reconciler")


class Reconciler(Periodic):
    """Releases reservations no approval recorded, once they are older than any approval can take.

    Each round: read a page of old, unconfirmed reservations (short transaction), ask the
    eligibility service about each (no transaction held), then confirm or release each in its
    own short transaction. The eligibility service unreachable → try again next round.
    """

    name = "budget-reservation-reconciler"

    def __init__(
        self,
        sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
        eligibility: Eligibility,
        budgets: Budgets,
        clock: Callable[[], datetime],
        *,
        grace_seconds: float,
        interval_seconds: float,
    ) -> None:
        super().__init__(interval_seconds)
        self.sessionmaker = sessionmaker
        self.eligibility = eligibility
        self.budgets = budgets
        self.clock = clock
        self.grace = timedelta(seconds=grace_seconds)

    async def run_once(self, limit: int = 100) -> dict[str, int]:
        """One round; returns how many were confirmed, released, and left for later."""
        now = self.clock()
        async with self.sessionmaker() as session:
            rows = await repository.unconfirmed(session, now - self.grace, limit)
        counts = {"confirmed": 0, "released": 0, "unknown": 0}
        for reservation_id, decision_id in rows:
            try:
                decision = await self.eligibility.approved_decision(decision_id)
                recorded = str(decision.get("budget_reservation_id")) == str(reservation_id)
            except ProblemError as exc:
                if exc.error is not DECISION_NOT_APPROVED:
                    raise
                recorded = False
            except PeerUnavailable:
                counts["unknown"] += 1
                continue
            async with self.sessionmaker() as session, session.begin():
                if recorded:
                    await repository.confirm(session, reservation_id, now)
                    counts["confirmed"] += 1
                else:
                    with contextlib.suppress(ProblemError):  # consumed meanwhile: nothing to release
                        await service.release(
                            session, self.budgets, reservation_id, "reconciler", "no approval recorded it", now
                        )
                        counts["released"] += 1
                        logger.warning("released budget reservation %s: no approval recorded it", reservation_id)
        return counts

    async def round(self) -> None:
        await self.run_once()

    def failed(self, exc: Exception) -> None:
        """A round that fails is retried next interval, never ends the loop."""
        logger.error("budget reservation reconciler round failed", exc_info=exc)


async def start_reconciler(app: FastAPI) -> None:
    settings = app.state.settings
    reconciler = Reconciler(
        app.state.database.sessionmaker,
        app.state.eligibility,
        app.state.budgets,
        app.state.clock,
        grace_seconds=settings.reservation_grace_seconds,
        interval_seconds=settings.reservation_reconcile_seconds,
    )
    await start_jobs(app, reservation_reconciler=reconciler)


async def stop_reconciler(app: FastAPI) -> None:
    await stop_jobs(app, "reservation_reconciler")
