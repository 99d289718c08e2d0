"""Eligibility in sandbox mode with its registry down: an application is answered 503 and nothing is stored,
never dated by a guessed clock (the year crossing itself: tests/e2e/test_sandbox.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from fastapi import FastAPI

from shared.dbroles import login_url
from tests.conftest import _rollback_client
from tests.factories import VALID_CODES


@pytest_asyncio.fixture(scope="session")
async def sandbox_without_registry(database_url: str) -> AsyncIterator[FastAPI]:
    from services.eligibility.app import create_app
    from services.eligibility.settings import EligibilitySettings

    app = create_app(
        EligibilitySettings(
            database_url=login_url(database_url, "eligibility"),
            registry_url="http://127.0.0.1:1",  # nothing listens there
            vouchers_url="http://127.0.0.1:1",
            sandbox_mode=True,
            peer_timeout_seconds=1.0,
        )
    )
    yield app
    await app.state.registry_facts.registry.aclose()
    await app.state.programme_budget.aclose()
    await app.state.database.dispose()


@pytest_asyncio.fixture
async def eligibility_sandbox(sandbox_without_registry: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _rollback_client(sandbox_without_registry, "http://eligibility"):
        yield client


async def test_the_registry_down_is_a_clean_503(eligibility_sandbox: httpx.AsyncClient) -> None:
    evidence = {"measure": "M6", "diagnosis_reference": "诊断", "audited_investment_fen": 300_000_000}
    submitted = await eligibility_sandbox.post(
        "/v1/applications", json={"applicant": VALID_CODES[0], "evidence": evidence}
    )
    assert (submitted.status_code, submitted.json()["code"]) == (503, "peer_unavailable"), submitted.text
    assert submitted.json()["peer"] == "registry"
    assert submitted.headers["retry-after"]
    listed = await eligibility_sandbox.get("/v1/applications", params={"applicant": VALID_CODES[0]})
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"] == []
