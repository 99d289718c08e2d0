"""The client administration CLI, run as an operator would: `python -m services.registry.identity ...`.

The secrets it prints are then used at the token endpoint (through HTTP), so the test
shows that what the CLI says happened did happen.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.auth import AUDITOR, OFFICER, PLATFORM, VENDOR
from tests.factories import VALID_CODES
from tests.identity.common import assert_problem, client_id

ROOT = Path(__file__).resolve().parents[2]


async def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "REGISTRY_DATABASE_URL": database_url}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.registry.identity", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    return body


async def _token(anonymous: httpx.AsyncClient, cid: str, secret: str) -> httpx.Response:
    return await anonymous.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret))


async def test_create_list_rotate_revoke(database_url: str, anonymous: httpx.AsyncClient) -> None:
    cid = client_id("cli")

    created = _json(
        await cli(database_url, "create", "--name", "数据平台", "--scope", PLATFORM, "--scope", AUDITOR, "--id", cid)
    )

    assert created["client_id"] == cid
    assert created["scopes"] == [PLATFORM, AUDITOR]
    assert created["organisation"] is None
    first_secret = created["client_secret"]
    assert len(first_secret) >= 40
    token = await _token(anonymous, cid, first_secret)
    assert token.status_code == 200, token.text
    assert token.json()["scope"] == f"{PLATFORM} {AUDITOR}"

    listed = await cli(database_url, "list")
    assert listed.returncode == 0, listed.stderr
    rows = {row["client_id"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert rows[cid]["name"] == "数据平台"
    assert rows[cid]["scopes"] == [PLATFORM, AUDITOR]
    assert rows[cid]["revoked_at"] is None
    assert first_secret not in listed.stdout
    assert not {"client_secret", "secret_sha256", "previous_secret_sha256"} & set(rows[cid])

    rotated = _json(await cli(database_url, "rotate", cid))
    assert rotated["client_id"] == cid
    second_secret = rotated["client_secret"]
    assert second_secret != first_secret
    assert_problem(await _token(anonymous, cid, first_secret), 401, "invalid_client")
    assert (await _token(anonymous, cid, second_secret)).status_code == 200

    with_grace = _json(await cli(database_url, "rotate", cid, "--grace-hours", "1"))
    assert (await _token(anonymous, cid, second_secret)).status_code == 200
    assert (await _token(anonymous, cid, with_grace["client_secret"])).status_code == 200

    assert _json(await cli(database_url, "revoke", cid)) == {"client_id": cid, "revoked": True}
    assert_problem(await _token(anonymous, cid, with_grace["client_secret"]), 401, "invalid_client")
    assert_problem(await _token(anonymous, cid, second_secret), 401, "invalid_client")
    listed = await cli(database_url, "list")
    rows = {row["client_id"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert rows[cid]["revoked_at"] is not None


async def test_a_vendor_client_is_bound_to_its_organisation(database_url: str, anonymous: httpx.AsyncClient) -> None:
    created = _json(await cli(database_url, "create", "--name", "供应商", "--scope", VENDOR, "--org", VALID_CODES[2]))
    assert created["client_id"].startswith("c-")
    assert created["organisation"] == VALID_CODES[2]
    token = await _token(anonymous, created["client_id"], created["client_secret"])
    assert token.status_code == 200, token.text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--name", "x", "--scope", "superuser"], "unknown scopes ['superuser']"),
        (["create", "--name", "x", "--scope", VENDOR], "bound to one organisation"),
        (["create", "--name", "x", "--scope", VENDOR, "--org", "9144030071526726XA"], "bound to one organisation"),
        (["create", "--name", "x", "--scope", VENDOR, "--scope", OFFICER, "--org", VALID_CODES[0]], "that one role"),
        (["create", "--name", "x", "--scope", OFFICER, "--id", "no spaces allowed"], "a client id is"),
        (["create", "--name", "x", "--scope", OFFICER, "--id", "ab"], "a client id is"),
        (["rotate", "nobody-has-this-id"], "no active client"),
        (["revoke", "nobody-has-this-id"], "no active client"),
    ],
    ids=["unknown scope", "vendor without org", "bad org", "vendor plus", "bad id", "short id", "rotate", "revoke"],
)
async def test_bad_input_is_refused_with_a_message(database_url: str, args: list[str], message: str) -> None:
    result = await cli(database_url, *args)

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


async def test_a_duplicate_id_and_a_second_revoke_are_refused(database_url: str) -> None:
    cid = client_id("dup")
    _json(await cli(database_url, "create", "--name", "x", "--scope", OFFICER, "--id", cid))

    again = await cli(database_url, "create", "--name", "y", "--scope", OFFICER, "--id", cid)
    assert again.returncode == 2
    assert f"a client {cid} exists already" in again.stderr

    _json(await cli(database_url, "revoke", cid))
    twice = await cli(database_url, "revoke", cid)
    assert twice.returncode == 2
    assert "no active client" in twice.stderr
    rotated = await cli(database_url, "rotate", cid)
    assert rotated.returncode == 2, "a revoked client gets no new secret"


async def test_without_a_command_or_database_it_says_how(database_url: str) -> None:
    usage = await cli(database_url)
    assert usage.returncode == 2
    assert "usage:" in usage.stderr
    environment = {
        key: value for key, value in os.environ.items() if key not in ("REGISTRY_DATABASE_URL", "DATABASE_URL")
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.registry.identity", "list"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "set REGISTRY_DATABASE_URL or DATABASE_URL" in result.stderr
