"""Approval reserves the programme budget (clause A2, issue #11 item 5), on real processes.

An eligibility process and a vouchers process with a small budget file (M4: 500,000 yuan a
year; an M4 award is 300,000), each on its own fresh database, calling each other over HTTP.

- an approval reserves its amount: the budget row counts it before anything is issued, and a
  second approval that would pass the budget is refused with what remains (A2), changing nothing;
- issuance consumes the reservation: the budget is not taken twice, the invariants hold;
- an approval refused after reserving (the award register) releases its reservation;
- two concurrent A1 decisions that together pass the budget: exactly one succeeds;
- A1 decisions reserve as approvals do (refused past the budget, recorded on the approved decision);
- a reservation no approval recorded (a process killed between the two steps) is released by the
  reconciler; one an approval recorded is confirmed and kept;
- the vouchers service down: the approval answers 503 and nothing is written.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
import yaml

from devtools.devrun import Stack, start_service, stop_services, wait_ready
from shared.auth import BUDGET_RESERVE, OFFICER
from tests.auth import admin, auth
from tests.conftest import DatabaseFactory, free_port
from tests.eligibility.actors import DIRECTOR, LI
from tests.eligibility.test_award_register import award, m4, m5, review, submit

YUAN = 100
M4_BUDGET_FEN = 500_000 * YUAN
M4_AWARD_FEN = 300_000 * YUAN
GRACE_SECONDS = 3
GRANTOR = auth(OFFICER, name="grantor")


def small_budgets(directory: Path) -> Path:
    figures = {"M4": M4_BUDGET_FEN, "M5": 10_000_000 * YUAN}
    measures = {
        measure: {
            "clause": "A2",
            "label": {"zh": measure, "en": measure},
            "history": [
                {
                    "year": year,
                    "budget_fen": figure,
                    "effective_from": date(2024, 1, 1),
                    "status": "interpretation",
                    "source": "tests: small, so that approvals run out of it",
                }
                for year in range(2024, 2031)
            ],
        }
        for measure, figure in figures.items()
    }
    path = directory / "budgets.yaml"
    document = {"version": "tests-reservations", "published": date(2024, 1, 1), "budgets": measures}
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


@dataclass
class Pair:
    eligibility_url: str
    vouchers_url: str
    eligibility_database: str
    vouchers_database: str


@pytest.fixture(scope="module")
def pair(
    databases: DatabaseFactory,
    live_registry: str,
    service_auth_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pair]:
    eligibility_db = databases.create("longgang_reserve_eligibility")
    vouchers_db = databases.create("longgang_reserve_vouchers")
    ports = {"eligibility": free_port(), "vouchers": free_port()}
    eligibility = Stack(eligibility_db, "127.0.0.1", {"eligibility": ports["eligibility"]})
    vouchers = Stack(vouchers_db, "127.0.0.1", {"vouchers": ports["vouchers"]})
    common = {"REGISTRY_URL": live_registry, **service_auth_env}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        processes["vouchers"] = start_service(
            vouchers,
            "vouchers",
            extra_env={
                **common,
                "ELIGIBILITY_URL": eligibility.url("eligibility"),
                "VOUCHERS_BUDGET_FILE": str(small_budgets(tmp_path_factory.mktemp("budgets"))),
                "VOUCHERS_RESERVATION_GRACE_SECONDS": str(GRACE_SECONDS),
                "VOUCHERS_RESERVATION_RECONCILE_SECONDS": "0.5",
            },
        )
        processes["eligibility"] = start_service(
            eligibility, "eligibility", extra_env={**common, "VOUCHERS_URL": vouchers.url("vouchers")}
        )
        wait_ready(vouchers, {"vouchers": processes["vouchers"]}, timeout=60)
        wait_ready(eligibility, {"eligibility": processes["eligibility"]}, timeout=60)
        yield Pair(eligibility.url("eligibility"), vouchers.url("vouchers"), eligibility_db, vouchers_db)
    finally:
        stop_services(processes)


@pytest_asyncio.fixture
async def clients(pair: Pair) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=pair.eligibility_url, timeout=30, headers=admin()) as eligibility,
        httpx.AsyncClient(base_url=pair.vouchers_url, timeout=30, headers=admin()) as vouchers,
    ):
        yield eligibility, vouchers


async def reviewed_m4(eligibility: httpx.AsyncClient, registry: httpx.AsyncClient) -> dict[str, Any]:
    applicant, evidence = await m4(registry)
    application = await submit(eligibility, applicant, evidence)
    assert application["decision"]["amount_fen"] == M4_AWARD_FEN, application["decision"]
    await review(eligibility, application)
    return application


async def approve(eligibility: httpx.AsyncClient, application: dict[str, Any]) -> httpx.Response:
    body = {"verdict": "approve", "reason": "同意"}
    return await eligibility.post(f"/v1/applications/{application['id']}/approvals", json=body, headers=LI)


async def reservations(vouchers: httpx.AsyncClient, decision_id: str) -> list[dict[str, Any]]:
    response = await vouchers.get("/v1/budget-reservations", params={"decision_id": decision_id})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


async def m4_budget(vouchers: httpx.AsyncClient) -> dict[str, Any]:
    response = await vouchers.get("/v1/aggregates/budget", params={"year": date.today().year})
    assert response.status_code == 200, response.text
    [line] = [line for line in response.json()["measures"] if line["measure"] == "M4"]
    return dict(line)


async def reserved_row_fen(pair: Pair, measure: str = "M4") -> int:
    """The budget row's used_fen (committed + reserved), read from the database itself."""
    connection = await asyncpg.connect(pair.vouchers_database)
    try:
        used = await connection.fetchval(
            "SELECT coalesce(sum(used_fen), 0) FROM vouchers.allowances WHERE holder = 'programme' AND kind = $1",
            f"budget.{measure}",
        )
        return int(used)
    finally:
        await connection.close()


async def latest_reserved_decision(pair: Pair) -> str:
    """The decision named by the newest reservation (a refused A1 decision's id is never stored elsewhere)."""
    connection = await asyncpg.connect(pair.vouchers_database)
    try:
        found = await connection.fetchval(
            "SELECT decision_id::text FROM vouchers.budget_reservations ORDER BY reserved_at DESC LIMIT 1"
        )
        return str(found)
    finally:
        await connection.close()


async def invariants_hold(vouchers: httpx.AsyncClient) -> None:
    response = await vouchers.get("/v1/ledger/invariants")
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "violations": []}


async def wait_for(predicate: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def test_approval_reserves_issuance_consumes_and_the_budget_refuses_past_it(
    pair: Pair,
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    live_registry_client: httpx.AsyncClient,
) -> None:
    eligibility, vouchers = clients
    first = await reviewed_m4(eligibility, live_registry_client)
    before = await reserved_row_fen(pair)
    assert M4_BUDGET_FEN - before < 2 * M4_AWARD_FEN, "room for one M4 award, not two"
    approved = await approve(eligibility, first)
    assert approved.status_code == 200, approved.text

    # the approval reserved its amount: the budget row counts it before anything is issued
    [reservation] = await reservations(vouchers, first["decision"]["id"])
    assert (reservation["state"], reservation["amount_fen"], reservation["measure"]) == ("reserved", M4_AWARD_FEN, "M4")
    assert await reserved_row_fen(pair) == before + M4_AWARD_FEN
    line = await m4_budget(vouchers)
    assert line["reserved_fen"] >= M4_AWARD_FEN
    await invariants_hold(vouchers)

    # a second approval would pass the budget: refused with what remains, and nothing changed
    second = await reviewed_m4(eligibility, live_registry_client)
    refused = await approve(eligibility, second)
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert (problem["code"], problem["clause"]) == ("budget_exhausted", "A2")
    assert problem["remaining_fen"] == M4_BUDGET_FEN - before - M4_AWARD_FEN
    assert problem["requested_fen"] == M4_AWARD_FEN
    state = await eligibility.get(f"/v1/applications/{second['id']}")
    assert state.json()["status"] == "reviewed"
    assert await reservations(vouchers, second["decision"]["id"]) == []
    assert await reserved_row_fen(pair) == before + M4_AWARD_FEN

    # the grant consumes the reservation: the budget is not taken a second time
    granted = await vouchers.post("/v1/grants", json={"decision_id": first["decision"]["id"]}, headers=GRANTOR)
    assert granted.status_code == 201, granted.text
    [consumed] = await reservations(vouchers, first["decision"]["id"])
    assert consumed["state"] == "consumed"
    assert await reserved_row_fen(pair) == before + M4_AWARD_FEN
    await invariants_hold(vouchers)


async def test_a_decision_refused_after_reserving_releases_its_reservation(
    pair: Pair,
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    live_registry_client: httpx.AsyncClient,
) -> None:
    """An A1 decision on a purchase already awarded (M5): it reserves, the register refuses it, it releases."""
    eligibility, vouchers = clients
    # M5: its budget (10,000,000 yuan) has room whatever the other tests took from M4's
    applicant, evidence = await m5(100_000)(live_registry_client)
    first = await submit(eligibility, applicant, evidence)
    await award(eligibility, first)
    before = await reserved_row_fen(pair, "M5")
    second = await submit(eligibility, applicant, evidence)  # the same purchase again
    refused = await eligibility.post(
        f"/v1/applications/{second['id']}/manual-decisions",
        json={"amount_fen": 100 * YUAN, "reason": "一事一议"},
        headers=DIRECTOR,
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "already_awarded"
    [released] = await reservations(vouchers, await latest_reserved_decision(pair))
    assert (released["state"], released["amount_fen"]) == ("released", 100 * YUAN)
    assert "already_awarded" in released["settled_reason"]
    assert await reserved_row_fen(pair, "M5") == before
    [kept] = await reservations(vouchers, first["decision"]["id"])
    assert kept["state"] == "reserved"
    await invariants_hold(vouchers)


async def test_two_concurrent_a1_decisions_cannot_pass_the_budget_together(
    pair: Pair,
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    live_registry_client: httpx.AsyncClient,
) -> None:
    """Each fits in what remains of the M4 budget, the two together do not: exactly one is decided."""
    eligibility, vouchers = clients
    room = M4_BUDGET_FEN - await reserved_row_fen(pair)
    assert room >= 2, room
    amount = room // 2 + 1
    applications = []
    for _ in range(2):
        applicant, evidence = await m4(live_registry_client)
        applications.append(await submit(eligibility, applicant, evidence))
    body = {"amount_fen": amount, "reason": "一事一议：并发"}
    answers = await asyncio.gather(
        *(
            eligibility.post(f"/v1/applications/{a['id']}/manual-decisions", json=body, headers=DIRECTOR)
            for a in applications
        )
    )
    assert sorted(answer.status_code for answer in answers) == [200, 409], [answer.text for answer in answers]
    [refusal] = [answer.json() for answer in answers if answer.status_code == 409]
    assert (refusal["code"], refusal["remaining_fen"]) == ("budget_exhausted", room - amount)
    assert await reserved_row_fen(pair) == M4_BUDGET_FEN - room + amount
    await invariants_hold(vouchers)


async def test_an_a1_decision_reserves_as_an_approval_does(
    pair: Pair,
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    live_registry_client: httpx.AsyncClient,
) -> None:
    eligibility, vouchers = clients
    applicant, evidence = await m4(live_registry_client)
    application = await submit(eligibility, applicant, evidence)
    room = M4_BUDGET_FEN - await reserved_row_fen(pair)
    body = {"amount_fen": room + 1, "reason": "一事一议：超出预算的金额"}
    refused = await eligibility.post(
        f"/v1/applications/{application['id']}/manual-decisions", json=body, headers=DIRECTOR
    )
    assert refused.status_code == 409, refused.text
    assert (refused.json()["code"], refused.json()["remaining_fen"]) == ("budget_exhausted", room)
    assert (await eligibility.get(f"/v1/applications/{application['id']}")).json()["status"] != "approved"
    if room > 0:
        body = {"amount_fen": room, "reason": "一事一议：余下的预算"}
        decided = await eligibility.post(
            f"/v1/applications/{application['id']}/manual-decisions", json=body, headers=DIRECTOR
        )
        assert decided.status_code == 200, decided.text
        decision_id = decided.json()["decision"]["id"]
        [reservation] = await reservations(vouchers, decision_id)
        assert (reservation["state"], reservation["amount_fen"]) == ("reserved", room)
        approved = await eligibility.get(f"/v1/approved-decisions/{decision_id}")
        assert approved.json()["budget_reservation_id"] == reservation["id"]
    await invariants_hold(vouchers)


async def test_the_reconciler_releases_what_no_approval_recorded_and_keeps_what_one_did(
    pair: Pair,
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    live_registry_client: httpx.AsyncClient,
) -> None:
    eligibility, vouchers = clients
    # an approval that recorded its reservation (M5: budget room is ample)
    applicant, evidence = await m5(50_000)(live_registry_client)
    application = await submit(eligibility, applicant, evidence)
    await award(eligibility, application)
    # an attempt that reserved and then died before its approval committed: the same call, then nothing
    orphan = uuid.uuid4()
    body = {"decision_id": str(uuid.uuid4()), "measure": "M5", "amount_fen": 10_000 * YUAN}
    reserved = await vouchers.put(
        f"/v1/budget-reservations/{orphan}", json=body, headers=auth(BUDGET_RESERVE, name="eligibility service")
    )
    assert reserved.status_code == 200, reserved.text
    assert reserved.json()["state"] == "reserved"
    again = await vouchers.put(
        f"/v1/budget-reservations/{orphan}", json=body, headers=auth(BUDGET_RESERVE, name="eligibility service")
    )
    assert (again.status_code, again.json()["id"]) == (200, str(orphan))  # idempotent on the attempt's id

    async def settled() -> bool:
        [kept] = await reservations(vouchers, application["decision"]["id"])
        [gone] = await reservations(vouchers, body["decision_id"])
        return kept["confirmed_at"] is not None and gone["state"] == "released"

    await wait_for(settled, seconds=GRACE_SECONDS + 20)
    [kept] = await reservations(vouchers, application["decision"]["id"])
    assert kept["state"] == "reserved"
    [gone] = await reservations(vouchers, body["decision_id"])
    assert (gone["settled_by"], gone["settled_reason"]) == ("reconciler", "no approval recorded it")
    await invariants_hold(vouchers)


async def test_an_approval_with_the_vouchers_service_down_answers_503_and_writes_nothing(
    pair: Pair,
    live_registry: str,
    service_auth_env: dict[str, str],
    live_registry_client: httpx.AsyncClient,
) -> None:
    port = free_port()
    stack = Stack(pair.eligibility_database, "127.0.0.1", {"eligibility": port})
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    process = start_service(
        stack,
        "eligibility",
        extra_env={
            "REGISTRY_URL": live_registry,
            "VOUCHERS_URL": dead,
            "ELIGIBILITY_PEER_TIMEOUT_SECONDS": "1",
            **service_auth_env,
        },
    )
    try:
        wait_ready(stack, {"eligibility": process}, timeout=60)
        async with httpx.AsyncClient(base_url=stack.url("eligibility"), timeout=30, headers=admin()) as eligibility:
            application = await reviewed_m4(eligibility, live_registry_client)
            answer = await approve(eligibility, application)
            assert answer.status_code == 503, answer.text
            assert answer.json()["code"] == "peer_unavailable"
            assert "Retry-After" in answer.headers
            state = await eligibility.get(f"/v1/applications/{application['id']}")
            assert state.json()["status"] == "reviewed"
            awards = await eligibility.get("/v1/awards", params={"applicant": application["applicant"]})
            assert awards.status_code == 200, awards.text
            assert awards.json()["items"] == []
    finally:
        stop_services({"eligibility": process})
