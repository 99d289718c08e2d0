"""Tamper evidence (issue #4): the sealer and its watermark, verification, checkpoints, export and the CLI.

Through the HTTP API on the real PostgreSQL, with vouchers and redemptions made through
the real registry and eligibility processes. Anything that tampers with the ledger runs
in a database of its own (`isolated`): a broken chain in the shared vouchers database
would fail every later verification.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import sys
import tempfile
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from services.vouchers.chain.hashing import (
    ENTRY_FIELDS,
    GENESIS,
    CanonicalError,
    canonical_entry,
    chain_hash,
    entry_hash,
)
from services.vouchers.chain.sealer import seal
from services.vouchers.chain.service import verify_ledger
from shared.auth import AUDITOR, OFFICER
from shared.dbconnect import libpq_url
from shared.dbroles import login_url
from shared.migrations import head_revision
from tests.auth import admin, auth
from tests.conftest import DatabaseFactory, free_port
from tests.vouchers.flow import YUAN, approved_m3, issue, redeem, vendor_call

REPO = Path(__file__).resolve().parents[2]
#: odd Unicode that must never break verification: NFD accents, RTL override, zero-width, emoji, quotes
ODD_OFFICER = "officer-e\u0301\u200b"
ODD_REASON = 'Cafe\u0301 作废 \u202eTLR\u202c \U0001f680 ﬁ "引号" \\ back-slash\n第二行'
COLUMNS = ", ".join(ENTRY_FIELDS)


# --- the canonical form ------------------------------------------------------------------------

PINNED_ENTRY: dict[str, Any] = {
    "id": 42,
    "created_at": datetime(2026, 11, 27, 10, 45, 5, 953712, tzinfo=ZoneInfo("Asia/Shanghai")),
    "kind": "redeem",
    "from_account_id": 7,
    "to_account_id": 9,
    "amount_fen": 120_000_000,
    "voucher_id": 3,
    "redemption_id": 11,
    "decision_id": uuid.UUID("0b5cf2a4-3c1e-4d6f-9a8b-7c6d5e4f3a21"),
    "contract_ref": "HT-00001",
    "actor": "91440300MA5G9L7X2K",
    "parameters_digest": None,
    "reverses_entry_id": None,
    "request_id": "req-1",
    "memo": 'cafe\u0301 备注 "引号"',
}


def test_canonical_form_v1_is_pinned() -> None:
    """v1 is frozen: every published chain depends on these exact bytes."""
    assert canonical_entry(PINNED_ENTRY).decode() == (
        'v1|[42,"2026-11-27T02:45:05.953712Z","redeem",7,9,120000000,3,11,'
        '"0b5cf2a4-3c1e-4d6f-9a8b-7c6d5e4f3a21","HT-00001","91440300MA5G9L7X2K",null,null,"req-1",'
        '"caf\u00e9 备注 \\"引号\\""]'
    )
    digest = entry_hash(PINNED_ENTRY)
    assert digest == "895e35eb55a5426bef5ac7e55534b8828497a501ba1d6199b9b89865f72a0b91"
    assert digest == hashlib.sha256(canonical_entry(PINNED_ENTRY)).hexdigest()
    assert chain_hash(GENESIS, digest) == hashlib.sha256((GENESIS + digest).encode()).hexdigest()
    assert chain_hash(GENESIS, digest) == "6397fc6860ab02913c14e25dfd34ca3c370ac5e2c27854de4d005beefb8fa70d"


def test_canonical_form_is_stable_across_spellings_but_not_across_content() -> None:
    same = {
        **PINNED_ENTRY,
        "created_at": "2026-11-27T02:45:05.953712+00:00",  # the same instant, written otherwise
        "decision_id": "0B5CF2A4-3C1E-4D6F-9A8B-7C6D5E4F3A21",
        "memo": unicodedata.normalize("NFC", PINNED_ENTRY["memo"]),
    }
    assert entry_hash(same) == entry_hash(PINNED_ENTRY)
    for change in (
        {"amount_fen": 120_000_001},
        {"memo": None},
        {"memo": ""},
        {"parameters_digest": ""},  # null and the empty string differ
        {"created_at": "2026-11-27T02:45:05.953713Z"},  # one microsecond
        {"actor": "91440300MA5G9L7X2K "},
    ):
        assert entry_hash({**PINNED_ENTRY, **change}) != entry_hash(PINNED_ENTRY), change
    for broken in ({"amount_fen": "120000000"}, {"amount_fen": True}, {"created_at": "2026-11-27T02:45:05"}):
        with pytest.raises(CanonicalError):
            entry_hash({**PINNED_ENTRY, **broken})
    with pytest.raises(CanonicalError):
        entry_hash({name: value for name, value in PINNED_ENTRY.items() if name != "memo"})


# --- helpers -------------------------------------------------------------------------------------


@dataclass
class Ledger:
    url: str  # its database, as the superuser
    app: FastAPI
    client: httpx.AsyncClient


@contextlib.asynccontextmanager
async def ledger_app(
    url: str, live_eligibility: str, live_registry: str, auth_env: dict[str, str]
) -> AsyncIterator[Ledger]:
    """A vouchers app on the database at `url` (as the service's login), without a background sealer (tests
    seal), and an admin's client of it."""
    from services.vouchers.app import create_app
    from services.vouchers.settings import VouchersSettings

    settings = VouchersSettings.model_validate(
        {
            "database_url": login_url(url, "vouchers"),
            "eligibility_url": live_eligibility,
            "registry_url": live_registry,
            "sealer_interval_seconds": 0,
            # the service's own client: it reads approved decisions from eligibility with a token
            "client_id": auth_env["VOUCHERS_CLIENT_ID"],
            "client_secret": auth_env["VOUCHERS_CLIENT_SECRET"],
            "auth_token_url": auth_env["AUTH_TOKEN_URL"],
        }
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://vouchers", timeout=60, headers=admin()
        ) as client:
            yield Ledger(url, app, client)


@pytest_asyncio.fixture
async def isolated(
    databases: DatabaseFactory, live_eligibility: str, live_registry: str, service_auth_env: dict[str, str]
) -> AsyncIterator[Ledger]:
    """A second vouchers app on a database of its own."""
    url = databases.create("longgang_chain_tamper")
    async with ledger_app(url, live_eligibility, live_registry, service_auth_env) as ledger:
        yield ledger


async def activity(
    vouchers: httpx.AsyncClient, registry: httpx.AsyncClient, eligibility: httpx.AsyncClient
) -> dict[str, Any]:
    """One voucher through its life: issue, redeem, hold, capture, void (odd Unicode in the void)."""
    supply, decision_id = await approved_m3(registry, eligibility)
    issued = await issue(vouchers, decision_id)
    assert issued.status_code == 201, issued.text
    code = str(issued.json()["code"])
    redeemed = await redeem(vouchers, code, supply.vendor, 100_000 * YUAN, f"{code}-r", "FP-1")
    assert redeemed.status_code == 201, redeemed.text
    held = await vouchers.post(
        f"/v1/vouchers/{code}/holds",
        json={"amount_fen": 50_000 * YUAN, "invoice_number": "FP-2"},
        headers=vendor_call(supply.vendor, f"{code}-h"),
    )
    assert held.status_code == 201, held.text
    captured = await vouchers.post(
        f"/v1/holds/{held.json()['id']}/capture", headers=vendor_call(supply.vendor, f"{code}-c")
    )
    assert captured.status_code == 200, captured.text
    voided = await vouchers.post(
        f"/v1/vouchers/{code}/void", json={"reason": ODD_REASON}, headers=auth(OFFICER, name=ODD_OFFICER)
    )
    assert voided.status_code == 200, voided.text
    return {"code": code, "vendor": supply.vendor, "redeem_entry": redeemed.json()["entry_id"]}


async def entries_of(url: str, code: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return list(
            await connection.fetch(
                "SELECT e.id, e.txid, e.kind, e.memo, e.actor, s.seq, s.entry_hash FROM vouchers.entries e "
                "JOIN vouchers.vouchers v ON v.id = e.voucher_id "
                "LEFT JOIN vouchers.seals s ON s.entry_id = e.id WHERE v.code = $1 ORDER BY e.id",
                code,
            )
        )
    finally:
        await connection.close()


async def verify(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/v1/ledger/verify")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def settled(client: httpx.AsyncClient) -> dict[str, Any]:
    """Verify until every committed entry is sealed. The watermark is server-wide: a transaction of
    another database on the same PostgreSQL (another test session, say) can hold it back a moment."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        report = await verify(client)
        if report["unsealed"] == 0 or asyncio.get_running_loop().time() > deadline:
            return report
        await asyncio.sleep(0.2)


async def export(client: httpx.AsyncClient, path: Path, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/v1/ledger/export", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    await asyncio.to_thread(path.write_bytes, response.content)
    return [json.loads(line) for line in response.text.splitlines()]


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Re-serialised by another tool (default JSON separators, non-ASCII escaped)."""
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")


async def cli(*args: str | Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.vouchers.verify",
        *map(str, args),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def as_superuser(url: str, *statements: tuple[Any, ...]) -> None:
    """Rewrite the ledger as someone who can switch the append-only triggers off."""
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            await connection.execute("ALTER TABLE vouchers.entries DISABLE TRIGGER USER")
            await connection.execute("ALTER TABLE vouchers.seals DISABLE TRIGGER USER")
            for sql, *args in statements:
                await connection.execute(sql, *args)
            await connection.execute("ALTER TABLE vouchers.entries ENABLE TRIGGER USER")
            await connection.execute("ALTER TABLE vouchers.seals ENABLE TRIGGER USER")
    finally:
        await connection.close()


# --- the shared vouchers database: nothing here changes history ---------------------------------


async def test_verify_is_ok_after_activity_and_seals_in_txid_order(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    done = await activity(vouchers, live_registry_client, live_eligibility_client)
    report = await settled(vouchers)
    assert report["ok"] is True, report
    assert report["first_mismatch"] is None
    assert report["entries_verified"] >= 5
    assert report["head"]["seq"] >= report["entries_verified"]
    rows = await entries_of(vouchers_database, done["code"])
    assert [row["kind"] for row in rows] == ["issue", "redeem", "hold", "capture", "void"]
    assert all(row["seq"] is not None for row in rows), "every committed entry of the voucher is sealed"
    assert rows[-1]["memo"] == ODD_REASON  # stored as sent: only the hash input is normalised
    connection = await asyncpg.connect(vouchers_database)
    try:
        order = await connection.fetch(
            "SELECT s.seq, e.txid, e.id FROM vouchers.seals s JOIN vouchers.entries e ON e.id = s.entry_id "
            "ORDER BY s.seq"
        )
        stored = await connection.fetch(
            f"SELECT s.entry_hash, {COLUMNS} FROM vouchers.entries e JOIN vouchers.seals s ON s.entry_id = e.id "
            "WHERE e.id = ANY($1::bigint[])",
            [row["id"] for row in rows],
        )
    finally:
        await connection.close()
    assert [(r["txid"], r["id"]) for r in order] == sorted((r["txid"], r["id"]) for r in order)
    assert all(entry_hash(row) == row["entry_hash"] for row in stored)


async def test_the_background_sealer_seals_without_being_asked(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    _, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    issued = await issue(vouchers, decision_id)
    assert issued.status_code == 201
    for _ in range(600):  # the default interval is 0.5 s (and see `settled`)
        [row] = await entries_of(vouchers_database, issued.json()["code"])
        if row["seq"] is not None:
            break
        await asyncio.sleep(0.1)
    assert row["seq"] is not None, "not sealed within 60 s"
    lag = (await vouchers.get("/v1/ledger/seal-lag")).json()
    assert lag["sealer"]["enabled"] is True
    assert lag["sealer"]["runs"] >= 1
    assert lag["sealer"]["sealed_total"] >= 1
    assert lag["sealer"]["last_error"] is None
    assert lag["lag_seconds"] >= 0


async def test_export_verifies_offline(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    done = await activity(vouchers, live_registry_client, live_eligibility_client)
    await settled(vouchers)
    path = tmp_path / "ledger.ndjson"
    records = await export(vouchers, path)
    header, end = records[0], records[-1]
    assert (header["type"], header["canonical"], end["type"]) == ("header", "v1", "end")
    lines = [r for r in records if r["type"] == "entry"]
    assert end["entries"] == len(lines) >= 5
    assert [r["seq"] for r in lines] == sorted(r["seq"] for r in lines)
    void = next(r for r in lines if r["entry"]["memo"] == ODD_REASON)  # exported as stored
    assert void["entry"]["actor"] == ODD_OFFICER
    assert any(r["entry"]["id"] == done["redeem_entry"] for r in lines)

    status, output = await cli(path)
    assert status == 0, output
    assert output.startswith(f"OK: {len(lines)} entries verified")
    assert end["head"]["chain_hash"] in output

    # a published head on the chain passes; one that is not fails
    middle = lines[len(lines) // 2]["chain_hash"]
    status, output = await cli(path, "--checkpoint", middle)
    assert status == 0, output
    assert f"checkpoint {middle} is on the chain" in output
    status, output = await cli(path, "--checkpoint", "ab" * 32)
    assert status == 1, output
    assert "not on the chain" in output

    # another tool re-escaped the JSON and re-normalised the text: still the same content
    renormalised = [json.loads(unicodedata.normalize("NFC", json.dumps(r, ensure_ascii=False))) for r in records]
    assert renormalised != records
    write_records(path, renormalised)
    status, output = await cli(path)
    assert status == 0, output


def _tamper_amount(records: list[dict[str, Any]], entry_id: int) -> str:
    for record in records:
        if record["type"] == "entry" and record["entry"]["id"] == entry_id:
            record["entry"]["amount_fen"] += 1
    return f"FAILED: entry {entry_id} "


def _tamper_chain(records: list[dict[str, Any]], entry_id: int) -> str:
    for record in records:
        if record["type"] == "entry" and record["entry_id"] == entry_id:
            record["chain_hash"] = "0" * 64
    return f"FAILED: entry {entry_id} "


def _drop_seal(records: list[dict[str, Any]], entry_id: int) -> str:
    index = next(i for i, r in enumerate(records) if r["type"] == "entry" and r["entry_id"] == entry_id)
    following = records[index + 1]["entry_id"]
    del records[index]
    records[-1]["entries"] -= 1
    return f"FAILED: entry {following} "  # the next link no longer fits


def _truncate(records: list[dict[str, Any]], entry_id: int) -> str:
    del records[-1]
    return "FAILED: no end line"


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (_tamper_amount, "entry_changed"),
        (_tamper_chain, "chain_broken"),
        (_drop_seal, "chain_broken"),
        (_truncate, "incomplete"),
    ],
)
async def test_the_cli_catches_a_tampered_export(
    tamper: Callable[[list[dict[str, Any]], int], str],
    reason: str,
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    done = await activity(vouchers, live_registry_client, live_eligibility_client)
    await settled(vouchers)
    path = tmp_path / "ledger.ndjson"
    records = await export(vouchers, path)
    assert (await cli(path))[0] == 0
    expected = tamper(records, done["redeem_entry"])
    write_records(path, records)
    status, output = await cli(path)
    assert status == 1, output
    assert output.startswith(expected), output
    assert reason in output


@pytest.mark.parametrize("table", ["entries", "seals", "checkpoints"])
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE vouchers.{table} SET {column} = {column}",
        "DELETE FROM vouchers.{table}",
        "TRUNCATE vouchers.{table}",
    ],
)
async def test_the_service_role_cannot_rewrite_the_ledger(
    table: str, statement: str, vouchers_app: FastAPI, vouchers_database: str
) -> None:
    column = {"entries": "amount_fen", "seals": "chain_hash", "checkpoints": "chain_hash"}[table]
    connection = await asyncpg.connect(login_url(vouchers_database, "vouchers"))
    try:
        assert await connection.fetchval("SELECT current_user") == "vouchers_app"
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=f"permission denied for table {table}"):
            await connection.execute(statement.format(table=table, column=column))
    finally:
        await connection.close()


@pytest.mark.parametrize("table", ["entries", "seals", "checkpoints"])
@pytest.mark.parametrize("statement", ["UPDATE", "DELETE", "TRUNCATE"])
async def test_even_the_superuser_meets_the_append_only_triggers(
    table: str, statement: str, vouchers_database: str
) -> None:
    """On rows of its own, in a transaction that is always rolled back."""
    connection = await asyncpg.connect(vouchers_database)
    transaction = connection.transaction()
    await transaction.start()
    try:
        accounts = [
            await connection.fetchval(
                "INSERT INTO vouchers.accounts (kind, ref) VALUES ('settled', $1) RETURNING id", uuid.uuid4().hex
            )
            for _ in range(2)
        ]
        entry = await connection.fetchval(
            "INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen) "
            "VALUES ('test', $1, $2, 1) RETURNING id",
            *accounts,
        )
        seq = await connection.fetchval(
            "INSERT INTO vouchers.seals (entry_id, entry_hash, chain_hash) VALUES ($1, 'x', 'y') RETURNING seq", entry
        )
        checkpoint = await connection.fetchval(
            "INSERT INTO vouchers.checkpoints (day, entry_id, chain_hash, entries, signed_off_by) "
            "VALUES ('1999-12-31', $1, 'y', 1, 'test') RETURNING id",
            entry,
        )
        key = {"entries": ("id", entry), "seals": ("seq", seq), "checkpoints": ("id", checkpoint)}[table]
        column = {"entries": "amount_fen", "seals": "chain_hash", "checkpoints": "chain_hash"}[table]
        sql = {
            "UPDATE": f"UPDATE vouchers.{table} SET {column} = {column} WHERE {key[0]} = $1",
            "DELETE": f"DELETE FROM vouchers.{table} WHERE {key[0]} = $1",
            "TRUNCATE": f"TRUNCATE vouchers.{table} CASCADE",
        }[statement]
        with pytest.raises(asyncpg.PostgresError, match=rf"is append-only \({statement} refused\)"):
            await connection.execute(sql, *([key[1]] if "$1" in sql else []))
    finally:
        await transaction.rollback()
        await connection.close()


# --- databases of their own --------------------------------------------------------------------


async def test_the_sealer_never_passes_a_transaction_in_flight(
    isolated: Ledger, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    issued = await issue(isolated.client, decision_id)
    assert issued.status_code == 201, issued.text
    code = issued.json()["code"]
    sealer = await asyncpg.connect(login_url(isolated.url, "vouchers"))  # as the service seals
    slow = await asyncpg.connect(isolated.url)
    try:
        assert (await settled(isolated.client))["entries_verified"] == 1  # the issue entry
        accounts = [
            await slow.fetchval(
                "INSERT INTO vouchers.accounts (kind, ref) VALUES ('settled', $1) RETURNING id", f"slow-{i}"
            )
            for i in range(2)
        ]
        in_flight = slow.transaction()
        await in_flight.start()
        slow_txid = await slow.fetchval("SELECT pg_current_xact_id()::text::bigint")  # the older transaction
        # a later transaction (the redemption path) commits first, and takes a smaller entry id
        redeemed = await redeem(isolated.client, code, supply.vendor, 1_000 * YUAN, "wm-1")
        assert redeemed.status_code == 201, redeemed.text
        fast_entry = redeemed.json()["entry_id"]
        slow_entry = await slow.fetchval(
            "INSERT INTO vouchers.entries (kind, from_account_id, to_account_id, amount_fen, memo) "
            "VALUES ('test', $1, $2, 7, 'slow') RETURNING id",
            *accounts,
        )
        assert slow_entry > fast_entry

        assert await seal(sealer, batch_size=2) == 0
        sealed = {r["entry_id"] for r in await sealer.fetch("SELECT entry_id FROM vouchers.seals")}
        assert fast_entry not in sealed, "sealed past a transaction that may still commit"
        assert slow_entry not in sealed
        assert await sealer.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint") <= slow_txid
        report = await verify(isolated.client)  # waiting entries are not "hidden"
        assert (report["ok"], report["unsealed"]) == (True, 1), report  # the slow one is not visible yet

        await in_flight.commit()
        for _ in range(300):  # another database's transaction may hold the watermark (see `settled`)
            await seal(sealer, batch_size=2)
            order = [
                r["entry_id"]
                for r in await sealer.fetch(
                    "SELECT entry_id FROM vouchers.seals WHERE entry_id = ANY($1::bigint[]) ORDER BY seq",
                    [fast_entry, slow_entry],
                )
            ]
            if len(order) == 2:
                break
            await asyncio.sleep(0.1)
        assert order == [slow_entry, fast_entry], "sealed in (txid, id) order, not id order"
    finally:
        await slow.close()
        await sealer.close()
    report = await settled(isolated.client)
    assert (report["ok"], report["unsealed"], report["entries_verified"]) == (True, 0, 3), report
    lag = (await isolated.client.get("/v1/ledger/seal-lag")).json()
    assert (lag["unsealed"], lag["lag_seconds"], lag["sealer"]["enabled"]) == (0, 0, False)


async def test_a_changed_entry_is_named_by_the_service_and_by_the_cli(
    isolated: Ledger,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    first = await activity(isolated.client, live_registry_client, live_eligibility_client)
    second = await activity(isolated.client, live_registry_client, live_eligibility_client)
    before = await settled(isolated.client)
    assert before["ok"] is True
    assert before["entries_verified"] == 10
    path = tmp_path / "before.ndjson"
    await export(isolated.client, path)
    assert (await cli(path))[0] == 0

    # someone with the superuser's password rewrites two amounts (a later entry, then an earlier one)
    await as_superuser(
        isolated.url,
        ("UPDATE vouchers.entries SET amount_fen = amount_fen + 100 WHERE id = $1", second["redeem_entry"]),
        ("UPDATE vouchers.entries SET amount_fen = amount_fen - 1 WHERE id = $1", first["redeem_entry"]),
    )
    report = await verify(isolated.client)
    assert report["ok"] is False
    mismatch = report["first_mismatch"]
    assert (mismatch["entry_id"], mismatch["reason"]) == (first["redeem_entry"], "entry_changed")
    [row] = [r for r in await entries_of(isolated.url, first["code"]) if r["id"] == first["redeem_entry"]]
    assert (mismatch["seq"], mismatch["expected"]) == (row["seq"], row["entry_hash"])
    assert mismatch["found"] != row["entry_hash"]
    assert report["entries_verified"] == row["seq"] - 1
    again = await verify(isolated.client)
    assert again["first_mismatch"] == mismatch  # a report, not a one-off: nothing was "repaired"

    after = tmp_path / "after.ndjson"
    await export(isolated.client, after)
    status, output = await cli(after)
    assert status == 1, output
    assert output.startswith(f"FAILED: entry {first['redeem_entry']} (seq {row['seq']}"), output
    assert "entry_changed" in output

    refused = await isolated.client.post("/v1/ledger/checkpoints", json={}, headers=auth(AUDITOR, name="审计-王"))
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert (refused.json()["code"], refused.json()["entry_id"]) == ("chain_broken", first["redeem_entry"])


async def test_hidden_and_vanished_entries_are_found(
    isolated: Ledger, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    await activity(isolated.client, live_registry_client, live_eligibility_client)
    assert (await settled(isolated.client))["ok"] is True
    # the service role may insert: an entry dated into the sealed past (a forged old txid) is never sealed ...
    writer = await asyncpg.connect(login_url(isolated.url, "vouchers"))
    try:
        accounts = [
            await writer.fetchval("INSERT INTO vouchers.accounts (kind, ref) VALUES ('settled', $1) RETURNING id", ref)
            for ref in ("hidden-a", "hidden-b")
        ]
        hidden = await writer.fetchval(
            "INSERT INTO vouchers.entries (txid, kind, from_account_id, to_account_id, amount_fen) "
            "VALUES (1, 'test', $1, $2, 5) RETURNING id",
            *accounts,
        )
    finally:
        await writer.close()
    report = await verify(isolated.client)
    assert report["ok"] is False
    assert report["first_mismatch"]["entry_id"] == hidden
    assert (report["first_mismatch"]["reason"], report["first_mismatch"]["seq"]) == ("not_in_chain", None)
    assert report["unsealed"] == 1

    # ... and a sealed entry that disappears leaves its seal behind (here the head: sealing halts, no crash)
    head = report["head"]
    await as_superuser(
        isolated.url,
        ("SET LOCAL session_replication_role = replica",),  # no foreign-key checks either
        ("DELETE FROM vouchers.entries WHERE id = $1", head["entry_id"]),
    )
    report = await verify(isolated.client)
    assert report["ok"] is False
    assert report["first_mismatch"]["reason"] == "entry_missing"
    assert (report["first_mismatch"]["entry_id"], report["first_mismatch"]["seq"]) == (head["entry_id"], head["seq"])


async def test_checkpoints_pin_the_head_even_against_a_rewritten_chain(
    isolated: Ledger,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    client = isolated.client
    now = datetime.now(UTC)
    isolated.app.state.clock = lambda: now
    today = now.astimezone(ZoneInfo("Asia/Shanghai")).date()
    empty = await client.post("/v1/ledger/checkpoints", json={}, headers=auth(AUDITOR, name="审计-王"))
    assert (empty.status_code, empty.json()["code"]) == (409, "ledger_empty")

    first = await activity(client, live_registry_client, live_eligibility_client)
    await settled(client)
    published = await client.post("/v1/ledger/checkpoints", json={}, headers=auth(AUDITOR, name="审计-王"))
    assert published.status_code == 201, published.text
    one = published.json()
    report = await verify(client)
    assert (one["day"], one["entries"], one["signed_off_by"]) == (today.isoformat(), 5, "审计-王")
    assert (one["entry_id"], one["chain_hash"]) == (report["head"]["entry_id"], report["head"]["chain_hash"])

    again = await client.post(
        "/v1/ledger/checkpoints", json={"day": today.isoformat()}, headers=auth(AUDITOR, name="审计-李")
    )
    assert (again.status_code, again.json()["code"]) == (409, "checkpoint_exists")
    assert again.headers["content-type"] == "application/problem+json"
    future = (today + timedelta(days=1)).isoformat()
    ahead = await client.post("/v1/ledger/checkpoints", json={"day": future}, headers=auth(AUDITOR, name="x"))
    assert (ahead.status_code, ahead.json()["code"]) == (422, "checkpoint_day_in_future")
    past = (today - timedelta(days=1)).isoformat()
    behind = await client.post(
        "/v1/ledger/checkpoints", json={"day": past}, headers=auth(AUDITOR, name="x", **{"Accept-Language": "en"})
    )
    assert (behind.status_code, behind.json()["code"]) == (409, "checkpoint_out_of_order")
    assert "later day" in behind.json()["detail"]

    await activity(client, live_registry_client, live_eligibility_client)
    await settled(client)
    isolated.app.state.clock = lambda: now + timedelta(days=1)
    two = (await client.post("/v1/ledger/checkpoints", json={}, headers=auth(AUDITOR, name="审计-李"))).json()
    assert (two["day"], two["entries"]) == (future, 10)
    page = (await client.get("/v1/ledger/checkpoints", params={"limit": 1})).json()
    assert [c["id"] for c in page["items"]] == [one["id"]]
    rest = (await client.get("/v1/ledger/checkpoints", params={"cursor": page["next_cursor"]})).json()
    assert ([c["chain_hash"] for c in rest["items"]], rest["next_cursor"]) == ([two["chain_hash"]], None)
    assert (await verify(client))["ok"] is True

    # rewrite an entry before the first checkpoint AND recompute every seal after it: the chain
    # alone verifies again, the published checkpoint does not
    connection = await asyncpg.connect(isolated.url)
    try:
        rows = await connection.fetch(
            f"SELECT s.seq, {', '.join('e.' + c for c in ENTRY_FIELDS)} FROM vouchers.seals s "
            "JOIN vouchers.entries e ON e.id = s.entry_id ORDER BY s.seq"
        )
    finally:
        await connection.close()
    target = next(i for i, row in enumerate(rows) if row["id"] == first["redeem_entry"])
    statements: list[tuple[Any, ...]] = [
        ("UPDATE vouchers.entries SET amount_fen = amount_fen + 1 WHERE id = $1", first["redeem_entry"])
    ]
    link = GENESIS
    for index, row in enumerate(rows):
        values = dict(row)
        if index == target:
            values["amount_fen"] += 1
        digest = entry_hash(values)
        link = chain_hash(link, digest)
        if index >= target:
            statements.append(
                ("UPDATE vouchers.seals SET entry_hash = $1, chain_hash = $2 WHERE seq = $3", digest, link, row["seq"])
            )
    await as_superuser(isolated.url, *statements)
    report = await verify(client)
    assert report["ok"] is False
    mismatch = report["first_mismatch"]
    assert (mismatch["reason"], mismatch["checkpoint_day"]) == ("checkpoint_mismatch", today.isoformat())
    assert (mismatch["entry_id"], mismatch["expected"]) == (one["entry_id"], one["chain_hash"])

    path = tmp_path / "rewritten.ndjson"
    records = await export(client, path, checkpoints="false")
    assert not [r for r in records if r["type"] == "checkpoint"]
    status, output = await cli(path)
    assert status == 0, output  # without the published heads the rewritten chain is self-consistent ...
    status, output = await cli(path, "--checkpoint", one["chain_hash"])
    assert status == 1, output  # ... the published head is what gives it away
    await export(client, path)
    status, output = await cli(path)
    assert (status, output.startswith(f"FAILED: entry {one['entry_id']}")) == (1, True), output
    assert "checkpoint_mismatch" in output


async def test_verification_in_small_batches_gives_the_same_report(
    isolated: Ledger, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    for _ in range(2):
        await activity(isolated.client, live_registry_client, live_eligibility_client)
    whole = await settled(isolated.client)
    connection = await asyncpg.connect(login_url(isolated.url, "vouchers"))
    try:
        small = await verify_ledger(connection, batch_size=3)
    finally:
        await connection.close()
    assert small.ok
    assert small.entries_verified == whole["entries_verified"] == 10
    assert small.head is not None
    assert small.head.model_dump() == whole["head"]


# --- backup and restore (issue #7) -------------------------------------------------------------


async def test_a_restored_backup_verifies_against_the_last_published_checkpoint(
    isolated: Ledger,
    databases: DatabaseFactory,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    tmp_path: Path,
) -> None:
    """`make backup` / `make restore` (devtools/backup.py): the restored ledger is the published one."""
    from devtools import backup

    client = isolated.client
    await activity(client, live_registry_client, live_eligibility_client)
    await settled(client)
    published = await client.post("/v1/ledger/checkpoints", json={}, headers=auth(AUDITOR, name="审计-王"))
    assert published.status_code == 201, published.text
    checkpoint = published.json()  # what the auditors keep outside the database

    dump = await asyncio.to_thread(backup.dump, isolated.url, tmp_path / "ledger.dump")
    fresh = databases.create("longgang_restored", migrate=False)
    await asyncio.to_thread(backup.restore, fresh, dump)

    connection = await asyncpg.connect(libpq_url(fresh))
    try:
        await connection.execute("SET ROLE vouchers_writer")
        report = await verify_ledger(connection)
        assert report.ok, report
        assert report.unsealed == 0
        assert report.entries_verified == checkpoint["entries"]
        assert report.head is not None
        assert report.head.chain_hash == checkpoint["chain_hash"]
        sealed_at_checkpoint = await connection.fetchval(
            "SELECT chain_hash FROM vouchers.seals WHERE entry_id = $1", checkpoint["entry_id"]
        )
        assert sealed_at_checkpoint == checkpoint["chain_hash"]
        # the append-only guarantees came back with the data
        with pytest.raises(asyncpg.PostgresError):
            await connection.execute("UPDATE vouchers.entries SET amount_fen = amount_fen + 1")
        # and every service's schema is at its migration head, ready to serve
        await connection.execute("RESET ROLE")
        for service in ("registry", "eligibility", "vouchers"):
            version = await connection.fetchval(f"SELECT version_num FROM {service}.alembic_version")
            assert version == head_revision(service)
    finally:
        await connection.close()

    # restoring over an existing ledger is refused, nothing is touched
    with pytest.raises(RuntimeError, match="already has the schemas"):
        await asyncio.to_thread(backup.restore, fresh, dump)


async def _counter_at_least(url: str, xid: int) -> None:
    """Spend transaction ids until the server's counter reaches `xid` (one id per statement, autocommit)."""
    connection = await asyncpg.connect(libpq_url(url))
    try:
        while int(await connection.fetchval("SELECT pg_current_xact_id()::text::bigint")) < xid:
            pass
    finally:
        await connection.close()


async def _feed_end(client: httpx.AsyncClient) -> str:
    """The change feed read to its end: the cursor a consumer that has seen everything holds."""
    cursor = None
    while True:
        page = await client.get("/v1/events", params={"limit": 500, **({"after": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        cursor = body["next_cursor"]
        if not body["items"]:
            return str(cursor)


async def test_a_backup_restored_into_a_fresh_cluster_seals_and_verifies_new_redemptions(
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    live_eligibility: str,
    live_registry: str,
    service_auth_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """Issue #15: restored into a new PostgreSQL cluster, whose transaction counter starts far below the restored
    entries' ids, the ledger's next entries still come after them: sealed, and verify is clean end to end. Before
    the ledger's own ids (migration 0015) the first new entry was never sealed (`not_in_chain`, seal lag 0).
    The change feed likewise: a consumer resumes where it was and gets the new events. Both clusters are new
    embedded PostgreSQL 18 ones, whatever server the rest of the suite uses."""
    from devtools import backup
    from devtools.devdb import EmbeddedPostgres
    from shared.migrations import upgrade_all

    # not under tmp_path: the server runs as another user (when root), and another pytest session starting meanwhile
    # makes pytest's own temporary root private again
    clusters = Path(tempfile.mkdtemp(prefix="longgang-restore-"))
    source = EmbeddedPostgres(clusters / "source", port=free_port())
    target = EmbeddedPostgres(clusters / "fresh", port=free_port())
    try:
        origin = await asyncio.to_thread(source.start)
        await asyncio.to_thread(upgrade_all, origin)
        async with ledger_app(origin, live_eligibility, live_registry, service_auth_env) as ledger:
            await activity(ledger.client, live_registry_client, live_eligibility_client)
            supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
            issued = await issue(ledger.client, decision_id)
            assert issued.status_code == 201, issued.text
            code = str(issued.json()["code"])
            # a live ledger's counter is in the millions; here, well above what a new cluster starts from
            await _counter_at_least(origin, 5_000)
            before = await settled(ledger.client)
            assert before["ok"], before
            assert before["unsealed"] == 0
            feed_cursor = await _feed_end(ledger.client)  # a consumer that has read everything
        dump = await asyncio.to_thread(backup.dump, origin, tmp_path / "backups" / "ledger.dump")
        assert (dump.stat().st_mode & 0o777, dump.parent.stat().st_mode & 0o777) == (0o600, 0o700)  # owner only

        fresh = await asyncio.to_thread(target.start)
        await asyncio.to_thread(backup.restore, fresh, dump)
        connection = await asyncpg.connect(fresh)
        try:
            last = int(await connection.fetchval("SELECT max(txid) FROM vouchers.entries"))
            assert int(await connection.fetchval("SELECT pg_current_xact_id()::text::bigint")) < last  # the trap
            epoch = await connection.fetchrow("SELECT offset_xid, bridged_from FROM vouchers.ledger_epoch")
            assert epoch["offset_xid"] > 0
            assert epoch["bridged_from"] == last
            assert int(await connection.fetchval("SELECT vouchers.ledger_txid()")) > last
            # the change feed likewise (shared/feed/tables.py feed_epoch_sql): new events after every old position
            last_event = int(await connection.fetchval("SELECT max(txid)::text::bigint FROM vouchers.outbox"))
            feed = await connection.fetchrow("SELECT offset_xid, bridged_from FROM vouchers.feed_epoch")
            assert feed["offset_xid"] > 0
            assert feed["bridged_from"] == last_event
            assert int(await connection.fetchval("SELECT vouchers.feed_txid()::text::bigint")) > last_event
        finally:
            await connection.close()

        async with ledger_app(fresh, live_eligibility, live_registry, service_auth_env) as restored:
            redeemed = await redeem(restored.client, code, supply.vendor, 1_000 * YUAN, f"{code}-after", "FP-9")
            assert redeemed.status_code == 201, redeemed.text
            report = await settled(restored.client)
            assert report["ok"], report
            assert report["unsealed"] == 0
            assert report["entries_verified"] == before["entries_verified"] + 1
            assert report["head"]["entry_id"] == redeemed.json()["entry_id"]
            lag = await restored.client.get("/v1/ledger/seal-lag")
            assert lag.status_code == 200, lag.text
            assert lag.json()["unsealed"] == 0
            # the consumer resumes where it was before the backup and gets the new redemption's event: before the
            # feed's own ids it came after the restored events only once the new cluster's counter caught up
            page = await restored.client.get("/v1/events", params={"after": feed_cursor})
            assert page.status_code == 200, page.text
            events = [(e["type"], e["subject"]) for e in page.json()["items"]]
            assert ("vouchers.voucher.redeemed", code) in events, events
    finally:
        for cluster in (source, target):
            await asyncio.to_thread(cluster.stop)
        shutil.rmtree(clusters, ignore_errors=True)
