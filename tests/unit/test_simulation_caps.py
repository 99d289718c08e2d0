"""The what-if's annual-cap ledger (services/eligibility/simulation.py `_take_caps`), without I/O.

The rules already give an application the year's total less what the earlier ones got; the
ledger is what the register's conditional UPDATE would do on top: an award never takes more of
a cap than the year's earlier applications left, whatever the rule computed.
"""

from __future__ import annotations

from services.eligibility.rules.claims import Cap
from services.eligibility.simulation import _take_caps

M5_CAP = Cap("M5.annual", 2025, 300_000, ("subsidy",)).as_dict()
M1_CAPS = (
    Cap("M1.class_cap", 2025, 1_000, ("capped",)).as_dict(),
    Cap("M1.major_project_extra", 2025, 500, ("major_project_extra",)).as_dict(),
)


def test_an_award_gets_only_what_the_earlier_ones_left_of_the_cap() -> None:
    used = {("M5.annual", 2025): 250_000}
    amount, components, cuts = _take_caps(100_000, {"subsidy": 100_000}, (M5_CAP,), used)
    assert (amount, components) == (50_000, {"subsidy": 50_000})
    assert [(cut["kind"], cut["room_fen"], cut["cut_fen"]) for cut in cuts] == [("M5.annual", 50_000, 50_000)]
    assert used == {("M5.annual", 2025): 300_000}
    nothing_left = _take_caps(10, {"subsidy": 10}, (M5_CAP,), used)
    assert nothing_left[:2] == (0, {"subsidy": 0})


def test_within_the_cap_nothing_is_cut_and_each_cap_counts_its_own_components() -> None:
    used: dict[tuple[str, int], int] = {("M1.class_cap", 2025): 900}
    amount, components, cuts = _take_caps(400, {"capped": 100, "major_project_extra": 300}, M1_CAPS, used)
    assert (amount, components, cuts) == (400, {"capped": 100, "major_project_extra": 300}, [])
    assert used == {("M1.class_cap", 2025): 1_000, ("M1.major_project_extra", 2025): 300}
    amount, components, cuts = _take_caps(500, {"capped": 200, "major_project_extra": 300}, M1_CAPS, used)
    assert (amount, components) == (200, {"capped": 0, "major_project_extra": 200})
    assert [cut["kind"] for cut in cuts] == ["M1.class_cap", "M1.major_project_extra"]
