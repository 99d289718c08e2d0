"""Budgets per measure and year (clause A2), loaded from `budgets.yaml` and checked at start-up.

Like the eligibility parameters (`services/eligibility/parameters.py`), the code knows the
shape and nothing of the figures. A bad file stops the service with a message naming the
file and the key: unknown or missing keys, a measure that is not M1–M13, a negative or
non-integer amount, a status other than given / provisional / interpretation, a value
without a source, two values for the same year and date.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

DEFAULT_FILE = Path(__file__).resolve().parent / "budgets.yaml"
STATUSES = ("given", "provisional", "interpretation")
MEASURE = re.compile(r"^M(1[0-3]|[1-9])$")
_TOP = {"version", "published", "budgets"}
_MEASURE_KEYS = {"clause", "label", "history"}
_VALUE_KEYS = {"year", "budget_fen", "effective_from", "status", "source"}


class BudgetFileError(ValueError):
    """The budget file is not acceptable; the message names the file and the key."""


@dataclass(frozen=True)
class Budget:
    measure: str
    year: int
    budget_fen: int
    effective_from: date
    status: str
    source: str


@dataclass(frozen=True)
class Budgets:
    version: str
    source_file: str
    values: tuple[Budget, ...]
    #: measure → {"zh": …, "en": …}, for messages
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def budget(self, measure: str, year: int, today: date) -> Budget | None:
        """The figure standing on `today` for the measure and year (the latest dated one), if any."""
        standing = [b for b in self.values if b.measure == measure and b.year == year and b.effective_from <= today]
        return max(standing, key=lambda b: b.effective_from) if standing else None

    def measures(self) -> list[str]:
        return sorted({b.measure for b in self.values}, key=lambda m: int(m[1:]))

    def label(self, measure: str, language: str) -> str:
        """The measure's name in the file (the measure id itself when the file does not name it)."""
        return self.labels.get(measure, {}).get(language, measure)


def _keys(where: str, raw: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BudgetFileError(f"{where}: expected a mapping")
    unknown, missing = set(raw) - allowed, allowed - set(raw)
    if unknown:
        raise BudgetFileError(f"{where}: unknown keys {sorted(unknown)}")
    if missing:
        raise BudgetFileError(f"{where}: missing keys {sorted(missing)}")
    return raw


def _value(where: str, measure: str, raw: Any) -> Budget:
    row = _keys(where, raw, _VALUE_KEYS)
    year, amount = row["year"], row["budget_fen"]
    if isinstance(year, bool) or not isinstance(year, int) or not 2000 <= year <= 2100:
        raise BudgetFileError(f"{where}.year: expected a calendar year, got {year!r}")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise BudgetFileError(f"{where}.budget_fen: expected a non-negative amount in fen (integer), got {amount!r}")
    if not isinstance(row["effective_from"], date):
        raise BudgetFileError(f"{where}.effective_from: expected a date (YYYY-MM-DD)")
    if row["status"] not in STATUSES:
        raise BudgetFileError(f"{where}.status: expected one of {list(STATUSES)}")
    if not isinstance(row["source"], str) or not row["source"].strip():
        raise BudgetFileError(f"{where}.source: every value names its source")
    return Budget(measure, year, amount, row["effective_from"], row["status"], row["source"])


def parse_budget_document(document: Any, source: str) -> Budgets:
    top = _keys(source, document, _TOP)
    if not isinstance(top["version"], str) or not top["version"]:
        raise BudgetFileError(f"{source}: version: expected a string")
    raw_budgets = top["budgets"]
    if not isinstance(raw_budgets, dict) or not raw_budgets:
        raise BudgetFileError(f"{source}: budgets: expected a mapping of measures")
    values: list[Budget] = []
    labels: dict[str, dict[str, str]] = {}
    for measure, raw in raw_budgets.items():
        where = f"{source}: budgets.{measure}"
        if not isinstance(measure, str) or not MEASURE.match(measure):
            raise BudgetFileError(f"{where}: not a measure with money (M1–M13)")
        entry = _keys(where, raw, _MEASURE_KEYS)
        if entry["clause"] != "A2":
            raise BudgetFileError(f"{where}.clause: budgets are set under clause A2")
        label = entry["label"]
        if not isinstance(label, dict) or set(label) != {"zh", "en"}:
            raise BudgetFileError(f"{where}.label: expected {{zh: …, en: …}}")
        labels[measure] = {language: str(text) for language, text in label.items()}
        history = entry["history"]
        if not isinstance(history, list) or not history:
            raise BudgetFileError(f"{where}.history: expected a non-empty list")
        seen: set[tuple[int, date]] = set()
        for index, item in enumerate(history):
            value = _value(f"{where}.history[{index}]", measure, item)
            if (value.year, value.effective_from) in seen:
                raise BudgetFileError(
                    f"{where}.history[{index}]: a second value for {value.year} from {value.effective_from}"
                )
            seen.add((value.year, value.effective_from))
            values.append(value)
    return Budgets(version=top["version"], source_file=source, values=tuple(values), labels=labels)


def load_budget_file(path: Path | str = DEFAULT_FILE) -> Budgets:
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BudgetFileError(f"{path}: cannot be read: {exc}") from exc
    return parse_budget_document(document, str(path))
