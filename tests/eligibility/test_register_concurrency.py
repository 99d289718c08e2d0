"""Two eligibility processes approve at the same moment: the database lets one award through (issue #11).

Two real eligibility processes share one fresh database. For each round, two applications
ask for the same thing (an M4 project, an M13 event claimed by two co-organisers) and are
reviewed; then both approvals are sent at once, one to each process. Exactly one succeeds,
the other answers 409 `already_awarded` naming the clause, and the register holds the key
once. The same for two A1 decisions whose amounts together pass the M5 annual cap: one
succeeds, the other answers 409 `annual_cap_reached` with the remaining amount.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from devtools.devrun import Stack, start_service, stop_services, wait_ready
from tests.auth import admin
from tests.conftest import DatabaseFactory, free_port
from tests.eligibility import seed
from tests.eligibility.actors import DIRECTOR, LI, WANG
from tests.eligibility.test_award_register import m4, m5, submit

YUAN = 100
ROUNDS = 6


@pytest.fixture(scope="module")
def two_processes(
    databases: DatabaseFactory, live_registry: str, live_vouchers: str, service_auth_env: dict[str, str]
) -> Iterator[tuple[str, list[str]]]:
    database_url = databases.create("longgang_eligibility_twice")
    environment = {"REGISTRY_URL": live_registry, "VOUCHERS_URL": live_vouchers, **service_auth_env}
    stacks = [Stack(database_url, "127.0.0.1", {"eligibility": free_port()}) for _ in range(2)]
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for i, stack in enumerate(stacks):
            processes[f"eligibility-{i}"] = start_service(stack, "eligibility", extra_env=environment)
        for i, stack in enumerate(stacks):
            wait_ready(stack, {"eligibility": processes[f"eligibility-{i}"]}, timeout=60)
        yield database_url, [stack.url("eligibility") for stack in stacks]
    finally:
        stop_services(processes)


@pytest_asyncio.fixture
async def clients(two_processes: tuple[str, list[str]]) -> AsyncIterator[list[httpx.AsyncClient]]:
    _, urls = two_processes
    async with (
        httpx.AsyncClient(base_url=urls[0], timeout=30, headers=admin()) as a,
        httpx.AsyncClient(base_url=urls[1], timeout=30, headers=admin()) as b,
    ):
        yield [a, b]


async def reviewed(client: httpx.AsyncClient, application: dict[str, Any]) -> None:
    decision = application["decision"]
    body: dict[str, Any] = {"verdict": "approve", "reason": "材料齐全", "amount_fen": decision["amount_fen"]}
    response = await client.post(f"/v1/applications/{application['id']}/reviews", json=body, headers=WANG)
    assert response.status_code == 200, response.text


async def register_rows(database_url: str, claim_key: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM eligibility.awards WHERE claim_key = $1", claim_key
        )
        return count
    finally:
        await connection.close()


async def test_two_concurrent_approvals_of_one_key_on_two_processes_one_wins(
    two_processes: tuple[str, list[str]], clients: list[httpx.AsyncClient], live_registry_client: httpx.AsyncClient
) -> None:
    database_url, _ = two_processes
    a, b = clients
    for round_ in range(ROUNDS):
        if round_ % 2 == 0:  # one enterprise's project asked for twice
            applicant, evidence = await m4(live_registry_client)
            first, second = await submit(a, applicant, evidence), await submit(b, applicant, evidence)
            clause = "M4"
        else:  # one event claimed by its two co-organisers
            organiser = await seed.organisation(live_registry_client)
            co_organiser = await seed.organisation(live_registry_client)
            name = f"龙岗人工智能论坛 第{round_}场"  # each round its own event
            event_id = await seed.event(live_registry_client, [organiser, co_organiser], name=name)
            evidence = {"measure": "M13", "event_id": event_id, "audited_cost_fen": 900_000 * YUAN}
            first, second = await submit(a, organiser, evidence), await submit(b, co_organiser, evidence)
            clause = "M13"
        assert second["decision"]["outcome"] == "needs_review", (second["decision"]["failures"], round_)
        await reviewed(a, first)
        await reviewed(b, second)
        body = {"verdict": "approve", "reason": "同意"}
        answers = await asyncio.gather(
            a.post(f"/v1/applications/{first['id']}/approvals", json=body, headers=LI),
            b.post(f"/v1/applications/{second['id']}/approvals", json=body, headers=LI),
        )
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200, 409], [answer.text for answer in answers]
        [refusal] = [answer.json() for answer in answers if answer.status_code == 409]
        assert (refusal["code"], refusal["clause"]) == ("already_awarded", clause)
        shared_key = next(k for k in first["decision"]["claims"] if k in second["decision"]["claims"])
        assert await register_rows(database_url, shared_key) == 1


async def test_two_concurrent_a1_decisions_cannot_pass_the_years_cap_together(
    two_processes: tuple[str, list[str]], clients: list[httpx.AsyncClient], live_registry_client: httpx.AsyncClient
) -> None:
    database_url, _ = two_processes
    a, b = clients
    for _ in range(ROUNDS):
        applicant, evidence = await m5(100_000, 100_000)(live_registry_client)
        [p1, p2] = evidence["purchases"]
        first = await submit(a, applicant, {**evidence, "purchases": [p1]})
        second = await submit(b, applicant, {**evidence, "purchases": [p2]})
        body = {"amount_fen": 200_000 * YUAN, "reason": "一事一议：重大项目"}
        answers = await asyncio.gather(
            a.post(f"/v1/applications/{first['id']}/manual-decisions", json=body, headers=DIRECTOR),
            b.post(f"/v1/applications/{second['id']}/manual-decisions", json=body, headers=DIRECTOR),
        )
        assert sorted(answer.status_code for answer in answers) == [200, 409], [answer.text for answer in answers]
        [refusal] = [answer.json() for answer in answers if answer.status_code == 409]
        assert (refusal["code"], refusal["clause"], refusal["remaining_fen"]) == (
            "annual_cap_reached",
            "M5",
            100_000 * YUAN,
        )
        connection = await asyncpg.connect(database_url)
        try:
            used = await connection.fetchval(
                "SELECT used_fen FROM eligibility.year_caps WHERE applicant = $1 AND kind = 'M5.annual'", applicant
            )
        finally:
            await connection.close()
        assert used == 200_000 * YUAN
