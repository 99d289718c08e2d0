"""No lock and no transaction of a submission is held while the registry answers (issue #12's rule).

A submission serialises the evaluations of one applicant and measure with an advisory lock (the
award register, the year's caps). The registry's facts are read before it: a slow registry then
delays only its own request, never another submission of the same applicant waiting on the lock.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from services.eligibility.facts import Facts, FactsRequest, RegistryFacts
from tests.eligibility import seed
from tests.eligibility.test_examples import invoice, m1
from tests.vouchers import flow

YUAN = 100


class Probe(RegistryFacts):
    """The real registry facts; before asking, it notes whether the submission's lock is free."""

    def __init__(self, inner: RegistryFacts, database_url: str) -> None:
        super().__init__(inner.registry)
        self.database_url = database_url
        self.lock_free: list[bool] = []

    async def fetch(self, applicant: str, as_of: date, request: FactsRequest) -> Facts:
        connection = await asyncpg.connect(self.database_url)
        try:  # the same key as submission_sql.begin; try-and-release in one statement
            free = await connection.fetchval(
                "SELECT pg_try_advisory_xact_lock(hashtext($1))", f"eligibility:{applicant}:M1"
            )
        finally:
            await connection.close()
        self.lock_free.append(bool(free))
        return await super().fetch(applicant, as_of, request)


async def test_a_submission_asks_the_registry_before_it_locks_the_applicant(
    eligibility_app: FastAPI, eligibility: httpx.AsyncClient, registry: httpx.AsyncClient, database_url: str
) -> None:
    applicant = await seed.organisation(registry)
    await seed.revenue(registry, applicant, 2025, 300_000_000 * YUAN)
    provider = await seed.vendor(registry, is_compute_vendor=True)
    evidence: dict[str, Any] = m1(invoice(provider, ("compute", 1_000_000)))
    real = eligibility_app.state.registry_facts
    probe = Probe(real, database_url)
    eligibility_app.state.registry_facts = probe
    try:
        submitted = await flow.submit(eligibility, applicant, evidence, as_of="2026-03-01")
    finally:
        eligibility_app.state.registry_facts = real
    assert submitted["decision"]["outcome"] in ("eligible", "needs_review"), submitted
    assert probe.lock_free == [True]
