"""Submissions of one applicant and measure see each other without a lock held while they evaluate (issue #16).

A submission reads (one statement, no lock), evaluates, and writes with one statement that first passes
`eligibility.submission_gate` (migration 0017): the applicant's lock for the measure, then no application of theirs
newer than the read saw. Overtaken, it reads and decides again; overtaken every time, it is refused (409) having
written nothing. The claim keys, which the service computes before the read with the parameter versions it read
last, are looked up again when a new version changes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from services.eligibility.rules.m9_growth import threshold_claim
from services.eligibility.submission_sql import ParameterVersions, Read
from services.eligibility.submission_sql import insert_submission as real_insert
from services.eligibility.submission_sql import read as real_read
from shared.db import Connection
from tests.auth import admin
from tests.conftest import DatabaseFactory
from tests.eligibility.conftest import eligibility_on
from tests.eligibility.test_award_register import m4, submit
from tests.eligibility.test_examples import m9_revenues
from tests.vouchers.flow import late_application

YUAN = 100


def register_step(application: dict[str, Any]) -> dict[str, Any]:
    [step] = [step for step in application["decision"]["trace"] if step["clause"] == "register"]
    return step


class Overtaken:
    """`submission_sql.read`, with another application of the same enterprise and evidence submitted after each of
    the first `times` reads of the watched submission returns: as if it came in while that submission evaluated."""

    def __init__(self, client: httpx.AsyncClient, applicant: str, evidence: dict[str, Any], *, times: int) -> None:
        self.client, self.applicant, self.evidence, self.times = client, applicant, evidence, times
        self.watched = 0  # reads of the watched submission
        self.others: list[dict[str, Any]] = []
        self.inside = False

    async def __call__(
        self, connection: Connection, applicant: str, measure: str, keys: Any, *, prior_awards: bool
    ) -> Read:
        seen = await real_read(connection, applicant, measure, keys, prior_awards=prior_awards)
        if self.inside:  # the other submission's own read
            return seen
        self.watched += 1
        if self.watched <= self.times:
            self.inside = True
            try:
                self.others.append(await submit(self.client, self.applicant, self.evidence))
            finally:
                self.inside = False
        return seen


async def stored(database_url: str, applicant: str) -> tuple[int, int, int]:
    """The enterprise's applications, their decisions and events."""
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(
            """SELECT (SELECT count(*) FROM eligibility.applications WHERE applicant = $1),
                      (SELECT count(*) FROM eligibility.decisions d JOIN eligibility.applications a
                       ON a.id = d.application_id WHERE a.applicant = $1),
                      (SELECT count(*) FROM eligibility.outbox WHERE organisation = $1)""",
            applicant,
        )
    finally:
        await connection.close()
    assert row is not None
    return row[0], row[1], row[2]


async def test_a_submission_overtaken_while_it_evaluated_decides_again_seeing_the_other(
    databases: DatabaseFactory,
    live_registry: str,
    service_auth_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two applications of one enterprise for one project (M4, once only). The second reads (nothing held), then
    the first comes in and is stored before the second is written: the gate refuses the second's write, it reads
    again and is decided seeing the first (needs review: the key is claimed by the first), stored once."""
    async with httpx.AsyncClient(base_url=live_registry, headers=admin()) as registry:
        applicant, evidence = await m4(registry)
    url = databases.create("longgang_submission_gate")
    async with eligibility_on(url, live_registry, service_auth_env) as client:
        overtaken = Overtaken(client, applicant, evidence, times=1)
        monkeypatch.setattr("services.eligibility.submission_sql.read", overtaken)
        later = await submit(client, applicant, evidence)
    [first] = overtaken.others
    [key] = first["decision"]["claims"]
    assert overtaken.watched == 2, "read, overtaken, read again"
    assert first["decision"]["outcome"] == "eligible", first["decision"]
    assert register_step(later)["inputs"]["held"] == {key: {"application_id": first["id"], "status": "pending"}}
    assert later["decision"]["outcome"] == "needs_review"
    assert [r["code"] for r in later["decision"]["review_reasons"]] == ["claimed_by_pending_application"]
    assert await stored(url, applicant) == (2, 2, 4), "two applications, two decisions, four events: none twice"


async def test_a_submission_sends_no_begin_or_commit_its_two_statements_are_their_own_transactions(
    databases: DatabaseFactory,
    live_registry: str,
    service_auth_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path (issue #16): under the service's own session, nothing has begun a transaction when the read
    runs, and none is open after the insert; a session statement run before them would make them one transaction
    (still correct, but BEGIN and COMMIT round trips again)."""
    async with httpx.AsyncClient(base_url=live_registry, headers=admin()) as registry:
        applicant, evidence = await m4(registry)
    url = databases.create("longgang_submission_autocommit")
    in_transaction: list[tuple[str, bool]] = []

    async def read(connection: Connection, *args: Any, **kwargs: Any) -> Read:
        in_transaction.append(("before the read", connection.is_in_transaction()))
        return await real_read(connection, *args, **kwargs)

    async def insert(connection: Connection, *args: Any) -> bool:
        written = await real_insert(connection, *args)
        in_transaction.append(("after the insert", connection.is_in_transaction()))
        return written

    monkeypatch.setattr("services.eligibility.submission_sql.read", read)
    monkeypatch.setattr("services.eligibility.submission_sql.insert_submission", insert)
    async with eligibility_on(url, live_registry, service_auth_env) as client:
        submitted = await submit(client, applicant, evidence)
    assert submitted["decision"]["outcome"] == "eligible"
    assert in_transaction == [("before the read", False), ("after the insert", False)]
    assert await stored(url, applicant) == (1, 1, 2)


async def test_a_submission_overtaken_every_time_is_refused_having_written_nothing(
    databases: DatabaseFactory,
    live_registry: str,
    service_auth_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with httpx.AsyncClient(base_url=live_registry, headers=admin()) as registry:
        applicant, evidence = await m4(registry)
    url = databases.create("longgang_submission_contended")
    monkeypatch.setattr("services.eligibility.service.SUBMISSION_ATTEMPTS", 3)
    async with eligibility_on(url, live_registry, service_auth_env) as client:
        overtaken = Overtaken(client, applicant, evidence, times=3)
        monkeypatch.setattr("services.eligibility.submission_sql.read", overtaken)
        refused = await client.post("/v1/applications", json=late_application(applicant, evidence, "2026-03-01"))
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["code"] == "submission_contended"
    assert applicant in problem["detail"]
    assert "M4" in problem["detail"]
    assert len(overtaken.others) == 3
    assert await stored(url, applicant) == (3, 3, 6), "only the three that came in meanwhile"


async def test_a_claim_key_of_a_parameter_version_the_process_had_not_read_is_looked_up(
    eligibility: httpx.AsyncClient,
    eligibility_app: FastAPI,
    live_registry_client: httpx.AsyncClient,
    clock: Callable[[date], None],
) -> None:
    """M9's claim keys are its parameter's thresholds. A process that read the versions before a new threshold
    was added computes the keys without it; the submission's first statement shows the versions changed, and the
    new threshold's key is looked up too: here it is held by the application submitted just before."""
    applicant, evidence = await m9_revenues((2024, 18_000_000 * YUAN), (2025, 120_000_000 * YUAN))(live_registry_client)
    clock(date(2026, 1, 10))
    thresholds = [
        {"over_fen": 2_000_000_000, "award_fen": 20_000_000},
        {"over_fen": 10_000_000_000, "award_fen": 100_000_000},
        {"over_fen": 11_000_000_000, "award_fen": 150_000_000},  # new: crossed by 2025's 120 million
        {"over_fen": 50_000_000_000, "award_fen": 200_000_000},
        {"over_fen": 100_000_000_000, "award_fen": 400_000_000},
    ]
    version = {
        "effective_from": "2026-02-01",
        "value": thresholds,
        "status": "provisional",
        "source": "实施细则（征求意见稿）",
        "reason": "新增门槛",
    }
    added = await eligibility.post("/v1/policy/parameters/M9.thresholds/versions", json=version)
    assert added.status_code == 201, added.text
    clock(date(2026, 3, 1))
    body = {"applicant": applicant, "evidence": evidence}
    first = (await eligibility.post("/v1/applications", json=body)).json()
    new_key = threshold_claim(applicant, 11_000_000_000)
    assert new_key in first["decision"]["claims"], first["decision"]["failures"]

    # as a process that has read no version yet (started before the version was added)
    eligibility_app.state.policy = replace(eligibility_app.state.policy, parameter_versions=ParameterVersions())
    second = (await eligibility.post("/v1/applications", json=body)).json()
    held = register_step(second)["inputs"]["held"]
    assert held.get(new_key) == {"application_id": first["id"], "status": "pending"}, held
