"""What the vouchers tests that run a vouchers app of their own share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from fastapi import FastAPI

from tests.auth import admin


@pytest_asyncio.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An administrator's client of the module's own `app` fixture (a vouchers app with that module's settings)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://vouchers", timeout=60, headers=admin()) as c:
        yield c
