"""Migration 0007 builds the award register from the approvals already stored (issue #11).

History written the way the service wrote it before the register existed — including a
demonstration project approved twice — is migrated: every approved award's keys are
registered, rejected applications register nothing, and the double award is kept (marked
as overriding the first, "found in history") and listed by `GET /v1/awards/double`,
never dropped.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import httpx

from shared.migrations import upgrade
from tests.auth import admin
from tests.conftest import DatabaseFactory
from tests.eligibility.actors import DIRECTOR
from tests.eligibility.conftest import eligibility_on
from tests.eligibility.test_award_register import m5, submit

YUAN = 100
APPLICANT = "9144030071526726XG"


async def _approved(
    connection: asyncpg.Connection,
    measure: str,
    evidence: dict[str, Any],
    components: dict[str, int],
    *,
    status: str = "approved",
    benefit_year: int = 2025,
    applicant: str = APPLICANT,
    amount_fen: int | None = None,
) -> uuid.UUID:
    application_id, decision_id = uuid.uuid4(), uuid.uuid4()
    amount = sum(components.values()) if amount_fen is None else amount_fen
    await connection.execute(
        "INSERT INTO eligibility.applications (id, measure, applicant, as_of, benefit_year, evidence, submitted_by,"
        " status, priority) VALUES ($1, $2, $3, '2026-03-01', $4, $5, 'history', $6, 50)",
        application_id,
        measure,
        applicant,
        benefit_year,
        json.dumps(evidence),
        status,
    )
    await connection.execute(
        "INSERT INTO eligibility.decisions (id, application_id, kind, outcome, amount_fen, failures, review_reasons,"
        " components, trace, facts, policy_version, parameters_digest, engine_version)"
        " VALUES ($1, $2, 'automatic', 'eligible', $3, '[]', '[]', $4, '[]', '{}', 'p', 'd', 'e')",
        decision_id,
        application_id,
        amount,
        json.dumps(components),
    )
    await connection.execute(
        "UPDATE eligibility.applications SET current_decision_id = $1 WHERE id = $2", decision_id, application_id
    )
    verdict = "approve" if status == "approved" else "reject"
    for step in ("review", "approval"):
        await connection.execute(
            "INSERT INTO eligibility.reviews (id, application_id, decision_id, step, actor, verdict, amount_fen,"
            " reason) VALUES ($1, $2, $3, $4, 'li', $5, $6, '历史')",
            uuid.uuid4(),
            application_id,
            decision_id,
            step,
            verdict,
            amount if verdict == "approve" else None,
        )
    return application_id


async def test_the_register_is_built_from_history_and_doubles_are_reported(
    databases: DatabaseFactory, live_registry: str, service_auth_env: dict[str, str]
) -> None:
    url = databases.create("longgang_register_history", migrate=False)
    await asyncio.to_thread(upgrade, "eligibility", url, "0006")  # alembic runs its own event loop
    project, other = str(uuid.uuid4()), str(uuid.uuid4())
    connection = await asyncpg.connect(url)
    try:
        first = await _approved(connection, "M4", {"measure": "M4", "recognition_id": project}, {project: 30_000_000})
        twice = await _approved(connection, "M4", {"measure": "M4", "recognition_id": project}, {project: 30_000_000})
        rejected = await _approved(
            connection, "M4", {"measure": "M4", "recognition_id": other}, {other: 30_000_000}, status="rejected"
        )
        growth = await _approved(
            connection,
            "M9",
            {"measure": "M9", "year": 2025},
            {"threshold_10000000000": 100_000_000, "growth": 102_000_000},
        )
    finally:
        await connection.close()

    await asyncio.to_thread(upgrade, "eligibility", url, "head")

    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT claim_key, application_id, path, overrides_id, override_reason FROM eligibility.awards ORDER BY id"
        )
    finally:
        await connection.close()
    by_application: dict[uuid.UUID, list[str]] = {}
    for row in rows:
        by_application.setdefault(row["application_id"], []).append(row["claim_key"])
        assert row["path"] == "history"
    assert by_application[first] == [f"M4.project|{project}"]
    assert by_application[twice] == [f"M4.project|{project}"]
    assert rejected not in by_application
    assert sorted(by_application[growth]) == [f"M9.growth|{APPLICANT}|2025", f"M9.threshold|{APPLICANT}|10000000000"]
    [double] = [row for row in rows if row["application_id"] == twice]
    assert double["overrides_id"] is not None
    assert "history" in double["override_reason"]

    async with eligibility_on(url, live_registry, service_auth_env) as client:
        report = (await client.get("/v1/awards/double")).json()
    assert report["keys"] == 1
    assert [item["application_id"] for item in report["items"]] == [str(first), str(twice)]


async def test_a_years_cap_counts_what_was_approved_before_the_register(
    databases: DatabaseFactory, live_registry: str, live_vouchers: str, service_auth_env: dict[str, str]
) -> None:
    """An M5 award of 250,000 for 2025 approved before migration 0007 (it recorded no caps, no components)
    still counts against the 2025 cap of 300,000 when the year's first approval after it opens the cap row."""
    async with httpx.AsyncClient(base_url=live_registry, headers=admin()) as registry:
        applicant, evidence = await m5(200_000)(registry)
    url = databases.create("longgang_register_caps", migrate=False)
    await asyncio.to_thread(upgrade, "eligibility", url, "0006")
    connection = await asyncpg.connect(url)
    try:
        await _approved(connection, "M5", evidence, {}, applicant=applicant, amount_fen=250_000 * YUAN)
    finally:
        await connection.close()
    await asyncio.to_thread(upgrade, "eligibility", url, "head")

    async with eligibility_on(url, live_registry, service_auth_env, vouchers_url=live_vouchers) as client:
        [purchase] = evidence["purchases"]
        another = {**purchase, "paid_on": "2025-08-20"}  # another purchase of the same year
        later = await submit(client, applicant, {**evidence, "purchases": [another]})
        a1 = f"/v1/applications/{later['id']}/manual-decisions"
        refused = await client.post(a1, json={"amount_fen": 100_000 * YUAN, "reason": "一事一议"}, headers=DIRECTOR)
        assert refused.status_code == 409, refused.text
        assert (refused.json()["code"], refused.json()["remaining_fen"]) == ("annual_cap_reached", 50_000 * YUAN)
        paid = await client.post(a1, json={"amount_fen": 50_000 * YUAN, "reason": "一事一议"}, headers=DIRECTOR)
        assert paid.status_code == 200, paid.text
