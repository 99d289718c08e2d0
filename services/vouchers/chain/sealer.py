"""The sealer: hashes committed entries into `vouchers.seals` off the hot path (see the package doc)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TypeVar

import asyncpg
from fastapi import FastAPI

from shared.db import Connection
from shared.periodic import BelowWatermark, start_jobs, stop_jobs

from ..pool import LedgerPool
from ..settings import VouchersSettings
from .hashing import GENESIS, EntryFields, chain_hash, entry_hash
from .repository import (
    BEHIND_SQL,
    HEAD_SQL,
    INSERT_SEALS_SQL,
    SEAL_LOCK_KEY,
    SEAL_LOCK_SQL,
    SEALABLE_SQL,
    TRY_SEAL_LOCK_SQL,
    UNSEALED_SQL,
    XMIN_SQL,
)

logger = logging.getLogger("services.vouchers.chain")

SEAL_BATCH_SIZE = 5_000
_HASH_IN_THREAD = 256  # batches this big are hashed off the event loop the hot path shares


class ChainHalted(RuntimeError):
    """The last seal's entry is gone: the sealer cannot know where to continue, and stops."""


@dataclass(frozen=True)
class SealRun:
    sealed: int
    #: every committed entry with a transaction id below this is sealed (None: not drained)
    watermark: int | None


T = TypeVar("T")


async def _maybe_in_thread(size: int, function: Callable[[], T]) -> T:
    if size >= _HASH_IN_THREAD:
        return await asyncio.to_thread(function)
    return function()


def _hash_batch(rows: Sequence[EntryFields], previous: str) -> tuple[list[int], list[str], list[str]]:
    ids: list[int] = []
    digests: list[str] = []
    links: list[str] = []
    for row in rows:
        digest = entry_hash(row)
        previous = chain_hash(previous, digest)
        ids.append(int(row["id"]))
        digests.append(digest)
        links.append(previous)
    return ids, digests, links


async def seal_run(connection: Connection, *, batch_size: int = SEAL_BATCH_SIZE, wait: bool = True) -> SealRun:
    """Seal every committed entry below the watermark; `wait=False` gives up if another sealer runs."""
    sealed = 0
    while True:
        async with connection.transaction(isolation="read_committed"):
            if wait:
                await connection.execute(SEAL_LOCK_SQL, SEAL_LOCK_KEY)
            elif not await connection.fetchval(TRY_SEAL_LOCK_SQL, SEAL_LOCK_KEY):
                return SealRun(sealed, None)
            # read after taking the lock: each statement sees what the previous sealer committed
            watermark = int(await connection.fetchval(XMIN_SQL))
            head = await connection.fetchrow(HEAD_SQL)
            if head is None:
                previous, after = GENESIS, (-1, -1)
            elif head["txid"] is None:
                raise ChainHalted(
                    f"entry {head['entry_id']} of the last seal (seq {head['seq']}) is gone; sealing stops"
                )
            else:
                previous, after = str(head["chain_hash"]), (int(head["txid"]), int(head["entry_id"]))
            rows = await connection.fetch(SEALABLE_SQL, watermark, after[0], after[1], batch_size)
            if rows:
                ids, digests, links = await _maybe_in_thread(len(rows), partial(_hash_batch, rows, previous))
                await connection.execute(INSERT_SEALS_SQL, ids, digests, links)
                sealed += len(rows)
        if len(rows) < batch_size:
            return SealRun(sealed, watermark)


async def seal(connection: Connection, *, batch_size: int = SEAL_BATCH_SIZE, wait: bool = True) -> int:
    """Seal what is sealable (see the module doc); returns how many entries were sealed."""
    return (await seal_run(connection, batch_size=batch_size, wait=wait)).sealed


@dataclass(frozen=True)
class Lag:
    unsealed: int
    oldest_unsealed_at: datetime | None
    lag_seconds: float


async def seal_lag(connection: Connection, *, exact: bool = False) -> Lag:
    """How far sealing is behind: entries not sealed yet, and the age of the oldest of them.

    For metrics, the entries after the last sealed one in (txid, id) order (cheap with an
    index on entries (txid, id)); `exact` counts every entry without a seal, including
    any hidden below the head, which verification reports as `not_in_chain`.
    """
    row = None
    if not exact:
        head = await connection.fetchrow(HEAD_SQL)
        if head is None:
            row = await connection.fetchrow(BEHIND_SQL, -1, -1)
        elif head["txid"] is not None:  # (else the head's entry is gone: count exactly)
            row = await connection.fetchrow(BEHIND_SQL, int(head["txid"]), int(head["entry_id"]))
    if row is None:
        row = await connection.fetchrow(UNSEALED_SQL)
    assert row is not None  # an aggregate answers one row
    return Lag(int(row["unsealed"]), row["oldest"], float(row["lag_seconds"]))


@dataclass
class SealerStats:
    runs: int = 0
    sealed_total: int = 0
    last_sealed: int = 0
    last_run_at: datetime | None = None
    watermark: int | None = None


class Sealer(BelowWatermark):
    """Seals in the background of a vouchers process, every `interval` seconds (0: never)."""

    name = "vouchers-sealer"
    label = "sealer"
    log = logger
    max_backoff_seconds = 30.0
    watermark_sql = XMIN_SQL

    @property
    def stats(self) -> SealerStats:
        """What it has done, under the names the API (`GET /v1/ledger/seal-lag`) and the metrics give it."""
        return SealerStats(self.runs, self.done_total, self.done_last, self.last_run_at, self.watermark)

    async def run(self, connection: asyncpg.Connection) -> tuple[int, int | None]:
        run = await seal_run(connection, wait=False)
        return run.sealed, run.watermark


async def start_sealer(app: FastAPI) -> None:
    """Startup hook: the background sealer, on its own connection as the service role."""
    settings: VouchersSettings = app.state.settings
    ledger_pool: LedgerPool = app.state.ledger_pool
    sealer = Sealer(
        ledger_pool.dsn,
        ledger_pool.role,
        float(settings.sealer_interval_seconds),
        statement_timeout_ms=settings.db_statement_timeout_ms,
    )
    await start_jobs(app, sealer=sealer)


async def stop_sealer(app: FastAPI) -> None:
    await stop_jobs(app, "sealer")


# --- walking the stored chain -------------------------------------------------------------------
