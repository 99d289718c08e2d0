"""Fixtures for the authentication tests: the in-process registry (it issues tokens), a
client without credentials, and a direct database connection to create OAuth2 clients.

Clients are committed (the token endpoint reads them through its own session), so every
test names its clients uniquely (`client_id`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest_asyncio
from fastapi import FastAPI

from shared.dbconnect import libpq_url


@pytest_asyncio.fixture
async def anonymous(registry_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP client for the in-process registry that sends no credential of its own."""
    transport = httpx.ASGITransport(app=registry_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
        yield client


@pytest_asyncio.fixture
async def connection(database_url: str) -> AsyncIterator[Any]:
    """An asyncpg connection to the registry's test database (autocommit)."""
    conn = await asyncpg.connect(libpq_url(database_url))
    try:
        yield conn
    finally:
        await conn.close()
