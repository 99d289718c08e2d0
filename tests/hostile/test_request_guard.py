"""The token is checked before the body is read; each route bounds its own body (issue #12, finding 5).

FastAPI read and parsed up to 32 MB of body before the token dependency ran, so anyone could
spend a service's memory and CPU without a token. Now `shared.limits.RequestGuardMiddleware`
answers 401 before the first byte of the body is read, and a body past its route's limit (64 KiB
unless the route declares more) is a 413 naming that limit, whether announced by Content-Length
or streamed. The ASGI-level tests count what the app pulled from `receive`; one test talks to a
real registry process over a socket, announcing 30 MB and sending three bytes.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.auth import OFFICER, PLATFORM
from shared.limits import DEFAULT_MAX_BODY_BYTES, MiB
from tests.auth import as_vendor, auth
from tests.factories import new_credit_code, organisation_payload
from tests.vouchers.flow import approved_m3, issue, redeem

NOWHERE = "postgresql://nobody@127.0.0.1:9/nothing"  # the refusals below never reach a database


def _apps() -> dict[str, FastAPI]:
    from services.eligibility.app import create_app as eligibility
    from services.eligibility.settings import EligibilitySettings
    from services.registry.app import create_app as registry
    from services.registry.settings import RegistrySettings
    from services.vouchers.app import create_app as vouchers
    from services.vouchers.settings import VouchersSettings

    peer: dict[str, Any] = {
        "client_id": "svc",
        "client_secret": "unused",
        "auth_token_url": "http://127.0.0.1:9/oauth/token",
        "registry_url": "http://127.0.0.1:9",
    }
    return {
        "registry": registry(
            RegistrySettings(database_url=NOWHERE, signing_keys_dir=os.environ["REGISTRY_SIGNING_KEYS_DIR"])
        ),
        "eligibility": eligibility(EligibilitySettings(database_url=NOWHERE, **peer)),
        "vouchers": vouchers(VouchersSettings(database_url=NOWHERE, eligibility_url="http://127.0.0.1:9", **peer)),
    }


@pytest.fixture(scope="module")
def apps() -> dict[str, FastAPI]:
    return _apps()  # never started: their engines never connect


#: per service: the route that takes the largest body, and a route with the default limit
LARGEST = {
    "registry": ("/v1/imports/organisations", 32 * MiB),
    "eligibility": ("/v1/simulations", 8 * MiB),
    "vouchers": ("/v1/vouchers/ABC-123/redemptions", DEFAULT_MAX_BODY_BYTES),  # the hot path
}
DEFAULT_ROUTE = {
    "registry": "/v1/organisations",
    "eligibility": "/v1/applications/00000000-0000-0000-0000-000000000001/reviews",
    "vouchers": "/v1/vouchers",
}


class Sent:
    """An ASGI request whose body arrives in chunks; counts the chunks the app asked for."""

    def __init__(self, chunks: int, chunk_size: int) -> None:
        self.chunks = chunks
        self.chunk = b"x" * chunk_size
        self.read = 0

    async def receive(self) -> dict[str, Any]:
        if self.read >= self.chunks:
            await asyncio.sleep(3600)  # the client sends nothing more (a slow sender)
        self.read += 1
        return {"type": "http.request", "body": self.chunk, "more_body": self.read < self.chunks}


async def _call(
    app: FastAPI, path: str, body: Sent, headers: dict[str, str], *, method: str = "POST"
) -> tuple[int, dict[str, Any]]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    answer: dict[str, Any] = {"body": b""}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await asyncio.wait_for(app(scope, body.receive, send), timeout=10)
    return answer["status"], json.loads(answer["body"])


SERVICES = ("registry", "eligibility", "vouchers")
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("service", SERVICES)
async def test_no_token_is_a_401_before_one_byte_of_the_body_is_read(apps: dict[str, FastAPI], service: str) -> None:
    for path, headers, code in (
        (LARGEST[service][0], {}, "unauthenticated"),
        (DEFAULT_ROUTE[service], {}, "unauthenticated"),
        (DEFAULT_ROUTE[service], {"authorization": "Bearer not.a.token"}, "invalid_token"),
        (DEFAULT_ROUTE[service], {"authorization": "Basic dXNlcjpwYXNz"}, "unauthenticated"),
    ):
        body = Sent(chunks=30, chunk_size=MiB)
        status, problem = await _call(apps[service], path, body, {**JSON, "content-length": str(30 * MiB), **headers})
        assert (status, problem["code"]) == (401, code)
        assert body.read == 0  # nothing was read: not parsed, not buffered
        # the same without a Content-Length (streamed): still nothing read
        body = Sent(chunks=30, chunk_size=MiB)
        status, problem = await _call(apps[service], path, body, {**JSON, **headers})
        assert (status, problem["code"], body.read) == (401, code, 0)


@pytest.mark.parametrize("service", SERVICES)
async def test_a_body_over_the_routes_limit_is_a_413_naming_that_limit(apps: dict[str, FastAPI], service: str) -> None:
    token = {"authorization": auth(OFFICER, PLATFORM)["Authorization"]}
    if service == "vouchers":
        token = {"authorization": as_vendor(new_credit_code())["Authorization"], "idempotency-key": "k-1"}
    for path, limit in (LARGEST[service], (DEFAULT_ROUTE[service], DEFAULT_MAX_BODY_BYTES)):
        # announced: refused before reading
        body = Sent(chunks=1, chunk_size=16)
        status, problem = await _call(apps[service], path, body, {**JSON, **token, "content-length": str(limit + 1)})
        assert (status, problem["code"], problem["limit"], body.read) == (413, "payload_too_large", limit, 0)
        assert str(limit) in problem["detail"]
        # streamed without a Content-Length: refused at the first chunk past the limit
        chunk = 64 * 1024
        body = Sent(chunks=limit // chunk + 10, chunk_size=chunk)
        status, problem = await _call(apps[service], path, body, {**JSON, **token})
        assert (status, problem["code"], problem["limit"]) == (413, "payload_too_large", limit)
        assert body.read == limit // chunk + 1


async def test_the_public_token_endpoint_takes_a_small_form_only(apps: dict[str, FastAPI]) -> None:
    body = Sent(chunks=2, chunk_size=8 * 1024)
    status, problem = await _call(
        apps["registry"], "/oauth/token", body, {"content-type": "application/x-www-form-urlencoded"}
    )
    assert (status, problem["code"], problem["limit"], body.read) == (413, "payload_too_large", 8 * 1024, 2)


def test_a_real_server_answers_401_without_waiting_for_the_announced_body(live_registry: str) -> None:
    """30 MB announced, three bytes sent: the 401 comes back at once (before: the server waited for the rest)."""
    host, port = live_registry.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        started = time.monotonic()
        connection.sendall(
            b"POST /v1/organisations HTTP/1.1\r\nHost: registry\r\nContent-Type: application/json\r\n"
            b"Content-Length: 31457280\r\n\r\nabc"
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            received = connection.recv(65536)
            assert received, "the server closed the connection without answering"
            answer += received
        assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
        assert time.monotonic() - started < 2


async def test_authenticated_requests_within_their_limits_still_work(registry: httpx.AsyncClient) -> None:
    created = await registry.post("/v1/organisations", json=organisation_payload())
    assert created.status_code == 201, created.text
    # an import far above the default limit, within the import routes' own
    rows = [organisation_payload(industry="人工智能" * 75) for _ in range(150)]
    assert len(json.dumps(rows).encode()) > 2 * DEFAULT_MAX_BODY_BYTES
    imported = await registry.post("/v1/imports/organisations", json=rows)
    assert imported.status_code == 200, imported.text
    assert imported.json()["created"] == 150


async def test_the_hot_redemption_path_still_redeems(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    issued = await issue(vouchers, decision_id)
    assert issued.status_code == 201, issued.text
    redeemed = await redeem(vouchers, issued.json()["code"], supply.vendor, 100_00, "guard-1")
    assert redeemed.status_code == 201, redeemed.text
    # and without a token the same call is refused before its body is read
    anonymous = await vouchers.post(
        f"/v1/vouchers/{issued.json()['code']}/redemptions",
        json={"amount_fen": 100_00, "invoice_number": "FP-2"},
        headers={"Authorization": "", "Idempotency-Key": "guard-2"},
    )
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthenticated")
