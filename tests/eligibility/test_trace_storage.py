"""How the JSON a submission writes is stored (issue #16).

A decision's trace is stored out of line as it is, not compressed (migration 0019): compressing the trace (6–7 KB
of JSON for most measures) cost the database about as much CPU per submission as storing it. What is read back is
the same trace. And ANALYZE gathers no statistics on the JSON columns no query looks into (migration 0020): a
decision's trace and facts, an application's evidence, an event's payload.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from tests.auth import admin
from tests.conftest import DatabaseFactory
from tests.eligibility.conftest import eligibility_on
from tests.eligibility.test_award_register import m4, submit

#: below this a row is neither compressed nor moved out of line (PostgreSQL's TOAST_TUPLE_THRESHOLD, 8 KB pages)
TOAST_THRESHOLD = 2032


@dataclass
class Submitted:
    url: str  # the database's
    client: httpx.AsyncClient  # the eligibility app's, on that database
    answer: dict[str, Any]  # the submission's 201 body


@asynccontextmanager
async def one_submission(
    databases: DatabaseFactory, name: str, registry_url: str, auth_env: dict[str, str]
) -> AsyncIterator[Submitted]:
    """A database of its own with one M4 application submitted through the API."""
    async with httpx.AsyncClient(base_url=registry_url, headers=admin()) as registry:
        applicant, evidence = await m4(registry)
    url = databases.create(name)
    async with eligibility_on(url, registry_url, auth_env) as client:
        yield Submitted(url, client, await submit(client, applicant, evidence))


async def test_a_submitted_trace_is_stored_uncompressed_and_read_back_whole(
    databases: DatabaseFactory, live_registry: str, service_auth_env: dict[str, str]
) -> None:
    async with one_submission(databases, "longgang_trace_storage", live_registry, service_auth_env) as submitted:
        read = await submitted.client.get(f"/v1/applications/{submitted.answer['id']}")
    assert read.status_code == 200, read.text
    assert read.json()["decision"]["trace"] == submitted.answer["decision"]["trace"]
    connection = await asyncpg.connect(submitted.url)
    try:
        row = await connection.fetchrow(
            "SELECT octet_length(trace::text) AS size, pg_column_compression(trace) AS compression,"
            " (SELECT attstorage::text FROM pg_attribute WHERE attrelid = 'eligibility.decisions'::regclass"
            "  AND attname = 'trace') AS storage FROM eligibility.decisions WHERE application_id = $1",
            submitted.answer["id"],
        )
    finally:
        await connection.close()
    assert row is not None
    assert row["size"] > TOAST_THRESHOLD, "a trace this small would not be compressed anyway: the test proves nothing"
    assert (row["storage"], row["compression"]) == ("e", None)


async def test_analyze_gathers_no_statistics_on_the_json_a_row_carries(
    databases: DatabaseFactory, live_registry: str, service_auth_env: dict[str, str]
) -> None:
    async with one_submission(databases, "longgang_payload_statistics", live_registry, service_auth_env) as submitted:
        pass
    connection = await asyncpg.connect(submitted.url)
    try:
        await connection.execute("ANALYZE eligibility.decisions, eligibility.applications, eligibility.outbox")
        rows = await connection.fetch(
            "SELECT tablename, attname FROM pg_stats WHERE schemaname = 'eligibility'"
            " AND tablename IN ('decisions', 'applications', 'outbox')"
        )
    finally:
        await connection.close()
    gathered = {(row["tablename"], row["attname"]) for row in rows}
    assert {("decisions", "outcome"), ("applications", "measure"), ("outbox", "type")} <= gathered
    payloads = {("decisions", "trace"), ("decisions", "facts"), ("applications", "evidence"), ("outbox", "payload")}
    assert not gathered & payloads
