"""What the redemption routes share: the vendor and its Idempotency-Key, and the bare route's validation.

The bare redemption route (`endpoints.redeem_hot`) validates with the very types FastAPI validates
its documented twin's parameters with (`..deps`, `schemas.RedemptionRequest`), so it refuses
what the twin refuses, with the same problems.
"""

from __future__ import annotations

import email.message
import json
import re
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from pydantic import TypeAdapter, ValidationError

from shared.auth import FORBIDDEN, VENDOR, Principal, require
from shared.errors import FieldError, ProblemError, field_errors_from_pydantic, validation_problem
from shared.openapi import document_required_headers

from ..deps import (
    CODE_CHARACTERS,
    CODE_MAX_LENGTH,
    CODE_MIN_LENGTH,
    KEY_MAX_LENGTH,
    KeyHeader,
    VoucherCode,
    idempotency_key,
)
from .schemas import RedemptionRequest

#: Vendors' systems: one vendor each, rate limited per client.
VendorPrincipal = Annotated[Principal, require(VENDOR, rate_limited=True)]


def vendor_of(principal: Principal) -> str:
    """The vendor a vendor client acts for (its token's organisation)."""
    vendor = principal.vendor
    if vendor is None:  # a vendor token always names its organisation (shared.auth), but be explicit
        raise ProblemError(FORBIDDEN, needed=VENDOR)
    return vendor


@document_required_headers("Idempotency-Key")  # missing: our 400 `idempotency_key_required`, not FastAPI's 422
async def vendor_call(principal: VendorPrincipal, key: KeyHeader = None) -> tuple[str, str]:
    """Every mutating vendor call: the vendor (from the token) and its Idempotency-Key."""
    return vendor_of(principal), idempotency_key(key)


VendorCall = Annotated[tuple[str, str], Depends(vendor_call)]

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
