"""Fixtures and helpers the eligibility tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import date
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.eligibility.app import create_app
from services.eligibility.settings import EligibilitySettings
from shared.dbroles import login_url
from tests.auth import admin


@pytest.fixture
def clock(eligibility_app: FastAPI) -> Iterator[Callable[[date], None]]:
    """Set the eligibility service's 'today' (applications are dated the day they are received)."""
    original = eligibility_app.state.policy

    def set_today(day: date) -> None:
        eligibility_app.state.policy = replace(original, today=lambda: day)

    yield set_today
    eligibility_app.state.policy = original


def eligibility_app_on(
    database_url: str,
    registry_url: str,
    auth_env: dict[str, str],
    policy_file: Path | None = None,
    vouchers_url: str | None = None,
) -> FastAPI:
    """The eligibility service's app on a given database, as the service builds it (not started)."""
    return create_app(
        EligibilitySettings(
            database_url=login_url(database_url, "eligibility"),
            registry_url=registry_url,
            **({"vouchers_url": vouchers_url} if vouchers_url else {}),
            client_id=auth_env["ELIGIBILITY_CLIENT_ID"],
            client_secret=auth_env["ELIGIBILITY_CLIENT_SECRET"],  # type: ignore[arg-type]
            auth_token_url=auth_env["AUTH_TOKEN_URL"],
            **({"policy_file": policy_file} if policy_file is not None else {}),
        )
    )


@asynccontextmanager
async def eligibility_on(
    database_url: str,
    registry_url: str,
    auth_env: dict[str, str],
    policy_file: Path | None = None,
    vouchers_url: str | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """An eligibility app of its own on a given database (committing), as an administrator's client.

    Approvals reserve the budget in the vouchers service at `vouchers_url` (A2): pass the live one
    where the test approves."""
    app = eligibility_app_on(database_url, registry_url, auth_env, policy_file, vouchers_url)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://eligibility", headers=admin()) as client:
            yield client
    finally:
        await app.state.registry_facts.registry.aclose()
        await app.state.programme_budget.aclose()
        await app.state.database.dispose()
