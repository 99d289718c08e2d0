"""Settlement batches and statements (issue #4) through the HTTP API, checked against the database.

Real registry and eligibility processes, real PostgreSQL, committed data: each test works
with fresh enterprises and vendors, so nothing here depends on what other tests wrote.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import asyncpg
import httpx
import pytest

from shared.auth import OFFICER
from tests.auth import auth, token
from tests.eligibility import seed
from tests.factories import new_credit_code
from tests.vouchers.flow import (
    OFFICER_CHEN,
    YUAN,
    ModelSupply,
    approve,
    approved_m3,
    issue,
    redeem,
    submit,
    vendor_call,
)

_keys = itertools.count(1)


def key() -> str:
    return f"settle-{next(_keys)}"


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


async def new_voucher(
    vouchers: httpx.AsyncClient,
    registry: httpx.AsyncClient,
    eligibility: httpx.AsyncClient,
    *,
    supply: ModelSupply | None = None,
    contract_fen: int = 10_000_000 * YUAN,
    claim_fen: int = 3_000_000 * YUAN,
) -> tuple[str, ModelSupply]:
    supply, decision_id = await approved_m3(
        registry, eligibility, supply=supply, contract_fen=contract_fen, claim_fen=claim_fen
    )
    response = await issue(vouchers, decision_id)
    assert response.status_code == 201, response.text
    return str(response.json()["code"]), supply


async def captured(vouchers: httpx.AsyncClient, code: str, vendor: str, amount_fen: int, invoice: str = "FP-1") -> int:
    response = await redeem(vouchers, code, vendor, amount_fen, key(), invoice)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "captured"
    return int(response.json()["id"])


async def hold(vouchers: httpx.AsyncClient, code: str, vendor: str, amount_fen: int, invoice: str = "FP-H") -> int:
    response = await vouchers.post(
        f"/v1/vouchers/{code}/holds",
        json={"amount_fen": amount_fen, "invoice_number": invoice},
        headers=vendor_call(vendor, key()),
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def finish(vouchers: httpx.AsyncClient, hold_id: int, vendor: str, action: str) -> None:
    response = await vouchers.post(f"/v1/holds/{hold_id}/{action}", headers=vendor_call(vendor, key()))
    assert response.status_code == 200, response.text


async def create_batch(vouchers: httpx.AsyncClient, vendor: str, officer: str = "officer-zhao") -> httpx.Response:
    """The officer is the token's client (recorded as `created_by`)."""
    return await vouchers.post("/v1/settlement-batches", json={"vendor": vendor}, headers=auth(OFFICER, name=officer))


async def close_batch(vouchers: httpx.AsyncClient, batch_id: int, officer: str = "officer-qian") -> httpx.Response:
    return await vouchers.post(f"/v1/settlement-batches/{batch_id}/close", headers=auth(OFFICER, name=officer))


async def walk(client: httpx.AsyncClient, path: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every item of a listing, one per page (limit=1); also how many pages it took."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {**params, "limit": 1, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        assert len(body["items"]) <= 1
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages
        assert pages < 1000, "pagination does not end"


async def batch_redemption_ids(vouchers: httpx.AsyncClient, batch_id: int) -> list[int]:
    items, _ = await walk(vouchers, f"/v1/settlement-batches/{batch_id}")
    return [int(item["id"]) for item in items]


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


# --- settlement ------------------------------------------------------------------------------------


async def test_a_batch_gathers_exactly_the_vendors_captured_unbatched_redemptions(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    code, supply = await new_voucher(vouchers, live_registry_client, live_eligibility_client)
    vendor = supply.vendor
    first = await captured(vouchers, code, vendor, 100 * YUAN, "FP-A1")
    second = await captured(vouchers, code, vendor, 200 * YUAN, "FP-A2")
    captured_hold = await hold(vouchers, code, vendor, 300 * YUAN)
    await finish(vouchers, captured_hold, vendor, "capture")
    still_held = await hold(vouchers, code, vendor, 400 * YUAN)
    released = await hold(vouchers, code, vendor, 50 * YUAN)
    await finish(vouchers, released, vendor, "release")
    # another vendor's captured redemption, at the same time
    other_code, other = await new_voucher(vouchers, live_registry_client, live_eligibility_client)
    await captured(vouchers, other_code, other.vendor, 700 * YUAN)

    response = await create_batch(vouchers, vendor)
    assert response.status_code == 201, response.text
    batch = response.json()
    assert response.headers["location"] == f"/v1/settlement-batches/{batch['id']}"
    assert (batch["vendor"], batch["status"], batch["total_fen"], batch["redemption_count"]) == (
        vendor,
        "open",
        600 * YUAN,
        3,
    )
    assert (batch["created_by"], batch["closed_by"], batch["closed_at"], batch["entry_id"]) == (
        "officer-zhao",
        None,
        None,
        None,
    )
    detail = (await vouchers.get(f"/v1/settlement-batches/{batch['id']}")).json()
    assert detail["batch"] == batch
    assert [item["id"] for item in detail["items"]] == [first, second, captured_hold]
    assert {item["voucher_code"] for item in detail["items"]} == {code}
    assert [item["invoice_number"] for item in detail["items"]][:2] == ["FP-A1", "FP-A2"]
    assert detail["next_cursor"] is None

    # nothing left to settle: a stable code, in Chinese by default and in English on request
    empty = assert_problem(await create_batch(vouchers, vendor), 409, "nothing_to_settle")
    assert "没有待结算" in empty["detail"]
    english = await vouchers.post(
        "/v1/settlement-batches",
        json={"vendor": vendor},
        headers=auth(OFFICER, name="officer-zhao", **{"Accept-Language": "en"}),
    )
    assert "no captured redemptions awaiting settlement" in assert_problem(english, 409, "nothing_to_settle")["detail"]
    never_redeemed = assert_problem(await create_batch(vouchers, new_credit_code()), 409, "nothing_to_settle")
    assert never_redeemed["vendor"] != vendor

    # the hold captured later goes into the next batch, alone
    await finish(vouchers, still_held, vendor, "capture")
    later = await create_batch(vouchers, vendor)
    assert later.status_code == 201, later.text
    assert (later.json()["total_fen"], later.json()["redemption_count"]) == (400 * YUAN, 1)
    assert await batch_redemption_ids(vouchers, later.json()["id"]) == [still_held]
    # the other vendor's redemption was never touched
    assert (await create_batch(vouchers, other.vendor)).json()["total_fen"] == 700 * YUAN


async def test_a_retried_batch_creation_with_its_key_answers_the_first_batch(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    """An officer's client whose reply was lost sends the call again with its Idempotency-Key: the first batch
    again (201, replayed), not `nothing_to_settle` nor a second batch of what was captured meanwhile."""
    code, supply = await new_voucher(vouchers, live_registry_client, live_eligibility_client)
    vendor = supply.vendor
    first_redemption = await captured(vouchers, code, vendor, 100 * YUAN, "FP-K1")
    headers = auth(OFFICER, name="officer-zhao", **{"Idempotency-Key": f"batch-{vendor}"})
    first = await vouchers.post("/v1/settlement-batches", json={"vendor": vendor}, headers=headers)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    since = await captured(vouchers, code, vendor, 200 * YUAN, "FP-K2")  # captured after the first call

    again = await vouchers.post("/v1/settlement-batches", json={"vendor": vendor}, headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"] == f"/v1/settlement-batches/{first.json()['id']}"
    batches = await fetch(vouchers_database, "SELECT id FROM vouchers.settlement_batches WHERE vendor = $1", vendor)
    assert [row["id"] for row in batches] == [first.json()["id"]]
    assert await batch_redemption_ids(vouchers, first.json()["id"]) == [first_redemption]

    # the key with another body is refused and changes nothing; a call without a key makes the next batch
    other = await vouchers.post("/v1/settlement-batches", json={"vendor": new_credit_code()}, headers=headers)
    assert_problem(other, 409, "idempotency_key_reused")
    later = await create_batch(vouchers, vendor)
    assert later.status_code == 201, later.text
    assert await batch_redemption_ids(vouchers, later.json()["id"]) == [since]


async def test_a_refused_batch_creation_leaves_its_key_free(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    """A refusal is not remembered under the key (it rolls back with the rest): once there is something to
    settle, the same call with the same key creates the batch."""
    code, supply = await new_voucher(vouchers, live_registry_client, live_eligibility_client)
    headers = auth(OFFICER, name="officer-zhao", **{"Idempotency-Key": f"batch-early-{supply.vendor}"})
    early = await vouchers.post("/v1/settlement-batches", json={"vendor": supply.vendor}, headers=headers)
    assert_problem(early, 409, "nothing_to_settle")
    redemption = await captured(vouchers, code, supply.vendor, 100 * YUAN)
    created = await vouchers.post("/v1/settlement-batches", json={"vendor": supply.vendor}, headers=headers)
    assert created.status_code == 201, created.text
    assert "Idempotent-Replayed" not in created.headers
    assert await batch_redemption_ids(vouchers, created.json()["id"]) == [redemption]


def as_officer(name: str, client_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(OFFICER, name=name, client_id=client_id)}"}


async def test_the_officer_who_created_a_batch_cannot_close_it(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    """Four eyes on paying a vendor: officer zhao's client gathers the batch; that client closing it, under any name,
    is refused (403 `self_settlement`) and writes nothing; another client closes it, as approvals compare clients."""
    code, supply = await new_voucher(vouchers, live_registry_client, live_eligibility_client)
    await captured(vouchers, code, supply.vendor, 100 * YUAN)
    zhao = f"officer-client-zhao-{supply.vendor}"
    created = await vouchers.post(
        "/v1/settlement-batches", json={"vendor": supply.vendor}, headers=as_officer("officer-zhao", zhao)
    )
    assert created.status_code == 201, created.text
    batch = created.json()
    close = f"/v1/settlement-batches/{batch['id']}/close"
    settles = "SELECT count(*) AS n FROM vouchers.entries WHERE kind = 'settle' AND memo LIKE $1"
    for name in ("officer-zhao", "zhao under another name"):
        own = assert_problem(await vouchers.post(close, headers=as_officer(name, zhao)), 403, "self_settlement")
        assert name in own["detail"]
        assert (await vouchers.get(f"/v1/settlement-batches/{batch['id']}")).json()["batch"] == batch  # still open
        assert (await fetch(vouchers_database, settles, f"settlement batch {batch['id']}:%"))[0]["n"] == 0
    stored = await fetch(
        vouchers_database, "SELECT created_by_client FROM vouchers.settlement_batches WHERE id = $1", batch["id"]
    )
    assert stored[0]["created_by_client"] == zhao
    closed = await vouchers.post(close, headers=as_officer("officer-qian", f"officer-client-qian-{supply.vendor}"))
    assert closed.status_code == 200, closed.text
    assert (closed.json()["created_by"], closed.json()["closed_by"]) == ("officer-zhao", "officer-qian")
    assert (await fetch(vouchers_database, settles, f"settlement batch {batch['id']}:%"))[0]["n"] == 1


async def test_a_batch_from_before_its_creators_client_was_kept_compares_names(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    """A batch created before migration 0029 has no creating client: the names are compared, as before."""
    code, supply = await new_voucher(vouchers, live_registry_client, live_eligibility_client)
    await captured(vouchers, code, supply.vendor, 100 * YUAN)
    batch = (await create_batch(vouchers, supply.vendor, "officer-zhao")).json()
    connection = await asyncpg.connect(vouchers_database)
    try:
        await connection.execute(
            "UPDATE vouchers.settlement_batches SET created_by_client = NULL WHERE id = $1", batch["id"]
        )
    finally:
        await connection.close()
    close = f"/v1/settlement-batches/{batch['id']}/close"
    other_client = as_officer("officer-zhao", f"another-client-{supply.vendor}")
    assert_problem(await vouchers.post(close, headers=other_client), 403, "self_settlement")
    assert (await close_batch(vouchers, batch["id"], "officer-qian")).status_code == 200


async def test_bad_input_is_refused_and_changes_nothing(vouchers: httpx.AsyncClient, vouchers_database: str) -> None:
    before = await fetch(vouchers_database, "SELECT count(*) AS n FROM vouchers.settlement_batches")
    bad_code = await vouchers.post("/v1/settlement-batches", json={"vendor": "9144030071526726XA"})
    assert assert_problem(bad_code, 422, "validation_failed")["errors"][0]["field"] == "body.vendor"
    # the officer is the token's client: naming one in the body is refused
    named = await vouchers.post("/v1/settlement-batches", json={"vendor": new_credit_code(), "created_by": "x"})
    assert assert_problem(named, 422, "validation_failed")["errors"][0]["field"] == "body.created_by"
    assert_problem(await close_batch(vouchers, 2**61), 404, "settlement_batch_not_found")
    assert_problem(await vouchers.get(f"/v1/settlement-batches/{2**61}"), 404, "settlement_batch_not_found")
    assert_problem(await vouchers.get("/v1/settlement-batches", params={"cursor": "nonsense"}), 400, "invalid_cursor")
    assert_problem(await vouchers.get("/v1/vendors/123/statement"), 422, "validation_failed")
    assert_problem(await vouchers.get("/v1/vouchers/M3-NOPE/statement"), 404, "voucher_not_found")
    after = await fetch(vouchers_database, "SELECT count(*) AS n FROM vouchers.settlement_batches")
    assert before[0]["n"] == after[0]["n"]


async def test_closing_writes_one_settle_entry_and_moves_the_receivable(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    code, supply = await new_voucher(vouchers, live_registry_client, live_eligibility_client)
    vendor = supply.vendor
    for amount in (120_000, 80_000, 33_333):
        await captured(vouchers, code, vendor, amount * YUAN + 1)
    total = (120_000 + 80_000 + 33_333) * YUAN + 3
    before = (await vouchers.get(f"/v1/vendors/{vendor}/statement")).json()
    assert (before["receivable_fen"], before["settled_fen"], before["unbatched_fen"]) == (total, 0, total)

    batch = (await create_batch(vouchers, vendor)).json()
    assert batch["total_fen"] == total
    opened = (await vouchers.get(f"/v1/vendors/{vendor}/statement")).json()
    assert (opened["receivable_fen"], opened["unbatched_fen"]) == (total, 0)  # batched, not yet paid
    assert opened["batches"] == {"open": {"count": 1, "amount_fen": total}, "closed": {"count": 0, "amount_fen": 0}}

    response = await close_batch(vouchers, batch["id"])
    assert response.status_code == 200, response.text
    closed = response.json()
    assert (closed["status"], closed["closed_by"], closed["total_fen"]) == ("closed", "officer-qian", total)
    assert closed["closed_at"] is not None
    entries = await fetch(
        vouchers_database,
        "SELECT e.id, e.kind, e.amount_fen, e.actor, f.kind AS from_kind, f.ref AS from_ref, "
        "t.kind AS to_kind, t.ref AS to_ref FROM vouchers.entries e "
        "JOIN vouchers.accounts f ON f.id = e.from_account_id JOIN vouchers.accounts t ON t.id = e.to_account_id "
        "WHERE e.kind = 'settle' AND (f.ref = $1 OR t.ref = $1)",
        vendor,
    )
    assert [dict(e) for e in entries] == [
        {
            "id": closed["entry_id"],
            "kind": "settle",
            "amount_fen": total,
            "actor": "officer-qian",
            "from_kind": "vendor_receivable",
            "from_ref": vendor,
            "to_kind": "settled",
            "to_ref": vendor,
        }
    ]
    after = (await vouchers.get(f"/v1/vendors/{vendor}/statement")).json()
    assert (after["receivable_fen"], after["settled_fen"], after["unbatched_fen"]) == (0, total, 0)
    assert after["batches"]["closed"] == {"count": 1, "amount_fen": total}

    # closing twice: 409, and still one entry; the batch is as it was
    again = assert_problem(await close_batch(vouchers, batch["id"], "officer-sun"), 409, "settlement_batch_closed")
    assert "officer-qian" in again["detail"]
    assert (await vouchers.get(f"/v1/settlement-batches/{batch['id']}")).json()["batch"] == closed
    count = await fetch(
        vouchers_database,
        "SELECT count(*) AS n FROM vouchers.entries e JOIN vouchers.accounts f ON f.id = e.from_account_id "
        "WHERE e.kind = 'settle' AND f.ref = $1",
        vendor,
    )
    assert count[0]["n"] == 1

    # two officers closing one batch at the same moment: one entry, one 409
    await captured(vouchers, code, vendor, 10 * YUAN)
    racing = (await create_batch(vouchers, vendor)).json()
    responses = await asyncio.gather(close_batch(vouchers, racing["id"]), close_batch(vouchers, racing["id"]))
    assert sorted(r.status_code for r in responses) == [200, 409]
    settles = await fetch(
        vouchers_database,
        "SELECT e.amount_fen FROM vouchers.entries e JOIN vouchers.accounts f ON f.id = e.from_account_id "
        "WHERE e.kind = 'settle' AND f.ref = $1 ORDER BY e.id",
        vendor,
    )
    assert [s["amount_fen"] for s in settles] == [total, 10 * YUAN]


async def test_simultaneous_batches_never_share_a_redemption(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    code, supply = await new_voucher(vouchers, live_registry_client, live_eligibility_client)
    vendor = supply.vendor
    for i in range(12):
        await captured(vouchers, code, vendor, (1_000 + i) * YUAN, f"FP-{i}")
    # batches requested at once, while the vendor keeps redeeming
    responses = await asyncio.gather(
        *(create_batch(vouchers, vendor, f"officer-{i}") for i in range(4)),
        *(redeem(vouchers, code, vendor, 500 * YUAN, key(), f"FP-late-{i}") for i in range(4)),
    )
    batch_statuses = sorted(r.status_code for r in responses[:4])
    assert batch_statuses[0] == 201
    assert set(batch_statuses) <= {201, 409}
    assert {r.json()["code"] for r in responses[:4] if r.status_code == 409} <= {"nothing_to_settle"}
    assert all(r.status_code == 201 for r in responses[4:])
    leftover = await create_batch(vouchers, vendor)
    assert leftover.status_code in (201, 409)

    batches, _ = await walk(vouchers, "/v1/settlement-batches", vendor=vendor)
    assert len(batches) >= 1
    batched: list[int] = []
    for batch in batches:
        ids = await batch_redemption_ids(vouchers, batch["id"])
        assert len(ids) == batch["redemption_count"]
        batched.extend(ids)
    assert len(batched) == len(set(batched)), "a redemption is in two batches"
    rows = await fetch(
        vouchers_database,
        "SELECT id, amount_fen, settlement_batch_id FROM vouchers.redemptions "
        "WHERE vendor = $1 AND status = 'captured'",
        vendor,
    )
    assert len(rows) == 16
    assert sorted(batched) == sorted(r["id"] for r in rows)
    assert sum(b["total_fen"] for b in batches) == sum(r["amount_fen"] for r in rows)
    assert {r["settlement_batch_id"] for r in rows} == {b["id"] for b in batches}


async def test_the_database_keeps_a_closed_batch_as_it_is_even_for_a_superuser(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    code, supply = await new_voucher(vouchers, live_registry_client, live_eligibility_client)
    vendor = supply.vendor
    await captured(vouchers, code, vendor, 1_000 * YUAN)
    closed = (await create_batch(vouchers, vendor)).json()
    assert (await close_batch(vouchers, closed["id"])).status_code == 200
    unbatched = await captured(vouchers, code, vendor, 2_000 * YUAN)
    other_code, other = await new_voucher(vouchers, live_registry_client, live_eligibility_client)
    await captured(vouchers, other_code, other.vendor, 3_000 * YUAN)
    stranger = (await create_batch(vouchers, other.vendor)).json()  # open, another vendor's

    connection = await asyncpg.connect(vouchers_database)
    try:
        if not await connection.fetchval("SELECT current_setting('is_superuser') = 'on'"):
            pytest.skip("the test server's user is not a superuser")
        assert await connection.fetchval("SHOW session_replication_role") == "origin"  # triggers fire
        row_before = await connection.fetchrow("SELECT * FROM vouchers.settlement_batches WHERE id = $1", closed["id"])
        outer = connection.transaction()
        await outer.start()
        try:
            refused: list[tuple[str, type[Exception]]] = [
                (
                    "UPDATE vouchers.settlement_batches SET total_fen = total_fen + 1 WHERE id = $1",
                    asyncpg.InsufficientPrivilegeError,
                ),
                (
                    "UPDATE vouchers.settlement_batches SET closed_by = 'someone-else' WHERE id = $1",
                    asyncpg.InsufficientPrivilegeError,
                ),
                (
                    "UPDATE vouchers.settlement_batches SET status = 'open', closed_by = NULL, closed_at = NULL, "
                    "entry_id = NULL WHERE id = $1",
                    asyncpg.InsufficientPrivilegeError,
                ),
                ("DELETE FROM vouchers.settlement_batches WHERE id = $1", asyncpg.InsufficientPrivilegeError),
                # its redemptions never leave it, nor join another batch
                (
                    "UPDATE vouchers.redemptions SET settlement_batch_id = NULL WHERE settlement_batch_id = $1",
                    asyncpg.InsufficientPrivilegeError,
                ),
            ]
            for sql, error in refused:
                with pytest.raises(error):
                    async with connection.transaction():
                        await connection.execute(sql, closed["id"])
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with connection.transaction():
                    await connection.execute("TRUNCATE vouchers.settlement_batches")
            # a captured redemption cannot join a closed batch, nor an open batch of another vendor
            for target in (closed["id"], stranger["id"]):
                with pytest.raises(asyncpg.CheckViolationError):
                    async with connection.transaction():
                        await connection.execute(
                            "UPDATE vouchers.redemptions SET settlement_batch_id = $1 WHERE id = $2", target, unbatched
                        )
            # an open batch closes only with its own settle entry
            with pytest.raises(asyncpg.CheckViolationError):
                async with connection.transaction():
                    await connection.execute(
                        "UPDATE vouchers.settlement_batches SET status = 'closed', closed_by = 'x', "
                        "closed_at = now(), entry_id = $2 WHERE id = $1",
                        stranger["id"],
                        closed["entry_id"],
                    )
        finally:
            await outer.rollback()
        row_after = await connection.fetchrow("SELECT * FROM vouchers.settlement_batches WHERE id = $1", closed["id"])
    finally:
        await connection.close()
    assert row_after == row_before
    assert row_before["status"] == "closed"
    after = (await vouchers.get(f"/v1/settlement-batches/{closed['id']}")).json()["batch"]
    assert (after["status"], after["total_fen"], after["entry_id"]) == ("closed", 1_000 * YUAN, row_before["entry_id"])


# --- statements -------------------------------------------------------------------------------------


async def test_the_voucher_statement_shows_each_entry_with_running_balances(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    code, supply = await new_voucher(vouchers, live_registry_client, live_eligibility_client)
    vendor = supply.vendor
    redeemed = await captured(vouchers, code, vendor, 100 * YUAN, "FP-100")
    held_then_captured = await hold(vouchers, code, vendor, 300 * YUAN, "FP-300")
    await finish(vouchers, held_then_captured, vendor, "capture")
    released = await hold(vouchers, code, vendor, 50 * YUAN, "FP-50")
    await finish(vouchers, released, vendor, "release")
    open_hold = await hold(vouchers, code, vendor, 20 * YUAN, "FP-20")

    lines, pages = await walk(vouchers, f"/v1/vouchers/{code}/statement")
    assert pages == 7
    full = (await vouchers.get(f"/v1/vouchers/{code}/statement")).json()
    assert full["items"] == lines
    assert full["next_cursor"] is None
    assert len({line["entry_id"] for line in lines}) == 7
    assert [line["entry_id"] for line in lines] == sorted(line["entry_id"] for line in lines)
    m = 3_000_000 * YUAN
    expected = [
        # kind, amount, redemption, invoice, available, held, redeemed
        ("issue", m, None, None, m, 0, 0),
        ("redeem", 100 * YUAN, redeemed, "FP-100", m - 100 * YUAN, 0, 100 * YUAN),
        ("hold", 300 * YUAN, held_then_captured, "FP-300", m - 400 * YUAN, 300 * YUAN, 100 * YUAN),
        ("capture", 300 * YUAN, held_then_captured, "FP-300", m - 400 * YUAN, 0, 400 * YUAN),
        ("hold", 50 * YUAN, released, "FP-50", m - 450 * YUAN, 50 * YUAN, 400 * YUAN),
        ("release", 50 * YUAN, released, "FP-50", m - 400 * YUAN, 0, 400 * YUAN),
        ("hold", 20 * YUAN, open_hold, "FP-20", m - 420 * YUAN, 20 * YUAN, 400 * YUAN),
    ]
    assert [
        (
            line["kind"],
            line["amount_fen"],
            line["redemption_id"],
            line["invoice_number"],
            line["available_fen"],
            line["held_fen"],
            line["redeemed_fen"],
        )
        for line in lines
    ] == expected
    issue_line, redeem_line, hold_line, capture_line = lines[:4]
    assert issue_line["from_account"]["kind"] == "budget"
    assert issue_line["from_account"]["ref"].startswith("M3:")
    assert issue_line["to_account"] == {"kind": "voucher", "ref": code}
    assert redeem_line["to_account"] == {"kind": "vendor_receivable", "ref": vendor}
    assert hold_line["to_account"] == {"kind": "hold", "ref": code}
    assert capture_line["from_account"] == {"kind": "hold", "ref": code}
    now = full["voucher"]
    assert (now["code"], now["available_fen"], now["held_fen"], now["redeemed_fen"]) == (
        code,
        lines[-1]["available_fen"],
        lines[-1]["held_fen"],
        lines[-1]["redeemed_fen"],
    )


async def test_the_enterprise_year_statement_adds_up(
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
) -> None:
    first, supply = await new_voucher(vouchers, live_registry_client, live_eligibility_client)
    second, _ = await new_voucher(
        vouchers,
        live_registry_client,
        live_eligibility_client,
        supply=supply,
        contract_fen=4_000_000 * YUAN,
        claim_fen=1_000_000 * YUAN,
    )
    holder, vendor = supply.holder, supply.vendor
    await captured(vouchers, first, vendor, 250_000 * YUAN)
    await captured(vouchers, second, vendor, 40_000 * YUAN)
    await hold(vouchers, first, vendor, 10_000 * YUAN)
    # a grant of another measure (M12: a platform recognised last year) to the same enterprise
    platform = await seed.recognition(
        live_registry_client,
        holder,
        "2025-09-01",
        kind="public_platform",
        platform="人工智能公共算力服务平台",
        level="national",
        year=2025,
    )
    application = await submit(
        live_eligibility_client, holder, {"measure": "M12", "recognition_id": platform}, as_of="2026-03-01"
    )
    granted = await vouchers.post(
        "/v1/grants",
        json={"decision_id": await approve(live_eligibility_client, application)},
        headers=OFFICER_CHEN,
    )
    assert granted.status_code == 201, granted.text
    year = (await vouchers.get(f"/v1/vouchers/{first}")).json()["year"]
    assert granted.json()["year"] == year == 2026

    path = f"/v1/enterprises/{holder}/years/{year}/statement"
    statement = (await vouchers.get(path)).json()
    assert (statement["holder"], statement["year"]) == (holder, year)
    assert statement["claimed_fen"] == 4_000_000 * YUAN
    assert statement["redeemed_fen"] == statement["redeemed_in_year_fen"] == 290_000 * YUAN
    m1, m3 = statement["by_kind"]
    assert m1 == {
        "kind": "M1",
        "vouchers": 0,
        "claimed_fen": 0,
        "available_fen": 0,
        "held_fen": 0,
        "redeemed_fen": 0,
        "returned_fen": 0,
        "redeemed_in_year_fen": 0,
        "held_in_year_fen": 0,
    }
    assert m3 == {
        "kind": "M3",
        "vouchers": 2,
        "claimed_fen": 4_000_000 * YUAN,
        "available_fen": (4_000_000 - 300_000) * YUAN,
        "held_fen": 10_000 * YUAN,
        "redeemed_fen": 290_000 * YUAN,
        "returned_fen": 0,
        "redeemed_in_year_fen": 290_000 * YUAN,
        "held_in_year_fen": 10_000 * YUAN,
    }
    ceilings = {c["kind"]: c for c in statement["ceilings"]}
    assert ceilings["M3.claims"]["limit_fen"] == 5_000_000 * YUAN
    assert (ceilings["M3.claims"]["used_fen"], ceilings["M3.claims"]["headroom_fen"]) == (
        4_000_000 * YUAN,
        1_000_000 * YUAN,
    )
    assert ceilings["M3.redemptions"]["used_fen"] == 300_000 * YUAN  # captured and held count
    assert ceilings["M3.redemptions"]["headroom_fen"] == ceilings["M3.redemptions"]["limit_fen"] - 300_000 * YUAN
    stored = await fetch(
        vouchers_database,
        "SELECT kind, limit_fen, used_fen FROM vouchers.allowances WHERE holder = $1 AND year = $2",
        holder,
        year,
    )
    assert {(c["kind"], c["limit_fen"], c["used_fen"]) for c in statement["ceilings"]} == {tuple(r) for r in stored}
    assert [(g["measure"], g["amount_fen"]) for g in statement["grants"]] == [("M12", 500_000 * YUAN)]
    assert statement["grants_fen"] == 500_000 * YUAN

    items, pages = await walk(vouchers, path)
    assert pages == 2
    assert [item["code"] for item in items] == [first, second]
    assert items == statement["items"]
    assert sum(item["amount_fen"] for item in items) == statement["claimed_fen"]
    assert items[0]["state"] == "partly_redeemed"
    # another year of the same enterprise: nothing of this year leaks into it
    other_year = (await vouchers.get(f"/v1/enterprises/{holder}/years/{year - 1}/statement")).json()
    assert (other_year["items"], other_year["ceilings"], other_year["grants"], other_year["claimed_fen"]) == (
        [],
        [],
        [],
        0,
    )


async def test_the_vendor_statement_adds_up_and_paginates(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    code, supply = await new_voucher(vouchers, live_registry_client, live_eligibility_client)
    vendor = supply.vendor
    a = await captured(vouchers, code, vendor, 100 * YUAN)
    b = await hold(vouchers, code, vendor, 200 * YUAN)
    await finish(vouchers, b, vendor, "capture")
    c = await hold(vouchers, code, vendor, 300 * YUAN)
    d = await hold(vouchers, code, vendor, 400 * YUAN)
    await finish(vouchers, d, vendor, "release")
    first_batch = (await create_batch(vouchers, vendor)).json()
    assert (await close_batch(vouchers, first_batch["id"])).status_code == 200
    e = await captured(vouchers, code, vendor, 500 * YUAN)
    second_batch = (await create_batch(vouchers, vendor)).json()
    f = await captured(vouchers, code, vendor, 600 * YUAN)

    path = f"/v1/vendors/{vendor}/statement"
    statement = (await vouchers.get(path)).json()
    assert statement["vendor"] == vendor
    assert statement["redemptions"] == {
        "captured": {"count": 4, "amount_fen": 1_400 * YUAN},
        "held": {"count": 1, "amount_fen": 300 * YUAN},
        "released": {"count": 1, "amount_fen": 400 * YUAN},
        "expired": {"count": 0, "amount_fen": 0},
    }
    assert statement["settled_fen"] == 300 * YUAN
    assert statement["receivable_fen"] == 1_100 * YUAN  # captured − settled
    assert statement["unbatched_fen"] == 600 * YUAN
    assert statement["batches"] == {
        "open": {"count": 1, "amount_fen": 500 * YUAN},
        "closed": {"count": 1, "amount_fen": 300 * YUAN},
    }
    items, pages = await walk(vouchers, path)
    assert pages == 6
    assert [i["id"] for i in items] == [a, b, c, d, e, f]
    assert [(i["status"], i["settlement_batch_id"]) for i in items] == [
        ("captured", first_batch["id"]),
        ("captured", first_batch["id"]),
        ("held", None),
        ("released", None),
        ("captured", second_batch["id"]),
        ("captured", None),
    ]
    assert {i["voucher_code"] for i in items} == {code}
    only_captured, _ = await walk(vouchers, path, status="captured")
    assert [i["id"] for i in only_captured] == [a, b, e, f]

    listed, list_pages = await walk(vouchers, "/v1/settlement-batches", vendor=vendor)
    assert [batch["id"] for batch in listed] == [first_batch["id"], second_batch["id"]]
    assert list_pages == 2
    open_only = (await vouchers.get("/v1/settlement-batches", params={"vendor": vendor, "status": "open"})).json()
    assert [batch["id"] for batch in open_only["items"]] == [second_batch["id"]]
    in_first, first_pages = await walk(vouchers, f"/v1/settlement-batches/{first_batch['id']}")
    assert [i["id"] for i in in_first] == [a, b]
    assert first_pages == 2


async def test_statements_of_a_stranger_are_empty(vouchers: httpx.AsyncClient) -> None:
    stranger = new_credit_code()
    vendor = (await vouchers.get(f"/v1/vendors/{stranger}/statement")).json()
    assert (vendor["items"], vendor["receivable_fen"], vendor["settled_fen"], vendor["unbatched_fen"]) == ([], 0, 0, 0)
    enterprise = (await vouchers.get(f"/v1/enterprises/{stranger}/years/2026/statement")).json()
    assert (enterprise["items"], enterprise["claimed_fen"], enterprise["next_cursor"]) == ([], 0, None)


SETTLEMENT_CHECKS = {
    "closed_batch_entry": """
        SELECT b.id FROM vouchers.settlement_batches b
        LEFT JOIN vouchers.entries e ON e.id = b.entry_id
        WHERE b.status = 'closed' AND (e.id IS NULL OR e.kind <> 'settle' OR e.amount_fen <> b.total_fen)
    """,
    "batch_adds_up": """
        SELECT b.id FROM vouchers.settlement_batches b
        LEFT JOIN vouchers.redemptions r ON r.settlement_batch_id = b.id
        GROUP BY b.id
        HAVING b.total_fen <> coalesce(sum(r.amount_fen), 0) OR b.redemption_count <> count(r.id)
            OR bool_or(r.status <> 'captured') OR bool_or(r.vendor <> b.vendor)
    """,
    "settle_entry_of_a_batch": """
        SELECT e.id FROM vouchers.entries e
        WHERE e.kind = 'settle' AND NOT EXISTS (SELECT 1 FROM vouchers.settlement_batches b WHERE b.entry_id = e.id)
    """,
    "receivable_is_captured_minus_settled": """
        WITH balance AS (
            SELECT a.ref AS vendor,
                   coalesce((SELECT sum(amount_fen) FROM vouchers.entries WHERE to_account_id = a.id), 0)
                 - coalesce((SELECT sum(amount_fen) FROM vouchers.entries WHERE from_account_id = a.id), 0) AS fen
            FROM vouchers.accounts a WHERE a.kind = 'vendor_receivable'),
        owed AS (
            SELECT vendor, sum(amount_fen) AS fen FROM vouchers.redemptions WHERE status = 'captured' GROUP BY vendor),
        paid AS (
            SELECT vendor, sum(total_fen) AS fen FROM vouchers.settlement_batches WHERE status = 'closed'
            GROUP BY vendor)
        SELECT b.vendor, b.fen FROM balance b
        LEFT JOIN owed o ON o.vendor = b.vendor LEFT JOIN paid p ON p.vendor = b.vendor
        WHERE b.fen <> coalesce(o.fen, 0) - coalesce(p.fen, 0) OR b.fen < 0
    """,
}


async def test_the_ledger_is_consistent_after_all_of_the_above(vouchers_database: str) -> None:
    """Runs last in this module: the ledger's invariants, and settlement's own, over everything written."""
    from services.vouchers.invariants import check_database

    assert await check_database(vouchers_database) == []
    for name, sql in SETTLEMENT_CHECKS.items():
        assert await fetch(vouchers_database, sql) == [], name
    settled = await fetch(
        vouchers_database, "SELECT count(*) AS n FROM vouchers.settlement_batches WHERE status = 'closed'"
    )
    assert settled[0]["n"] > 0  # the checks above had something to check
