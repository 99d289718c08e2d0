"""Accept-Language negotiation and cursor encoding, without I/O."""

from __future__ import annotations

import pytest

from shared.errors import ProblemError, negotiate_language
from shared.identifiers import credit_code_error, filing_number_warnings, uscc_check_character
from shared.pagination import decode_cursor, encode_cursor


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "zh"),
        ("", "zh"),
        ("en", "en"),
        ("en-GB,en;q=0.9", "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("fr;q=1, en;q=0.5, zh;q=0.4", "en"),
        ("en;q=0.1, zh;q=0.9", "zh"),
        ("de", "zh"),
        ("en;q=bogus, zh", "zh"),
    ],
)
def test_negotiate_language(header: str | None, expected: str) -> None:
    assert negotiate_language(header) == expected


def test_cursor_round_trip_and_tampering() -> None:
    cursor = encode_cursor("organisations", 42)
    assert decode_cursor("organisations", cursor) == 42
    with pytest.raises(ProblemError):
        decode_cursor("vendors", cursor)
    with pytest.raises(ProblemError):
        decode_cursor("organisations", cursor[:-3] + "!!!")


def test_check_character_examples() -> None:
    # the fixture codes of docs/policy.md
    assert uscc_check_character("9144030071526726X") == "G"
    assert credit_code_error("91350100M000100Y43") is None
    error = credit_code_error("9144030071526726XA")
    assert error is not None
    assert (error.reason, error.position, error.expected) == ("check_character", 18, "G")
    error = credit_code_error("O144030071526726XG")  # the letter O is not in the alphabet
    assert error is not None
    assert (error.reason, error.position) == ("character", 1)


def test_filing_formats_are_warnings() -> None:
    assert filing_number_warnings("Beijing-DeepseekChat-202404280016", "filing") == []
    assert filing_number_warnings("Guangdong-Model-20231201", "registration") == []
    assert filing_number_warnings("Beijing-X-202413010001", "filing") == ["genai_filing_date"]
    assert filing_number_warnings("whatever", "filing") == ["genai_filing_format"]
    assert filing_number_warnings("网信算备440300000000000000001号", "algorithm_filing") == []
