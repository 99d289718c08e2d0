"""What the test clocks' routes are asked and answer."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from shared.identifiers import CreditCode
from shared.instants import Instant

from ..schemas import Input


class ClockCreate(Input):
    frozen_time: Instant = Field(description="The clock's time, with a UTC offset; it stays there until advanced")
    name: str = Field(default="", max_length=200, description="What the clock is for (free text)")


class ClockAdvance(Input):
    frozen_time: Instant = Field(description="The clock's new time: later than its current one (forward only)")


class ClockRead(BaseModel):
    id: uuid.UUID
    name: str
    frozen_time: datetime
    created_by: str
    created_at: datetime
    advanced_at: datetime | None = Field(description="When it was last advanced (real time); null: never")
    enterprises: list[str] = Field(description="Credit codes of the enterprises bound to it")


class ClockBindingRead(BaseModel):
    credit_code: str
    clock_id: uuid.UUID
    frozen_time: datetime = Field(description="The clock's time: the enterprise's time in eligibility and vouchers")
    bound_by: str
    bound_at: datetime


class EnterpriseClockRead(BaseModel):
    """What time it is for an enterprise: its test clock's, or the real clock's when `test_clock` is null."""

    credit_code: CreditCode
    test_clock: ClockRead | None
