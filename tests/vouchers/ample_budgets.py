"""A budget file with room for every claim the session's shared ledger makes.

Since budgets are ceilings (A2), the shipped placeholders (5,000,000,000 fen a year for M3) are
less than the suite's tests claim together on the one `vouchers_database` of a session; those
tests are not about budgets. Budgets themselves are tested on files of their own
(tests/vouchers/test_budget_ceilings.py).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import yaml

AMPLE_FEN = 10**15  # ten trillion yuan a year per measure: never reached by a test
YEARS = range(2000, 2101)  # whatever the clock says


def ample_budget_file(directory: Path) -> Path:
    measures = {
        f"M{n}": {
            "clause": "A2",
            "label": {"zh": f"措施 {n}", "en": f"Measure {n}"},
            "history": [
                {
                    "year": year,
                    "budget_fen": AMPLE_FEN,
                    "effective_from": date(2000, 1, 1),
                    "status": "interpretation",
                    "source": "tests: room for every claim (budgets are tested on their own files)",
                }
                for year in YEARS
            ],
        }
        for n in range(1, 14)
    }
    path = directory / "ample_budgets.yaml"
    document = {"version": "tests-ample", "published": date(2000, 1, 1), "budgets": measures}
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path
