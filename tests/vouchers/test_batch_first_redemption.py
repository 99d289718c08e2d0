"""A vendor's first redemptions in a group-commit batch (issue #16, migration 0027).

`vouchers.ledger_captures()` writes a batch of plain M3 redemptions set by set and joins each vendor's receivable
account; it no longer makes one. A batch whose vendor has no account yet is therefore not plain: it goes call by
call, where `vouchers.redeem()` makes the account, once. The next batch, the account there, goes set by set. The
paths are told apart by the order of the writes: call by call, each call's entry then its event; set by set, the
batch's entries and its events each written together."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from bench.ledger_batch_cost import plain_redemptions
from bench.redemption_cpu import VENDOR, insert_vouchers
from services.vouchers.redemptions.group_commit import BATCH_SQL
from tests.conftest import DatabaseFactory

WRITES = """
SELECT e.to_account_id, e.created_at AS entry_at, o.occurred_at AS event_at
  FROM vouchers.entries e
  JOIN vouchers.outbox o ON o.payload->>'entry_id' = e.id::text
 WHERE e.request_id = ANY ($1::text[])
 ORDER BY e.id
"""


def _apart(rows: list[asyncpg.Record]) -> bool:
    """Every entry before every event, or every event before every entry."""
    entries = [row["entry_at"] for row in rows]
    events = [row["event_at"] for row in rows]
    return max(entries) < min(events) or max(events) < min(entries)


async def test_a_vendors_first_batch_goes_call_by_call_and_makes_its_account_once(databases: DatabaseFactory) -> None:
    url = databases.create("longgang_batch_first_redemption")
    codes = await insert_vouchers(url, 2)
    connection = await asyncpg.connect(url)
    try:  # the vendor as before its first redemption ever: no receivable account
        await connection.execute("DELETE FROM vouchers.accounts WHERE kind = 'vendor_receivable' AND ref = $1", VENDOR)
        now = datetime.now(UTC)
        first = await connection.fetch(BATCH_SQL, *plain_redemptions(["first-1", "first-2"], codes, now), False)
        accounts = await connection.fetch(
            "SELECT id FROM vouchers.accounts WHERE kind = 'vendor_receivable' AND ref = $1", VENDOR
        )
        first_writes = await connection.fetch(WRITES, ["req-first-1", "req-first-2"])
        second = await connection.fetch(BATCH_SQL, *plain_redemptions(["second-1", "second-2"], codes, now), False)
        second_writes = await connection.fetch(WRITES, ["req-second-1", "req-second-2"])
    finally:
        await connection.close()
    assert [row["status_code"] for row in first] == [201, 201]
    assert [row["status_code"] for row in second] == [201, 201]
    assert len(accounts) == 1  # made once, by the first call
    assert [row["to_account_id"] for row in first_writes + second_writes] == [accounts[0]["id"]] * 4
    assert not _apart(first_writes)  # call by call: entry, event, entry, event
    assert _apart(second_writes)  # set by set
