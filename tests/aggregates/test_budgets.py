"""The budget file (clause A2): the shipped one loads, a bad one is refused naming the file and the key."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.vouchers.app import create_app
from services.vouchers.policy.budgets import DEFAULT_FILE, BudgetFileError, load_budget_file, parse_budget_document
from services.vouchers.settings import VouchersSettings


def good() -> dict[str, Any]:
    return {
        "version": "t1",
        "published": date(2026, 11, 27),
        "budgets": {
            "M1": {
                "clause": "A2",
                "label": {"zh": "算力券", "en": "Compute vouchers"},
                "history": [
                    {
                        "year": 2026,
                        "budget_fen": 100,
                        "effective_from": date(2026, 1, 1),
                        "status": "provisional",
                        "source": "placeholder",
                    },
                    {
                        "year": 2026,
                        "budget_fen": 150,
                        "effective_from": date(2026, 7, 1),
                        "status": "given",
                        "source": "the bureau's mid-year adjustment",
                    },
                ],
            }
        },
    }


def test_the_shipped_file_gives_every_measure_a_provisional_budget_for_each_year() -> None:
    budgets = load_budget_file()
    assert budgets.measures() == [f"M{n}" for n in range(1, 14)]
    for measure in budgets.measures():
        for year in (2024, 2025, 2026, 2027):
            figure = budgets.budget(measure, year, date(2026, 11, 27))
            assert figure is not None, (measure, year)
            assert figure.status == "provisional"
            assert "no budget" in figure.source  # the policy text gives no figures: it says so
    text = DEFAULT_FILE.read_text(encoding="utf-8")
    assert "A2" in text
    assert "GIVES NO BUDGET FIGURES" in text


def test_the_figure_standing_on_a_day() -> None:
    budgets = parse_budget_document(good(), "t.yaml")
    assert budgets.budget("M1", 2026, date(2025, 12, 31)) is None  # not set yet
    assert budgets.budget("M1", 2026, date(2026, 3, 1)).budget_fen == 100  # type: ignore[union-attr]
    assert budgets.budget("M1", 2026, date(2026, 7, 1)).budget_fen == 150  # type: ignore[union-attr]
    assert budgets.budget("M3", 2026, date(2026, 7, 1)) is None


def _broken(change: str) -> dict[str, Any]:
    document = good()
    value = document["budgets"]["M1"]["history"][0]
    if change == "negative":
        value["budget_fen"] = -1
    elif change == "float":
        value["budget_fen"] = 1.5
    elif change == "status":
        value["status"] = "guessed"
    elif change == "source":
        value["source"] = " "
    elif change == "unknown key":
        value["note"] = "x"
    elif change == "measure":
        document["budgets"]["M14"] = document["budgets"].pop("M1")
    elif change == "clause":
        document["budgets"]["M1"]["clause"] = "M1"
    elif change == "duplicate":
        document["budgets"]["M1"]["history"][1]["effective_from"] = value["effective_from"]
    elif change == "year":
        value["year"] = "2026"
    elif change == "missing version":
        del document["version"]
    return document


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ("negative", "M1.history[0].budget_fen"),
        ("float", "M1.history[0].budget_fen"),
        ("status", "M1.history[0].status"),
        ("source", "M1.history[0].source"),
        ("unknown key", "M1.history[0]"),
        ("measure", "budgets.M14"),
        ("clause", "M1.clause"),
        ("duplicate", "M1.history[1]"),
        ("year", "M1.history[0].year"),
        ("missing version", "bad.yaml"),
    ],
)
def test_a_bad_file_is_refused_naming_the_key(change: str, where: str) -> None:
    with pytest.raises(BudgetFileError, match=re.escape(where)):
        parse_budget_document(_broken(change), "bad.yaml")


def test_the_service_refuses_to_start_on_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text(yaml.safe_dump(_broken("negative")), encoding="utf-8")
    settings = VouchersSettings(database_url="postgresql://x@127.0.0.1:1/x", budget_file=path)  # type: ignore[arg-type]
    with pytest.raises(BudgetFileError, match="budget_fen"):
        create_app(settings)
    (tmp_path / "missing.yaml").unlink(missing_ok=True)
    with pytest.raises(BudgetFileError, match="cannot be read"):
        load_budget_file(tmp_path / "missing.yaml")
