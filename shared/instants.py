"""Instants a client sends in a query (`?known_at=`, `?since=`): bounded as the exports bound theirs.

An instant needs a UTC offset (`2026-11-01T08:00:00+08:00`, `…Z`): without one it could mean
any of 24 hours. It is read as UTC, and one whose UTC form does not exist
(`9999-12-31T20:00:00-05:00` is in the year 10000; `0001-01-01T00:00:00+08:00` before year 1)
is a 422 naming the field: before this type, converting it for PostgreSQL raised
`OverflowError` and the answer was a 500 (issue #12). `shared.exports.params.parse_bound` applies the
same rule to the exports' `from` / `to`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, AwareDatetime
from pydantic_core import PydanticCustomError

from shared.errors import register_field_messages

#: The programme's time zone: Shenzhen's dates (a voucher's year, a day's statement, an export's `from`) are
#: dates in this zone. SQL spells it 'Asia/Shanghai' too.
SHENZHEN = ZoneInfo("Asia/Shanghai")


def local_today(moment: datetime) -> date:
    """The Shenzhen date of an instant: the day a voucher's year, validity and statements count by."""
    return moment.astimezone(SHENZHEN).date()


OUT_OF_RANGE = "instant_out_of_range"
OUT_OF_RANGE_EN = "The instant is out of range: in UTC it is not between the years 1 and 9999"

register_field_messages({OUT_OF_RANGE: "时间超出范围：换算为 UTC 后不在公元 1 年至 9999 年之间"})


def in_utc(moment: datetime) -> datetime:
    """The instant in UTC; `OverflowError` when UTC has no such instant."""
    return moment.astimezone(UTC)


def _bounded(moment: datetime) -> datetime:
    try:
        return in_utc(moment)
    except OverflowError:
        raise PydanticCustomError(OUT_OF_RANGE, OUT_OF_RANGE_EN) from None


#: An instant with a UTC offset, within the range UTC can hold; given to the handler in UTC.
Instant = Annotated[AwareDatetime, AfterValidator(_bounded)]
