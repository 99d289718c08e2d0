"""Group commit: the vendor calls a process gathers while its ledger calls are busy go as one (issue #16).

A redemption is one SQL function call and one transaction; on two cores PostgreSQL spends about
as much per call as on a TPC-B transaction, most of it on the transaction itself (snapshot,
commit, WAL flush) and the round trip. So each process runs its ledger calls in `in_flight` lanes,
one call at a time per lane. A call that finds its lane free and nobody waiting in it goes alone, as
before (the per-request path: no added latency when the service is quiet). A call that finds its
lane busy waits; when the lane frees, everything waiting in it (at most `max_batch`) goes as one
call of `vouchers.ledger_batch()`: one round trip, one transaction, one commit. The batch is ordered
by voucher code, then arrival (deterministic; two batches lock vouchers in the same order), and each
call is answered by the very function its own call would run, so the answers are the same: same
codes, same idempotent replays, and a refusal is an answer that changes nothing and never
affects another call. A batch of plain M3 redemptions each sure to be answered 201 is written set by
set instead (`vouchers.ledger_captures()`: the same rows and answers, one statement per table).

A call's lane is chosen by its voucher's holder (`crc32(holder) % in_flight`, the same in every
process): a redemption changes its voucher's row and its holder's M3 ceiling row and holds both
until its commit is flushed, so calls of one enterprise wait for each other in any case, and two
lanes' batches touch different rows and run side by side instead of one waiting for the other's
commit. The holder of a code is read once per process (a voucher's holder never changes) and kept;
a code that names no voucher, or a read that fails, takes a lane by the code itself. A capture or
release takes its hold's holder's lane too (one read by the hold's id, not kept: a hold is finished once; a hold
that is not there, or a read that fails, takes a lane by its id). The lane only decides who waits for whom: the
locks are the database's, so a call in the "wrong" lane is slower, never wrong.

Lanes keep one process's batches apart; two processes' batches of the same lane still share enterprises, and
one waits for the rows the other holds until it commits. With `defer` (`VOUCHERS_GROUP_COMMIT_DEFER`, off by
default) a batch skips those rows instead (`vouchers.ledger_batch(…, p_defer)`): the calls that need one are
not run (nothing of them is written) and wait for the lane's next batch, which includes them first and waits
for its rows as before. A call is deferred at most once. (Measured in rounds of one and two processes, deferring
cost two processes more CPU per redemption than waiting: docs/benchmarks.md.)

The batch locks every call's Idempotency-Key (an advisory lock), then every voucher row it will change,
then every ceiling row, each in one order (`vouchers.ledger_batch()`), as a single call does, so batches
do not deadlock with each other or with single calls (a vendor's retry of a call in a batch included). A
batch that fails for a reason that is not a refusal (a lost connection) rolled back as a whole, so
nothing of it was written: each of its calls is then answered on its own, by the per-request path (which
replays by Idempotency-Key if the batch had in fact committed before the connection was lost). A process
killed mid-batch leaves either the whole batch or none of it, and only a committed batch was answered.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from shared.context import request_id_var
from shared.instants import local_today

from ..metrics import count_batch, count_ledger_calls
from ..pool import LedgerPool
from . import repository

logger = logging.getLogger("services.vouchers.redemptions.group_commit")

#: how long stopping waits for the batches in flight
DRAIN_SECONDS = 5.0
#: a call alone that PostgreSQL rolled back (a deadlock with another process's batch) is tried this often
ROLLBACK_RETRIES = 3

#: a voucher's holder, which decides the lane of its calls
HOLDER_SQL = "SELECT holder FROM vouchers.vouchers WHERE code = $1"
#: a hold's holder, which decides the lane of its capture or release
HOLD_HOLDER_SQL = (
    "SELECT v.holder FROM vouchers.redemptions r JOIN vouchers.vouchers v ON v.id = r.voucher_id WHERE r.id = $1"
)
#: how long the lane waits for that read before taking a lane by the code (a database that does not answer)
HOLDER_TIMEOUT_SECONDS = 0.5
#: voucher codes whose holder a process keeps (then it starts again: a read per code)
HOLDERS_KEPT = 100_000
#: `vouchers.ledger_batch()`'s status for a call it did not run because another transaction holds a row it needs
DEFERRED = 0

BATCH_SQL = (
    "SELECT ord, status_code, body FROM vouchers.ledger_batch("
    "$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::int[], "
    "$10::bigint[], $11::text[], $12::timestamptz[], $13::date[], $14::text[], $15::boolean)"
)


@dataclass(frozen=True, slots=True)
class Redemption:
    """A redemption, or a hold when `hold_seconds` is set (`vouchers.redeem()`)."""

    vendor: str
    key: str
    digest: str
    now: datetime
    request_id: str
    code: str
    amount_fen: int
    invoice_number: str
    contract_number: str | None
    hold_seconds: int | None

    @property
    def order(self) -> str:
        """Where the call goes in its batch: vouchers in code order."""
        return self.code


@dataclass(frozen=True, slots=True)
class Finish:
    """A hold captured or released by its vendor (`vouchers.finish_hold()`)."""

    vendor: str
    key: str
    digest: str
    now: datetime
    request_id: str
    redemption_id: int
    action: str

    @property
    def order(self) -> str:
        """After the redemptions, by hold (`~` sorts after every voucher code)."""
        return f"~{self.redemption_id:020d}"


Call = Redemption | Finish
Answer = tuple[int, str]


class Lane:
    """Ledger calls that wait for each other: one in flight at a time, what waits meanwhile goes as one batch."""

    __slots__ = ("busy", "deferred", "waiting")

    def __init__(self) -> None:
        self.busy = False
        self.waiting: list[tuple[Call, asyncio.Future[Answer]]] = []
        #: calls deferred once (their futures): a batch that holds one waits for its rows
        self.deferred: set[asyncio.Future[Answer]] = set()


class GroupCommit:
    """The process's ledger calls: one at a time per lane, `in_flight` lanes, and what waits goes as one batch."""

    def __init__(
        self, ledger: LedgerPool, *, enabled: bool, in_flight: int, max_batch: int, defer: bool = True
    ) -> None:
        self.ledger = ledger
        self.enabled = enabled
        self.defer = defer
        self.slots = in_flight
        self.max_batch = max_batch
        self.lanes = [Lane() for _ in range(in_flight)]
        #: voucher code → its holder (a voucher's holder never changes); bounded by HOLDERS_KEPT
        self.holder_of_code: dict[str, str] = {}
        #: one read of holders at a time: a burst of new codes takes one connection, not the pool
        self.reading_holders = asyncio.Lock()
        self.batches: set[asyncio.Task[None]] = set()
        #: counters for the benchmark and the tests: calls answered alone, in batches, and batches that fell back
        self.singles = 0
        self.batched = 0
        self.fallbacks = 0
        self.deferrals = 0

    @property
    def busy(self) -> int:
        """Lanes with a ledger call in flight."""
        return sum(lane.busy for lane in self.lanes)

    @property
    def waiting(self) -> list[tuple[Call, asyncio.Future[Answer]]]:
        """Every call waiting for its lane, lane by lane."""
        return [pair for lane in self.lanes for pair in lane.waiting]

    async def call(self, call: Call) -> Answer:
        """The ledger's answer to one vendor call (its status code and JSON body)."""
        if not self.enabled:
            self.singles += 1
            count_ledger_calls("alone")
            return await self._single(call)
        lane = self.lanes[await self._lane(call)] if len(self.lanes) > 1 else self.lanes[0]
        if not lane.busy and not lane.waiting:
            lane.busy = True
            try:
                self.singles += 1
                count_ledger_calls("alone")
                return await self._single(call)
            finally:
                self._freed(lane)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        lane.waiting.append((call, future))
        self._dispatch(lane)
        return await future

    async def drain(self) -> None:
        """On stop: let the batches in flight finish (bounded), so none is cut off by the pool closing."""
        if self.batches:
            await asyncio.wait(self.batches, timeout=DRAIN_SECONDS)

    async def _lane(self, call: Call) -> int:
        """The call's lane: its voucher's holder's (read once per code), a hold's holder's (read per call)."""
        if isinstance(call, Finish):
            holder = await self._holder(HOLD_HOLDER_SQL, call.redemption_id)
            if holder is None:  # no such hold (the call answers 404), or not read
                return call.redemption_id % len(self.lanes)
            return self.lane_of_holder(holder)
        holder = self.holder_of_code.get(call.code) or await self._holder(HOLDER_SQL, call.code, code=call.code)
        if holder is None:  # no such voucher (the call answers 404), or not read
            return zlib.crc32(call.code.encode()) % len(self.lanes)
        return self.lane_of_holder(holder)

    def lane_of_holder(self, holder: str) -> int:
        """An enterprise's lane, the same in every process."""
        return zlib.crc32(holder.encode()) % len(self.lanes)

    async def _holder(self, sql: str, key: str | int, code: str | None = None) -> str | None:
        """The holder `sql` reads for `key` (None: none, or not read in time), one such read at a time per process
        so that a burst of new codes takes one connection, not the pool; a voucher's (`code`) is kept."""
        try:
            async with asyncio.timeout(HOLDER_TIMEOUT_SECONDS):  # the turn, a connection, then the read
                async with self.reading_holders:
                    holder = self.holder_of_code.get(code) if code is not None else None  # read by the call before
                    if holder is None:
                        holder = await self.ledger.ready.fetchval(sql, key)
        except (TimeoutError, PoolTimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            # the call itself will say what is wrong
            logger.debug("the holder of a call was not read (%s): a lane by its key", exc)
            return None
        if code is not None and holder is not None:
            if len(self.holder_of_code) >= HOLDERS_KEPT:
                self.holder_of_code.clear()
            self.holder_of_code[code] = holder
        return None if holder is None else str(holder)

    def _freed(self, lane: Lane) -> None:
        lane.busy = False
        self._dispatch(lane)

    def _dispatch(self, lane: Lane) -> None:
        """Send what waits in a free lane as one batch."""
        if lane.waiting and not lane.busy:
            taken, lane.waiting = lane.waiting[: self.max_batch], lane.waiting[self.max_batch :]
            lane.busy = True
            task = asyncio.get_running_loop().create_task(self._run(lane, taken))
            self.batches.add(task)
            task.add_done_callback(self.batches.discard)

    async def _run(self, lane: Lane, taken: list[tuple[Call, asyncio.Future[Answer]]]) -> None:
        freed = False
        try:
            taken.sort(key=lambda pair: pair[0].order)  # stable: arrival order within a voucher
            defer = self.defer and not any(future in lane.deferred for _, future in taken)
            try:
                answers = await self._batch([call for call, _ in taken], defer) if len(taken) > 1 else None
            except PoolTimeoutError as exc:  # no connection within the pool's timeout: nothing sent; each call says so
                count_batch("failed")
                logger.warning("a batch of %d ledger calls found no connection: %s", len(taken), exc)
                for _, future in taken:
                    lane.deferred.discard(future)
                    if not future.done():
                        future.set_exception(exc)
                return
            except Exception as exc:  # not a refusal (those are answers): nothing of the batch was written
                self.fallbacks += 1
                count_batch("failed")
                logger.warning("a batch of %d ledger calls failed (%s): answered one by one", len(taken), exc)
                answers = None
            if answers is not None:
                count_batch("ok")
                again: list[tuple[Call, asyncio.Future[Answer]]] = []
                answered: list[tuple[asyncio.Future[Answer], Answer]] = []
                for (call, future), answer in zip(taken, answers, strict=True):
                    lane.deferred.discard(future)
                    if answer[0] == DEFERRED:  # nothing of it written: first in the lane's next batch
                        lane.deferred.add(future)
                        again.append((call, future))
                    else:
                        answered.append((future, answer))
                lane.waiting[:0] = again
                self.deferrals += len(again)
                self.batched += len(answered)
                count_ledger_calls("batched", len(answered))
                if again:
                    count_ledger_calls("deferred", len(again))
                # the lane's next batch is started before these answers are written: its task runs first, so
                # PostgreSQL works on it while this process writes the responses (they are the same either way)
                freed = True
                self._freed(lane)
                for future, answer in answered:
                    if not future.done():
                        future.set_result(answer)
                return
            for call, future in taken:  # alone, or after a failed batch: the per-request path, in order
                lane.deferred.discard(future)
                try:
                    answer = await self._single(call)
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                else:
                    self.singles += 1
                    count_ledger_calls("alone" if len(taken) == 1 else "after_failed_batch")
                    if not future.done():
                        future.set_result(answer)
        except BaseException as exc:  # a bug, or cancelled (the app stopping): no caller is left waiting
            queued = {id(future) for _, future in lane.waiting}
            for _, future in taken:
                if not future.done() and id(future) not in queued:
                    if isinstance(exc, Exception):
                        future.set_exception(exc)
                    else:
                        future.cancel()
            raise
        finally:
            if not freed:
                self._freed(lane)

    async def _single(self, call: Call) -> Answer:
        """A call alone. A deadlock or serialization failure rolled its transaction back whole: tried again, up to
        ROLLBACK_RETRIES attempts in all; the last one's rollback is raised."""
        for attempt in range(1, ROLLBACK_RETRIES):
            try:
                return await self._once(call)
            except asyncpg.TransactionRollbackError:
                logger.warning("a ledger call was rolled back by PostgreSQL (attempt %d): tried again", attempt)
        return await self._once(call)

    async def _once(self, call: Call) -> Answer:
        pool = self.ledger.ready
        token = request_id_var.set(call.request_id)
        try:
            if isinstance(call, Finish):
                return await repository.finish_hold(
                    pool,
                    vendor=call.vendor,
                    key=call.key,
                    digest=call.digest,
                    redemption_id=call.redemption_id,
                    action=call.action,
                    now=call.now,
                )
            return await repository.redeem(
                pool,
                vendor=call.vendor,
                key=call.key,
                digest=call.digest,
                code=call.code,
                amount_fen=call.amount_fen,
                invoice_number=call.invoice_number,
                contract_number=call.contract_number,
                hold_seconds=call.hold_seconds,
                now=call.now,
            )
        finally:
            request_id_var.reset(token)

    async def _batch(self, calls: list[Call], defer: bool) -> list[Answer]:
        redemptions = [call if isinstance(call, Redemption) else None for call in calls]
        finishes = [call if isinstance(call, Finish) else None for call in calls]
        rows = await self.ledger.ready.fetch(
            BATCH_SQL,
            ["finish" if isinstance(call, Finish) else "redeem" for call in calls],
            [call.vendor for call in calls],
            [call.key for call in calls],
            [call.digest for call in calls],
            [r.code if r else None for r in redemptions],
            [r.amount_fen if r else None for r in redemptions],
            [r.invoice_number if r else None for r in redemptions],
            [r.contract_number if r else None for r in redemptions],
            [r.hold_seconds if r else None for r in redemptions],
            [f.redemption_id if f else None for f in finishes],
            [f.action if f else None for f in finishes],
            [call.now for call in calls],
            [local_today(call.now) for call in calls],
            [call.request_id for call in calls],
            defer,
        )
        if len(rows) != len(calls):  # the function answers every call: anything else is not an answer
            raise RuntimeError(f"ledger_batch answered {len(rows)} of {len(calls)} calls")
        return [
            (int(row["status_code"]), str(row["body"]) if row["status_code"] != DEFERRED else "")
            for row in sorted(rows, key=lambda row: row["ord"])
        ]
