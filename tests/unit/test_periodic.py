"""shared/periodic.py: the loop of the sealer, the projector, the reconcilers, the dispatcher and the audit writer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from shared.periodic import BelowWatermark, OnOwnConnection, Periodic


class Counting(Periodic):
    name = "counting"

    def __init__(self, interval: float, fail_first: int) -> None:
        super().__init__(interval)
        self.rounds = 0
        self.fail_first = fail_first
        self.failures: list[str] = []

    async def round(self) -> None:
        self.rounds += 1
        if self.rounds <= self.fail_first:
            raise RuntimeError(f"round {self.rounds}")

    def failed(self, exc: Exception) -> None:
        self.failures.append(str(exc))


async def test_rounds_go_on_after_failures_and_stop_when_stopped() -> None:
    job = Counting(0.001, fail_first=2)
    await job.start()
    for _ in range(500):
        if job.rounds >= 5:
            break
        await asyncio.sleep(0.001)
    await job.stop()
    assert job.rounds >= 5
    assert job.failures == ["round 1", "round 2"]
    rounds = job.rounds
    await asyncio.sleep(0.01)
    assert job.rounds == rounds  # stopped


class LosesOneCancellation(Periodic):
    """A round that loses the first cancellation, as Python 3.11's `asyncio.wait_for` can (the inner result wins)."""

    name = "loses-one-cancellation"

    def __init__(self) -> None:
        super().__init__(0.001)
        self.rounds = 0
        self.lost = False

    async def round(self) -> None:
        self.rounds += 1
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if self.lost:
                raise
            self.lost = True


async def test_stop_ends_a_loop_whose_cancellation_was_lost() -> None:
    """Awaiting the task once after one cancel waited for good: the loop went on to its next round and paused."""
    job = LosesOneCancellation()
    await job.start()
    for _ in range(500):
        if job.rounds:
            break
        await asyncio.sleep(0.001)
    stopping = asyncio.ensure_future(job.stop())
    done, _ = await asyncio.wait({stopping}, timeout=3)  # the second round sleeps 10 s; a cancel every 0.5 s
    if not done:  # (not asyncio.wait_for: cancelling `stop()` cancels the loop it awaits, and ends it that way)
        stopping.cancel()
    assert done, "stop() still waiting on a loop whose cancellation was lost"
    assert job.lost
    rounds = job.rounds
    await asyncio.sleep(0.01)
    assert job.rounds == rounds  # stopped


async def test_an_interval_of_zero_never_starts() -> None:
    job = Counting(0, fail_first=0)
    await job.start()
    await asyncio.sleep(0.01)
    assert job.rounds == 0
    assert not job.enabled


class Dropped:
    terminated = False

    def terminate(self) -> None:
        self.terminated = True


def test_a_failure_on_its_own_connection_is_said_once_per_kind_and_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = OnOwnConnection("postgresql://unused", "", 0.5, statement_timeout_ms=1000)
    job.max_backoff_seconds = 30.0
    connection = Dropped()
    job._connection = connection
    with caplog.at_level(logging.ERROR, logger="shared.periodic"):
        job.failed(RuntimeError("down"))
        job.failed(RuntimeError("down"))
        job.failed(ValueError("other"))
    assert [record.getMessage() for record in caplog.records] == [
        "periodic failed: RuntimeError: down",
        "periodic failed: ValueError: other",
    ]
    assert connection.terminated
    assert job._connection is None
    assert job.last_error == "ValueError: other"
    assert [job.pause(n) for n in (0, 1, 2, 6, 7)] == [0.5, 1.0, 2.0, 30.0, 30.0]
    job.succeeded()
    assert job.last_error is None


class Waking(Periodic):
    """Rounds that report more work waiting, and one that blocks until released."""

    name = "waking"

    def __init__(self, interval: float) -> None:
        super().__init__(interval)
        self.rounds = 0
        self.more = 0
        self.release = asyncio.Event()
        self.block = False
        self.finished_rounds = 0

    async def round(self) -> bool:
        self.rounds += 1
        if self.block:
            await self.release.wait()
            self.finished_rounds += 1
        if self.more:
            self.more -= 1
            return True
        return False


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("not reached")


async def test_more_waiting_means_the_next_round_at_once_and_wake_ends_the_pause() -> None:
    job = Waking(3600)
    job.more = 3
    await job.start()
    await _until(lambda: job.rounds == 4)  # the first, then three at once (each said more is waiting)
    await asyncio.sleep(0.01)
    assert job.rounds == 4  # now pausing for an hour
    job.wake()
    await _until(lambda: job.rounds == 5)
    await job.stop()


async def _in_its_first_round(drain_seconds: float | None) -> Waking:
    """A job whose first round waits until `release` is set."""
    job = Waking(3600)
    job.drain_seconds = drain_seconds
    job.block = True
    await job.start()
    await _until(lambda: job.rounds == 1)
    return job


async def test_without_drain_stop_cancels_the_round_in_progress() -> None:
    job = await _in_its_first_round(None)
    await asyncio.wait_for(job.stop(), 1)
    assert job.finished_rounds == 0


async def test_with_drain_stop_lets_the_round_in_progress_finish_and_ends_the_loop() -> None:
    job = await _in_its_first_round(5)
    stopping = asyncio.create_task(job.stop())
    await asyncio.sleep(0.01)
    assert not stopping.done()  # waits for the round
    job.release.set()
    await asyncio.wait_for(stopping, 1)
    assert (job.rounds, job.finished_rounds) == (1, 1)  # no round after it


async def test_with_drain_a_round_that_hangs_is_cancelled_after_drain_seconds() -> None:
    job = await _in_its_first_round(0.05)
    await asyncio.wait_for(job.stop(), 1)
    assert job.finished_rounds == 0


async def test_with_drain_a_pausing_loop_runs_one_more_round_then_ends() -> None:
    job = Waking(3600)
    job.drain_seconds = 5
    job.delay_first = True
    await job.start()
    await asyncio.sleep(0.01)
    assert job.rounds == 0  # the first round waits for one pause
    await asyncio.wait_for(job.stop(), 1)
    assert job.rounds == 1
    await job.start()  # and it starts again
    job.wake()
    await _until(lambda: job.rounds == 2)
    await job.stop()


class Watermarks:
    """A connection whose watermark is whatever the test sets."""

    def __init__(self) -> None:
        self.xmin = 10

    async def fetchval(self, sql: str) -> int:
        return self.xmin


class Folding(BelowWatermark):
    watermark_sql = "SELECT xmin"

    def __init__(self) -> None:
        super().__init__("postgresql://unused", "", 1)
        self.calls = 0

    async def run(self, connection: Any) -> tuple[int, int | None]:
        self.calls += 1
        return 3, connection.xmin


async def test_below_the_watermark_a_round_is_skipped_until_the_watermark_moves() -> None:
    job, connection = Folding(), Watermarks()
    assert await job.run_once(connection) == 3
    assert await job.run_once(connection) == 0  # the watermark has not moved: run not called
    connection.xmin = 11
    assert await job.run_once(connection) == 3
    assert (job.calls, job.runs, job.done_total, job.done_last, job.watermark) == (2, 2, 6, 3, 11)
    assert job.last_run_at is not None
