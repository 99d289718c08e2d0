"""The per-client token bucket (shared.auth.RateLimiter), with a clock the test moves."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from shared.auth import OFFICER, VENDOR, Principal, RateLimiter, TokenVerifier, require
from shared.errors import install_error_handlers
from tests.auth import as_vendor, auth, signer
from tests.identity.common import assert_problem


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_second=2.0, burst=3, clock=clock)

    assert [limiter.acquire("v") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("v") == pytest.approx(0.5)  # one token takes 1/2 s to come back
    clock.now += 0.25
    assert limiter.acquire("v") == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.acquire("v") == 0.0
    assert limiter.acquire("v") == pytest.approx(0.5)


def test_refused_requests_do_not_use_up_tokens() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_second=1.0, burst=1, clock=clock)
    assert limiter.acquire("v") == 0.0
    for _ in range(5):
        assert limiter.acquire("v") == pytest.approx(1.0)
    clock.now += 1.0
    assert limiter.acquire("v") == 0.0


def test_the_bucket_refills_only_up_to_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_second=10.0, burst=2, clock=clock)
    assert limiter.acquire("v") == 0.0
    clock.now += 3600
    assert [limiter.acquire("v") for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]


def test_each_client_has_its_own_bucket() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_second=1.0, burst=1, clock=clock)
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    assert limiter.acquire("b") == 0.0


def test_a_rate_of_zero_turns_limits_off() -> None:
    limiter = RateLimiter(rate_per_second=0.0, burst=0, clock=Clock())
    assert all(limiter.acquire("v") == 0.0 for _ in range(1000))


@pytest_asyncio.fixture
async def limited() -> AsyncIterator[tuple[httpx.AsyncClient, Clock]]:
    """A minimal app with one rate-limited vendor route, its limiter on the test's clock."""
    clock = Clock()
    app = FastAPI()
    install_error_handlers(app)
    session_signer = signer()
    app.state.verifier = TokenVerifier(
        os.environ["AUTH_JWKS"],
        issuer=session_signer.issuer,
        audience=session_signer.audience,
    )
    app.state.rate_limiter = RateLimiter(rate_per_second=1.0, burst=2, clock=clock)

    @app.post("/redeem")
    async def redeem(principal: Annotated[Principal, require(VENDOR, rate_limited=True)]) -> dict[str, str | None]:
        return {"vendor": principal.vendor}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://limited") as client:
        yield client, clock


async def test_over_the_limit_is_429_with_retry_after(limited: tuple[httpx.AsyncClient, Clock]) -> None:
    client, clock = limited
    vendor = as_vendor("9144030071526726XG")
    assert [(await client.post("/redeem", headers=vendor)).status_code for _ in range(2)] == [200, 200]

    refused = await client.post("/redeem", headers=vendor)

    assert_problem(refused, 429, "rate_limited")
    assert refused.headers["retry-after"] == "1"
    other_vendor = await client.post("/redeem", headers=as_vendor("914403001922038216"))
    assert other_vendor.status_code == 200, other_vendor.text
    clock.now += 1.0
    assert (await client.post("/redeem", headers=vendor)).json() == {"vendor": "9144030071526726XG"}


async def test_forbidden_and_unauthenticated_come_before_the_limit(limited: tuple[httpx.AsyncClient, Clock]) -> None:
    client, _ = limited
    for _ in range(5):
        assert_problem(await client.post("/redeem", headers=auth(OFFICER)), 403, "forbidden")
        assert_problem(await client.post("/redeem"), 401, "unauthenticated")
