"""Checkpoints anchored outside the database (issue #12, finding 3).

The database's owner can switch the append-only triggers off, rewrite an entry and the
voucher row, re-seal every later link and rewrite the stored checkpoint: the chain, the
checkpoints table and the invariants then agree with each other. The signed checkpoint in the
sink (a file the owner cannot reach) does not, and online and offline verification say so.
Each test has a database and a sink of its own; the owner is the test's superuser connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.vouchers.chain.hashing import ENTRY_FIELDS, GENESIS, chain_hash, entry_hash
from services.vouchers.chain.service import verify_ledger
from shared.auth import AUDITOR
from tests.auth import admin, auth
from tests.conftest import DatabaseFactory
from tests.vouchers.flow import YUAN, approved_m3, issue, redeem
from tests.vouchers.test_chain import Ledger, cli, export, settled, verify

AUDITOR_WANG = auth(AUDITOR, name="审计-王")
OWNER_TABLES = ("entries", "seals", "checkpoints", "vouchers", "redemptions", "allowances")


@pytest_asyncio.fixture
async def anchored(
    databases: DatabaseFactory,
    live_eligibility: str,
    live_registry: str,
    service_auth_env: dict[str, str],
    tmp_path: Path,
) -> AsyncIterator[tuple[Ledger, Path]]:
    """A vouchers app on a database of its own, with a checkpoint sink; no background sealer."""
    from services.vouchers.app import create_app
    from services.vouchers.settings import VouchersSettings

    url = databases.create("longgang_anchor")
    sink = tmp_path / "sink" / "ledger-checkpoints.jsonl"
    settings = VouchersSettings.model_validate(
        {
            "database_url": url,
            "eligibility_url": live_eligibility,
            "registry_url": live_registry,
            "sealer_interval_seconds": 0,
            "checkpoint_sink": sink,
            "client_id": service_auth_env["VOUCHERS_CLIENT_ID"],
            "client_secret": service_auth_env["VOUCHERS_CLIENT_SECRET"],
            "auth_token_url": service_auth_env["AUTH_TOKEN_URL"],
        }
    )
    assert settings.checkpoint_keys_dir is not None  # the session's key (tests/conftest.py)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://vouchers", timeout=60, headers=admin()
        ) as client:
            yield Ledger(url, app, client), sink


async def redeemed_voucher(
    client: httpx.AsyncClient, registry: httpx.AsyncClient, eligibility: httpx.AsyncClient
) -> dict[str, Any]:
    supply, decision_id = await approved_m3(registry, eligibility)
    issued = await issue(client, decision_id)
    assert issued.status_code == 201, issued.text
    code = str(issued.json()["code"])
    redeemed = await redeem(client, code, supply.vendor, 100_000 * YUAN, f"{code}-r", "FP-1")
    assert redeemed.status_code == 201, redeemed.text
    return {"code": code, "vendor": supply.vendor, "holder": supply.holder, **redeemed.json()}


async def as_owner(url: str, *statements: tuple[Any, ...]) -> None:
    """What the schema owner (here the superuser) can do: every trigger off, rewrite, triggers on."""
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            for table in OWNER_TABLES:
                await connection.execute(f"ALTER TABLE vouchers.{table} DISABLE TRIGGER USER")
            for sql, *args in statements:
                await connection.execute(sql, *args)
            for table in OWNER_TABLES:
                await connection.execute(f"ALTER TABLE vouchers.{table} ENABLE TRIGGER USER")
    finally:
        await connection.close()


async def reseal_from(url: str, entry_id: int, change: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The statements that rewrite an entry and recompute every seal from it on (the chain alone verifies)."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            f"SELECT s.seq, {', '.join('e.' + c for c in ENTRY_FIELDS)} FROM vouchers.seals s "
            "JOIN vouchers.entries e ON e.id = s.entry_id ORDER BY s.seq"
        )
    finally:
        await connection.close()
    sets = ", ".join(f"{column} = ${i + 2}" for i, column in enumerate(change))
    statements: list[tuple[Any, ...]] = [
        (f"UPDATE vouchers.entries SET {sets} WHERE id = $1", entry_id, *change.values())
    ]
    link = GENESIS
    rewriting = False
    for row in rows:
        values = dict(row)
        if values["id"] == entry_id:
            values.update(change)
            rewriting = True
        digest = entry_hash(values)
        link = chain_hash(link, digest)
        if rewriting:
            statements.append(
                ("UPDATE vouchers.seals SET entry_hash = $1, chain_hash = $2 WHERE seq = $3", digest, link, row["seq"])
            )
            statements.append(("UPDATE vouchers.checkpoints SET chain_hash = $1 WHERE entry_id = $2", link, row["id"]))
    return statements


async def invariants(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/v1/ledger/invariants", headers=AUDITOR_WANG)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_owner_level_rewrite_is_caught_by_the_signed_checkpoint_outside_the_database(
    anchored: tuple[Ledger, Path],
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    ledger, sink = anchored
    client = ledger.client
    done = await redeemed_voucher(client, live_registry_client, live_eligibility_client)
    await settled(client)
    published = await client.post("/v1/ledger/checkpoints", json={}, headers=AUDITOR_WANG)
    assert published.status_code == 201, published.text
    checkpoint = published.json()
    assert checkpoint["entries"] == 2  # issue, redeem

    # it left the database as it was made: signed, in the sink, on the change feed
    keys = (await client.get("/.well-known/ledger-checkpoint-keys.json")).json()  # public: no token
    assert [key["kid"] for key in keys["keys"]] == [checkpoint["kid"]]
    public = jwt.PyJWK(keys["keys"][0], algorithm="EdDSA").key
    claims = jwt.decode(checkpoint["signature"], public, algorithms=["EdDSA"], options={"verify_aud": False})
    assert (claims["entry_id"], claims["chain_hash"], claims["entries"]) == (
        checkpoint["entry_id"],
        checkpoint["chain_hash"],
        2,
    )
    [line] = [json.loads(raw) for raw in sink.read_text(encoding="utf-8").splitlines()]
    assert (line["jws"], line["chain_hash"], line["kid"]) == (
        checkpoint["signature"],
        checkpoint["chain_hash"],
        checkpoint["kid"],
    )
    # the feed serves an event once no older transaction of the server is in flight: poll a moment
    for _ in range(300):
        feed = await client.get("/v1/events", params={"types": "vouchers.ledger.checkpoint"}, headers=AUDITOR_WANG)
        assert feed.status_code == 200, feed.text
        if feed.json()["items"]:
            break
        await asyncio.sleep(0.2)
    [event] = feed.json()["items"]
    assert (event["data"]["signature"], event["data"]["chain_hash"]) == (
        checkpoint["signature"],
        checkpoint["chain_hash"],
    )
    before = await verify(client)
    assert before["ok"] is True, before
    assert (before["external"]["verified"], before["external"]["latest"]["chain_hash"]) == (1, checkpoint["chain_hash"])

    # the owner pays the vendor 1 fen more: the entry, the voucher row, the redemption and its ceiling,
    # every seal from the entry on, and the stored checkpoint
    statements = await reseal_from(ledger.url, done["entry_id"], {"amount_fen": 100_000 * YUAN + 1})
    await as_owner(
        ledger.url,
        *statements,
        (
            "UPDATE vouchers.vouchers SET available_fen = available_fen - 1, redeemed_fen = redeemed_fen + 1 "
            "WHERE code = $1",
            done["code"],
        ),
        ("UPDATE vouchers.redemptions SET amount_fen = amount_fen + 1 WHERE id = $1", done["id"]),
        (
            "UPDATE vouchers.allowances SET used_fen = used_fen + 1 WHERE holder = $1 AND kind = 'M3.redemptions' "
            "AND used_fen > 0",
            done["holder"],
        ),
    )
    # everything inside the database agrees with itself ...
    assert (await invariants(client))["ok"] is True
    connection = await asyncpg.connect(ledger.url, server_settings={"role": "vouchers_writer"})
    try:
        inside = await verify_ledger(connection)  # the stored checkpoints only
    finally:
        await connection.close()
    assert inside.ok, inside
    path = tmp_path / "rewritten.ndjson"
    await export(client, path)
    status, output = await cli(path)
    assert status == 0, output

    # ... the signed checkpoint outside it does not
    report = await verify(client)
    assert report["ok"] is False
    mismatch = report["first_mismatch"]
    assert (mismatch["reason"], mismatch["checkpoint_source"]) == ("checkpoint_mismatch", "external")
    assert (mismatch["entry_id"], mismatch["expected"]) == (checkpoint["entry_id"], checkpoint["chain_hash"])

    keys_file = tmp_path / "checkpoint-keys.json"
    keys_file.write_text(json.dumps(keys), encoding="utf-8")
    status, output = await cli(path, "--signed-checkpoints", sink, "--keys", keys_file)
    assert status == 1, output
    assert output.startswith(f"FAILED: entry {checkpoint['entry_id']}"), output
    assert "checkpoint_mismatch (signed checkpoint of" in output

    # and no new checkpoint can be signed over the rewritten chain
    ledger.app.state.clock = lambda: datetime.now(UTC) + timedelta(days=1)
    refused = await client.post("/v1/ledger/checkpoints", json={}, headers=AUDITOR_WANG)
    assert (refused.status_code, refused.json()["code"]) == (409, "chain_broken"), refused.text
    assert len(sink.read_text(encoding="utf-8").splitlines()) == 1


def forged_line(sink: Path, kid: str, **change: Any) -> str:
    """A checkpoint line for a head the forger wants, signed with a key of its own under the real kid."""
    [line] = [json.loads(raw) for raw in sink.read_text(encoding="utf-8").splitlines()[:1]]
    claims = {"iss": "longgang-vouchers-ledger", "typ": "ledger-checkpoint", **{k: line[k] for k in SIGNED}, **change}
    forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid})
    return json.dumps({"type": "checkpoint", **{k: claims[k] for k in SIGNED}, "kid": kid, "jws": forged})


SIGNED = ("day", "entry_id", "chain_hash", "entries", "signed_off_by", "canonical")


async def test_a_forged_or_altered_sink_line_is_reported(
    anchored: tuple[Ledger, Path],
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    ledger, sink = anchored
    client = ledger.client
    await redeemed_voucher(client, live_registry_client, live_eligibility_client)
    await settled(client)
    published = await client.post("/v1/ledger/checkpoints", json={}, headers=AUDITOR_WANG)
    assert published.status_code == 201, published.text
    checkpoint = published.json()
    keys = (await client.get("/.well-known/ledger-checkpoint-keys.json")).json()
    keys_file = tmp_path / "checkpoint-keys.json"
    keys_file.write_text(json.dumps(keys), encoding="utf-8")
    path = tmp_path / "ledger.ndjson"
    await export(client, path)
    status, output = await cli(path, "--signed-checkpoints", sink, "--keys", keys_file)
    assert status == 0, output
    assert "1 signed checkpoints verified" in output
    genuine = sink.read_text(encoding="utf-8")
    ledger.app.state.clock = lambda: datetime.now(UTC) + timedelta(days=1)  # a new day: a checkpoint is due

    # a head signed by someone else's key (under the service's kid), and a genuine JWS under altered fields
    altered = json.loads(genuine.splitlines()[0])
    altered["chain_hash"] = "ab" * 32
    for bad, problem in (
        (forged_line(sink, checkpoint["kid"], chain_hash="cd" * 32), "bad signature"),
        (json.dumps(altered), "differ from what was signed"),
    ):
        sink.write_text(genuine + bad + "\n", encoding="utf-8")
        report = await verify(client)
        assert report["ok"] is False, report
        mismatch = report["first_mismatch"]
        assert (mismatch["reason"], mismatch["checkpoint_source"]) == ("checkpoint_signature_invalid", "external")
        assert mismatch["detail"].startswith("checkpoint sink line 2: "), mismatch
        assert problem in mismatch["detail"], mismatch
        assert (report["external"]["lines"], report["external"]["verified"]) == (2, 1)
        assert report["external"]["problems"][0].startswith("line 2: ")

        status, output = await cli(path, "--signed-checkpoints", sink, "--keys", keys_file)
        assert status == 1, output
        assert output.startswith("FAILED: signed checkpoint line 2 does not verify"), output

        refused = await client.post(
            "/v1/ledger/checkpoints", json={}, headers={**AUDITOR_WANG, "Accept-Language": "en"}
        )
        assert (refused.status_code, refused.json()["code"]) == (409, "checkpoint_sink_invalid"), refused.text
        assert "Line 2 of the checkpoint sink" in refused.json()["detail"]


async def test_the_redemption_row_must_say_what_its_entries_moved(
    anchored: tuple[Ledger, Path],
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
) -> None:
    """Settlement pays from redemption rows: a row changed behind the ledger's back is named."""
    ledger, _ = anchored
    client = ledger.client
    done = await redeemed_voucher(client, live_registry_client, live_eligibility_client)
    other = await redeemed_voucher(client, live_registry_client, live_eligibility_client)
    assert (await invariants(client))["ok"] is True

    await as_owner(
        ledger.url,
        ("UPDATE vouchers.redemptions SET vendor = $1 WHERE id = $2", other["vendor"], done["id"]),
    )
    report = await invariants(client)
    assert report["ok"] is False
    [violation] = report["violations"]
    assert violation["check"] == "redemption_matches_entries"
    assert (violation["row"]["id"], violation["row"]["vendor"], violation["row"]["entry_id"]) == (
        done["id"],
        other["vendor"],
        done["entry_id"],
    )

    await as_owner(
        ledger.url,
        (
            "UPDATE vouchers.redemptions SET vendor = $1, amount_fen = amount_fen + 100 WHERE id = $2",
            done["vendor"],
            done["id"],
        ),
    )
    report = await invariants(client)
    assert "redemption_matches_entries" in {violation["check"] for violation in report["violations"]}
    [row] = [v["row"] for v in report["violations"] if v["check"] == "redemption_matches_entries"]
    assert (row["amount_fen"], row["entry_fen"]) == (100_000 * YUAN + 100, 100_000 * YUAN)


async def test_no_checkpoint_without_a_signing_key(anchored: tuple[Ledger, Path]) -> None:
    ledger, sink = anchored
    ledger.app.state.checkpoint_signer = None
    refused = await ledger.client.post("/v1/ledger/checkpoints", json={}, headers=AUDITOR_WANG)
    assert (refused.status_code, refused.json()["code"]) == (409, "checkpoint_key_missing"), refused.text
    assert not sink.exists()
