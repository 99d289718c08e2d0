"""Identifier formats (docs/policy.md, "Identifier formats").

The Unified Social Credit Code (GB 32100-2015) is checked strictly, with the position
that is wrong. CAC filing numbers come from published examples, not a specification:
they produce warnings an officer can override, never rejections.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
USCC_LENGTH = 18
_VALUE = {char: index for index, char in enumerate(USCC_ALPHABET)}


@dataclass(frozen=True)
class CreditCodeError:
    """What is wrong with a code: `position` is 1-based (None when the length is wrong)."""

    reason: str  # "length" | "character" | "check_character"
    position: int | None
    expected: str | None = None


def uscc_check_character(first17: str) -> str:
    total = sum(_VALUE[char] * weight for char, weight in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def credit_code_error(code: str) -> CreditCodeError | None:
    """None if `code` is a valid USCC, else the first thing wrong with it."""
    if len(code) != USCC_LENGTH:
        return CreditCodeError("length", None)
    for position, char in enumerate(code, start=1):
        if char not in _VALUE:
            return CreditCodeError("character", position)
    expected = uscc_check_character(code[:17])
    if code[17] != expected:
        return CreditCodeError("check_character", USCC_LENGTH, expected)
    return None


def division_of(code: str) -> str:
    """Positions 3–8: the administrative division of the registering authority."""
    return code[2:8]


_REASONS = {
    "length": ("长度应为 18 位", "must be 18 characters long"),
    "character": ("第 {position} 位字符不在代码字符集内", "character {position} is not in the code's alphabet"),
    "check_character": ("第 {position} 位校验码错误", "check character at position {position} is wrong"),
}


def validate_credit_code(value: str) -> str:
    """GB 32100-2015, with the wrong position in the error (docs/policy.md, Identifier formats)."""
    error = credit_code_error(value)
    if error is None:
        return value
    zh, en = _REASONS[error.reason]
    context: dict[str, Any] = {
        "reason": error.reason,
        "reason_zh": zh.format(position=error.position),
        "length": len(value),
    }
    if error.position is not None:
        context["position"] = error.position
    if error.expected is not None:
        context["expected"] = error.expected
    raise PydanticCustomError(
        "invalid_credit_code", "Invalid Unified Social Credit Code: " + en.format(position=error.position), context
    )


CreditCode = Annotated[
    str,
    Field(min_length=1, max_length=64, examples=["9144030071526726XG"], description="统一社会信用代码 (GB 32100-2015)"),
    AfterValidator(validate_credit_code),
]


# --- CAC filings: warnings only ---------------------------------------------------------

_GENAI_FILING = re.compile(r"^[A-Za-z\u4e00-\u9fff]+-[^-\s]+-(\d{8}|\d{12})$")
_ALGORITHM_FILING = re.compile(r"^网信算备\d{21}号$")


def filing_number_warnings(number: str, kind: str) -> list[str]:
    """Codes of the format warnings for a filing number (empty when it looks right)."""
    if kind == "algorithm_filing":
        return [] if _ALGORITHM_FILING.match(number) else ["algorithm_filing_format"]
    match = _GENAI_FILING.match(number)
    if not match:
        return ["genai_filing_format"]
    digits = match.group(1)
    month, day = int(digits[4:6]), int(digits[6:8])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return ["genai_filing_date"]
    return []
