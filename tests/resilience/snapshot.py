"""The final read of the vouchers ledger, as plain data for the checker (tests/resilience/checker.py).

Everything the checker needs is read here, after the run: the rows of the ledger's tables, the
ledger's own invariant checks (`services.vouchers.invariants.check_database`), the hash chain
(`services.vouchers.chain.service.verify_ledger`, as the service role) and the projections'
reconciliation (`GET /v1/aggregates/reconciliation?fresh=true`: required). The
checker itself does no I/O.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from services.vouchers.chain.service import verify_ledger
from services.vouchers.invariants import check_database
from shared.periodic import close_connection, connect

RECONCILIATION_PATH = "/v1/aggregates/reconciliation"


@dataclass
class Snapshot:
    vouchers: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    redemptions: list[dict[str, Any]] = field(default_factory=list)
    idempotency: list[dict[str, Any]] = field(default_factory=list)
    allowances: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    #: the vouchers audit log's correlation ids (what the clients sent) → request ids (what the service assigned)
    audit: dict[str, str] = field(default_factory=dict)
    invariant_violations: list[str] = field(default_factory=list)
    chain: dict[str, Any] | None = None  # verify_ledger's report
    reconciliation: dict[str, Any] | None = None  # None: the service has no such endpoint


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    if value is None or isinstance(value, int | str | bool | float | list | dict):
        return value
    return str(value)


def _rows(records: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in record.items()} for record in records]


QUERIES = {
    "vouchers": "SELECT * FROM vouchers.vouchers ORDER BY id",
    "entries": "SELECT id, kind, from_account_id, to_account_id, amount_fen, voucher_id, redemption_id, "
    "decision_id, request_id, actor FROM vouchers.entries ORDER BY id",
    "accounts": "SELECT id, kind, ref FROM vouchers.accounts ORDER BY id",
    "redemptions": "SELECT * FROM vouchers.redemptions ORDER BY id",
    "idempotency": "SELECT client, key, status_code, response FROM vouchers.idempotency",
    "allowances": "SELECT * FROM vouchers.allowances ORDER BY id",
    "outbox": "SELECT id, type, subject, vendor, payload FROM vouchers.outbox ORDER BY id",
}


async def read_ledger(database_url: str, role: str = "vouchers_writer") -> Snapshot:
    """The tables, the invariants and the verified chain (sealing what is left first, as the service does)."""
    snapshot = Snapshot()
    connection = await asyncpg.connect(database_url)
    try:
        for name, query in QUERIES.items():
            rows = _rows(await connection.fetch(query))
            for row in rows:
                for column in ("response", "payload"):
                    if isinstance(row.get(column), str):
                        row[column] = json.loads(row[column])
            setattr(snapshot, name, rows)
        audit = await connection.fetch(
            "SELECT correlation_id, request_id FROM vouchers.audit_log WHERE correlation_id IS NOT NULL"
        )
        snapshot.audit = {row["correlation_id"]: row["request_id"] for row in audit}
    finally:
        await connection.close()
    snapshot.invariant_violations = [str(v) for v in await check_database(database_url)]
    ledger = await connect(database_url, role, "resilience-checker", 600_000)
    try:
        snapshot.chain = (await verify_ledger(ledger)).model_dump(mode="json")
    finally:
        await close_connection(ledger)
    return snapshot


async def reconcile(base_url: str, headers: dict[str, str], last_entry_id: int, wait: float = 60.0) -> dict[str, Any]:
    """Wait until the projections have caught up with the last entry, then check them against the ledger now."""
    deadline = time.monotonic() + wait
    async with httpx.AsyncClient(base_url=base_url, timeout=120, headers=headers) as client:
        while True:
            response = await client.get(RECONCILIATION_PATH, params={"fresh": "true"})
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if body["checked_through_entry_id"] >= last_entry_id or time.monotonic() > deadline:
                return body
            await asyncio.sleep(0.5)
