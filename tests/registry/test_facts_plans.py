"""A facts call is planned once per connection, for any questions, and that plan reads by index (issue #16).

`POST /v1/facts` and `/v1/facts/batch` read everything their questions ask with one call of `registry.facts()`
(migration 0013). PostgreSQL planned the statement again on every call (~1.1 ms of its CPU, five times the
reading): its parameters are arrays, and a prepared statement with array parameters keeps getting plans for its
values. The function's statement is planned for any values (`plan_cache_mode = force_generic_plan`, on the function
alone), so that plan must find an organisation's records by index however many the registry holds: here it holds
thousands of organisations, revenues and recognitions, and the generic plan must scan none of their tables.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import asyncpg

from services.registry.facts.reads import PARTS, Reads
from tests.conftest import DatabaseFactory
from tests.factories import new_credit_code

ROWS = 3_000
DAY = date(2026, 3, 1)

#: organisations (their credit codes: $1), each with a revenue and a recognition, every record with its snapshot
_FILL = """
WITH organisations AS (
    INSERT INTO registry.organisations (credit_code, name, kind, division_code, is_software_internet, version,
                                        valid_from)
    SELECT code, 'org ' || n, 'enterprise', '440307', false, 1, '2020-01-01'
    FROM unnest($1::text[]) WITH ORDINALITY AS c(code, n)
    RETURNING id, credit_code
), revenues AS (
    INSERT INTO registry.revenues (credit_code, year, revenue_fen, audited, version, valid_from)
    SELECT credit_code, 2025, 100, true, 1, '2020-01-01' FROM organisations
    RETURNING id, credit_code
), recognitions AS (
    INSERT INTO registry.recognitions (uid, kind, credit_code, recognised_on, active, details, version, valid_from)
    SELECT gen_random_uuid(), 'demonstration_project', credit_code, '2025-01-01', true, '{}', 1, '2020-01-01'
    FROM organisations
    RETURNING id, uid, credit_code
)
INSERT INTO registry.versions (entity, entity_id, version, valid_from, data)
SELECT 'organisation', id, 1, date '2020-01-01', jsonb_build_object('credit_code', credit_code, 'name', 'x',
       'kind', 'enterprise', 'division_code', '440307', 'is_software_internet', false) FROM organisations
UNION ALL
SELECT 'revenue', id, 1, '2020-01-01', jsonb_build_object('credit_code', credit_code, 'year', 2025,
       'revenue_fen', 100, 'audited', true) FROM revenues
UNION ALL
SELECT 'recognition', id, 1, '2020-01-01', jsonb_build_object('credit_code', credit_code,
       'kind', 'demonstration_project', 'recognised_on', '2025-01-01', 'active', true, 'details', '{}')
FROM recognitions
"""

#: the tables filled (the others are empty here, and a plan rightly scans an empty table)
TABLES = ("versions", "organisations", "revenues", "recognitions")


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += nodes(child)
    return found


def _body(definition: str) -> str:
    """The function's one statement, from its definition."""
    return definition.split("RETURN QUERY", 1)[1].rsplit(";", 1)[0]


async def test_the_facts_function_plans_for_any_questions_and_that_plan_scans_no_table(
    databases: DatabaseFactory,
) -> None:
    url = databases.create("longgang_facts_plans")
    connection = await asyncpg.connect(url)
    try:
        codes = [new_credit_code() for _ in range(ROWS)]
        await connection.execute(_FILL, codes)
        await connection.execute("ANALYZE registry.versions, registry.organisations, registry.revenues")
        await connection.execute("ANALYZE registry.recognitions")
        [config] = await connection.fetchrow("SELECT proconfig FROM pg_proc WHERE oid = 'registry.facts'::regproc::oid")
        assert config == ["plan_cache_mode=force_generic_plan"]
        definition = await connection.fetchval("SELECT pg_get_functiondef('registry.facts'::regproc::oid)")
        types = ", ".join(["int[], text[], date[]"] * len(PARTS))
        await connection.execute(f"PREPARE facts_body({types}) AS {_body(definition)}")
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        code = codes[7]
        asked = ", ".join(
            f"ARRAY[0], ARRAY[{'NULL' if part.name == 'ranked_models' else repr(code)}]::text[], ARRAY['{DAY}'::date]"
            if part.name in ("organisation", "revenues", "recognitions", "affiliations", "ranked_models")
            else "ARRAY[]::int[], ARRAY[]::text[], ARRAY[]::date[]"
            for part in PARTS
        )
        [[plan]] = await connection.fetch(f"EXPLAIN (FORMAT JSON) EXECUTE facts_body({asked})")
        scanned = [
            node["Relation Name"]
            for node in nodes(json.loads(plan)[0]["Plan"])
            if node["Node Type"] == "Seq Scan" and node.get("Relation Name") in TABLES
        ]
        assert scanned == [], f"the generic plan reads whole tables: {scanned}"
        # and the function answers from that plan: the organisation and its revenue (no affiliation)
        reads = Reads()
        reads.by_keys(0, "organisation", [code], DAY)
        reads.as_of(0, "revenues", DAY, code)
        reads.as_of(0, "affiliations", DAY, code)
        answers = await reads.fetch(connection)
    finally:
        await connection.close()
    assert list(answers[(0, "organisation")].by_key) == [code]
    assert [r.year for r in answers[(0, "revenues")].records] == [2025]
    assert answers[(0, "affiliations")].records == []
