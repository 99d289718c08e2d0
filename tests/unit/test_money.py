"""Money is integer fen; subsidies round down (docs/policy.md, Money)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.money import apply_ratio, cap, fen, format_yuan, wan_yuan, yuan


def test_ratios_round_down_to_the_fen() -> None:
    # M3-4: 30% of a 333.33 contract is 99.999 → 99.99
    assert apply_ratio(yuan("333.33"), Decimal("0.30")) == 9_999
    assert apply_ratio(1, "0.99") == 0
    assert apply_ratio(1_000_000_000, "0.3") == 300_000_000


def test_units() -> None:
    assert yuan("1.01") == 101
    assert wan_yuan(500) == 500_000_000  # 500万元 = 5,000,000 yuan
    assert cap(7, 5) == 5
    assert format_yuan(123_456_789) == "1,234,567.89"
    assert format_yuan(-5) == "-0.05"


@pytest.mark.parametrize("bad", [1.5, "0.001", "abc"])
def test_no_floats_no_fractions_of_a_fen(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        yuan(bad)  # type: ignore[arg-type]


def test_fen_refuses_non_integers() -> None:
    with pytest.raises(TypeError):
        fen(True)
    with pytest.raises(TypeError):
        fen(1.0)  # type: ignore[arg-type]
