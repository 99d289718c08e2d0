"""The eligibility service's tables (schema `eligibility`)."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from shared.db import service_metadata

SCHEMA = "eligibility"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)
