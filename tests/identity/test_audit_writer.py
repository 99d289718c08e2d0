"""The audit writer's shutdown: every row recorded before `stop()` is in the table after it.

The loop copies in batches; `stop()` used to cancel the loop wherever it was, a COPY half-way
included, which left the connection in an unknown protocol state (asyncpg's InternalClientError
out of shutdown, seen once in a full run) and the batch unwritten. Now the loop finishes the copy
it is in and stops; `stop()` flushes the rest.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg

from shared.audit import AuditWriter
from shared.dbroles import login_url
from tests.conftest import DatabaseFactory

ROUNDS = 5
ROWS = 3_000


def _row(run: str, n: int) -> tuple[object, ...]:
    return (datetime.now(UTC), f"{run}-{n}", None, "c", "tester", ["admin"], None, "POST", "/x", 201, "ok", 1)


async def test_every_row_recorded_before_stop_is_written_whatever_the_loop_was_doing(
    databases: DatabaseFactory,
) -> None:
    url = databases.create("longgang_audit_writer")
    for _ in range(ROUNDS):
        run = uuid.uuid4().hex
        writer = AuditWriter(login_url(url, "registry"), "registry", interval=0.001, batch=200)
        await writer.start()
        for n in range(ROWS):
            writer.record(_row(run, n))  # every 200th wakes the loop
        for _ in range(3):  # let the loop take the buffer and start its COPY: stop() then meets it half-way
            await asyncio.sleep(0)
        await asyncio.wait_for(writer.stop(), 30)  # the old stop() could hang here
        connection = await asyncpg.connect(url)
        try:
            written = await connection.fetchval(
                "SELECT count(*) FROM registry.audit_log WHERE request_id LIKE $1", f"{run}-%"
            )
        finally:
            await connection.close()
        assert written == ROWS
        assert writer.dropped == 0
