"""Money is integer fen (1 yuan = 100 fen), never float.

Computed subsidies round *down* to the fen (docs/policy.md, "Money"), so no cap is exceeded.
Ratios are `Decimal`s (exact), applied with `apply_ratio`, which floors.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Annotated, NewType

from pydantic import Field

Fen = NewType("Fen", int)

FEN_PER_YUAN = 100
FEN_PER_WAN_YUAN = 10_000 * FEN_PER_YUAN

#: A non-negative amount in fen, as it appears in API payloads. Strict: only an integer JSON number
#: is money; `"100"`, `100.0`, `1e2` and `true` are refused (422 `int_type`), not converted.
FenAmount = Annotated[int, Field(strict=True, ge=0, le=10**15, description="amount in fen (1 yuan = 100 fen)")]
#: A strictly positive amount in fen (as strict as `FenAmount`).
PositiveFenAmount = Annotated[int, Field(strict=True, gt=0, le=10**15, description="amount in fen (> 0)")]


def fen(value: int) -> Fen:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"fen must be an int, got {type(value).__name__}")
    return Fen(value)


def yuan(value: int | str | Decimal) -> Fen:
    """Exact yuan → fen. Refuses anything with fractions of a fen (and floats)."""
    if isinstance(value, float):
        raise TypeError("floats are not money; pass a str or Decimal")
    try:
        amount = Decimal(value) * FEN_PER_YUAN
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {value!r}") from exc
    if amount != amount.to_integral_value():
        raise ValueError(f"{value!r} yuan is not a whole number of fen")
    return Fen(int(amount))


def wan_yuan(value: int | str | Decimal) -> Fen:
    """万元 → fen: the unit the policy text uses."""
    return yuan(Decimal(value) * 10_000)


def apply_ratio(amount: int, ratio: Decimal | str) -> Fen:
    """amount × ratio, rounded down to the fen."""
    product = Decimal(amount) * Decimal(ratio)
    return Fen(int(product.to_integral_value(rounding=ROUND_DOWN)))


def cap(amount: int, ceiling: int) -> Fen:
    return Fen(min(amount, ceiling))


def format_yuan(amount: int) -> str:
    """fen → '1,234,567.89' for messages (never for arithmetic)."""
    sign = "-" if amount < 0 else ""
    whole, part = divmod(abs(amount), FEN_PER_YUAN)
    return f"{sign}{whole:,}.{part:02d}"
