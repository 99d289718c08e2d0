"""The review queue's priority score (0–100) from a configurable rubric (policy/priority.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .engine import Result
from .parameters import ParameterFileError

DEFAULT_RUBRIC = Path(__file__).resolve().parent / "policy" / "priority.yaml"


@dataclass(frozen=True)
class PriorityRubric:
    version: str
    outcome_points: dict[str, int]
    amount_bands: tuple[tuple[int, int], ...]  # (from_fen, points), ascending
    measure_points: dict[str, int]

    def score(self, result: Result, measure: str) -> int:
        points = self.outcome_points.get(result.outcome, 0) + self.measure_points.get(measure, 0)
        amount = result.amount_fen or 0
        band = 0
        for start, band_points in self.amount_bands:
            if amount >= start:
                band = band_points
        return max(0, min(100, points + band))


def _points(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ParameterFileError(f"{where}: points must be an integer from 0 to 100, got {value!r}")
    return value


def load_priority_rubric(path: Path = DEFAULT_RUBRIC) -> PriorityRubric:
    source = str(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ParameterFileError(f"{source}: cannot read the rubric: {exc}") from exc
    expected = {"version", "outcome_points", "amount_bands", "measure_points"}
    if not isinstance(document, dict) or set(document) != expected:
        raise ParameterFileError(f"{source}: expected exactly the keys {sorted(expected)}")
    outcomes = document["outcome_points"]
    if not isinstance(outcomes, dict) or set(outcomes) != {"needs_review", "eligible", "ineligible"}:
        raise ParameterFileError(f"{source}: outcome_points needs needs_review, eligible and ineligible")
    bands: list[tuple[int, int]] = []
    for index, band in enumerate(document["amount_bands"] or []):
        where = f"{source}: amount_bands[{index}]"
        if not isinstance(band, dict) or set(band) != {"from_fen", "points"}:
            raise ParameterFileError(f"{where}: expected from_fen and points")
        start = band["from_fen"]
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ParameterFileError(f"{where}.from_fen: a non-negative amount in fen")
        if bands and start <= bands[-1][0]:
            raise ParameterFileError(f"{where}.from_fen: bands must strictly increase")
        bands.append((start, _points(f"{where}.points", band["points"])))
    if not bands or bands[0][0] != 0:
        raise ParameterFileError(f"{source}: amount_bands must start at from_fen 0")
    measures = document["measure_points"]
    if not isinstance(measures, dict):
        raise ParameterFileError(f"{source}: measure_points must be a mapping")
    return PriorityRubric(
        version=str(document["version"]),
        outcome_points={k: _points(f"{source}: outcome_points.{k}", v) for k, v in outcomes.items()},
        amount_bands=tuple(bands),
        measure_points={str(k): _points(f"{source}: measure_points.{k}", v) for k, v in measures.items()},
    )
