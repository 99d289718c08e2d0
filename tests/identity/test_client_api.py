"""The client administration API (issue #15), through HTTP: what the CLI does, without a database login.

Clients are committed (the token endpoint reads them through its own session), so each test names
its clients uniquely. Tokens got for them are real: the API's clients are used at `/oauth/token`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from services.registry import identity
from shared.auth import ADMIN, AUDITOR, OFFICER, PLATFORM, VENDOR
from shared.dbconnect import libpq_url
from shared.dbroles import login_url
from tests.auth import admin, auth
from tests.factories import make_organisation, make_vendor, new_credit_code
from tests.identity.common import assert_problem, client_id

ADMIN_HEADERS = admin()
AUDITOR_HEADERS = auth(AUDITOR, name="audit reader")


async def _create(anonymous: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await anonymous.post("/v1/clients", json=body, headers={**ADMIN_HEADERS, **headers})


async def _token(anonymous: httpx.AsyncClient, cid: str, secret: str) -> httpx.Response:
    return await anonymous.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret))


async def _audit(anonymous: httpx.AsyncClient, since: str) -> list[dict[str, Any]]:
    response = await anonymous.get("/v1/audit", params={"since": since, "limit": "500"}, headers=AUDITOR_HEADERS)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _now() -> str:
    return (datetime.now(UTC) - timedelta(seconds=1)).isoformat()


async def test_the_secret_is_shown_once_and_never_listed(anonymous: httpx.AsyncClient) -> None:
    cid = client_id("api")
    created = await _create(anonymous, {"client_id": cid, "name": "数据平台", "scopes": [PLATFORM]})

    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/clients/{cid}"
    body = created.json()
    secret = body["client_secret"]
    assert len(secret) >= 40
    assert (body["client_id"], body["scopes"], body["status"]) == (cid, [PLATFORM], "active")
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    granted = await _token(anonymous, cid, secret)
    assert granted.status_code == 200, granted.text
    assert granted.json()["scope"] == PLATFORM

    read = await anonymous.get(created.headers["location"], headers=ADMIN_HEADERS)
    listed = await anonymous.get("/v1/clients", params={"limit": "500"}, headers=ADMIN_HEADERS)
    assert (read.status_code, listed.status_code) == (200, 200), (read.text, listed.text)
    assert read.json()["client_id"] == cid
    assert [item for item in listed.json()["items"] if item["client_id"] == cid]
    digest = identity.secret_digest(secret)
    for text in (read.text, listed.text):
        assert secret not in text
        assert digest not in text
        assert '"client_secret":' not in text
        assert "sha256" not in text


async def test_a_generated_id_and_pages(anonymous: httpx.AsyncClient) -> None:
    made = [await _create(anonymous, {"name": f"auditor {n}", "scopes": [AUDITOR]}) for n in range(3)]
    ids = [response.json()["client_id"] for response in made]
    assert all(response.status_code == 201 for response in made)
    assert all(cid.startswith("c-") for cid in ids)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await anonymous.get("/v1/clients", params=params, headers=ADMIN_HEADERS)).json()
        seen += [item["client_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert [cid for cid in seen if cid in ids] == ids


async def test_a_bound_role_needs_a_registered_organisation(registry: httpx.AsyncClient, registry_app: FastAPI) -> None:
    """All in one transaction, rolled back at the end (`registry`): no other test sees the organisation."""
    organisation = await make_organisation(registry)
    code = organisation["credit_code"]
    missing = await _create(registry, {"name": "v", "scopes": [VENDOR]})
    assert assert_problem(missing, 422, "validation_failed")["errors"][0]["code"] == "organisation_required"
    not_a_vendor = await _create(registry, {"name": "v", "scopes": [VENDOR], "organisation": code})
    assert assert_problem(not_a_vendor, 422, "validation_failed")["errors"][0]["code"] == "organisation_not_registered"
    unknown = await _create(registry, {"name": "a", "scopes": ["applicant"], "organisation": new_credit_code()})
    assert assert_problem(unknown, 422, "validation_failed")["errors"][0]["field"] == "body.organisation"
    two = await _create(registry, {"name": "a", "scopes": ["applicant", AUDITOR], "organisation": code})
    assert assert_problem(two, 422, "validation_failed")["errors"][0]["code"] == "bound_role_alone"
    unbound = await _create(registry, {"name": "o", "scopes": [OFFICER], "organisation": code})
    assert assert_problem(unbound, 422, "validation_failed")["errors"][0]["code"] == "organisation_not_bound"
    bad_code = await _create(registry, {"name": "a", "scopes": ["applicant"], "organisation": "91440300X"})
    assert_problem(bad_code, 422, "validation_failed")
    unknown_scope = await _create(registry, {"name": "x", "scopes": ["root"]})
    assert assert_problem(unknown_scope, 422, "validation_failed")["errors"][0]["code"] == "unknown_scope"

    await make_vendor(registry, credit_code=code)
    cid = client_id("vendor-api")
    created = await _create(
        registry, {"client_id": cid, "name": "算力供应商", "scopes": [VENDOR], "organisation": code}
    )
    assert created.status_code == 201, created.text
    granted = await _token(registry, cid, created.json()["client_secret"])
    assert granted.status_code == 200, granted.text
    principal = registry_app.state.verifier.verify(granted.json()["access_token"])
    assert principal.vendor == code


async def test_admins_are_made_with_the_cli_only(anonymous: httpx.AsyncClient, connection: asyncpg.Connection) -> None:
    refused = await _create(anonymous, {"client_id": client_id("adm"), "name": "x", "scopes": [ADMIN]})
    assert_problem(refused, 403, "admin_client_cli_only")
    cid = client_id("cli-admin")
    await identity.create_client(connection, "管理员", [ADMIN], client_id=cid)
    rotate = await anonymous.post(f"/v1/clients/{cid}/rotate", json={}, headers=ADMIN_HEADERS)
    assert_problem(rotate, 403, "admin_client_cli_only")
    keys = await anonymous.put(f"/v1/clients/{cid}/jwks", json={"keys": []}, headers=ADMIN_HEADERS)
    assert_problem(keys, 403, "admin_client_cli_only")
    revoked = await anonymous.post(f"/v1/clients/{cid}/revoke", headers=ADMIN_HEADERS)  # revoking one is allowed
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"


async def test_the_service_login_cannot_mint_an_admin(database_url: str, connection: asyncpg.Connection) -> None:
    """Below the API: the registry's own database login may not insert an admin client or change one but revoke it."""
    service = await asyncpg.connect(libpq_url(login_url(database_url, "registry")))
    cid = client_id("owner-admin")
    await identity.create_client(connection, "管理员", [ADMIN], client_id=cid)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await service.execute(
                "INSERT INTO registry.clients (client_id, name, scopes, secret_sha256) VALUES ($1, 'x', $2, 'x')",
                client_id("minted"),
                [ADMIN],
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await service.execute("UPDATE registry.clients SET secret_sha256 = 'x' WHERE client_id = $1", cid)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await service.execute("UPDATE registry.clients SET scopes = $2 WHERE client_id = $1", cid, [OFFICER])
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await service.execute("DELETE FROM registry.clients WHERE client_id = $1", cid)
        await service.execute("UPDATE registry.clients SET revoked_at = now() WHERE client_id = $1", cid)
    finally:
        await service.close()


async def test_rotate_keeps_the_old_secret_for_the_grace_period_then_not(
    anonymous: httpx.AsyncClient, connection: asyncpg.Connection
) -> None:
    cid = client_id("rotated")
    old = (await _create(anonymous, {"client_id": cid, "name": "r", "scopes": [OFFICER]})).json()["client_secret"]

    rotated = await anonymous.post(f"/v1/clients/{cid}/rotate", json={"grace_seconds": 3600}, headers=ADMIN_HEADERS)

    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["client_secret"]
    assert new
    assert new != old
    assert rotated.json()["previous_secret_valid_until"] is not None
    assert (await _token(anonymous, cid, new)).status_code == 200
    assert (await _token(anonymous, cid, old)).status_code == 200  # in its grace period
    # the grace period ends (moved into the past rather than waited for)
    await connection.execute(
        "UPDATE registry.clients SET previous_secret_expires_at = now() - interval '1 second' WHERE client_id = $1",
        cid,
    )
    assert_problem(await _token(anonymous, cid, old), 401, "invalid_client")
    assert (await _token(anonymous, cid, new)).status_code == 200

    at_once = await anonymous.post(f"/v1/clients/{cid}/rotate", headers=ADMIN_HEADERS)  # no body: no grace
    assert at_once.status_code == 200, at_once.text
    assert_problem(await _token(anonymous, cid, new), 401, "invalid_client")
    too_long = await anonymous.post(
        f"/v1/clients/{cid}/rotate", json={"grace_seconds": 8 * 86400}, headers=ADMIN_HEADERS
    )
    assert_problem(too_long, 422, "validation_failed")


async def test_an_idempotency_key_makes_a_retry_harmless(anonymous: httpx.AsyncClient) -> None:
    cid = client_id("retried")
    body = {"client_id": cid, "name": "r", "scopes": [OFFICER]}
    first = await _create(anonymous, body, **{"Idempotency-Key": f"create-{cid}"})
    again = await _create(anonymous, body, **{"Idempotency-Key": f"create-{cid}"})
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["client_secret"] is None  # shown once
    assert again.json()["client_id"] == cid
    other = await _create(anonymous, {**body, "name": "another"}, **{"Idempotency-Key": f"create-{cid}"})
    assert_problem(other, 409, "idempotency_key_reused")
    secret = first.json()["client_secret"]

    key = {"Idempotency-Key": f"rotate-{cid}"}
    grace = {"grace_seconds": 600}
    rotated = await anonymous.post(f"/v1/clients/{cid}/rotate", json=grace, headers={**ADMIN_HEADERS, **key})
    replay = await anonymous.post(f"/v1/clients/{cid}/rotate", json=grace, headers={**ADMIN_HEADERS, **key})
    assert (rotated.status_code, replay.status_code) == (200, 200), replay.text
    assert replay.json()["client_secret"] is None
    # rotated once: the first secret is still in its grace period (a second rotation would have ended it)
    assert (await _token(anonymous, cid, secret)).status_code == 200
    assert (await _token(anonymous, cid, rotated.json()["client_secret"])).status_code == 200


async def test_revoke_stops_tokens_and_is_idempotent(anonymous: httpx.AsyncClient) -> None:
    cid = client_id("revoked")
    secret = (await _create(anonymous, {"client_id": cid, "name": "r", "scopes": [AUDITOR]})).json()["client_secret"]
    assert (await _token(anonymous, cid, secret)).status_code == 200

    revoked = await anonymous.post(f"/v1/clients/{cid}/revoke", headers=ADMIN_HEADERS)
    again = await anonymous.post(f"/v1/clients/{cid}/revoke", headers=ADMIN_HEADERS)

    assert (revoked.status_code, again.status_code) == (200, 200), again.text
    assert revoked.json()["status"] == "revoked"
    assert revoked.json()["revoked_at"] == again.json()["revoked_at"]
    assert_problem(await _token(anonymous, cid, secret), 401, "invalid_client")
    assert_problem(await anonymous.post(f"/v1/clients/{cid}/rotate", headers=ADMIN_HEADERS), 409, "client_revoked")
    only_revoked = await anonymous.get("/v1/clients", params={"revoked": "true", "limit": "500"}, headers=ADMIN_HEADERS)
    assert cid in [item["client_id"] for item in only_revoked.json()["items"]]
    unknown = client_id("nobody")
    assert_problem(await anonymous.get(f"/v1/clients/{unknown}", headers=ADMIN_HEADERS), 404, "client_not_found")
    assert_problem(
        await anonymous.post(f"/v1/clients/{unknown}/revoke", headers=ADMIN_HEADERS), 404, "client_not_found"
    )


async def test_a_duplicate_id_is_409(anonymous: httpx.AsyncClient) -> None:
    body = {"client_id": client_id("twice"), "name": "t", "scopes": [OFFICER]}
    assert (await _create(anonymous, body)).status_code == 201
    assert_problem(await _create(anonymous, body), 409, "client_exists")


@pytest.mark.parametrize("scope", [OFFICER, AUDITOR, PLATFORM, VENDOR])
async def test_only_administrators(anonymous: httpx.AsyncClient, scope: str) -> None:
    headers = auth(scope, org="9144030071526726XG" if scope == VENDOR else None, name=f"not admin {scope}")
    body = {"client_id": client_id("no"), "name": "n", "scopes": [OFFICER]}
    assert_problem(await anonymous.post("/v1/clients", json=body, headers=headers), 403, "forbidden")
    assert_problem(await anonymous.get("/v1/clients", headers=headers), 403, "forbidden")
    assert_problem(await anonymous.post("/v1/clients", json=body), 401, "unauthenticated")


async def test_every_change_is_audited_beside_it(anonymous: httpx.AsyncClient) -> None:
    since = _now()
    cid = client_id("audited-api")
    assert (await _create(anonymous, {"client_id": cid, "name": "a", "scopes": [OFFICER]})).status_code == 201
    assert (await anonymous.post(f"/v1/clients/{cid}/rotate", headers=ADMIN_HEADERS)).status_code == 200
    keys = await anonymous.put(f"/v1/clients/{cid}/jwks", json={"keys": []}, headers=ADMIN_HEADERS)
    assert keys.status_code == 200, keys.text
    assert (await anonymous.post(f"/v1/clients/{cid}/revoke", headers=ADMIN_HEADERS)).status_code == 200
    assert_problem(await anonymous.post(f"/v1/clients/{cid}/rotate", headers=ADMIN_HEADERS), 409, "client_revoked")

    rows = [row for row in await _audit(anonymous, since) if cid in row["path"]]
    changes = [(r["method"], r["path"], r["status"]) for r in rows if r["method"] == "API"]
    assert changes == [
        ("API", f"/clients/{cid}/create", 201),
        ("API", f"/clients/{cid}/rotate", 200),
        ("API", f"/clients/{cid}/keys", 200),
        ("API", f"/clients/{cid}/revoke", 200),
    ]
    requests = [(r["method"], r["path"], r["status"]) for r in rows if r["method"] != "API"]
    assert requests == [
        ("POST", f"/v1/clients/{cid}/rotate", 200),
        ("PUT", f"/v1/clients/{cid}/jwks", 200),
        ("POST", f"/v1/clients/{cid}/revoke", 200),
        ("POST", f"/v1/clients/{cid}/rotate", 409),
    ]
    admin_client = next(r for r in rows if r["method"] == "API")["client_id"]
    assert all(r["client_id"] == admin_client and r["actor"] == "test admin" for r in rows)
    # each change's row shares its request's id with the request's own row
    by_request: dict[str, set[str]] = {}
    for row in rows:
        by_request.setdefault(row["request_id"], set()).add(row["method"])
    assert sum(1 for methods in by_request.values() if methods == {"API", "POST"}) == 2
