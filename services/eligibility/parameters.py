"""Policy parameters: dated, sourced values loaded from YAML and checked before start-up.

The code knows each parameter's *shape* (`SPECS`: a ratio, an amount in fen, a tier
table…) and nothing of its value. `load_parameter_file` refuses a file with unknown or
missing keys, malformed values, timelines with gaps or overlaps, tier tables with gaps
or overlaps, or negative caps — naming the file and the key. Administrators add
future-dated versions on top (stored in the database, see `parameter_versions.py`);
`ParameterSet.with_versions` merges them under the same checks.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml

Status = Literal["given", "provisional", "interpretation"]
STATUSES: tuple[str, ...] = ("given", "provisional", "interpretation")
DEFAULT_FILE = Path(__file__).resolve().parent / "policy" / "parameters.yaml"


class ParameterFileError(ValueError):
    """The parameter file (or a new version) is not acceptable; the message names file and key."""


@dataclass(frozen=True)
class Spec:
    """The shape of one parameter's value."""

    kind: Literal[
        "fen",
        "ratio",
        "integer",
        "date",
        "boolean",
        "choice",
        "code",
        "choices",
        "classes",
        "tiers",
        "thresholds",
        "fen_by_key",
        "ratio_by_key",
    ]
    choices: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()


_M1_LINES = ("compute", "storage", "network", "security", "other")
_M3_COMPONENTS = ("private_deployment", "cloud_deployment", "api_calls", "appliance_model_part", "other")

SPECS: dict[str, Spec] = {
    "A4.start_date": Spec("date"),
    "A4.validity_years": Spec("integer"),
    "M5.claim_years_back": Spec("integer"),
    "M7.claim_years_back": Spec("integer"),
    "M9.claim_years_back": Spec("integer"),
    "M13.claim_years_back": Spec("integer"),
    "common.district_code": Spec("code"),
    "M1.revenue_classes": Spec("classes"),
    "M1.tiers": Spec("tiers"),
    "M1.bonus_ratios": Spec("ratio_by_key", keys=("district", "domestic", "both")),
    "M1.major_project_extra_ratio": Spec("ratio"),
    "M1.major_project_extra_cap_fen": Spec("fen"),
    "M1.major_project_extra_outside_cap": Spec("boolean"),
    "M1.eligible_line_kinds": Spec("choices", choices=_M1_LINES),
    "M2.a_cap_fen": Spec("fen"),
    "M2.b_award_fen": Spec("fen"),
    "M2.b_first_n": Spec("integer"),
    "M2.b_ranking": Spec("choice", choices=("filing_date",)),
    "M3.contract_ratio": Spec("ratio"),
    "M3.annual_claim_ceiling_fen": Spec("fen"),
    "M3.annual_redemption_ceiling_fen": Spec("fen"),
    "M3.eligible_cost_components": Spec("choices", choices=_M3_COMPONENTS),
    "M3.filing_kinds": Spec("choices", choices=("filing", "registration")),
    "M3.filing_in_force_on": Spec("choices", choices=("contract_date", "claim_date")),
    "M4.award_fen": Spec("fen"),
    "M5.ratio": Spec("ratio"),
    "M5.annual_cap_fen": Spec("fen"),
    "M6.ratio": Spec("ratio"),
    "M6.cap_fen": Spec("fen"),
    "M7.level_rewards_fen": Spec("fen_by_key", keys=("international", "national", "industry")),
    "M7.rank_shares": Spec("ratio_by_key"),
    "M7.annual_cap_fen": Spec("fen"),
    "M8.award_fen": Spec("fen"),
    "M9.thresholds": Spec("thresholds"),
    "M9.multiple_thresholds": Spec("choice", choices=("highest", "sum", "difference")),
    "M9.growth_min_ratio": Spec("ratio"),
    "M9.growth_award_ratio": Spec("ratio"),
    "M9.growth_cap_fen": Spec("fen"),
    "M10.first_sale_ratio": Spec("ratio"),
    "M10.city_matching_ratio": Spec("ratio"),
    "M10.annual_cap_fen": Spec("fen"),
    "M11.registered_on_or_after": Spec("date"),
    "M11.ai_enterprises_only": Spec("boolean"),
    "M11.area_cap_m2": Spec("integer"),
    "M11.area_cap_high_revenue_m2": Spec("integer"),
    "M11.high_revenue_threshold_fen": Spec("fen"),
    "M11.rent_ratio": Spec("ratio"),
    "M11.monthly_cap_per_m2_fen": Spec("fen"),
    "M12.level_awards_fen": Spec("fen_by_key", keys=("national", "provincial")),
    "M13.ratio": Spec("ratio"),
    "M13.cap_fen": Spec("fen"),
    "vouchers.validity": Spec("choice", choices=("end_of_next_calendar_year", "end_of_calendar_year")),
}


@dataclass(frozen=True)
class Value:
    """One dated value of a parameter."""

    effective_from: date
    effective_to: date | None
    value: Any
    status: Status
    source: str
    origin: str = "file"  # "file" or "version:<id>" for administrator-loaded versions

    def covers(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day <= self.effective_to)


@dataclass(frozen=True)
class Parameter:
    id: str
    clause: str
    label_zh: str
    label_en: str
    history: tuple[Value, ...]

    def at(self, day: date) -> Value | None:
        for value in self.history:
            if value.covers(day):
                return value
        return None


@dataclass(frozen=True)
class ParameterSet:
    policy: str
    version: str
    source_file: str
    parameters: Mapping[str, Parameter]
    validity_start: date = field(default=date(1970, 1, 1))
    validity_end: date = field(default=date(1970, 1, 1))

    def value(self, parameter_id: str, day: date) -> tuple[Parameter, Value]:
        parameter = self.parameters[parameter_id]
        found = parameter.at(day)
        if found is None:
            raise LookupError(f"{self.source_file}: {parameter_id} has no value on {day.isoformat()}")
        return parameter, found

    @cached_property
    def covered_from(self) -> date:
        """The first day on which every parameter has a value: nothing can be decided as of an earlier day."""
        return max((p.history[0].effective_from for p in self.parameters.values()), default=date(1970, 1, 1))

    @cached_property
    def digest(self) -> str:
        """A short hash of every value: two sets with the same digest decide alike."""
        canonical = json.dumps(
            {
                pid: [
                    [v.effective_from.isoformat(), str(v.effective_to), _jsonable(v.value), v.status] for v in p.history
                ]
                for pid, p in sorted(self.parameters.items())
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def with_versions(self, versions: Iterable[tuple[str, Value]]) -> ParameterSet:
        """Add administrator versions (sorted by date): each closes the open value before it."""
        histories = {pid: list(p.history) for pid, p in self.parameters.items()}
        for parameter_id, new in sorted(versions, key=lambda item: (item[1].effective_from, item[1].origin)):
            if parameter_id not in histories:
                raise ParameterFileError(f"unknown parameter {parameter_id}")
            new = replace(new, value=_check_value(f"{parameter_id} ({new.origin})", SPECS[parameter_id], new.value))
            kept: list[Value] = []
            for old in histories[parameter_id]:
                if old.effective_from >= new.effective_from:
                    continue  # superseded from the new date on
                if old.effective_to is None or old.effective_to >= new.effective_from:
                    old = replace(old, effective_to=new.effective_from - timedelta(days=1))
                kept.append(old)
            histories[parameter_id] = [*kept, new]
        parameters = {pid: replace(self.parameters[pid], history=tuple(history)) for pid, history in histories.items()}
        for pid, parameter in parameters.items():
            _check_timeline(self.source_file, pid, parameter.history)
        return replace(self, parameters=parameters)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal | date):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def jsonable(value: Any) -> Any:
    """Parameter values as JSON (ratios and dates as strings)."""
    return _jsonable(value)


# --- checking ------------------------------------------------------------------------------


def _fail(where: str, message: str) -> ParameterFileError:
    return ParameterFileError(f"{where}: {message}")


def _fen(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"expected an amount in fen (integer), got {value!r}")
    if value < 0:
        raise _fail(where, f"amounts and caps cannot be negative ({value})")
    return value


def _ratio(where: str, value: Any) -> Decimal:
    if isinstance(value, (float, bool)):
        raise _fail(where, f'write ratios as quoted decimals (e.g. "0.30"), got {value!r}')
    try:
        ratio = Decimal(str(value))
    except InvalidOperation as exc:
        raise _fail(where, f"not a ratio: {value!r}") from exc
    if not (Decimal(0) <= ratio <= Decimal(1)):
        raise _fail(where, f"a ratio must be between 0 and 1, got {value!r}")
    return ratio


def _exact_keys(where: str, row: Any, required: set[str]) -> Mapping[str, Any]:
    if not isinstance(row, Mapping):
        raise _fail(where, f"expected a mapping, got {row!r}")
    unknown = set(row) - required
    missing = required - set(row)
    if unknown:
        raise _fail(where, f"unknown keys {sorted(unknown)}")
    if missing:
        raise _fail(where, f"missing keys {sorted(missing)}")
    return row


def _contiguous(where: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Ranges [from_fen, to_fen) starting at 0, each starting where the last ended; the last open."""
    if not rows:
        raise _fail(where, "the table is empty")
    expected = 0
    for index, row in enumerate(rows):
        start, end = _fen(f"{where}[{index}].from_fen", row["from_fen"]), row["to_fen"]
        if start != expected:
            kind = "a gap" if start > expected else "an overlap"
            raise _fail(f"{where}[{index}]", f"{kind}: starts at {start}, previous range ended at {expected}")
        if end is None:
            if index != len(rows) - 1:
                raise _fail(f"{where}[{index}]", "only the last range may be open-ended (to_fen: null)")
            return
        if _fen(f"{where}[{index}].to_fen", end) <= start:
            raise _fail(f"{where}[{index}]", "to_fen must be greater than from_fen")
        expected = end
    raise _fail(where, "the last range must be open-ended (to_fen: null)")


#: a table value as written (a list) or as checked (a tuple): a version is checked when parsed and again when added
#: to a parameter set (`ParameterSet.with_versions`), so checking must accept what it returns
_TABLE = (list, tuple)


def _check_value(where: str, spec: Spec, value: Any) -> Any:
    """Validate and normalise (ratios → Decimal, dates parsed, tables as tuples) one value; idempotent."""
    kind = spec.kind
    if kind == "fen":
        return _fen(where, value)
    if kind == "ratio":
        return _ratio(where, value)
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(where, f"expected a non-negative integer, got {value!r}")
        return value
    if kind == "date":
        if isinstance(value, str):  # JSON has no dates: an administrator's version arrives as "YYYY-MM-DD"
            with contextlib.suppress(ValueError):  # not a date: refused below, naming the value
                value = date.fromisoformat(value) if len(value) == 10 else value
        if not isinstance(value, date) or isinstance(value, datetime):
            raise _fail(where, f"expected a date (YYYY-MM-DD), got {value!r}")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _fail(where, f"expected true or false, got {value!r}")
        return value
    if kind == "code":
        if not isinstance(value, str) or not value:
            raise _fail(where, f"expected a code (string), got {value!r}")
        return value
    if kind == "choice":
        if value not in spec.choices:
            raise _fail(where, f"expected one of {list(spec.choices)}, got {value!r}")
        return value
    if kind == "choices":
        if not isinstance(value, _TABLE) or not value or any(v not in spec.choices for v in value):
            raise _fail(where, f"expected a non-empty list from {list(spec.choices)}, got {value!r}")
        return tuple(value)
    if kind == "classes":
        if not isinstance(value, _TABLE):
            raise _fail(where, "expected a list of classes")
        rows = [
            _exact_keys(f"{where}[{i}]", row, {"class", "from_fen", "to_fen", "cap_fen"}) for i, row in enumerate(value)
        ]
        _contiguous(where, rows)
        for i, row in enumerate(rows):
            _fen(f"{where}[{i}].cap_fen", row["cap_fen"])
        names = [row["class"] for row in rows]
        if len(set(names)) != len(names):
            raise _fail(where, "class names must be unique")
        return tuple(dict(row) for row in rows)
    if kind == "tiers":
        if not isinstance(value, _TABLE):
            raise _fail(where, "expected a list of tiers")
        rows = [_exact_keys(f"{where}[{i}]", row, {"from_fen", "to_fen", "ratio"}) for i, row in enumerate(value)]
        _contiguous(where, rows)
        return tuple({**row, "ratio": _ratio(f"{where}[{i}].ratio", row["ratio"])} for i, row in enumerate(rows))
    if kind == "thresholds":
        if not isinstance(value, _TABLE) or not value:
            raise _fail(where, "expected a non-empty list of thresholds")
        rows = [_exact_keys(f"{where}[{i}]", row, {"over_fen", "award_fen"}) for i, row in enumerate(value)]
        previous = -1
        for i, row in enumerate(rows):
            over = _fen(f"{where}[{i}].over_fen", row["over_fen"])
            _fen(f"{where}[{i}].award_fen", row["award_fen"])
            if over <= previous:
                raise _fail(f"{where}[{i}]", "thresholds must strictly increase")
            previous = over
        return tuple(dict(row) for row in rows)
    if kind in ("fen_by_key", "ratio_by_key"):
        if not isinstance(value, Mapping) or not value:
            raise _fail(where, "expected a non-empty mapping")
        if spec.keys:
            _exact_keys(where, value, set(spec.keys))
        convert = _fen if kind == "fen_by_key" else _ratio
        return {str(key): convert(f"{where}.{key}", item) for key, item in value.items()}
    raise _fail(where, f"unknown kind {kind}")  # pragma: no cover - SPECS is fixed


def _check_timeline(source: str, parameter_id: str, history: Sequence[Value]) -> None:
    for index, (earlier, later) in enumerate(itertools.pairwise(history), start=1):
        where = f"{source}: {parameter_id}.history[{index}]"
        if earlier.effective_to is None:
            raise ParameterFileError(f"{where}: overlaps the open-ended value before it")
        if later.effective_from <= earlier.effective_to:
            raise ParameterFileError(f"{where}: overlaps the value before it (from {later.effective_from})")
        if later.effective_from != earlier.effective_to + timedelta(days=1):
            raise ParameterFileError(f"{where}: gap between {earlier.effective_to} and {later.effective_from}")
    for index, value in enumerate(history):
        if value.effective_to is not None and value.effective_to < value.effective_from:
            raise ParameterFileError(f"{source}: {parameter_id}.history[{index}]: effective_to before effective_from")


_TOP_KEYS = {"policy", "version", "published", "text", "parameters"}
_PARAMETER_KEYS = {"clause", "label", "history"}
_VALUE_KEYS = {"effective_from", "effective_to", "value", "status", "source"}


def parse_value(where: str, parameter_id: str, raw: Any, origin: str = "file") -> Value:
    if not isinstance(raw, Mapping):
        raise _fail(where, "expected a mapping with effective_from, value, status, source")
    unknown = set(raw) - _VALUE_KEYS
    if unknown:
        raise _fail(where, f"unknown keys {sorted(unknown)}")
    for key in ("effective_from", "value", "status", "source"):
        if key not in raw:
            raise _fail(where, f"missing key {key}")
    if not isinstance(raw["effective_from"], date):
        raise _fail(f"{where}.effective_from", "expected a date (YYYY-MM-DD)")
    effective_to = raw.get("effective_to")
    if effective_to is not None and not isinstance(effective_to, date):
        raise _fail(f"{where}.effective_to", "expected a date (YYYY-MM-DD)")
    if raw["status"] not in STATUSES:
        raise _fail(f"{where}.status", f"expected one of {list(STATUSES)}")
    if not isinstance(raw["source"], str) or not raw["source"].strip():
        raise _fail(f"{where}.source", "every value names its source")
    return Value(
        effective_from=raw["effective_from"],
        effective_to=effective_to,
        value=_check_value(f"{where}.value", SPECS[parameter_id], raw["value"]),
        status=raw["status"],
        source=raw["source"],
        origin=origin,
    )


def parse_parameter_document(document: Any, source: str) -> ParameterSet:
    if not isinstance(document, Mapping):
        raise ParameterFileError(f"{source}: expected a mapping at the top level")
    unknown = set(document) - _TOP_KEYS
    if unknown:
        raise ParameterFileError(f"{source}: unknown top-level keys {sorted(unknown)}")
    for key in ("policy", "version", "parameters"):
        if key not in document:
            raise ParameterFileError(f"{source}: missing top-level key {key}")
    raw_parameters = document["parameters"]
    if not isinstance(raw_parameters, Mapping):
        raise ParameterFileError(f"{source}: parameters must be a mapping")
    unknown_ids = set(raw_parameters) - set(SPECS)
    missing_ids = set(SPECS) - set(raw_parameters)
    if unknown_ids:
        raise ParameterFileError(f"{source}: unknown parameters {sorted(unknown_ids)}")
    if missing_ids:
        raise ParameterFileError(f"{source}: missing parameters {sorted(missing_ids)}")
    parameters: dict[str, Parameter] = {}
    for parameter_id, raw in raw_parameters.items():
        where = f"{source}: {parameter_id}"
        if not isinstance(raw, Mapping):
            raise ParameterFileError(f"{where}: expected a mapping")
        extra = set(raw) - _PARAMETER_KEYS
        if extra:
            raise ParameterFileError(f"{where}: unknown keys {sorted(extra)}")
        label = raw.get("label")
        if not isinstance(label, Mapping) or set(label) != {"zh", "en"}:
            raise ParameterFileError(f"{where}.label: expected {{zh: …, en: …}}")
        if not isinstance(raw.get("clause"), str):
            raise ParameterFileError(f"{where}.clause: every parameter names its clause")
        history_raw = raw.get("history")
        if not isinstance(history_raw, list) or not history_raw:
            raise ParameterFileError(f"{where}.history: expected a non-empty list")
        history = tuple(parse_value(f"{where}.history[{i}]", parameter_id, item) for i, item in enumerate(history_raw))
        history = tuple(sorted(history, key=lambda v: v.effective_from))
        _check_timeline(source, parameter_id, history)
        parameters[parameter_id] = Parameter(parameter_id, raw["clause"], label["zh"], label["en"], history)
    result = ParameterSet(
        policy=str(document["policy"]),
        version=str(document["version"]),
        source_file=source,
        parameters=parameters,
    )
    start = result.value("A4.start_date", date(2024, 1, 1))[1].value
    years = result.value("A4.validity_years", date(2024, 1, 1))[1].value
    end = date(start.year + years, start.month, start.day) - timedelta(days=1)
    return replace(result, validity_start=start, validity_end=end)


def load_parameter_file(path: Path = DEFAULT_FILE) -> ParameterSet:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ParameterFileError(f"{path}: cannot read the parameter file: {exc}") from exc
    return parse_parameter_document(document, str(path))


def coverage_gaps(parameters: ParameterSet) -> list[str]:
    """Every parameter without a value on some day of the validity window (A4)."""
    gaps: list[str] = []
    for parameter_id, parameter in parameters.parameters.items():
        day = parameters.validity_start
        while day <= parameters.validity_end:
            value = parameter.at(day)
            if value is None:
                gaps.append(f"{parameter_id} on {day.isoformat()}")
                break
            if value.effective_to is None:
                break
            day = value.effective_to + timedelta(days=1)
    return gaps
