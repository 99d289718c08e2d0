"""What the vouchers routes share: the clock, the app's peers and budgets, the voucher-code and
Idempotency-Key rules, and a redemption's input.

Each rule is written once, as the annotated type FastAPI validates a documented route's parameter
with; the bare redemption route (`endpoints.redeem_hot`) validates with the same types
(`redemption_input`), so it refuses what its documented twin refuses, with the same problems.
"""

from __future__ import annotations

import email.message
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Path, Request
from pydantic import TypeAdapter, ValidationError

from shared.app import state_dependency
from shared.errors import FieldError, field_errors_from_pydantic, validation_problem

from .hotpath import HotPath
from .peers import Eligibility
from .policy.budgets import Budgets
from .schemas import RedemptionRequest


async def now(request: Request) -> datetime:
    """The app's clock (tests set their own): every route reads the time through it."""
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


Now = Annotated[datetime, Depends(now)]
EligibilityDep = Annotated[Eligibility, Depends(state_dependency("eligibility", Eligibility))]
HotDep = Annotated[HotPath, Depends(state_dependency("hotpath", HotPath))]
#: the programme budgets (A2, policy/budgets.yaml): approvals' reservations, issuance and grants are held to them
BudgetsDep = Annotated[Budgets, Depends(state_dependency("budgets", Budgets))]

CODE_MIN_LENGTH = 3
CODE_MAX_LENGTH = 64
CODE_CHARACTERS = "A-Z0-9-"
#: A voucher's code (`M1-…`, `M3-…`) in a path.
VoucherCode = Annotated[
    str, Path(min_length=CODE_MIN_LENGTH, max_length=CODE_MAX_LENGTH, pattern=f"^[{CODE_CHARACTERS}]+$")
]

KEY_MAX_LENGTH = 200
#: Every mutating vendor or holder call carries one (`IDEMPOTENCY_KEY_REQUIRED` when it is missing).
KeyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=KEY_MAX_LENGTH, description="Required; reuse it when retrying"),
]

# --- the bare redemption route's validation: the types above, without FastAPI's dependency machinery ---

#: the code rule as one regular expression: a well-formed code costs one match, a bad one is explained by the type
_CODE_SHAPE = re.compile(f"^[{CODE_CHARACTERS}]{{{CODE_MIN_LENGTH},{CODE_MAX_LENGTH}}}$")
_CODE_RULES: TypeAdapter[str] = TypeAdapter(VoucherCode)
_KEY_RULES: TypeAdapter[str | None] = TypeAdapter(KeyHeader)
NO_BODY = object()


def _is_json(content_type: str) -> bool:
    """Whether FastAPI would parse a body of this type as JSON (`application/json`, `…+json`)."""
    if content_type == "application/json":
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


async def read_body(request: Request) -> Any:
    """The body as FastAPI reads it before anything else: JSON when declared so, else the bytes (`NO_BODY`: none)."""
    body = await request.body()
    if not body:
        return NO_BODY
    content_type = request.headers.get("content-type")
    if not content_type or not _is_json(content_type):
        return body  # refused by validation, as FastAPI's strict content type does
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        error = {
            "type": "json_invalid",
            "loc": ("body", exc.pos),
            "msg": "JSON decode error",
            "ctx": {"error": exc.msg},
        }
        raise validation_problem(field_errors_from_pydantic([error])) from exc
    except Exception as exc:  # not UTF-8, nested too deep: what FastAPI answers
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from exc


def _field_errors(rules: TypeAdapter[Any], value: Any, where: tuple[str, ...]) -> list[FieldError]:
    try:
        rules.validate_python(value, from_attributes=True)
    except ValidationError as exc:
        return field_errors_from_pydantic(exc.errors(), where)
    return []


def redemption_input(code: str, key: str, received: Any) -> RedemptionRequest:
    """The header, path and body rules of a redemption together: the payload, or one 422 naming every field."""
    errors: list[FieldError] = []
    if len(key) > KEY_MAX_LENGTH:
        errors += _field_errors(_KEY_RULES, key, ("header", "Idempotency-Key"))
    if not _CODE_SHAPE.fullmatch(code):  # fullmatch: `$` alone would accept a trailing newline
        errors += _field_errors(_CODE_RULES, code, ("path", "code"))
    payload = None
    if received is NO_BODY:
        errors += field_errors_from_pydantic([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    else:
        try:
            payload = RedemptionRequest.model_validate(received, from_attributes=True)
        except ValidationError as exc:
            errors += field_errors_from_pydantic(exc.errors(), ("body",))
    if errors or payload is None:
        raise validation_problem(errors)
    return payload
