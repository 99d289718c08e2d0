"""All of the chain's SQL: seals, entries, checkpoints, the watermark and the advisory locks."""

from __future__ import annotations

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Connection

from ..models import Checkpoint
from .hashing import ENTRY_FIELDS

SEAL_LOCK_KEY = 0x4C47_5345_414C_0001  # "LGSEAL", 1: one sealer at a time, across processes
CHECKPOINT_LOCK_KEY = 0x4C47_5345_414C_0002

_COLUMNS = ", ".join(f"e.{name}" for name in ("txid", *ENTRY_FIELDS))
#: the oldest transaction still running, in the ledger's ids (migrations/vouchers/functions/ledger_epoch.sql)
XMIN_SQL = "SELECT vouchers.ledger_watermark()"
HEAD_SQL = """
    SELECT s.seq, s.entry_id, s.chain_hash, e.txid
    FROM vouchers.seals s LEFT JOIN vouchers.entries e ON e.id = s.entry_id
    ORDER BY s.seq DESC LIMIT 1
"""
SEALABLE_SQL = f"""
    SELECT {_COLUMNS} FROM vouchers.entries e
    WHERE e.txid < $1 AND (e.txid, e.id) > ($2, $3)
    ORDER BY e.txid, e.id
    LIMIT $4
"""
INSERT_SEALS_SQL = """
    INSERT INTO vouchers.seals (entry_id, entry_hash, chain_hash)
    SELECT entry_id, entry_hash, chain_hash
    FROM unnest($1::bigint[], $2::text[], $3::text[]) WITH ORDINALITY AS batch(entry_id, entry_hash, chain_hash, n)
    ORDER BY n
"""
SEALS_SQL = """
    SELECT seq, entry_id, entry_hash, chain_hash, sealed_at FROM vouchers.seals
    WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3
"""
ENTRIES_SQL = f"SELECT {_COLUMNS} FROM vouchers.entries e WHERE e.id = ANY($1::bigint[])"
HIDDEN_SQL = f"""
    SELECT {_COLUMNS} FROM vouchers.entries e
    WHERE e.txid < $1 AND NOT EXISTS (SELECT 1 FROM vouchers.seals s WHERE s.entry_id = e.id)
    ORDER BY e.txid, e.id LIMIT 1
"""
_LAG_COLUMNS = """
    SELECT count(*) AS unsealed, min(e.created_at) AS oldest,
           coalesce(extract(epoch FROM clock_timestamp() - min(e.created_at)), 0)::float8 AS lag_seconds
    FROM vouchers.entries e
"""
#: exact (every entry without a seal, hidden ones included): one anti-join over both tables
UNSEALED_SQL = _LAG_COLUMNS + "WHERE NOT EXISTS (SELECT 1 FROM vouchers.seals s WHERE s.entry_id = e.id)"
#: what the sealer has still to do: the entries after the last sealed one, in sealing order
BEHIND_SQL = _LAG_COLUMNS + "WHERE (e.txid, e.id) > ($1, $2)"
LAST_SEAL_SQL = "SELECT seq, entry_id, chain_hash FROM vouchers.seals ORDER BY seq DESC LIMIT 1"
CHECKPOINT_COLUMNS = "id, day, entry_id, chain_hash, entries, signed_off_by, created_at"
CHECKPOINT_MARKS_SQL = "SELECT day, entry_id, chain_hash, entries FROM vouchers.checkpoints"
LATEST_CHECKPOINT_SQL = "SELECT day, entry_id, chain_hash, entries FROM vouchers.checkpoints ORDER BY day DESC LIMIT 1"
SEAL_OF_ENTRY_SQL = "SELECT seq, chain_hash FROM vouchers.seals WHERE entry_id = $1"
INSERT_CHECKPOINT_SQL = (
    "INSERT INTO vouchers.checkpoints (day, entry_id, chain_hash, entries, signed_off_by) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (day) DO NOTHING "
    f"RETURNING {CHECKPOINT_COLUMNS}"
)
EXPORT_CHECKPOINTS_SQL = (
    f"SELECT {', '.join('c.' + c for c in CHECKPOINT_COLUMNS.split(', '))} FROM vouchers.checkpoints c "
    "LEFT JOIN vouchers.seals s ON s.entry_id = c.entry_id "
    "WHERE s.seq IS NULL OR s.seq <= $1 ORDER BY c.day"
)
SEAL_LOCK_SQL = "SELECT pg_advisory_xact_lock($1)"
TRY_SEAL_LOCK_SQL = "SELECT pg_try_advisory_xact_lock($1)"
#: checkpoint publishers, one at a time (held in a transaction of its own: PgBouncer-safe)
PUBLISHER_LOCK_SQL = "SELECT pg_advisory_xact_lock($1)"


async def _sealed_batch(
    connection: Connection, after: int, until: int, limit: int
) -> list[tuple[asyncpg.Record, asyncpg.Record | None]]:
    """Seals with seq in (after, until], in seq order, each with its entry (None when it is gone)."""
    seals = await connection.fetch(SEALS_SQL, after, until, limit)
    if not seals:
        return []
    entries = {row["id"]: row for row in await connection.fetch(ENTRIES_SQL, [row["entry_id"] for row in seals])}
    return [(row, entries.get(row["entry_id"])) for row in seals]


async def checkpoints_after(session: AsyncSession, after: int, limit: int) -> list[Checkpoint]:
    """Published checkpoints with an id above `after`, oldest first, at most `limit`."""
    rows = (
        await session.execute(select(Checkpoint).where(Checkpoint.id > after).order_by(Checkpoint.id).limit(limit))
    ).scalars()
    return list(rows)
