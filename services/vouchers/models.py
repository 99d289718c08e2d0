"""The vouchers service's tables (schema `vouchers`)."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from shared.db import service_metadata

SCHEMA = "vouchers"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)
