"""A submission's read reaches the rows of its claim keys by index, whatever the review queue and register hold.

The read (`submission_sql.read`, one statement) runs as a prepared statement, so after a few executions PostgreSQL
plans it once for any keys (a generic plan). Its claims part used to join each decision holding a key to its
application by `current_decision_id`, which no index covers: the generic plan walked every application in review
(1.4 ms per submission at 7,300 waiting, growing with the queue). And the register's unique index on `claim_key`
is partial, so asking for every award row of a key read the whole register. Here both tables hold thousands of
rows, and the generic plan must scan neither.

A generic plan is made from the statistics of its moment and kept until the next ANALYZE: on a database just
migrated (its tables never analysed, as after a deployment, and as in `make bench-eligibility`) it read the whole of
`decisions` for the claims and again for the prior awards, per submission, for as long as the connection lived. The
connections of eligibility's statement pool plan without sequential scans (`submission_sql.BY_KEY`).
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from services.eligibility.submission_sql import _READ
from shared.db import Connection, Database
from tests.conftest import DatabaseFactory
from tests.eligibility.conftest import eligibility_app_on

ROWS = 3_000

#: ROWS applications in review, each with its decision claiming one key, and an award row on every other key
_FILL = f"""
WITH made AS (
    SELECT n, gen_random_uuid() AS application_id, gen_random_uuid() AS decision_id FROM generate_series(1, {ROWS}) n
), applications AS (
    INSERT INTO eligibility.applications (id, measure, applicant, as_of, benefit_year, evidence, submitted_at, status,
                                          priority, current_decision_id)
    SELECT application_id, 'M4', 'applicant-' || n, '2026-03-01', 2026, '{{}}', now(), 'in_review', 0, decision_id
    FROM made
), decisions AS (
    INSERT INTO eligibility.decisions (id, application_id, kind, outcome, amount_fen, failures, review_reasons,
                                       components, trace, facts, policy_version, parameters_digest, engine_version,
                                       claims)
    SELECT decision_id, application_id, 'automatic', 'eligible', 100, '[]', '[]', '{{}}', '[]', '{{}}', 'p', 'd', 'e',
           ARRAY['M4.project|' || n]
    FROM made
)
SELECT 1
"""

_AWARDS = """
INSERT INTO eligibility.awards (claim_key, clause, measure, applicant, benefit_year, application_id, decision_id,
                                amount_fen, path)
SELECT 'M4.project|' || n, 'M4', 'M4', a.applicant, 2026, a.id, a.current_decision_id, 100, 'automatic'
FROM (SELECT * FROM eligibility.applications WHERE applicant LIKE 'applicant-%') a,
    LATERAL (SELECT substr(a.applicant, 11)::int AS n) k
WHERE k.n % 2 = 0
"""


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += nodes(child)
    return found


def scanned_whole(plan: Any) -> list[str]:
    """The submission tables a plan (EXPLAIN's JSON: text, or decoded by the statement pool's codec) reads whole."""
    return [
        node["Relation Name"]
        for node in nodes((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
        if node["Node Type"] == "Seq Scan" and node.get("Relation Name") in ("applications", "decisions", "awards")
    ]


async def generic_plan(connection: Connection) -> Any:
    await connection.execute("SET plan_cache_mode = force_generic_plan")
    await connection.execute(f"PREPARE submission_read(text, text, text[], boolean, text[]) AS {_READ}")
    return await connection.fetchval(
        "EXPLAIN (FORMAT JSON) EXECUTE submission_read("
        "'applicant-7', 'M4', ARRAY['M4.project|7', 'M4.project|8'], true, ARRAY['in_review', 'reviewed'])"
    )


async def test_the_services_statement_pool_plans_the_read_by_index_on_a_database_never_analysed(
    databases: DatabaseFactory, service_auth_env: dict[str, str]
) -> None:
    url = databases.create("longgang_submission_plans_fresh")
    app = eligibility_app_on(url, "http://127.0.0.1:9", service_auth_env)  # the registry is not called
    database: Database = app.state.database
    try:
        async with database.statements.acquire() as connection:
            assert await connection.fetchval("SELECT current_setting('enable_seqscan')") == "off"
            plan = await generic_plan(connection)
    finally:
        await database.dispose()
    assert scanned_whole(plan) == [], f"the generic plan reads whole tables: {scanned_whole(plan)}"


async def test_the_generic_plan_of_the_read_scans_no_application_or_award(databases: DatabaseFactory) -> None:
    url = databases.create("longgang_submission_plans")
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(_FILL)
        await connection.execute(_AWARDS)
        await connection.execute("ANALYZE eligibility.applications, eligibility.decisions, eligibility.awards")
        plan = await generic_plan(connection)
        answer = await connection.fetchrow(
            "EXECUTE submission_read("
            "'applicant-7', 'M4', ARRAY['M4.project|7', 'M4.project|8'], true, ARRAY['in_review', 'reviewed'])"
        )
    finally:
        await connection.close()
    assert scanned_whole(plan) == [], f"the generic plan reads whole tables: {scanned_whole(plan)}"
    assert answer is not None
    held = {key: status for status, key, _ in json.loads(answer["holders"])}
    assert held == {"M4.project|7": "pending", "M4.project|8": "awarded"}
