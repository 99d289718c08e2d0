"""A record's state: validated from a payload, checked (its references, its effective date),
written as a version snapshot and read back as the kind's payload.

`records.py` (one record at a time) and `upserts.py` (imports) share these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.context import request_id_var
from shared.errors import FieldError, ProblemError, field_errors_from_pydantic, validation_problem
from shared.instants import SHENZHEN

from .errors import EFFECTIVE_DATE_IN_FUTURE, REFERENCE_NOT_FOUND
from .kinds import Resource


def today() -> date:
    """Dates in the programme are Shenzhen dates."""
    return datetime.now(SHENZHEN).date()


def build_state(resource: Resource, data: Mapping[str, Any], prefix: Sequence[str | int] = ("body",)) -> BaseModel:
    """Validate a full state; a failure is a 422 naming the fields."""
    try:
        return resource.state.model_validate(dict(resource.to_state(data)))
    except ValidationError as exc:
        raise validation_problem(field_errors_from_pydantic(exc.errors(), prefix)) from exc


def snapshot_of(state: BaseModel) -> dict[str, Any]:
    data: dict[str, Any] = state.model_dump(mode="json")
    return data


def read_payload(resource: Resource, data: Mapping[str, Any], keys: Mapping[str, Any], meta: Mapping[str, Any]) -> Any:
    return resource.read.model_validate({**data, **keys, **resource.read_extra(data), **meta})


def row_keys(resource: Resource, row: Any) -> dict[str, Any]:
    return {name: getattr(row, column) for name, column in resource.row_keys.items()}


def row_data(resource: Resource, row: Any) -> dict[str, Any]:
    fields = resource.state.model_fields
    return {name: getattr(row, name) for name in fields if hasattr(row, name)}


def check_effective(effective_from: date) -> None:
    if effective_from > today():
        raise ProblemError(EFFECTIVE_DATE_IN_FUTURE, effective_from=effective_from.isoformat())


async def check_references(
    session: AsyncSession, resource: Resource, states: Sequence[BaseModel]
) -> dict[int, FieldError]:
    """Index of each state whose references do not exist → the field error."""
    missing: dict[int, FieldError] = {}
    for reference in resource.references:
        wanted = {getattr(state, reference.field) for state in states}
        column = getattr(reference.table, reference.column)
        found = set((await session.execute(select(column).where(column.in_(wanted)))).scalars())
        for index, state in enumerate(states):
            value = getattr(state, reference.field)
            if value not in found and index not in missing:
                missing[index] = FieldError(
                    reference.field,
                    "reference_not_found",
                    f"引用的{reference.target_zh}不存在：{value}",
                    f"The referenced {reference.target} does not exist: {value}",
                    {"value": str(value)},
                )
    return missing


async def raise_on_missing_references(session: AsyncSession, resource: Resource, state: BaseModel) -> None:
    missing = await check_references(session, resource, [state])
    if missing:
        error = missing[0]
        reference = next(r for r in resource.references if r.field == error.field)
        raise ProblemError(
            REFERENCE_NOT_FOUND,
            errors=[error],
            target=reference.target,
            target_zh=reference.target_zh,
            value=error.extra["value"],
        )


def version_row(resource: Resource, entity_id: int, version: int, valid_from: date, state: BaseModel) -> dict[str, Any]:
    return {
        "entity": resource.entity,
        "entity_id": entity_id,
        "version": version,
        "valid_from": valid_from,
        "request_id": request_id_var.get(),
        "data": snapshot_of(state),
    }
