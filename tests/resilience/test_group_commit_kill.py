"""Issue #16: a vouchers process killed while a group-commit batch is in flight keeps every promise.

One process of each service on a PostgreSQL of their own (tests/resilience/cluster.py, `ONE_EACH`), the
vouchers process with ONE ledger call in flight (`VOUCHERS_GROUP_COMMIT_IN_FLIGHT=1`), so what waits goes as
one call of `vouchers.ledger_batch()`. The batch is made, not hoped for:

1. five M3 vouchers issued through the real services: A, and W1 < W2 < B < W4 (by code, the batch's order);
2. as the owner, on two connections, the test locks A's row (`SELECT … FOR UPDATE`) and claims, uncommitted,
   the Idempotency-Key of one of B's calls (the row `vouchers.claim_key()` inserts first);
3. one redemption on A takes the only slot and waits in PostgreSQL; 20 vendor calls on W1, W2, B, W4
   (redemptions and holds that fit, redemptions beyond the voucher, another vendor's voucher; each with its
   own Idempotency-Key) then wait in the process; A's lock is committed: A is answered (acknowledged) and
   the 20 go as one batch, which locks the four vouchers and their ceilings, writes W1's and W2's calls (and
   perhaps some of B's) and waits for the claimed key (pg_stat_activity: a `ledger_batch` query waiting on a
   lock, holding a RowExclusiveLock on vouchers.entries: it has written entries; W1's row is locked by it);
4. the vouchers process is killed (SIGKILL): none of the 20 is answered; the key's claim is rolled back;
5. in the database: the 20 calls are all there (one transaction) or none is, A's redemption is there exactly
   once, no redemption lacks its entry or its Idempotency-Key record, the ledger's invariants hold;
6. the process restarts and every unacknowledged call is sent again with its key and body: each gets a
   definite answer (the one expected: 201, `insufficient_balance`, `voucher_not_found`), each key is in the
   ledger once, the balances follow, the invariants hold and the hash chain verifies once the sealer caught up.

Whether a batch cut off this way commits is PostgreSQL's business: the backend finishes the function once
the key is free and commits at the protocol's Sync unless writing the answer to the dead client failed
first. Both are fine, and both are shown: the first test leaves PostgreSQL as it is (and says which it
was), the second sets `client_connection_check_interval`, so that the backend notices the client is gone
while it waits for the key and rolls the batch back; the retries then write the calls.

Not part of `make test` (pyproject: --ignore); `make test-resilience` runs it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from services.vouchers.invariants import check_invariants
from shared.auth import AUDITOR
from tests.auth import admin, auth
from tests.resilience.cluster import DATABASE, ONE_EACH, Cluster
from tests.resilience.history import SUMMARIES
from tests.vouchers.flow import YUAN, approved_m3, issue, model_supply, vendor_call

VOUCHERS = "vouchers-0"
SERVICE_ENV = {
    "VOUCHERS_GROUP_COMMIT": "true",
    "VOUCHERS_GROUP_COMMIT_IN_FLIGHT": "1",  # the plug on A holds the only slot: the 20 wait and go as one batch
    "VOUCHERS_RATE_LIMIT_BURST": "1000000",  # the test is not about rate limits
    "VOUCHERS_RATE_LIMIT_MAX_IN_FLIGHT": "0",
    "VOUCHERS_RATE_LIMIT_WRITE_MAX_IN_FLIGHT": "0",
}
VOUCHER_FEN = 1_000_000 * YUAN
#: time the 20 calls have, once sent, to reach the process and wait there (they need no peer: M3)
QUEUE_SECONDS = 3.0  # (A's call must end within the ledger pool's command timeout, 10 s)
AUDITOR_HEADERS = auth(AUDITOR, name="auditor-group-commit")
#: a redemption that has no entry, or no Idempotency-Key record (of its vendor) naming it
ORPHANS = """
    SELECT r.id FROM vouchers.redemptions r
     WHERE NOT EXISTS (SELECT 1 FROM vouchers.entries e WHERE e.redemption_id = r.id)
        OR NOT EXISTS (SELECT 1 FROM vouchers.idempotency i
                        WHERE i.client = r.vendor AND i.status_code = 201 AND i.response->>'id' = r.id::text)
"""
BATCHES = """
    SELECT pid, state, wait_event_type, wait_event FROM pg_stat_activity
     WHERE datname = current_database() AND query LIKE '%vouchers.ledger_batch(%' AND pid <> pg_backend_pid()
"""


@pytest_asyncio.fixture(scope="module")
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """One process of each service on a PostgreSQL of their own; the vouchers process batches what waits."""
    workdir = Path(tempfile.mkdtemp(prefix="longgang-group-commit-"))
    cluster = Cluster(workdir, SERVICE_ENV, topology=ONE_EACH)
    failures_before, failed = request.session.testsfailed, True
    try:
        await asyncio.to_thread(cluster.start_database)
        await asyncio.to_thread(cluster.start_all)
        yield cluster
        failed = request.session.testsfailed > failures_before
    finally:
        await asyncio.to_thread(cluster.stop)
        if failed:
            print(f"logs and data kept in {workdir}\n{cluster.log_tail()}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class Call:
    """One vendor call: a redemption or a hold, with its expected answer (order does not change it)."""

    vendor: str
    code: str
    key: str
    amount_fen: int
    hold: bool
    expected: tuple[int, str | None]

    @property
    def stored_status(self) -> int:
        """The status its Idempotency-Key record keeps: the ledger's (another vendor's voucher is 403 there,
        answered 404 `voucher_not_found`: services/vouchers/redemptions/service.py)."""
        return 403 if self.expected[1] == "voucher_not_found" else self.expected[0]

    @property
    def path(self) -> str:
        return f"/v1/vouchers/{self.code}/" + ("holds" if self.hold else "redemptions")

    @property
    def body(self) -> dict[str, Any]:
        return {"amount_fen": self.amount_fen, "invoice_number": self.key}


@dataclass
class Run:
    """What one scenario did and saw."""

    a: Call
    calls: list[Call]
    codes: dict[str, str]  # A, W1, W2, B, W4 → code
    acknowledged: dict[str, httpx.Response] = field(default_factory=dict)  # key → the answer the client got
    outcome: str = ""  # the batch "committed" or "rolled back"


async def vouchers_issued(cluster: Cluster) -> tuple[dict[str, str], dict[str, str]]:
    """Five M3 vouchers of five enterprises (each with its model vendor), issued through the real services."""
    registry_url, eligibility_url, vouchers_url = (
        cluster.url(f"{s}-0") for s in ("registry", "eligibility", "vouchers")
    )
    codes: list[str] = []
    vendor_of: dict[str, str] = {}
    async with (
        httpx.AsyncClient(base_url=registry_url, timeout=30, headers=admin()) as registry,
        httpx.AsyncClient(base_url=eligibility_url, timeout=30, headers=admin()) as eligibility,
        httpx.AsyncClient(base_url=vouchers_url, timeout=30, headers=admin()) as vouchers,
    ):
        for _ in range(5):
            supply = await model_supply(registry)
            _, decision_id = await approved_m3(registry, eligibility, claim_fen=VOUCHER_FEN, supply=supply)
            issued = await issue(vouchers, decision_id)
            assert issued.status_code == 201, issued.text
            codes.append(issued.json()["code"])
            vendor_of[codes[-1]] = supply.vendor
    a, others = codes[0], sorted(codes[1:])
    return dict(zip(("A", "W1", "W2", "B", "W4"), [a, *others], strict=True)), vendor_of


def plan(tag: str, codes: dict[str, str], vendor_of: dict[str, str]) -> tuple[Call, list[Call]]:
    """A's redemption, and five calls on each of W1, W2, B and W4 whose answers do not depend on their order."""
    a = Call(vendor_of[codes["A"]], codes["A"], f"{tag}-A", 10_000 * YUAN, False, (201, None))
    calls: list[Call] = []
    names = ["W1", "W2", "B", "W4"]
    for n, name in enumerate(names):
        code, vendor = codes[name], vendor_of[codes[name]]
        stranger = vendor_of[codes[names[(n + 1) % len(names)]]]
        key = f"{tag}-{name}"
        calls += [
            Call(vendor, code, f"{key}-r1", 10_000 * YUAN, False, (201, None)),
            Call(vendor, code, f"{key}-r2", 10_000 * YUAN, False, (201, None)),
            Call(vendor, code, f"{key}-h1", 20_000 * YUAN, True, (201, None)),
            Call(vendor, code, f"{key}-over", VOUCHER_FEN + YUAN, False, (409, "insufficient_balance")),
            Call(stranger, code, f"{key}-stranger", 1_000 * YUAN, False, (404, "voucher_not_found")),
        ]
    return a, calls


async def send(client: httpx.AsyncClient, call: Call) -> httpx.Response:
    return await client.post(call.path, json=call.body, headers=vendor_call(call.vendor, call.key))


def answer(response: httpx.Response) -> tuple[int, str | None]:
    return response.status_code, response.json().get("code") if response.status_code >= 400 else None


async def until(condition: Callable[[], Awaitable[bool]], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def locked(connection: asyncpg.Connection, code: str) -> asyncpg.transaction.Transaction:
    """The voucher's row locked by this connection's open transaction."""
    transaction = connection.transaction()
    await transaction.start()
    await connection.execute("SELECT 1 FROM vouchers.vouchers WHERE code = $1 FOR UPDATE", code)
    return transaction


async def kill_mid_batch(cluster: Cluster, run: Run, *, rolled_back: bool) -> None:
    """Steps 2 to 4: A answered, the batch of 20 in flight, partly written and waiting for a key of B's, the
    process killed, the key released."""
    owner = await asyncpg.connect(cluster.database_url)
    lock_a_connection = await asyncpg.connect(cluster.database_url)
    key_connection = await asyncpg.connect(cluster.database_url)
    held = next(call for call in run.calls if call.code == run.codes["B"])  # its key is claimed by the test
    timeout = httpx.Timeout(60.0, connect=5.0)
    limits = httpx.Limits(max_connections=64)
    try:
        async with httpx.AsyncClient(base_url=cluster.url(VOUCHERS), timeout=timeout, limits=limits) as client:
            lock_a = await locked(lock_a_connection, run.codes["A"])
            key_claim = key_connection.transaction()
            await key_claim.start()
            await key_connection.execute(
                "INSERT INTO vouchers.idempotency (client, key, request_hash) VALUES ($1, $2, 'held by the test')",
                held.vendor,
                held.key,
            )
            plug = asyncio.ensure_future(send(client, run.a))

            async def a_waits() -> bool:
                assert not plug.done(), f"A was answered while its row was locked: {plug.result().text}"
                return bool(
                    await owner.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND query LIKE '%vouchers.redeem(%'"
                    )
                )

            await until(a_waits, "A's redemption to wait on its row")
            pending = [asyncio.ensure_future(send(client, call)) for call in run.calls]
            await asyncio.sleep(QUEUE_SECONDS)  # they reach the process and wait for its only ledger slot
            assert not any(p.done() for p in pending), "a call was answered while the only slot was taken"
            await lock_a.commit()
            answered = await plug
            assert answered.status_code == 201, answered.text
            run.acknowledged[run.a.key] = answered

            async def batch_waits() -> bool:
                rows = await owner.fetch(BATCHES)
                return any(r["state"] == "active" and r["wait_event_type"] == "Lock" for r in rows)

            await until(batch_waits, "the batch to wait for the key of B's call")
            # it wrote what comes before B in its order (entries), and W1's row is its until it ends
            written = await owner.fetch(
                "SELECT l.relation::regclass::text AS relation FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE a.query LIKE '%vouchers.ledger_batch(%' "
                "AND a.pid <> pg_backend_pid() AND l.locktype = 'relation' AND l.mode = 'RowExclusiveLock'"
            )
            assert {"vouchers.entries", "vouchers.redemptions"} <= {row["relation"] for row in written}, written
            with pytest.raises(asyncpg.exceptions.LockNotAvailableError):
                async with owner.transaction():
                    await owner.execute(
                        "SELECT 1 FROM vouchers.vouchers WHERE code = $1 FOR UPDATE NOWAIT", run.codes["W1"]
                    )
            assert not any(p.done() for p in pending), "a call of the batch was answered before it ended"

            await asyncio.to_thread(cluster.kill, VOUCHERS, signal.SIGKILL)
            results = await asyncio.gather(*pending, return_exceptions=True)
            for call, result in zip(run.calls, results, strict=True):
                if isinstance(result, httpx.Response):
                    run.acknowledged[call.key] = result  # none is expected; an answer would be a promise kept below
                else:
                    assert isinstance(result, httpx.TransportError), repr(result)

            async def batch_gone() -> bool:
                return not await owner.fetch(BATCHES)

            if rolled_back:  # the backend notices its client is gone while it waits, and rolls the batch back
                await until(batch_gone, "the batch's backend to notice its client is gone")
            await key_claim.rollback()  # the batch claims the key itself and goes on
            await until(batch_gone, "the batch's backend to end")
    finally:
        for connection in (owner, lock_a_connection, key_connection):
            await connection.close()


async def check_after_kill(cluster: Cluster, run: Run) -> None:
    """Step 5: all of the batch or none of it, A once, no half-written redemption, the invariants."""
    connection = await asyncpg.connect(cluster.database_url)
    try:
        keys = [call.key for call in run.calls]
        stored = await connection.fetch(
            "SELECT key, status_code, xmin::text AS xmin FROM vouchers.idempotency WHERE key = ANY($1::text[])", keys
        )
        invoices = await connection.fetch(
            "SELECT invoice_number, count(*) AS n FROM vouchers.redemptions WHERE invoice_number = ANY($1::text[]) "
            "GROUP BY invoice_number",
            keys,
        )
        assert len(stored) in (0, len(keys)), (
            f"{len(stored)} of the batch's {len(keys)} calls were written (a call that reached the process later than "
            "QUEUE_SECONDS after it was sent would have missed the batch)"
        )
        if stored:
            run.outcome = "committed"
            assert len({row["xmin"] for row in stored}) == 1, "the batch's calls were not one transaction"
            assert {row["key"]: row["status_code"] for row in stored} == {c.key: c.stored_status for c in run.calls}
            assert {row["invoice_number"]: row["n"] for row in invoices} == {
                c.key: 1 for c in run.calls if c.expected[0] == 201
            }
        else:
            run.outcome = "rolled back"
            assert invoices == []
        for key, response in run.acknowledged.items():
            [row] = await connection.fetch(
                "SELECT status_code, response::text AS response FROM vouchers.idempotency WHERE key = $1", key
            )
            assert row["status_code"] == response.status_code
            if response.status_code == 201:
                assert (
                    await connection.fetchval(
                        "SELECT count(*) FROM vouchers.redemptions WHERE invoice_number = $1", key
                    )
                    == 1
                )
                assert (
                    await connection.fetchval(
                        "SELECT count(*) FROM vouchers.entries WHERE redemption_id = $1", response.json()["id"]
                    )
                    == 1
                )
        assert await connection.fetch(ORPHANS) == []
        assert await check_invariants(connection) == []
    finally:
        await connection.close()


async def retry_and_check(cluster: Cluster, run: Run) -> list[str]:
    """Step 6: the process back, every unacknowledged call sent again, each answered once for all."""
    await asyncio.to_thread(cluster.start, VOUCHERS)
    await asyncio.to_thread(cluster.wait_ready, [VOUCHERS])
    unacknowledged = [call for call in run.calls if call.key not in run.acknowledged]
    connection = await asyncpg.connect(cluster.database_url)
    try:
        before = {
            row["key"]: row["response"]
            for row in await connection.fetch(
                "SELECT key, response::text AS response FROM vouchers.idempotency WHERE key = ANY($1::text[])",
                [call.key for call in run.calls],
            )
        }
        async with httpx.AsyncClient(base_url=cluster.url(VOUCHERS), timeout=60) as client:
            retried = await asyncio.gather(*(send(client, call) for call in unacknowledged))
            again = await asyncio.gather(*(send(client, call) for call in unacknowledged))
        for call, response, replay in zip(unacknowledged, retried, again, strict=True):
            assert answer(response) == call.expected, (call, response.text)
            if response.status_code == 201:
                assert replay.json() == response.json()
                if call.key in before:  # the batch had committed: its stored answer, not a second redemption
                    assert response.json()["id"] == int(json.loads(before[call.key])["id"])
            else:
                assert answer(replay) == call.expected
        keys = [call.key for call in [run.a, *run.calls]]
        per_key = Counter(
            row["key"]
            for row in await connection.fetch("SELECT key FROM vouchers.idempotency WHERE key = ANY($1::text[])", keys)
        )
        assert per_key == Counter(keys), per_key
        per_invoice = {
            row["invoice_number"]: row["n"]
            for row in await connection.fetch(
                "SELECT invoice_number, count(*) AS n FROM vouchers.redemptions WHERE invoice_number = ANY($1) "
                "GROUP BY invoice_number",
                keys,
            )
        }
        assert per_invoice == {c.key: 1 for c in [run.a, *run.calls] if c.expected[0] == 201}
        for name in ("W1", "W2", "B", "W4"):
            voucher = await connection.fetchrow(
                "SELECT redeemed_fen, held_fen, available_fen FROM vouchers.vouchers WHERE code = $1", run.codes[name]
            )
            redeemed, held = 20_000 * YUAN, 20_000 * YUAN
            assert (voucher["redeemed_fen"], voucher["held_fen"], voucher["available_fen"]) == (
                redeemed,
                held,
                VOUCHER_FEN - redeemed - held,
            ), name
        assert await connection.fetch(ORPHANS) == []
        assert await check_invariants(connection) == []
        entries = int(await connection.fetchval("SELECT count(*) FROM vouchers.entries"))
    finally:
        await connection.close()
    async with httpx.AsyncClient(base_url=cluster.url(VOUCHERS), timeout=60, headers=AUDITOR_HEADERS) as auditor:

        async def sealed() -> bool:
            lag = await auditor.get("/v1/ledger/seal-lag")
            assert lag.status_code == 200, lag.text
            return int(lag.json()["unsealed"]) == 0

        await until(sealed, "the sealer to catch up")
        verified = await auditor.get("/v1/ledger/verify")
        assert verified.status_code == 200, verified.text
        report = verified.json()
        assert (report["ok"], report["unsealed"], report["entries_verified"]) == (True, 0, entries), report
        invariants = await auditor.get("/v1/ledger/invariants")
        assert invariants.json() == {"ok": True, "violations": []}
    return [f"{len(unacknowledged)} calls sent again after the restart: {dict(Counter(answer(r) for r in retried))}"]


async def scenario(cluster: Cluster, tag: str, *, rolled_back: bool) -> Run:
    codes, vendor_of = await vouchers_issued(cluster)
    a, calls = plan(tag, codes, vendor_of)
    run = Run(a, calls, codes)
    await kill_mid_batch(cluster, run, rolled_back=rolled_back)
    await check_after_kill(cluster, run)
    lines = await retry_and_check(cluster, run)
    SUMMARIES.append(
        f"group commit, a vouchers process killed mid-batch ({tag}): A acknowledged and present once; the batch of "
        f"{len(calls)} calls (W1 < W2 < B < W4, written up to a key of B's and waiting for it) {run.outcome} after "
        "the kill; " + "; ".join(lines)
    )
    return run


async def test_a_process_killed_mid_batch_leaves_all_of_it_or_none_and_every_answer_kept(cluster: Cluster) -> None:
    run = await scenario(cluster, f"gck{time.time_ns()}", rolled_back=False)
    assert run.outcome in ("committed", "rolled back")
    assert list(run.acknowledged) == [run.a.key]


async def test_a_batch_whose_client_died_is_rolled_back_whole_and_the_retries_write_it(cluster: Cluster) -> None:
    """With `client_connection_check_interval`, the backend notices the dead process while the batch waits for
    the key and rolls the batch back: none of it is written, A is, and the retries write each call once."""
    owner = await asyncpg.connect(cluster.database_url)
    try:
        await owner.execute(f"ALTER DATABASE {DATABASE} SET client_connection_check_interval = '100ms'")
        await asyncio.to_thread(cluster.kill, VOUCHERS, signal.SIGTERM)  # new sessions take the setting
        await asyncio.to_thread(cluster.start, VOUCHERS)
        await asyncio.to_thread(cluster.wait_ready, [VOUCHERS])
        run = await scenario(cluster, f"gcr{time.time_ns()}", rolled_back=True)
    finally:
        await owner.execute(f"ALTER DATABASE {DATABASE} RESET client_connection_check_interval")
        await owner.close()
    assert run.outcome == "rolled back"
    assert list(run.acknowledged) == [run.a.key]
