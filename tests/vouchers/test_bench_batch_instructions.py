"""bench/ledger_batch_instructions.py counts what its scripts' batches cost: they must be batches of plain M3
redemptions that `vouchers.ledger_batch()` answers 201 throughout, as group commit sends them (issue #16). The
scripts run here on a migrated database through the simple query protocol, as the single-user backend reads
them."""

from __future__ import annotations

import asyncpg

from bench.ledger_batch_instructions import PREPARE, Calls
from bench.redemption_cpu import insert_vouchers
from tests.conftest import DatabaseFactory


async def test_the_scripts_batches_are_plain_redemptions_answered_201(databases: DatabaseFactory) -> None:
    url = databases.create("longgang_batch_instructions")
    codes = await insert_vouchers(url, 4)
    calls = Calls(codes, "script")
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(PREPARE)
        answered = [await connection.fetchval(calls.execute(size).rstrip(";\n")) for size in (1, 3, 16)]
        keys = await connection.fetchval("SELECT count(*) FROM vouchers.idempotency WHERE key LIKE 'script-%'")
        events = await connection.fetchval(
            "SELECT count(*) FROM vouchers.outbox WHERE payload->>'invoice_number' LIKE 'INV-script-%'"
        )
    finally:
        await connection.close()
    assert answered == [1, 3, 16]  # each batch: every call 201
    assert keys == events == 20
