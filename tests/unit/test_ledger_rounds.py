"""bench/ledger_rounds.py's arithmetic: the rounds' rotating order and the medians of per-round ratios."""

from __future__ import annotations

import math
from itertools import permutations

from bench.ledger_bench import CpuUse
from bench.ledger_rounds import IDLE, KINDS, median, median_ratio, per_operation, round_order, round_ratios


def test_the_first_rounds_run_in_the_order_the_method_describes() -> None:
    assert round_order(1) == ["pgbench", "one", "two"]
    assert round_order(2) == ["two", "one", "pgbench"]
    assert round_order(3) == ["one", "two", "pgbench"]


def test_six_rounds_hold_every_order_once_and_each_kind_twice_at_each_place() -> None:
    orders = [tuple(round_order(n)) for n in range(1, 7)]
    assert sorted(orders) == sorted(permutations(KINDS))
    for place in range(len(KINDS)):
        assert sorted(order[place] for order in orders) == sorted(KINDS * 2)
    assert round_order(7) == round_order(1)


def test_the_ratio_is_the_median_of_each_rounds_own_ratio() -> None:
    # the machine slows down by half in round 2: the rates move, the ratios do not
    rounds = [
        {"pgbench": 1000.0, "one": 900.0, "two": 1100.0},
        {"pgbench": 500.0, "one": 450.0, "two": 550.0},
        {"pgbench": 800.0, "one": 880.0, "two": 880.0},
    ]
    assert round_ratios(rounds, "one", "pgbench") == [0.9, 0.9, 1.1]
    assert math.isclose(median_ratio(rounds, "one", "pgbench"), 0.9)
    assert math.isclose(median_ratio(rounds, "two", "one"), 1.1 / 0.9)
    # not the ratio of the medians of the rates, which mixes moments
    assert median([900.0, 450.0, 880.0]) / median([1000.0, 500.0, 800.0]) != median_ratio(rounds, "one", "pgbench")


def test_rounds_without_both_kinds_or_with_nothing_to_divide_by_are_left_out() -> None:
    rounds = [{"pgbench": 0.0, "one": 900.0}, {"one": 800.0}, {"pgbench": 1000.0, "one": 1200.0}]
    assert round_ratios(rounds, "one", "pgbench") == [1.2]
    assert math.isnan(median_ratio([], "two", "one"))
    assert math.isnan(median([math.nan]))
    assert median([1.0, math.nan, 3.0]) == 2.0


def test_cpu_per_operation_adds_the_groups_named() -> None:
    cpu = CpuUse(wall=2.0, groups={"vouchers": 1.0, IDLE: 0.2, "postgres": 0.5})
    assert math.isclose(per_operation(cpu, 1000.0, "vouchers", IDLE), 600.0)  # 1.2 s / 2,000
    assert math.isclose(per_operation(cpu, 1000.0, "postgres"), 250.0)
    assert math.isnan(per_operation(CpuUse(), 1000.0, "vouchers"))
