"""bench.profile.machine_times: the whole machine's CPU time, which the eligibility benchmark reports with its rate
(how busy the machine was, how much of its time the hypervisor gave to other guests)."""

import os
import time

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


def test_parallel_yield_compares_two_spinners_with_one() -> None:
    """A ratio of the two spinners' work to one's: between half (the suite's other worker busy on the same cores)
    and a little over two; a spinner that counted nothing, or one process counted as two, falls outside."""
    found = profile.parallel_yield(0.1, repeats=1)
    assert 0.5 < found < 2.5
