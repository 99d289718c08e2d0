"""The vouchers service in sandbox mode with its registry down: what needs a test clock answers 503 and
writes nothing, never a guessed time (the year crossing itself: tests/e2e/test_sandbox.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from fastapi import FastAPI

from shared.dbroles import login_url
from tests.auth import admin


@pytest_asyncio.fixture(scope="session")
async def sandbox_vouchers_without_registry(vouchers_database: str, ample_budgets: Path) -> AsyncIterator[FastAPI]:
    from services.vouchers.app import create_app
    from services.vouchers.settings import VouchersSettings

    app = create_app(
        VouchersSettings(
            database_url=login_url(vouchers_database, "vouchers"),
            eligibility_url="http://127.0.0.1:1",
            registry_url="http://127.0.0.1:1",  # nothing listens there
            budget_file=ample_budgets,
            sandbox_mode=True,
            peer_timeout_seconds=1.0,
            sealer_interval_seconds=0,
            projector_interval_seconds=0,
            reconciliation_interval_seconds=0,
            reservation_reconcile_seconds=0,
        )
    )
    async with app.router.lifespan_context(app):
        yield app


async def test_the_expiry_run_answers_503_without_the_registry(sandbox_vouchers_without_registry: FastAPI) -> None:
    transport = httpx.ASGITransport(app=sandbox_vouchers_without_registry)
    async with httpx.AsyncClient(transport=transport, base_url="http://vouchers", headers=admin()) as client:
        response = await client.post("/v1/expiries")
        assert (response.status_code, response.json()["code"]) == (503, "peer_unavailable"), response.text
        assert response.json()["peer"] == "registry"
        assert response.headers["retry-after"]
        missing = await client.get("/v1/vouchers/M3-NO-SUCH-VOUCHER")  # no holder: no clock to ask
        assert (missing.status_code, missing.json()["code"]) == (404, "voucher_not_found"), missing.text
