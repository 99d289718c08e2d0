"""The vouchers service (skeleton: health endpoints; the ledger comes with issue #4)."""

from __future__ import annotations

from fastapi import FastAPI

from shared.app import create_service_app

from .models import SCHEMA
from .settings import VouchersSettings


def create_app(settings: VouchersSettings | None = None) -> FastAPI:
    return create_service_app(
        service_name="vouchers",
        schema=SCHEMA,
        title="Longgang AI measures — vouchers (算力券 / 模型券)",
        description="The append-only ledger of vouchers and grants.",
        settings=settings or VouchersSettings(),
        routers=[],
    )
