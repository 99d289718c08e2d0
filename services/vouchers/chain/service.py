"""Verifying the chain, publishing signed checkpoints, exporting the sealed ledger."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Connection
from shared.errors import ProblemError
from shared.feed.outbox import emit
from shared.pagination import Page, PageParams, decode_cursor, make_page
from shared.periodic import close_connection, connect

from ..pool import LedgerPool
from ..settings import VouchersSettings
from .anchor import (
    CheckpointSigner,
    SignedCheckpoints,
    SignedMark,
    append_to_sink,
    public_keys_by_kid,
    read_signed,
    sink_line,
)
from .errors import (
    CHAIN_BROKEN,
    CHECKPOINT_DAY_IN_FUTURE,
    CHECKPOINT_EXISTS,
    CHECKPOINT_KEY_MISSING,
    CHECKPOINT_OUT_OF_ORDER,
    CHECKPOINT_SINK_INVALID,
    CHECKPOINT_SINK_UNAVAILABLE,
    LEDGER_EMPTY,
)
from .hashing import (
    CANONICAL_VERSION,
    ENTRY_FIELDS,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    GENESIS,
    CanonicalError,
    ChainVerifier,
    CheckpointMark,
    Mismatch,
    entry_hash,
    export_entry,
)
from .repository import (
    CHECKPOINT_LOCK_KEY,
    CHECKPOINT_MARKS_SQL,
    EXPORT_CHECKPOINTS_SQL,
    HIDDEN_SQL,
    INSERT_CHECKPOINT_SQL,
    LAST_SEAL_SQL,
    LATEST_CHECKPOINT_SQL,
    PUBLISHER_LOCK_SQL,
    SEAL_OF_ENTRY_SQL,
    _sealed_batch,
    checkpoints_after,
)
from .schemas import (
    ChainHead,
    CheckpointRead,
    ExternalCheckpoints,
    PublishedCheckpoint,
    SealerStatus,
    SealLagRead,
    SignedCheckpointRead,
    VerifyReport,
)
from .sealer import SEAL_BATCH_SIZE, ChainHalted, Sealer, SealRun, _maybe_in_thread, seal_lag, seal_run

logger = logging.getLogger("services.vouchers.chain")

VERIFY_BATCH_SIZE = 5_000


# --- walking the stored chain -------------------------------------------------------------------


def _feed(verifier: ChainVerifier, batch: Sequence[tuple[asyncpg.Record, asyncpg.Record | None]]) -> Mismatch | None:
    for sealed, entry in batch:
        mismatch = verifier.add(
            seq=int(sealed["seq"]),
            entry_id=int(sealed["entry_id"]),
            entry=entry,
            sealed_entry_hash=str(sealed["entry_hash"]),
            sealed_chain_hash=str(sealed["chain_hash"]),
            order=None if entry is None else (int(entry["txid"]), int(entry["id"])),
        )
        if mismatch is not None:
            return mismatch
    return None


async def _walk(
    connection: Connection, verifier: ChainVerifier, *, after: int, until: int, batch_size: int
) -> Mismatch | None:
    while after < until:
        batch = await _sealed_batch(connection, after, until, batch_size)
        if not batch:
            break
        mismatch = await _maybe_in_thread(len(batch), partial(_feed, verifier, batch))
        if mismatch is not None:
            return mismatch
        after = int(batch[-1][0]["seq"])
    return None


async def _seal_before_reading(connection: Connection, batch_size: int) -> SealRun:
    try:
        return await seal_run(connection, batch_size=batch_size)
    except ChainHalted as exc:  # the walk names the missing entry
        logger.error("sealing halted: %s", exc)
        return SealRun(0, None)


def _mark(row: asyncpg.Record) -> CheckpointMark:
    return CheckpointMark(row["day"], int(row["entry_id"]), str(row["chain_hash"]), int(row["entries"]))


def _external_report(signed: SignedCheckpoints | None) -> ExternalCheckpoints:
    if signed is None:
        return ExternalCheckpoints(sink_configured=False, lines=0, verified=0, latest=None, problems=[])
    latest = signed.latest
    return ExternalCheckpoints(
        sink_configured=True,
        lines=signed.lines,
        verified=len(signed.marks),
        latest=None if latest is None else SignedCheckpointRead.model_validate(vars(latest)),
        problems=[f"line {bad.line}: {bad.problem}" for bad in signed.bad],
    )


def external_mark(mark: SignedMark) -> CheckpointMark:
    return CheckpointMark(mark.day, mark.entry_id, mark.chain_hash, mark.entries, "external")


async def verify_ledger(
    connection: Connection, *, batch_size: int = VERIFY_BATCH_SIZE, signed: SignedCheckpoints | None = None
) -> VerifyReport:
    """Seal, then recompute the whole chain from genesis and check every checkpoint against it:
    the stored ones and the signed ones of the sink (`signed`), which the database owner cannot rewrite."""
    run = await _seal_before_reading(connection, batch_size)
    # checkpoints before the head: each one names an entry at or below the head read next
    marks = [_mark(row) for row in await connection.fetch(CHECKPOINT_MARKS_SQL)]
    if signed is not None:
        marks.extend(external_mark(mark) for mark in signed.marks)
    head = await connection.fetchrow(LAST_SEAL_SQL)
    verifier = ChainVerifier(marks)
    mismatch: Mismatch | None = None
    if head is not None:
        mismatch = await _walk(connection, verifier, after=0, until=int(head["seq"]), batch_size=batch_size)
    if mismatch is None and run.watermark is not None:
        hidden = await connection.fetchrow(HIDDEN_SQL, run.watermark)
        if hidden is not None:
            try:
                digest: str | None = entry_hash(hidden)
            except CanonicalError:
                digest = None
            mismatch = Mismatch(reason="not_in_chain", entry_id=int(hidden["id"]), seq=None, found=digest)
    if mismatch is None:
        mismatch = verifier.finish()
    if mismatch is None and signed is not None and signed.bad:
        bad = signed.bad[0]
        mismatch = Mismatch(
            reason="checkpoint_signature_invalid",
            entry_id=bad.entry_id,
            seq=None,
            checkpoint_source="external",
            detail=f"checkpoint sink line {bad.line}: {bad.problem}",
        )
    if mismatch is not None:  # loudly: whoever watches the logs learns it before anyone asks
        logger.error("ledger verification failed: %s", mismatch.model_dump_json())
    lag = await seal_lag(connection, exact=True)
    return VerifyReport(
        ok=mismatch is None,
        entries_verified=verifier.verified,
        head=None if head is None else ChainHead.model_validate(dict(head)),
        unsealed=lag.unsealed,
        first_mismatch=mismatch,
        sealed_now=run.sealed,
        external=_external_report(signed),
    )


@dataclass(frozen=True)
class VerifiedHead:
    seq: int
    entry_id: int
    chain_hash: str
    entries: int


class ChainBroken(Exception):
    def __init__(self, mismatch: Mismatch) -> None:
        super().__init__(f"{mismatch.reason} at entry {mismatch.entry_id}")
        self.mismatch = mismatch


async def verified_head(
    connection: Connection, since: CheckpointMark | None, *, batch_size: int = VERIFY_BATCH_SIZE
) -> VerifiedHead | None:
    """Seal, then verify the chain from the last checkpoint (or genesis) to the head; None if empty."""
    await _seal_before_reading(connection, batch_size)
    head = await connection.fetchrow(LAST_SEAL_SQL)
    if head is None:
        return None
    after = 0
    verifier = ChainVerifier()
    if since is not None:
        start = await connection.fetchrow(SEAL_OF_ENTRY_SQL, since.entry_id)
        if start is None or start["chain_hash"] != since.chain_hash:
            raise ChainBroken(
                Mismatch(
                    reason="checkpoint_not_in_chain" if start is None else "checkpoint_mismatch",
                    entry_id=since.entry_id,
                    seq=None if start is None else int(start["seq"]),
                    expected=since.chain_hash,
                    found=None if start is None else str(start["chain_hash"]),
                    checkpoint_day=since.day,
                    checkpoint_source=since.source,
                )
            )
        after = int(start["seq"])
        verifier = ChainVerifier(previous=since.chain_hash, verified=since.entries)
    mismatch = await _walk(connection, verifier, after=after, until=int(head["seq"]), batch_size=batch_size)
    if mismatch is not None:
        raise ChainBroken(mismatch)
    return VerifiedHead(int(head["seq"]), int(head["entry_id"]), str(head["chain_hash"]), verifier.verified)


# --- checkpoints --------------------------------------------------------------------------------


def configure_checkpoints(app: FastAPI, settings: VouchersSettings) -> None:
    """The checkpoint signer (a configured directory without a key stops the service) and the sink."""
    directory = settings.checkpoint_keys_dir
    app.state.checkpoint_signer = None if directory is None else CheckpointSigner(directory)
    app.state.checkpoint_sink = settings.checkpoint_sink


async def read_sink(sink: Path | None, signer: CheckpointSigner | None) -> SignedCheckpoints | None:
    """The sink's lines, each signature checked with the service's published keys (None: no sink)."""
    if sink is None:
        return None
    keys = {} if signer is None else public_keys_by_kid(signer.public_keys())
    return await asyncio.to_thread(read_signed, sink, keys)


@contextlib.asynccontextmanager
async def ledger_connection(
    ledger_pool: LedgerPool, settings: VouchersSettings, purpose: str
) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(
        ledger_pool.dsn, ledger_pool.role, f"vouchers-{purpose}", settings.db_statement_timeout_ms
    )
    try:
        yield connection
    finally:
        await close_connection(connection)


@contextlib.asynccontextmanager
async def _publisher_lock(ledger_pool: LedgerPool, settings: VouchersSettings) -> AsyncIterator[None]:
    """One publisher at a time: a transaction-level advisory lock, held by a connection of its own
    for the whole publication (a session-level one would not survive PgBouncer's transaction
    pooling, shared/dbconnect.py); it is idle meanwhile, so its idle timeout is off for it."""
    async with ledger_connection(ledger_pool, settings, "checkpoint-lock") as holder, holder.transaction():
        await holder.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        await holder.execute(PUBLISHER_LOCK_SQL, CHECKPOINT_LOCK_KEY)
        yield


async def verify(ledger_pool: LedgerPool, settings: VouchersSettings, signed: SignedCheckpoints | None) -> VerifyReport:
    async with ledger_connection(ledger_pool, settings, "verify") as connection:
        return await verify_ledger(connection, signed=signed)


async def seal_lag_report(connection: Connection, sealer: Sealer | None) -> SealLagRead:
    lag = await seal_lag(connection)
    status = None
    if sealer is not None:
        status = SealerStatus(
            enabled=sealer.enabled, interval_seconds=sealer.interval, last_error=sealer.last_error, **vars(sealer.stats)
        )
    return SealLagRead(
        unsealed=lag.unsealed, oldest_unsealed_at=lag.oldest_unsealed_at, lag_seconds=lag.lag_seconds, sealer=status
    )


def _refuse_day(day: date, latest: date | None) -> None:
    if latest is None or day > latest:
        return
    if day == latest:
        raise ProblemError(CHECKPOINT_EXISTS, day=day.isoformat())
    raise ProblemError(CHECKPOINT_OUT_OF_ORDER, day=day.isoformat(), latest=latest.isoformat())


async def publish_checkpoint(
    ledger_pool: LedgerPool,
    settings: VouchersSettings,
    signer: CheckpointSigner | None,
    sink: Path | None,
    *,
    day: date | None,
    today: date,
    actor: str,
) -> PublishedCheckpoint:
    """Verify since the previous checkpoint, sign the head, write it to the sink, then store and emit it."""
    day = day or today
    if day > today:
        raise ProblemError(CHECKPOINT_DAY_IN_FUTURE, day=day.isoformat(), today=today.isoformat())
    if signer is None:
        raise ProblemError(CHECKPOINT_KEY_MISSING)
    # one publisher at a time (a lock held for it by another connection): the head published is the head verified, and
    # heads only move forward with the days; the INSERT commits before the answer is sent
    async with (
        _publisher_lock(ledger_pool, settings),
        ledger_connection(ledger_pool, settings, "checkpoint") as connection,
    ):
        latest = await connection.fetchrow(LATEST_CHECKPOINT_SQL)
        _refuse_day(day, None if latest is None else latest["day"])
        since = None if latest is None else _mark(latest)
        # continue from the furthest signed head outside the database: the stored one may be rewritten
        signed = await read_sink(sink, signer)
        if signed is not None:
            if signed.bad:
                bad = signed.bad[0]
                raise ProblemError(CHECKPOINT_SINK_INVALID, line=bad.line, problem=bad.problem)
            outside = signed.latest
            if outside is not None and (since is None or outside.entries >= since.entries):
                since = external_mark(outside)
        try:
            head = await verified_head(connection, since)
        except ChainBroken as exc:
            found = exc.mismatch
            raise ProblemError(
                CHAIN_BROKEN, entry_id=found.entry_id, reason=found.reason, mismatch=found.model_dump(mode="json")
            ) from exc
        if head is None:
            raise ProblemError(LEDGER_EMPTY)
        checkpoint = {
            "day": day.isoformat(),
            "entry_id": head.entry_id,
            "chain_hash": head.chain_hash,
            "entries": head.entries,
            "signed_off_by": actor,
            "canonical": CANONICAL_VERSION,
        }
        signature = signer.sign(checkpoint)
        # out of the database first: a sink line without its row is still a true head of the chain
        if sink is not None:
            try:
                await asyncio.to_thread(append_to_sink, sink, sink_line(checkpoint, signer.kid, signature))
            except OSError as exc:
                logger.error("checkpoint sink %s: %s", sink, exc)
                raise ProblemError(CHECKPOINT_SINK_UNAVAILABLE) from exc
        async with connection.transaction():
            row = await connection.fetchrow(
                INSERT_CHECKPOINT_SQL,
                day,
                head.entry_id,
                head.chain_hash,
                head.entries,
                actor,
            )
            if row is not None:  # to the change feed and the platform's webhooks, in the same transaction
                await emit(
                    connection,
                    "vouchers.ledger.checkpoint",
                    day.isoformat(),
                    {**checkpoint, "kid": signer.kid, "signature": signature},
                )
    if row is None:
        raise ProblemError(CHECKPOINT_EXISTS, day=day.isoformat())
    return PublishedCheckpoint.model_validate({**dict(row), "kid": signer.kid, "signature": signature})


async def list_checkpoints(session: AsyncSession, page: PageParams) -> Page[CheckpointRead]:
    after = decode_cursor("checkpoints", page.cursor) if page.cursor else 0
    rows = await checkpoints_after(session, after, page.limit + 1)
    items = [CheckpointRead.model_validate(row, from_attributes=True) for row in rows]
    return make_page("checkpoints", items, page.limit, lambda item: item.id)


# --- export -------------------------------------------------------------------------------------


def _line(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode()


def _head_json(head: asyncpg.Record | None) -> dict[str, Any] | None:
    if head is None:
        return None
    return {"seq": int(head["seq"]), "entry_id": int(head["entry_id"]), "chain_hash": str(head["chain_hash"])}


async def export_lines(
    connection: asyncpg.Connection, head: asyncpg.Record | None, unsealed: int, with_checkpoints: bool, batch_size: int
) -> AsyncIterator[bytes]:
    """header, one line per sealed entry in seq order (keyset batches), checkpoints, end."""
    try:
        until = 0 if head is None else int(head["seq"])
        yield _line(
            {
                "type": "header",
                "format": EXPORT_FORMAT,
                "version": EXPORT_VERSION,
                "canonical": CANONICAL_VERSION,
                "genesis": GENESIS,
                "fields": list(ENTRY_FIELDS),
                "exported_at": datetime.now(UTC).isoformat(),
                "head": _head_json(head),
                "unsealed": unsealed,
            }
        )
        after = 0
        count = 0
        while after < until:
            batch = await _sealed_batch(connection, after, until, batch_size)
            if not batch:
                break
            chunk = [
                _line(
                    {
                        "type": "entry",
                        "seq": int(sealed["seq"]),
                        "entry_id": int(sealed["entry_id"]),
                        "entry_hash": sealed["entry_hash"],
                        "chain_hash": sealed["chain_hash"],
                        "sealed_at": sealed["sealed_at"].isoformat(),
                        "txid": None if entry is None else int(entry["txid"]),
                        "entry": None if entry is None else export_entry(entry),
                    }
                )
                for sealed, entry in batch
            ]
            count += len(batch)
            after = int(batch[-1][0]["seq"])
            yield b"".join(chunk)
        if with_checkpoints:
            rows = await connection.fetch(EXPORT_CHECKPOINTS_SQL, until)
            for row in rows:
                yield _line({"type": "checkpoint", **CheckpointRead.model_validate(dict(row)).model_dump(mode="json")})
        yield _line({"type": "end", "entries": count, "head": _head_json(head)})
    finally:
        await close_connection(connection)


async def open_export(
    ledger_pool: LedgerPool, settings: VouchersSettings
) -> tuple[asyncpg.Connection, asyncpg.Record | None, int]:
    """The export's own connection (the stream closes it), sealed first; its head and what is unsealed."""
    connection = await connect(ledger_pool.dsn, ledger_pool.role, "vouchers-export", settings.db_statement_timeout_ms)
    try:
        await _seal_before_reading(connection, SEAL_BATCH_SIZE)
        head = await connection.fetchrow(LAST_SEAL_SQL)
        lag = await seal_lag(connection)
    except BaseException:
        connection.terminate()
        raise
    return connection, head, lag.unsealed
