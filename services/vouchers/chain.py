"""Tamper evidence: a hash chain over the ledger's entries, computed off the hot path.

The design measurements (docs/benchmarks.md) found that a chain computed inside each redemption
halves throughput, so the redemption path only inserts entries. A **sealer** (a background task
in each vouchers process, on its own connection) appends one row per committed entry to
`vouchers.seals`:

    entry_hash = sha256(canonical_entry(entry))
    chain_hash = sha256(previous chain_hash + entry_hash)        genesis: 64 zeros

**Order and watermark.** Sequence order is not commit order, so entries are sealed in
(transaction id, entry id) order, and only those whose transaction id is below
`pg_snapshot_xmin(pg_current_snapshot())`: every transaction older than that has ended,
and every later one gets a larger id, so the set below the watermark never grows and
the chain's order is final. An entry of a transaction still in flight is never passed:
sealing stops before it (and before everything after it) until it commits or aborts.
Each batch is one short transaction holding a transaction-level advisory lock, so one
sealer runs at a time across processes; it continues from the last seal (highest seq).

**Canonical form, version 1** (frozen: a different form needs a new version tag):
`"v1|"` followed by the JSON array of the fields in `ENTRY_FIELDS` order. Integers as
JSON integers, `created_at` as UTC ISO-8601 with microseconds (`2026-11-27T02:45:05.953712Z`),
`decision_id` as a lower-case hyphenated UUID, every string NFC-normalised, null as
JSON `null`; encoded with `ensure_ascii=False` and separators `,` `:`, then UTF-8. So
a tool that re-normalises Unicode or re-escapes the export's JSON never breaks
verification (NFC and NFD spellings of the same text are the same content).

**Verification** (`GET /v1/ledger/verify`) seals what is sealable, then recomputes every
entry hash and the chain from genesis in seq order, in keyset batches (flat memory), and
names the first entry that does not match. It also finds committed entries below the
watermark that are not in the chain (hidden, e.g. inserted with a forged old `txid`),
seals whose entry is gone, and checkpoints that no longer match. **Checkpoints**
(`POST /v1/ledger/checkpoints`, one a day) publish the head: someone able to rewrite
entries *and* recompute every seal after them is still caught by an earlier checkpoint;
and since the database's owner can rewrite the stored checkpoint too, each one is signed and
written outside the database as it is made (`anchor.py`), and verification compares the chain
with those signed heads as well.
**Export** (`GET /v1/ledger/export`) streams NDJSON that `python -m services.vouchers.verify`
checks offline with the very functions below.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from shared.auth import ADMIN, AUDITOR, PLATFORM, Principal, require
from shared.db import SessionDep
from shared.errors import ErrorCode, ProblemError
from shared.feed.outbox import emit
from shared.pagination import Page, PageParams, decode_cursor, make_page, page_params
from shared.periodic import OnOwnConnection, close_connection, connect

from .anchor import (
    CheckpointSigner,
    SignedCheckpoints,
    SignedMark,
    append_to_sink,
    public_keys_by_kid,
    read_signed,
    sink_line,
)
from .endpoints import Now
from .hotpath import HotPath, local_today
from .models import Checkpoint
from .schemas import Input
from .settings import VouchersSettings

logger = logging.getLogger("services.vouchers.chain")

# --- canonical form and hashes (one implementation: the service and the offline CLI) ---------

CANONICAL_VERSION = "v1"
GENESIS = "0" * 64
ENTRY_FIELDS: tuple[str, ...] = (
    "id",
    "created_at",
    "kind",
    "from_account_id",
    "to_account_id",
    "amount_fen",
    "voucher_id",
    "redemption_id",
    "decision_id",
    "contract_ref",
    "actor",
    "parameters_digest",
    "reverses_entry_id",
    "request_id",
    "memo",
)
_INTEGER_FIELDS = frozenset(
    {"id", "from_account_id", "to_account_id", "amount_fen", "voucher_id", "redemption_id", "reverses_entry_id"}
)
_REQUIRED_FIELDS = frozenset({"id", "created_at", "kind", "from_account_id", "to_account_id", "amount_fen"})


class CanonicalError(ValueError):
    """An entry that cannot be put in canonical form (only possible for data read from a file)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def canonical_timestamp(value: object) -> str:
    """UTC, ISO-8601, always with microseconds: `2026-11-27T02:45:05.953712Z`."""
    moment = value
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError as exc:
            raise CanonicalError("created_at", "not an ISO-8601 timestamp") from exc
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise CanonicalError("created_at", "needs a timestamp with a time zone")
    try:
        utc = moment.astimezone(UTC)
    except OverflowError as exc:
        raise CanonicalError("created_at", "out of range") from exc
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _canonical_value(name: str, value: object) -> object:
    if value is None:
        if name in _REQUIRED_FIELDS:
            raise CanonicalError(name, "must not be null")
        return None
    if name == "created_at":
        return canonical_timestamp(value)
    if name in _INTEGER_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CanonicalError(name, "must be an integer")
        return value
    if name == "decision_id":
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value))
            except ValueError as exc:
                raise CanonicalError(name, "not a UUID") from exc
        raise CanonicalError(name, "must be a UUID")
    if not isinstance(value, str):
        raise CanonicalError(name, "must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, only possible in a hand-made file
        raise CanonicalError(name, "not valid Unicode text") from exc
    return unicodedata.normalize("NFC", value)


def canonical_entry(entry: Mapping[str, Any]) -> bytes:
    """The bytes that are hashed: `v1|` + the JSON array of `ENTRY_FIELDS` (see the module doc)."""
    values: list[object] = []
    for name in ENTRY_FIELDS:
        try:
            raw = entry[name]
        except KeyError as exc:
            raise CanonicalError(name, "missing") from exc
        values.append(_canonical_value(name, raw))
    body = json.dumps(values, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return f"{CANONICAL_VERSION}|{body}".encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_entry(entry)).hexdigest()


def chain_hash(previous: str, entry_digest: str) -> str:
    return hashlib.sha256((previous + entry_digest).encode("ascii")).hexdigest()


def export_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An entry as JSON: exactly the hashed fields, as stored (not normalised)."""
    exported: dict[str, Any] = {}
    for name in ENTRY_FIELDS:
        value = entry[name]
        if name == "created_at":
            value = canonical_timestamp(value)
        elif isinstance(value, uuid.UUID):
            value = str(value)
        exported[name] = value
    return exported


# --- verification of a stream of (seal, entry) pairs: the service and the CLI alike -----------

MismatchReason = Literal[
    "entry_changed",  # the entry no longer hashes to what was sealed
    "malformed_entry",  # the entry cannot even be put in canonical form (export files only)
    "entry_missing",  # a seal whose entry is gone
    "chain_broken",  # the stored chain hash is not the recomputed one (seal rewritten, removed, reordered)
    "out_of_order",  # seals not in (txid, id) / seq order
    "not_in_chain",  # a committed entry below the watermark that was never sealed
    "checkpoint_mismatch",  # a published checkpoint differs from the recomputed chain at its entry
    "checkpoint_count",  # … or counts a different number of entries
    "checkpoint_not_in_chain",  # a published checkpoint names an entry the chain does not contain
    "checkpoint_signature_invalid",  # a line of the checkpoint sink whose signature does not verify
]
CheckpointSource = Literal["database", "external"]


class Mismatch(BaseModel):
    """The first place where the ledger and its chain disagree."""

    reason: MismatchReason
    entry_id: int | None
    seq: int | None
    expected: str | None = Field(default=None, description="What the chain (or checkpoint) says it should be")
    found: str | None = Field(default=None, description="What is there now")
    checkpoint_day: date | None = None
    checkpoint_source: CheckpointSource | None = Field(
        default=None,
        description="For a checkpoint: the stored one (`database`) or a signed one kept outside it (`external`)",
    )
    detail: str | None = None


@dataclass(frozen=True)
class CheckpointMark:
    day: date
    entry_id: int
    chain_hash: str
    entries: int
    source: CheckpointSource = "database"


class ChainVerifier:
    """Feed it the chain in seq order; it recomputes each hash and says where it first breaks."""

    def __init__(
        self, checkpoints: Iterable[CheckpointMark] = (), *, previous: str = GENESIS, verified: int = 0
    ) -> None:
        self.chain = previous
        self.verified = verified
        self.last_seq: int | None = None
        self.last_entry_id: int | None = None
        self._last_order: tuple[int, int] | None = None
        self._pending: dict[int, list[CheckpointMark]] = {}
        for mark in sorted(checkpoints, key=lambda m: m.day):
            self._pending.setdefault(mark.entry_id, []).append(mark)

    def add(
        self,
        *,
        seq: int,
        entry_id: int,
        entry: Mapping[str, Any] | None,
        sealed_entry_hash: str,
        sealed_chain_hash: str,
        order: tuple[int, int] | None = None,
    ) -> Mismatch | None:
        def mismatch(reason: MismatchReason, expected: str | None, found: str | None, **extra: Any) -> Mismatch:
            return Mismatch(reason=reason, entry_id=entry_id, seq=seq, expected=expected, found=found, **extra)

        if self.last_seq is not None and seq <= self.last_seq:
            return mismatch("out_of_order", f"seq after {self.last_seq}", str(seq))
        if entry is None:
            return mismatch("entry_missing", sealed_entry_hash, None)
        try:
            digest = entry_hash(entry)
        except CanonicalError as exc:
            return mismatch("malformed_entry", sealed_entry_hash, None, detail=str(exc))
        if digest != sealed_entry_hash:
            return mismatch("entry_changed", sealed_entry_hash, digest)
        if order is not None and self._last_order is not None and order <= self._last_order:
            return mismatch("out_of_order", f"(txid, id) after {self._last_order}", str(order))
        link = chain_hash(self.chain, digest)
        if link != sealed_chain_hash:
            return mismatch("chain_broken", link, sealed_chain_hash)
        self.chain = link
        self.verified += 1
        self.last_seq = seq
        self.last_entry_id = entry_id
        if order is not None:
            self._last_order = order
        for mark in self._pending.pop(entry_id, ()):
            where = {"checkpoint_day": mark.day, "checkpoint_source": mark.source}
            if mark.chain_hash != link:
                return mismatch("checkpoint_mismatch", mark.chain_hash, link, **where)
            if mark.entries != self.verified:
                return mismatch("checkpoint_count", str(mark.entries), str(self.verified), **where)
        return None

    def finish(self) -> Mismatch | None:
        """After the last seal: a checkpoint whose entry never came is not on this chain."""
        remaining = sorted((mark for marks in self._pending.values() for mark in marks), key=lambda m: m.day)
        if not remaining:
            return None
        first = remaining[0]
        return Mismatch(
            reason="checkpoint_not_in_chain",
            entry_id=first.entry_id,
            seq=None,
            expected=first.chain_hash,
            checkpoint_day=first.day,
            checkpoint_source=first.source,
        )


# --- the sealer ---------------------------------------------------------------------------------

SEAL_BATCH_SIZE = 5_000
VERIFY_BATCH_SIZE = 5_000
SEAL_LOCK_KEY = 0x4C47_5345_414C_0001  # "LGSEAL", 1: one sealer at a time, across processes
CHECKPOINT_LOCK_KEY = 0x4C47_5345_414C_0002
_HASH_IN_THREAD = 256  # batches this big are hashed off the event loop the hot path shares

_COLUMNS = ", ".join(f"e.{name}" for name in ("txid", *ENTRY_FIELDS))
XMIN_SQL = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
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


def _hash_batch(rows: Sequence[Mapping[str, Any]], previous: str) -> tuple[list[int], list[str], list[str]]:
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


async def seal_run(connection: Any, *, batch_size: int = SEAL_BATCH_SIZE, wait: bool = True) -> SealRun:
    """Seal every committed entry below the watermark; `wait=False` gives up if another sealer runs."""
    sealed = 0
    while True:
        async with connection.transaction(isolation="read_committed"):
            if wait:
                await connection.execute("SELECT pg_advisory_xact_lock($1)", SEAL_LOCK_KEY)
            elif not await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", SEAL_LOCK_KEY):
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


async def seal(connection: Any, *, batch_size: int = SEAL_BATCH_SIZE, wait: bool = True) -> int:
    """Seal what is sealable (see the module doc); returns how many entries were sealed."""
    return (await seal_run(connection, batch_size=batch_size, wait=wait)).sealed


@dataclass(frozen=True)
class Lag:
    unsealed: int
    oldest_unsealed_at: datetime | None
    lag_seconds: float


async def seal_lag(connection: Any, *, exact: bool = False) -> Lag:
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
    return Lag(int(row["unsealed"]), row["oldest"], float(row["lag_seconds"]))


@dataclass
class SealerStats:
    runs: int = 0
    sealed_total: int = 0
    last_sealed: int = 0
    last_run_at: datetime | None = None
    watermark: int | None = None


class Sealer(OnOwnConnection):
    """Seals in the background of a vouchers process, every `interval` seconds (0: never)."""

    name = "vouchers-sealer"
    label = "sealer"
    log = logger
    max_backoff_seconds = 30.0

    def __init__(self, dsn: str, role: str, interval: float, *, statement_timeout_ms: int = 30_000) -> None:
        super().__init__(dsn, role, interval, statement_timeout_ms=statement_timeout_ms)
        self.stats = SealerStats()

    async def run_once(self, connection: Any) -> int:
        """One round; skipped cheaply when the watermark has not moved since everything was sealed."""
        xmin = int(await connection.fetchval(XMIN_SQL))
        if self.stats.watermark is not None and xmin == self.stats.watermark:
            return 0  # no transaction below it can have committed since: nothing new is sealable
        run = await seal_run(connection, wait=False)
        self.stats.runs += 1
        self.stats.last_sealed = run.sealed
        self.stats.sealed_total += run.sealed
        self.stats.last_run_at = datetime.now(UTC)
        if run.watermark is not None:
            self.stats.watermark = run.watermark
        return run.sealed

    async def step(self, connection: Any) -> None:
        await self.run_once(connection)


async def start_sealer(app: FastAPI) -> None:
    """Startup hook: the background sealer, on its own connection as the service role."""
    settings: VouchersSettings = app.state.settings
    hotpath: HotPath = app.state.hotpath
    sealer = Sealer(
        hotpath.dsn,
        hotpath.role,
        float(settings.sealer_interval_seconds),
        statement_timeout_ms=settings.db_statement_timeout_ms,
    )
    app.state.sealer = sealer
    sealer.start()


async def stop_sealer(app: FastAPI) -> None:
    sealer: Sealer | None = getattr(app.state, "sealer", None)
    if sealer is not None:
        await sealer.stop()


# --- walking the stored chain -------------------------------------------------------------------


async def _sealed_batch(connection: Any, after: int, until: int, limit: int) -> list[tuple[Any, Any]]:
    """Seals with seq in (after, until], in seq order, each with its entry (None when it is gone)."""
    seals = await connection.fetch(SEALS_SQL, after, until, limit)
    if not seals:
        return []
    entries = {row["id"]: row for row in await connection.fetch(ENTRIES_SQL, [row["entry_id"] for row in seals])}
    return [(row, entries.get(row["entry_id"])) for row in seals]


def _feed(verifier: ChainVerifier, batch: Sequence[tuple[Any, Any]]) -> Mismatch | None:
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
    connection: Any, verifier: ChainVerifier, *, after: int, until: int, batch_size: int
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


async def _seal_before_reading(connection: Any, batch_size: int) -> SealRun:
    try:
        return await seal_run(connection, batch_size=batch_size)
    except ChainHalted as exc:  # the walk names the missing entry
        logger.error("sealing halted: %s", exc)
        return SealRun(0, None)


def _mark(row: Any) -> CheckpointMark:
    return CheckpointMark(row["day"], int(row["entry_id"]), str(row["chain_hash"]), int(row["entries"]))


class ChainHead(BaseModel):
    seq: int
    entry_id: int
    chain_hash: str


class SignedCheckpointRead(BaseModel):
    line: int = Field(description="Its line in the sink")
    day: date
    entry_id: int
    chain_hash: str
    entries: int
    kid: str = Field(description="The key that signed it (/.well-known/ledger-checkpoint-keys.json)")


class ExternalCheckpoints(BaseModel):
    """The signed checkpoints kept outside the database (VOUCHERS_CHECKPOINT_SINK)."""

    sink_configured: bool
    lines: int = Field(description="Lines in the sink")
    verified: int = Field(description="Lines whose signature verified; each was compared with the chain")
    latest: SignedCheckpointRead | None = Field(description="The furthest signed head")
    problems: list[str] = Field(description="Lines whose signature does not verify (any makes `ok` false)")


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


class VerifyReport(BaseModel):
    ok: bool
    entries_verified: int = Field(description="Entries whose seal and chain link were recomputed and matched")
    head: ChainHead | None = Field(description="The last seal when verification started")
    unsealed: int = Field(description="Entries not (yet) in the chain after sealing")
    first_mismatch: Mismatch | None
    sealed_now: int = Field(description="Entries this verification sealed first")
    external: ExternalCheckpoints = Field(description="The signed checkpoints outside the database, checked too")
    canonical: str = CANONICAL_VERSION


async def verify_ledger(
    connection: Any, *, batch_size: int = VERIFY_BATCH_SIZE, signed: SignedCheckpoints | None = None
) -> VerifyReport:
    """Seal, then recompute the whole chain from genesis and check every checkpoint against it:
    the stored ones and the signed ones of the sink (`signed`), which the database owner cannot rewrite."""
    run = await _seal_before_reading(connection, batch_size)
    # checkpoints before the head: each one names an entry at or below the head read next
    marks = [
        _mark(row)
        for row in await connection.fetch("SELECT day, entry_id, chain_hash, entries FROM vouchers.checkpoints")
    ]
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
    connection: Any, since: CheckpointMark | None, *, batch_size: int = VERIFY_BATCH_SIZE
) -> VerifiedHead | None:
    """Seal, then verify the chain from the last checkpoint (or genesis) to the head; None if empty."""
    await _seal_before_reading(connection, batch_size)
    head = await connection.fetchrow(LAST_SEAL_SQL)
    if head is None:
        return None
    after = 0
    verifier = ChainVerifier()
    if since is not None:
        start = await connection.fetchrow(
            "SELECT seq, chain_hash FROM vouchers.seals WHERE entry_id = $1", since.entry_id
        )
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


# --- HTTP ---------------------------------------------------------------------------------------

CHECKPOINT_EXISTS = ErrorCode(
    "checkpoint_exists",
    409,
    "{day} 的检查点已发布（每天一个），未做任何更改",
    "A checkpoint for {day} was already published (one a day); nothing was changed",
)
CHECKPOINT_OUT_OF_ORDER = ErrorCode(
    "checkpoint_out_of_order",
    409,
    "已有更晚日期（{latest}）的检查点，不能再发布 {day} 的检查点",
    "A checkpoint for a later day ({latest}) exists: one for {day} can no longer be published",
)
CHECKPOINT_DAY_IN_FUTURE = ErrorCode(
    "checkpoint_day_in_future",
    422,
    "检查点日期 {day} 晚于今天（{today}）",
    "The checkpoint day {day} is after today ({today})",
)
LEDGER_EMPTY = ErrorCode(
    "ledger_empty",
    409,
    "账本尚无已封存的条目，没有可发布的链头",
    "The ledger has no sealed entries yet: there is no head to publish",
)
CHAIN_BROKEN = ErrorCode(
    "chain_broken",
    409,
    "哈希链校验未通过（条目 {entry_id}：{reason}），未发布检查点",
    "The hash chain does not verify (entry {entry_id}: {reason}); no checkpoint was published",
)
CHECKPOINT_KEY_MISSING = ErrorCode(
    "checkpoint_key_missing",
    409,
    "未配置检查点签名密钥（VOUCHERS_CHECKPOINT_KEYS_DIR），未发布检查点",
    "No checkpoint signing key is configured (VOUCHERS_CHECKPOINT_KEYS_DIR); no checkpoint was published",
)
CHECKPOINT_SINK_INVALID = ErrorCode(
    "checkpoint_sink_invalid",
    409,
    "检查点存证文件第 {line} 行无法验证（{problem}），未发布检查点",
    "Line {line} of the checkpoint sink does not verify ({problem}); no checkpoint was published",
)
CHECKPOINT_SINK_UNAVAILABLE = ErrorCode(
    "checkpoint_sink_unavailable",
    503,
    "无法写入检查点存证文件，未发布检查点，请稍后重试",
    "The checkpoint could not be written to its sink; nothing was published, try again later",
)

NDJSON = "application/x-ndjson"
EXPORT_FORMAT = "longgang-vouchers-ledger"
EXPORT_VERSION = 1

router = APIRouter(tags=["ledger"])
#: Checking the ledger and publishing its head: auditors (and administrators).
Auditor = Annotated[Principal, require(AUDITOR, ADMIN)]


@contextlib.asynccontextmanager
async def _ledger_connection(request: Request, purpose: str) -> AsyncIterator[Any]:
    hotpath: HotPath = request.app.state.hotpath
    settings: VouchersSettings = request.app.state.settings
    connection = await connect(hotpath.dsn, hotpath.role, f"vouchers-{purpose}", settings.db_statement_timeout_ms)
    try:
        yield connection
    finally:
        await close_connection(connection)


class SealerStatus(BaseModel):
    enabled: bool
    interval_seconds: float
    runs: int
    sealed_total: int
    last_sealed: int
    last_run_at: datetime | None
    watermark: int | None = Field(description="Every committed entry of a transaction below this id is sealed")
    last_error: str | None


class SealLagRead(BaseModel):
    unsealed: int
    oldest_unsealed_at: datetime | None
    lag_seconds: float = Field(description="Age of the oldest entry without a seal (0 when none)")
    sealer: SealerStatus | None


class CheckpointRequest(Input):
    """The auditor who signs the checkpoint off is the caller (its token)."""

    day: date | None = Field(default=None, description="Default: today in Asia/Shanghai")


class CheckpointRead(BaseModel):
    id: int
    day: date
    entry_id: int
    chain_hash: str
    entries: int
    signed_off_by: str
    created_at: datetime


class PublishedCheckpoint(CheckpointRead):
    kid: str = Field(description="The key that signed it (/.well-known/ledger-checkpoint-keys.json)")
    signature: str = Field(description="Compact JWS (EdDSA) of the checkpoint: what the sink and the event carry")


def configure_checkpoints(app: FastAPI, settings: VouchersSettings) -> None:
    """The checkpoint signer (a configured directory without a key stops the service) and the sink."""
    directory = settings.checkpoint_keys_dir
    app.state.checkpoint_signer = None if directory is None else CheckpointSigner(directory)
    app.state.checkpoint_sink = settings.checkpoint_sink


async def read_sink(request: Request) -> SignedCheckpoints | None:
    """The sink's lines, each signature checked with the service's published keys (None: no sink)."""
    sink: Path | None = request.app.state.checkpoint_sink
    if sink is None:
        return None
    signer: CheckpointSigner | None = request.app.state.checkpoint_signer
    keys = {} if signer is None else public_keys_by_kid(signer.public_keys())
    return await asyncio.to_thread(read_signed, sink, keys)


@router.get(
    "/v1/ledger/verify",
    response_model=VerifyReport,
    summary="Recompute the hash chain from the entries; a report (200) whether or not it matches",
    dependencies=[require(AUDITOR, ADMIN)],
)
async def verify(request: Request) -> VerifyReport:
    signed = await read_sink(request)
    async with _ledger_connection(request, "verify") as connection:
        return await verify_ledger(connection, signed=signed)


@router.get(
    "/.well-known/ledger-checkpoint-keys.json",
    summary="The public keys that sign ledger checkpoints (JWKS; public, for auditors to keep a copy of)",
)
async def checkpoint_keys(request: Request) -> dict[str, Any]:
    signer: CheckpointSigner | None = request.app.state.checkpoint_signer
    return {"keys": []} if signer is None else signer.public_keys()


@router.get(
    "/v1/ledger/seal-lag",
    response_model=SealLagRead,
    summary="How far the sealer is behind (metrics)",
    dependencies=[require(AUDITOR, ADMIN)],
)
async def get_seal_lag(request: Request, session: SessionDep) -> SealLagRead:
    raw = await (await session.connection()).get_raw_connection()
    lag = await seal_lag(raw.driver_connection)
    sealer: Sealer | None = getattr(request.app.state, "sealer", None)
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


@router.post(
    "/v1/ledger/checkpoints",
    status_code=201,
    response_model=PublishedCheckpoint,
    summary="Publish the head of the chain for a day (verified since the previous checkpoint first), "
    "signed, written to the sink and to the change feed",
)
async def create_checkpoint(
    request: Request, moment: Now, principal: Auditor, payload: CheckpointRequest
) -> PublishedCheckpoint:
    today = local_today(moment)
    day = payload.day or today
    if day > today:
        raise ProblemError(CHECKPOINT_DAY_IN_FUTURE, day=day.isoformat(), today=today.isoformat())
    signer: CheckpointSigner | None = request.app.state.checkpoint_signer
    if signer is None:
        raise ProblemError(CHECKPOINT_KEY_MISSING)
    sink: Path | None = request.app.state.checkpoint_sink
    # one connection, one publisher at a time: the head published is the head verified, and
    # heads only move forward with the days; the INSERT commits before the answer is sent
    async with _ledger_connection(request, "checkpoint") as connection:
        await connection.execute("SELECT pg_advisory_lock($1)", CHECKPOINT_LOCK_KEY)
        try:
            latest = await connection.fetchrow(
                "SELECT day, entry_id, chain_hash, entries FROM vouchers.checkpoints ORDER BY day DESC LIMIT 1"
            )
            _refuse_day(day, None if latest is None else latest["day"])
            since = None if latest is None else _mark(latest)
            # continue from the furthest signed head outside the database: the stored one may be rewritten
            signed = await read_sink(request)
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
                "signed_off_by": principal.actor,
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
                    "INSERT INTO vouchers.checkpoints (day, entry_id, chain_hash, entries, signed_off_by) "
                    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (day) DO NOTHING "
                    f"RETURNING {CHECKPOINT_COLUMNS}",
                    day,
                    head.entry_id,
                    head.chain_hash,
                    head.entries,
                    principal.actor,
                )
                if row is not None:  # to the change feed and the platform's webhooks, in the same transaction
                    await emit(
                        connection,
                        "vouchers.ledger.checkpoint",
                        day.isoformat(),
                        {**checkpoint, "kid": signer.kid, "signature": signature},
                    )
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", CHECKPOINT_LOCK_KEY)
    if row is None:
        raise ProblemError(CHECKPOINT_EXISTS, day=day.isoformat())
    return PublishedCheckpoint.model_validate({**dict(row), "kid": signer.kid, "signature": signature})


@router.get(
    "/v1/ledger/checkpoints",
    response_model=Page[CheckpointRead],
    summary="Published checkpoints, oldest first",
    dependencies=[require(AUDITOR, ADMIN)],
)
async def list_checkpoints(
    session: SessionDep, page: Annotated[PageParams, Depends(page_params)]
) -> Page[CheckpointRead]:
    after = decode_cursor("checkpoints", page.cursor) if page.cursor else 0
    rows = (
        await session.execute(
            select(Checkpoint).where(Checkpoint.id > after).order_by(Checkpoint.id).limit(page.limit + 1)
        )
    ).scalars()
    items = [CheckpointRead.model_validate(row, from_attributes=True) for row in rows]
    return make_page("checkpoints", items, page.limit, lambda item: item.id)


def _line(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode()


def _head_json(head: Any) -> dict[str, Any] | None:
    if head is None:
        return None
    return {"seq": int(head["seq"]), "entry_id": int(head["entry_id"]), "chain_hash": str(head["chain_hash"])}


async def _export_lines(
    connection: Any, head: Any, unsealed: int, with_checkpoints: bool, batch_size: int
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
            rows = await connection.fetch(
                f"SELECT {', '.join('c.' + c for c in CHECKPOINT_COLUMNS.split(', '))} FROM vouchers.checkpoints c "
                "LEFT JOIN vouchers.seals s ON s.entry_id = c.entry_id "
                "WHERE s.seq IS NULL OR s.seq <= $1 ORDER BY c.day",
                until,
            )
            for row in rows:
                yield _line({"type": "checkpoint", **CheckpointRead.model_validate(dict(row)).model_dump(mode="json")})
        yield _line({"type": "end", "entries": count, "head": _head_json(head)})
    finally:
        await close_connection(connection)


@router.get(
    "/v1/ledger/export",
    response_class=StreamingResponse,
    summary="Stream the sealed entries with their seals as NDJSON (check with `python -m services.vouchers.verify`)",
    responses={200: {"content": {NDJSON: {}}, "description": "header, entries in seq order, checkpoints, end"}},
    dependencies=[require(AUDITOR, ADMIN, PLATFORM)],
)
async def export(
    request: Request,
    checkpoints: Annotated[bool, Query(description="Add the published checkpoints after the entries")] = True,
) -> StreamingResponse:
    settings: VouchersSettings = request.app.state.settings
    hotpath: HotPath = request.app.state.hotpath
    connection = await connect(hotpath.dsn, hotpath.role, "vouchers-export", settings.db_statement_timeout_ms)
    try:
        await _seal_before_reading(connection, SEAL_BATCH_SIZE)
        head = await connection.fetchrow(LAST_SEAL_SQL)
        lag = await seal_lag(connection)
    except BaseException:
        connection.terminate()
        raise
    day = local_today(datetime.now(UTC)).isoformat()
    return StreamingResponse(
        _export_lines(connection, head, lag.unsealed, checkpoints, VERIFY_BATCH_SIZE),
        media_type=NDJSON,
        headers={"Content-Disposition": f'attachment; filename="vouchers-ledger-{day}.ndjson"'},
    )
