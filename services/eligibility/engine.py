"""The pieces every rule uses: results, traces, and parameter reads that trace themselves.

A rule is a pure function `(application, facts, params, trace) -> Result`. It reads
parameters through `ParamView`, which records each value read (with its date, status
and source) into the next trace step, so the trace cannot forget a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Literal

from .parameters import ParameterSet, jsonable

ENGINE_VERSION = "eligibility-engine/1.0"

Outcome = Literal["eligible", "ineligible", "needs_review"]


@dataclass(frozen=True)
class Reason:
    """Why a condition failed or needs a person: clause, stable code, both languages."""

    clause: str
    code: str
    zh: str
    en: str

    def as_dict(self) -> dict[str, str]:
        return {"clause": self.clause, "code": self.code, "zh": self.zh, "en": self.en}


@dataclass(frozen=True)
class Result:
    """Eligible with an amount, ineligible with every failed condition, or needs review — never mixed up."""

    outcome: Outcome
    amount_fen: int | None = None
    failures: tuple[Reason, ...] = ()
    review_reasons: tuple[Reason, ...] = ()
    components: dict[str, int] = field(default_factory=dict)
    #: the award register (rules/claims.py): the keys this award pays for, the annual caps it
    #: uses, and the figures a later application of the same year builds on (year totals)
    claims: tuple[str, ...] = ()
    caps: tuple[dict[str, Any], ...] = ()
    basis: dict[str, Any] = field(default_factory=dict)

    def registering(
        self,
        claims: tuple[str, ...] | list[str] = (),
        caps: tuple[dict[str, Any], ...] | list[dict[str, Any]] = (),
        basis: dict[str, Any] | None = None,
    ) -> Result:
        """The same result, saying what it pays for (claim keys), which caps it uses and its basis."""
        return replace(self, claims=tuple(claims), caps=tuple(caps), basis=basis or {})

    @staticmethod
    def eligible(amount_fen: int, components: dict[str, int] | None = None) -> Result:
        if amount_fen < 0:
            raise ValueError("an eligible amount cannot be negative")
        return Result("eligible", amount_fen, components=components or {})

    @staticmethod
    def ineligible(*failures: Reason) -> Result:
        if not failures:
            raise ValueError("an ineligible result names at least one failed condition")
        return Result("ineligible", None, failures=tuple(failures))

    @staticmethod
    def needs_review(*reasons: Reason, proposed_fen: int | None = None) -> Result:
        if not reasons:
            raise ValueError("a review result says why")
        return Result("needs_review", proposed_fen, review_reasons=tuple(reasons))


@dataclass
class Step:
    clause: str
    zh: str
    en: str
    inputs: dict[str, Any]
    parameters: list[dict[str, Any]]
    amounts: dict[str, int]
    outcome: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "clause": self.clause,
            "label": {"zh": self.zh, "en": self.en},
            "inputs": self.inputs,
            "parameters": self.parameters,
            "amounts": self.amounts,
            "outcome": self.outcome,
        }


class Trace:
    def __init__(self) -> None:
        self.steps: list[Step] = []
        self._pending_parameters: list[dict[str, Any]] = []

    def note_parameter(self, entry: dict[str, Any]) -> None:
        self._pending_parameters.append(entry)

    def step(
        self,
        clause: str,
        zh: str,
        en: str,
        *,
        inputs: dict[str, Any] | None = None,
        amounts: dict[str, int] | None = None,
        outcome: str | None = None,
    ) -> None:
        """Record a step; parameters read since the previous step are attached to it."""
        self.steps.append(Step(clause, zh, en, inputs or {}, self._pending_parameters, amounts or {}, outcome))
        self._pending_parameters = []

    def as_list(self) -> list[dict[str, Any]]:
        return [step.as_dict() for step in self.steps]


class ParamView:
    """Parameter values in effect on one date; every read lands in the trace."""

    def __init__(self, parameters: ParameterSet, day: date, trace: Trace) -> None:
        self.parameters = parameters
        self.day = day
        self.trace = trace

    def __call__(self, parameter_id: str) -> Any:
        parameter, value = self.parameters.value(parameter_id, self.day)
        self.trace.note_parameter(
            {
                "id": parameter_id,
                "clause": parameter.clause,
                "label": {"zh": parameter.label_zh, "en": parameter.label_en},
                "value": jsonable(value.value),
                "effective_from": value.effective_from.isoformat(),
                "status": value.status,
                "source": value.source,
                "origin": value.origin,
            }
        )
        return value.value
