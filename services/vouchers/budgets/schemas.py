"""The programme budget's payloads: an approval's reservation (A2)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from shared.money import PositiveFenAmount

from ..schemas import Input


class ReservationCreate(Input):
    decision_id: uuid.UUID = Field(description="The decision being approved")
    measure: Annotated[str, Field(pattern=r"^M(1[0-3]|[1-9])$", description="The measure paying (M1–M13)")]
    amount_fen: PositiveFenAmount


class ReservationRead(BaseModel):
    id: uuid.UUID
    decision_id: uuid.UUID
    measure: str
    year: int = Field(description="The budget year the amount is reserved from (the year of the approval)")
    amount_fen: int
    state: Literal["reserved", "consumed", "released"]
    reserved_by: str
    reserved_at: datetime
    settled_at: datetime | None
    settled_by: str | None
    settled_reason: str | None
    confirmed_at: datetime | None = Field(description="When the reconciler found the approval that recorded it")
