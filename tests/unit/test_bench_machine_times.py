"""bench.profile.machine_times: the whole machine's CPU time, which the eligibility benchmark reports with its rate
(how busy the machine was, how much of its time the hypervisor gave to other guests)."""

import math
import os
import time

import pytest

from bench import profile


def test_machine_times_grow_and_add_up() -> None:
    started = time.monotonic()
    first = profile.machine_times()
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:  # some work of our own, counted as busy
        pass
    second = profile.machine_times()
    assert second.busy > first.busy
    assert second.total > first.total
    assert second.steal >= first.steal
    assert second.busy + second.steal <= second.total
    # no more time passed on the machine than on every core's clock (a tick of slack each)
    cores = os.cpu_count() or 1
    assert second.total - first.total <= (time.monotonic() - started + 0.02) * cores


def test_parallel_yield_is_the_median_of_its_comparisons(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each comparison: two spinners' count over the mean of one spinner's just before and just after."""
    counts = iter([100, 150, 100, 100, 190, 300, 200, 170, 100])  # before, together, after; three times
    monkeypatch.setattr(profile, "_spin", lambda processes, seconds: next(counts))
    # 150/100, 190/200, 170/150: the median is 170/150 (one side alone, or a mean of the ratios, would give another)
    assert profile.parallel_yield(0.0, repeats=3) == pytest.approx(170 / 150)


def test_parallel_yield_runs_real_spinners() -> None:
    """Two real spinners and one: some work counted on each side (the ratio itself depends on the machine's load,
    the suite's other worker included)."""
    found = profile.parallel_yield(0.05, repeats=1)
    assert math.isfinite(found)
    assert found > 0
