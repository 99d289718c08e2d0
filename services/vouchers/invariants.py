"""The ledger's invariants, checked against the entries themselves.

Used by tests, benchmarks, the resilience checker and `GET /v1/ledger/invariants`. Each
check is one SQL query that returns the rows that break it; an empty list means the
ledger is consistent:

- the sum over all accounts is zero, and no voucher or hold account is negative;
- every voucher's stored amounts (the projection) equal what its entries say;
- every ceiling's `used_fen` equals the claims / redemptions it counts, and none exceeds
  its limit; every programme budget row (A2) equals what its budget account committed;
- every redemption has exactly the entries its status implies, and says what they moved
  (amount, voucher, vendor: settlement pays from the redemption rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from shared.db import Connection
from shared.dbconnect import libpq_url

CHECKS: dict[str, str] = {
    # debits equal credits: every entry moves an amount out of one account and into another
    "sum_is_zero": """
        SELECT total FROM (
            SELECT coalesce(sum(amount), 0) AS total FROM (
                SELECT amount_fen AS amount FROM vouchers.entries
                UNION ALL
                SELECT -amount_fen FROM vouchers.entries) moves) sums
        WHERE total <> 0
    """,
    "voucher_projection": """
        WITH balance AS (
            SELECT account, sum(amount) AS fen FROM (
                SELECT to_account_id AS account, amount_fen AS amount FROM vouchers.entries
                UNION ALL
                SELECT from_account_id, -amount_fen FROM vouchers.entries) moves
            GROUP BY account),
        flows AS (
            SELECT voucher_id,
                   sum(amount_fen) FILTER (WHERE kind = 'issue') AS issued,
                   sum(amount_fen) FILTER (WHERE kind IN ('redeem', 'capture')) AS redeemed,
                   sum(amount_fen) FILTER (WHERE kind IN ('void', 'expire')) AS returned
            FROM vouchers.entries WHERE voucher_id IS NOT NULL GROUP BY voucher_id)
        SELECT v.code, v.amount_fen, v.available_fen, v.held_fen, v.redeemed_fen, v.returned_fen,
               coalesce(f.issued, 0) AS issued, coalesce(a.fen, 0) AS account_fen, coalesce(h.fen, 0) AS hold_fen,
               coalesce(f.redeemed, 0) AS entries_redeemed, coalesce(f.returned, 0) AS entries_returned
        FROM vouchers.vouchers v
        LEFT JOIN flows f ON f.voucher_id = v.id
        LEFT JOIN balance a ON a.account = v.account_id
        LEFT JOIN balance h ON h.account = v.hold_account_id
        WHERE v.amount_fen <> coalesce(f.issued, 0)
           OR v.available_fen <> coalesce(a.fen, 0)
           OR v.held_fen <> coalesce(h.fen, 0)
           OR v.redeemed_fen <> coalesce(f.redeemed, 0)
           OR v.returned_fen <> coalesce(f.returned, 0)
           OR coalesce(a.fen, 0) < 0 OR coalesce(h.fen, 0) < 0
    """,
    "claim_ceilings": """
        SELECT a.holder, a.year, a.limit_fen, a.used_fen, coalesce(sum(v.amount_fen), 0) AS claimed
        FROM vouchers.allowances a
        LEFT JOIN vouchers.vouchers v ON v.holder = a.holder AND v.year = a.year AND v.kind = 'M3'
        WHERE a.kind = 'M3.claims'
        GROUP BY a.id
        HAVING a.used_fen <> coalesce(sum(v.amount_fen), 0) OR a.used_fen > a.limit_fen
    """,
    "redemption_ceilings": """
        SELECT a.holder, a.year, a.limit_fen, a.used_fen, coalesce(sum(r.amount_fen), 0) AS counted
        FROM vouchers.allowances a
        LEFT JOIN vouchers.vouchers v ON v.holder = a.holder AND v.kind = 'M3'
        LEFT JOIN vouchers.redemptions r ON r.voucher_id = v.id AND r.year = a.year
             AND r.status IN ('captured', 'held')
        WHERE a.kind = 'M3.redemptions'
        GROUP BY a.id
        HAVING a.used_fen <> coalesce(sum(r.amount_fen), 0) OR a.used_fen > a.limit_fen
    """,
    # A2: a budget row counts what its budget account (measure:year) committed — issued + granted −
    # returned — plus what approvals reserved and issuance has not consumed yet
    "budget_ceilings": """
        SELECT year, kind, limit_fen, used_fen, ledger_fen, reserved_fen FROM (
            SELECT a.year, a.kind, a.limit_fen, a.used_fen,
                   vouchers.budget_committed(split_part(a.kind, '.', 2) || ':' || a.year) AS ledger_fen,
                   (SELECT coalesce(sum(b.amount_fen), 0) FROM vouchers.budget_reservations b
                    WHERE b.state = 'reserved' AND b.year = a.year
                      AND 'budget.' || b.measure = a.kind) AS reserved_fen
            FROM vouchers.allowances a
            WHERE a.holder = 'programme' AND a.kind LIKE 'budget.%') rows
        WHERE used_fen <> ledger_fen + reserved_fen OR used_fen > limit_fen
    """,
    "redemption_entries": """
        SELECT r.id, r.status, array_agg(e.kind ORDER BY e.id) FILTER (WHERE e.id IS NOT NULL) AS kinds
        FROM vouchers.redemptions r
        LEFT JOIN vouchers.entries e ON e.redemption_id = r.id
        GROUP BY r.id
        HAVING NOT (
            (r.status = 'captured' AND (array_agg(e.kind ORDER BY e.id) = ARRAY['redeem']
                                        OR array_agg(e.kind ORDER BY e.id) = ARRAY['hold', 'capture']))
            OR (r.status = 'held' AND array_agg(e.kind ORDER BY e.id) = ARRAY['hold'])
            OR (r.status IN ('released', 'expired') AND array_agg(e.kind ORDER BY e.id) = ARRAY['hold', 'release']))
    """,
    # the redemption row is what settlement pays from: it must say what its entries moved
    # (amount, voucher, and the vendor's receivable or the voucher's own accounts, by kind)
    "redemption_matches_entries": """
        SELECT r.id, r.voucher_id, r.vendor, r.amount_fen, e.id AS entry_id, e.kind, e.voucher_id AS entry_voucher,
               e.amount_fen AS entry_fen, e.from_account_id, e.to_account_id
        FROM vouchers.redemptions r
        JOIN vouchers.entries e ON e.redemption_id = r.id
        LEFT JOIN vouchers.vouchers v ON v.id = r.voucher_id
        LEFT JOIN vouchers.accounts va ON va.kind = 'vendor_receivable' AND va.ref = r.vendor
        WHERE e.amount_fen <> r.amount_fen
           OR e.voucher_id IS DISTINCT FROM r.voucher_id
           OR v.id IS NULL
           OR NOT CASE e.kind
                WHEN 'redeem' THEN e.from_account_id = v.account_id AND e.to_account_id = va.id
                WHEN 'hold' THEN e.from_account_id = v.account_id AND e.to_account_id = v.hold_account_id
                WHEN 'capture' THEN e.from_account_id = v.hold_account_id AND e.to_account_id = va.id
                WHEN 'release' THEN e.from_account_id = v.hold_account_id AND e.to_account_id = v.account_id
                ELSE false END IS TRUE
    """,
}


@dataclass(frozen=True)
class Violation:
    check: str
    row: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.check}: {self.row}"


def _plain(value: Any) -> Any:
    """JSON-safe values: sums of bigint come back as Decimal, and money is never a float."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, int | str | bool):
        return value
    return str(value)


async def check_invariants(connection: Connection) -> list[Violation]:
    """Every violated invariant, with the rows that break it (empty: the ledger is consistent)."""
    violations: list[Violation] = []
    for name, query in CHECKS.items():
        for record in await connection.fetch(query):
            violations.append(Violation(name, {key: _plain(value) for key, value in record.items()}))
    return violations


async def check_database(dsn: str) -> list[Violation]:
    connection = await asyncpg.connect(libpq_url(dsn))
    try:
        return await check_invariants(connection)
    finally:
        await connection.close()
