"""Who asked for tokens and who administered clients is in the audit log (issue #12, finding 13).

Token requests were audited without a client id (successes and refusals alike), and creating,
rotating and revoking clients left no trace. Now a token request's row names the client —
authenticated, or as presented when refused (never the secret) — and every client change made
with the admin CLI is a row with its actor and target, refusals included. Everything is read back
through `GET /v1/audit` as an auditor would.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from services.registry import identity
from shared.auth import AUDITOR, OFFICER
from tests.auth import auth
from tests.identity.common import assert_problem, client_id
from tests.identity.test_cli import _json, cli

AUDITOR_HEADERS = auth(AUDITOR, name="audit reader")


async def _audit(anonymous: httpx.AsyncClient, **query: str) -> list[dict[str, Any]]:
    response = await anonymous.get("/v1/audit", params={"limit": "500", **query}, headers=AUDITOR_HEADERS)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _now() -> str:
    """An instant a little before now, to read only the rows a test wrote (with `since=`)."""
    return (datetime.now(UTC) - timedelta(seconds=1)).isoformat()


async def _token(anonymous: httpx.AsyncClient, cid: str, secret: str) -> httpx.Response:
    return await anonymous.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret))


async def test_token_requests_name_the_client_granted_or_refused(
    anonymous: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    cid = client_id("audited")
    secret = (await identity.create_client(connection, "王科员", [OFFICER], client_id=cid)).client_secret
    assert (await _token(anonymous, cid, secret)).status_code == 200
    wrong = "wrong-" + secret
    assert_problem(await _token(anonymous, cid, wrong), 401, "invalid_client")
    # the form-field variant of client authentication, and an unknown scope
    form = {"grant_type": "client_credentials", "client_id": cid, "client_secret": wrong}
    assert_problem(await anonymous.post("/oauth/token", data=form), 401, "invalid_client")
    scoped = await anonymous.post(
        "/oauth/token", data={"grant_type": "client_credentials", "scope": "admin"}, auth=(cid, secret)
    )
    assert_problem(scoped, 400, "invalid_scope")

    rows = await _audit(anonymous, client_id=cid)
    assert [(r["path"], r["status"], r["outcome"]) for r in rows] == [
        ("/oauth/token", 200, "ok"),
        ("/oauth/token", 401, "refused"),
        ("/oauth/token", 401, "refused"),
        ("/oauth/token", 400, "refused"),
    ]
    granted, *refused = rows
    assert (granted["actor"], granted["roles"]) == ("王科员", [OFFICER])
    # a refused request is the client's word: named as presented, never with the client's name or roles
    assert all((row["actor"], row["roles"]) == (None, []) for row in refused)


async def test_an_unknown_client_is_recorded_as_presented_and_no_secret_ever(anonymous: httpx.AsyncClient) -> None:
    since = _now()
    unknown = client_id("nobody")
    secret = "s3cret-" + unknown
    assert_problem(await _token(anonymous, unknown, secret), 401, "invalid_client")
    # a Basic header without a colon may be a secret alone: nothing from it is recorded
    lone = base64.b64encode(f"{secret}-alone".encode()).decode()
    response = await anonymous.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {lone}"}
    )
    assert_problem(response, 401, "invalid_client")

    [row] = await _audit(anonymous, client_id=unknown)
    assert (row["path"], row["status"], row["actor"]) == ("/oauth/token", 401, None)
    written = await _audit(anonymous, since=since)
    assert len(written) >= 2
    assert secret not in str(written)


async def test_client_administration_is_audited_with_actor_and_target(
    database_url: str, anonymous: httpx.AsyncClient
) -> None:
    since = _now()
    cid = client_id("admin-cli")
    created = _json(
        await cli(database_url, "--actor", "张管理员", "create", "--name", "x", "--scope", OFFICER, "--id", cid)
    )
    _json(await cli(database_url, "--actor", "张管理员", "rotate", cid, "--grace-hours", "1"))
    _json(await cli(database_url, "--actor", "张管理员", "revoke", cid))
    assert (await cli(database_url, "--actor", "张管理员", "rotate", cid)).returncode == 2  # revoked: refused
    duplicate = await cli(database_url, "--actor", "李某", "create", "--name", "y", "--scope", OFFICER, "--id", cid)
    assert duplicate.returncode == 2
    unknown = client_id("never-made")
    assert (await cli(database_url, "revoke", unknown)).returncode == 2  # default actor: the OS user

    rows = [row for row in await _audit(anonymous, since=since) if row["method"] == "CLI" and cid in row["path"]]
    assert [(r["actor"], r["path"], r["status"], r["outcome"]) for r in rows] == [
        ("cli:张管理员", f"/clients/{cid}/create", 201, "ok"),
        ("cli:张管理员", f"/clients/{cid}/rotate", 200, "ok"),
        ("cli:张管理员", f"/clients/{cid}/revoke", 200, "ok"),
        ("cli:张管理员", f"/clients/{cid}/rotate", 404, "refused"),
        ("cli:李某", f"/clients/{cid}/create", 409, "refused"),
    ]
    assert all(row["request_id"] and row["client_id"] is None for row in rows)
    [refused] = [row for row in await _audit(anonymous, since=since) if row["path"] == f"/clients/{unknown}/revoke"]
    assert len(refused["actor"]) > len("cli:")
    assert refused["actor"].startswith("cli:")
    assert refused["outcome"] == "refused"
    assert created["client_secret"] not in str(rows)
