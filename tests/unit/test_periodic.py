"""shared/periodic.py: the loop the sealer, the projector and the reconcilers share."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.periodic import OnOwnConnection, Periodic


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
    job.start()
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


async def test_an_interval_of_zero_never_starts() -> None:
    job = Counting(0, fail_first=0)
    job.start()
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
