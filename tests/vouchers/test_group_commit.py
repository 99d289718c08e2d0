"""Group commit on the redemption path (issue #16): a batch answers every call as the calls one by one would.

A vouchers app with one ledger call in flight (`group_commit_in_flight=1`) on the vouchers tests'
database. Each test makes the batch deterministic instead of hoping for one: a "plug" redemption
takes the only slot and waits in PostgreSQL on a voucher row the test has locked; the calls are
then sent one at a time, each only once the previous one waits in the process (so their arrival
order is the list's), and the lock is committed: the plug is answered and everything that waited
goes as one call of `vouchers.ledger_batch()`.

The calls mix redemptions and holds on three vouchers (two of one vendor, one of another), with
successes, refusals (`insufficient_balance` beyond the balance, another vendor's voucher,
`idempotency_key_reused` for a key sent again with another body), replays (the same key and body
twice in the batch), captures and releases of holds made before, a hold finished twice, another
vendor's capture. The answers of

- the batch,
- the same calls on fresh vouchers sent one by one with group commit off, in the batch's order, and
- the same calls on fresh vouchers whose batch fails (a deadlock) and falls back to one call each,

are the same, once ids, codes, vendors and request ids are named alike; and in each run the
vouchers' balances follow from the answers, and the ledger's invariants hold.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from services.vouchers.invariants import check_database
from services.vouchers.redemptions.group_commit import GroupCommit
from tests.vouchers.flow import OFFICER_CHEN, YUAN, ModelSupply, approved_m3, issue, model_supply, vendor_call

VOUCHER_FEN = 1_000_000 * YUAN  # each voucher's amount (claim)
#: answer fields that differ from one run to the next whatever the order (ids, times, request ids, texts)
VOLATILE = {"id", "entry_id", "hold_expires_at", "request_id", "detail", "instance", "type", "title"}


@pytest_asyncio.fixture(scope="module")
async def app(running_vouchers_app: Callable[..., AbstractAsyncContextManager[FastAPI]]) -> AsyncIterator[FastAPI]:
    """The vouchers app as tests/conftest.py makes it, with ONE ledger call in flight: what waits is batched."""
    async with running_vouchers_app(group_commit=True, group_commit_in_flight=1) as app:
        yield app


@dataclass
class Setup:
    """Fresh vouchers X, Y (vendor v1), Z and the plug P (vendor v2), and holds h1 (X), h2 and h3 (Y)."""

    codes: dict[str, str]  # symbol → voucher code
    vendors: dict[str, str]  # symbol → credit code
    holds: dict[str, int]  # symbol → hold id
    run: str  # makes this run's Idempotency-Keys and invoice numbers unique in the shared ledger

    def names(self) -> dict[str, str]:
        """Every run-specific string → its symbol (hold ids are only in the fields VOLATILE leaves out)."""
        return {
            **{v: k for k, v in self.codes.items()},
            **{v: k for k, v in self.vendors.items()},
            self.run: "run",
        }


@dataclass(frozen=True)
class Call:
    """One vendor call, by symbols: `target` is a voucher (redeem, hold) or a hold (capture, release)."""

    kind: str  # redeem | hold | capture | release
    vendor: str
    target: str
    key: str
    amount_yuan: int = 0

    def request(self, setup: Setup) -> tuple[str, dict[str, Any] | None, dict[str, str]]:
        headers = vendor_call(setup.vendors[self.vendor], f"{setup.run}-{self.key}")
        if self.kind in ("capture", "release"):
            return f"/v1/holds/{setup.holds[self.target]}/{self.kind}", None, headers
        body = {"amount_fen": self.amount_yuan * YUAN, "invoice_number": f"{setup.run}-{self.key}"}
        path = f"/v1/vouchers/{setup.codes[self.target]}/" + ("holds" if self.kind == "hold" else "redemptions")
        return path, body, headers

    def order(self, setup: Setup) -> str:
        """Where GroupCommit puts it in a batch (`Redemption.order`, `Finish.order`)."""
        if self.kind in ("capture", "release"):
            return f"~{setup.holds[self.target]:020d}"
        return setup.codes[self.target]


#: in arrival order. X: 1,000,000 with h1 50,000 held; Y: 1,000,000 with h2 30,000 and h3 20,000 held; Z: 1,000,000
CALLS = [
    Call("redeem", "v1", "X", "a1", 100_000),  # 201
    Call("redeem", "v1", "Y", "a2", 300_000),  # 201
    Call("redeem", "v1", "X", "a3", 1_000_001),  # more than the voucher: insufficient_balance
    Call("redeem", "v1", "X", "a1", 100_000),  # the same key and body: a1's answer again
    Call("redeem", "v2", "Z", "b1", 250_000),  # 201
    Call("redeem", "v1", "Z", "a4", 1_000),  # another vendor's voucher: voucher_not_found
    Call("hold", "v2", "Z", "b2", 100_000),  # 201, held
    Call("redeem", "v1", "Y", "a5", 10_000),  # 201
    Call("redeem", "v1", "Y", "a5", 20_000),  # the same key, another body: idempotency_key_reused
    Call("redeem", "v2", "Z", "b3", 900_000),  # 650,000 left: insufficient_balance
    Call("redeem", "v1", "Y", "a6", 600_000),  # 640,000 left: 201
    Call("redeem", "v1", "Y", "a7", 50_000),  # 40,000 left: insufficient_balance
    Call("capture", "v1", "h1", "a8"),  # 200
    Call("release", "v1", "h2", "a9"),  # 200
    Call("capture", "v1", "h2", "a10"),  # released just before: hold_not_active
    Call("capture", "v2", "h3", "b4"),  # another vendor's hold: hold_not_found
    Call("capture", "v1", "h1", "a8"),  # the same key: a8's answer again
]
EXPECTED = [
    (201, None),
    (201, None),
    (409, "insufficient_balance"),
    (201, None),
    (201, None),
    (404, "voucher_not_found"),
    (201, None),
    (201, None),
    (409, "idempotency_key_reused"),
    (409, "insufficient_balance"),
    (201, None),
    (409, "insufficient_balance"),
    (200, None),
    (200, None),
    (409, "hold_not_active"),
    (404, "hold_not_found"),
    (200, None),
]
RUNS = iter(range(1_000_000))


async def prepare(client: httpx.AsyncClient, registry: httpx.AsyncClient, eligibility: httpx.AsyncClient) -> Setup:
    """Fresh enterprises, vouchers and holds (through the real registry and eligibility processes)."""
    first, second = await model_supply(registry), await model_supply(registry)
    codes: dict[str, str] = {}
    for symbol, supply in (("X", first), ("Y", first), ("Z", second), ("P", second)):
        _, decision_id = await approved_m3(registry, eligibility, claim_fen=VOUCHER_FEN, supply=supply)
        issued = await issue(client, decision_id)
        assert issued.status_code == 201, issued.text
        codes[symbol] = issued.json()["code"]
    setup = Setup(codes, {"v1": first.vendor, "v2": second.vendor}, {}, f"gc{time.time_ns()}-{next(RUNS)}")
    for symbol, target, amount_yuan in (("h1", "X", 50_000), ("h2", "Y", 30_000), ("h3", "Y", 20_000)):
        path, body, headers = Call("hold", "v1", target, f"pre-{symbol}", amount_yuan).request(setup)
        held = await client.post(path, json=body, headers=headers)
        assert held.status_code == 201, held.text
        setup.holds[symbol] = int(held.json()["id"])
    return setup


async def issued_codes(
    client: httpx.AsyncClient,
    registry: httpx.AsyncClient,
    eligibility: httpx.AsyncClient,
    supplies: list[ModelSupply],
    claim_fen: int = VOUCHER_FEN,
) -> list[str]:
    """One M3 voucher of `claim_fen` per supply (an enterprise with its model vendor), applied for, approved and
    issued through the real processes: their codes, in the supplies' order."""
    codes = []
    for supply in supplies:
        _, decision_id = await approved_m3(registry, eligibility, claim_fen=claim_fen, supply=supply)
        issued = await issue(client, decision_id)
        assert issued.status_code == 201, issued.text
        codes.append(str(issued.json()["code"]))
    return codes


def send(client: httpx.AsyncClient, setup: Setup, call: Call) -> Awaitable[httpx.Response]:
    path, body, headers = call.request(setup)
    return client.post(path, json=body, headers=headers)


async def until(condition: Any, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def batched(
    client: httpx.AsyncClient,
    group_commit: GroupCommit,
    database_url: str,
    setup: Setup,
    calls: list[Call] = CALLS,
) -> list[httpx.Response]:
    """`calls` sent while the only ledger slot is taken by a plug waiting on a lock: they go as one batch."""
    owner = await asyncpg.connect(database_url)
    try:
        lock = owner.transaction()
        await lock.start()
        await owner.execute("SELECT 1 FROM vouchers.vouchers WHERE code = $1 FOR UPDATE", setup.codes["P"])
        plug = asyncio.ensure_future(send(client, setup, Call("redeem", "v2", "P", "plug", 1_000)))

        async def plug_waits() -> bool:
            assert not plug.done(), f"the plug was answered: {plug.result().text}"
            waiting = await owner.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE '%vouchers.redeem(%'"
            )
            return bool(waiting)

        await until(plug_waits, "the plug to wait on the voucher's lock")
        assert group_commit.busy == group_commit.slots == 1
        assert not group_commit.waiting
        sent: list[asyncio.Future[httpx.Response]] = []
        for n, call in enumerate(calls, start=1):  # one at a time: the arrival order is the list's
            sent.append(asyncio.ensure_future(send(client, setup, call)))

            async def queued(n: int = n) -> bool:
                return len(group_commit.waiting) == n

            await until(queued, f"call {n} to wait in the process")
        await lock.commit()
        answered = await plug
        assert answered.status_code == 201, answered.text
        return list(await asyncio.gather(*sent))
    finally:
        await owner.close()


@dataclass
class Plugged:
    """A batch waiting in PostgreSQL for a voucher the test has locked (plugged_batch)."""

    sent: list[asyncio.Future[httpx.Response]]  # the calls' answers, in the calls' order
    waiting: Callable[[str], Awaitable[int]]  # how many sessions wait for a lock, in a query like this
    release: Callable[[], Awaitable[None]]  # commits the test's lock on the voucher: the batch goes on


@asynccontextmanager
async def plugged_batch(
    client: httpx.AsyncClient,
    group_commit: GroupCommit,
    database_url: str,
    setup: Setup,
    plug_vendor: str,
    calls: list[Call],
    locked: str,
) -> AsyncIterator[Plugged]:
    """`calls` sent one at a time while a plug (a redemption on P by `plug_vendor`) takes the only ledger slot:
    they go as one batch once the plug is answered, and that batch waits for the voucher `locked` (a symbol),
    which the test holds until release()."""
    owner, lock_p, lock_w = [await asyncpg.connect(database_url) for _ in range(3)]

    async def waiting(query: str) -> int:
        return int(
            await owner.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE $1",
                f"%{query}%",
            )
        )

    try:
        plug_lock, w_lock = lock_p.transaction(), lock_w.transaction()
        await plug_lock.start()
        await lock_p.execute("SELECT 1 FROM vouchers.vouchers WHERE code = $1 FOR UPDATE", setup.codes["P"])
        await w_lock.start()
        await lock_w.execute("SELECT 1 FROM vouchers.vouchers WHERE code = $1 FOR UPDATE", setup.codes[locked])
        plug = asyncio.ensure_future(send(client, setup, Call("redeem", plug_vendor, "P", "plug", 1_000)))

        async def plug_waits() -> bool:
            return await waiting("vouchers.redeem(") == 1

        await until(plug_waits, "the plug to wait")
        sent: list[asyncio.Future[httpx.Response]] = []
        for n, call in enumerate(calls, start=1):
            sent.append(asyncio.ensure_future(send(client, setup, call)))

            async def queued(n: int = n) -> bool:
                return len(group_commit.waiting) == n

            await until(queued, f"call {n} to wait in the process")
        await plug_lock.commit()
        assert (await plug).status_code == 201

        async def batch_waits() -> bool:
            return await waiting("vouchers.ledger_batch(") == 1

        await until(batch_waits, f"the batch to wait for {locked}")
        yield Plugged(sent, waiting, w_lock.commit)
    finally:
        for connection in (owner, lock_p, lock_w):
            await connection.close()


def normalised(response: httpx.Response, names: dict[str, str]) -> tuple[int, Any]:
    """The answer with what must differ between runs taken out, and run-specific strings by symbol."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str):
            for actual, symbol in names.items():
                value = value.replace(actual, symbol)
            return value
        return value

    return response.status_code, clean(response.json())


async def check_run(
    client: httpx.AsyncClient, database_url: str, setup: Setup, responses: list[httpx.Response]
) -> list[tuple[int, Any]]:
    """The answers are the expected ones, replays repeat, balances follow from the answers, invariants hold."""
    answers = [(r.status_code, r.json().get("code") if r.status_code >= 400 else None) for r in responses]
    assert answers == EXPECTED, [r.text for r in responses]
    first: dict[Call, httpx.Response] = {}
    for call, response in zip(CALLS, responses, strict=True):
        original = first.setdefault(call, response)
        if original is not response and original.status_code < 300:
            assert response.json() == original.json()  # a replay: the stored answer itself
    redeemed: dict[str, int] = {"X": 0, "Y": 0, "Z": 0}
    held: dict[str, int] = {"X": 50_000 * YUAN, "Y": 50_000 * YUAN, "Z": 0}
    hold_amounts = {"h1": ("X", 50_000 * YUAN), "h2": ("Y", 30_000 * YUAN), "h3": ("Y", 20_000 * YUAN)}
    seen: set[str] = set()
    for call, response in zip(CALLS, responses, strict=True):
        if response.status_code >= 300 or call.key in seen:
            continue
        seen.add(call.key)
        if call.kind == "redeem":
            redeemed[call.target] += call.amount_yuan * YUAN
        elif call.kind == "hold":
            held[call.target] += call.amount_yuan * YUAN
        else:
            voucher, amount = hold_amounts[call.target]
            held[voucher] -= amount
            redeemed[voucher] += amount if call.kind == "capture" else 0
    for symbol in ("X", "Y", "Z"):
        voucher = (await client.get(f"/v1/vouchers/{setup.codes[symbol]}")).json()
        assert (voucher["redeemed_fen"], voucher["held_fen"], voucher["available_fen"]) == (
            redeemed[symbol],
            held[symbol],
            VOUCHER_FEN - redeemed[symbol] - held[symbol],
        ), symbol
    assert await check_database(database_url) == []
    names = setup.names()
    return [normalised(r, names) for r in responses]


def batch_order(setup: Setup) -> list[int]:
    """The positions of CALLS in the order a batch runs them: voucher code (holds after), then arrival."""
    return sorted(range(len(CALLS)), key=lambda n: CALLS[n].order(setup))


async def test_a_batch_answers_as_the_calls_one_by_one_in_its_order(
    app: FastAPI,
    client: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    group_commit: GroupCommit = app.state.group_commit
    setup = await prepare(client, live_registry_client, live_eligibility_client)
    before = (group_commit.batched, group_commit.fallbacks)
    responses = await batched(client, group_commit, vouchers_database, setup)
    assert (group_commit.batched - before[0], group_commit.fallbacks - before[1]) == (len(CALLS), 0)
    answers = await check_run(client, vouchers_database, setup, responses)
    # the rows the batch wrote are one transaction's
    keys = [f"{setup.run}-{call.key}" for call in CALLS]
    connection = await asyncpg.connect(vouchers_database)
    try:
        xmins = await connection.fetchval(
            "SELECT count(DISTINCT xmin::text) FROM vouchers.idempotency WHERE key = ANY($1::text[])", keys
        )
        stored = await connection.fetchval("SELECT count(*) FROM vouchers.idempotency WHERE key = ANY($1)", keys)
    finally:
        await connection.close()
    assert (xmins, stored) == (1, len({call.key for call in CALLS}))

    # the same calls on fresh vouchers, one at a time with group commit off, in the order the batch ran them
    reference = await prepare(client, live_registry_client, live_eligibility_client)
    monkeypatch.setattr(group_commit, "enabled", False)
    singles = group_commit.singles
    order = batch_order(setup)  # by the first run's codes: the same order of the same symbols
    serial: dict[int, httpx.Response] = {}
    for n in order:
        serial[n] = await send(client, reference, CALLS[n])
    assert group_commit.singles - singles == len(CALLS)
    monkeypatch.setattr(group_commit, "enabled", True)
    assert await check_run(client, vouchers_database, reference, [serial[n] for n in range(len(CALLS))]) == answers


async def test_a_failed_batch_is_answered_call_by_call(
    app: FastAPI,
    client: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch that fails for a reason that is not a refusal (here a deadlock, before it runs) wrote nothing:
    each call is answered on its own, in the batch's order, as a batch would have answered it."""
    group_commit: GroupCommit = app.state.group_commit
    original = GroupCommit._batch
    failures: list[int] = []

    async def deadlocked_once(self: GroupCommit, calls: list[Any], defer: bool) -> list[tuple[int, str]]:
        if not failures:
            failures.append(len(calls))
            raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
        return await original(self, calls, defer)

    monkeypatch.setattr(GroupCommit, "_batch", deadlocked_once)
    setup = await prepare(client, live_registry_client, live_eligibility_client)
    before = (group_commit.batched, group_commit.fallbacks, group_commit.singles)
    responses = await batched(client, group_commit, vouchers_database, setup)
    assert failures == [len(CALLS)]
    assert (
        group_commit.batched - before[0],
        group_commit.fallbacks - before[1],
        group_commit.singles - before[2],
    ) == (0, 1, len(CALLS) + 1)  # the plug, then each call alone
    answers = await check_run(client, vouchers_database, setup, responses)

    # and the same answers as a batch that went through, on fresh vouchers
    monkeypatch.setattr(GroupCommit, "_batch", original)
    again = await prepare(client, live_registry_client, live_eligibility_client)
    responses = await batched(client, group_commit, vouchers_database, again)
    assert await check_run(client, vouchers_database, again, responses) == answers


async def test_a_batch_waiting_for_a_voucher_holds_no_ceiling_a_single_call_needs(
    app: FastAPI,
    client: httpx.AsyncClient,
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch locks its vouchers, then their ceilings (`vouchers.ledger_batch()`), as a single call does.

    A batch [X, Z, Y] of one holder (X < Z < Y) waits for Z (locked by the test) holding X only: a redemption on Y
    sent to another app (another process; idle, so a single call) takes Y and the holder's ceiling and is
    answered at once. Were the batch to hold the ceiling from X's call while it waits for Z, the two would wait
    for each other in a circle (a deadlock) once Z is released. Then the batch is answered, with no fallback."""
    group_commit: GroupCommit = app.state.group_commit
    holder, other = await model_supply(live_registry_client), await model_supply(live_registry_client)
    monkeypatch.setattr(group_commit, "defer", False)  # the batch waits for Z instead of deferring its call
    codes = await issued_codes(client, live_registry_client, live_eligibility_client, [holder, holder, holder, other])
    x, z, y = sorted(codes[:3])
    vendors = {"v1": holder.vendor, "v2": other.vendor}
    setup = Setup({"X": x, "Z": z, "Y": y, "P": codes[3]}, vendors, {}, f"gcdl{time.time_ns()}")
    fallbacks = group_commit.fallbacks
    calls = [Call("redeem", "v1", target, f"b{target}", 1_000) for target in ("X", "Z", "Y")]
    async with plugged_batch(client, group_commit, vouchers_database, setup, "v2", calls, "Z") as plugged:
        single = await asyncio.wait_for(send(vouchers, setup, Call("redeem", "v1", "Y", "single", 1_000)), 10)
        assert single.status_code == 201, single.text
        assert not any(call.done() for call in plugged.sent)
        await plugged.release()
        answers = [r.status_code for r in await asyncio.gather(*plugged.sent)]
    assert answers == [201, 201, 201]
    assert group_commit.fallbacks == fallbacks
    assert await check_database(vouchers_database) == []


async def test_a_retry_of_a_call_in_a_batch_waits_for_the_batch_on_its_key(
    app: FastAPI,
    client: httpx.AsyncClient,
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Idempotency-Keys are locked before rows on every path (`vouchers.claim_key()`, `vouchers.ledger_batch()`).

    A batch [X with key k, Z] (X < Z) waits for Z (locked by the test) holding X; the vendor retries k (the same
    key and body) through another app (another process; idle, so a single call). The retry waits for the batch
    on k's advisory lock, holding nothing. Until the batch took its keys first, the retry claimed k, then waited
    for X: once Z was released the batch waited for k, a deadlock PostgreSQL broke after deadlock_timeout. Then:
    the batch answers k 201 and the retry replays that very answer; no fallback; the invariants hold."""
    group_commit: GroupCommit = app.state.group_commit
    monkeypatch.setattr(group_commit, "defer", False)  # the batch waits for Z instead of deferring its call
    supply = await model_supply(live_registry_client)
    codes = await issued_codes(client, live_registry_client, live_eligibility_client, [supply] * 3)
    x, z = sorted(codes[:2])
    setup = Setup({"X": x, "Z": z, "P": codes[2]}, {"v1": supply.vendor}, {}, f"gck{time.time_ns()}")
    fallbacks = group_commit.fallbacks
    k = Call("redeem", "v1", "X", "k", 1_000)
    async with plugged_batch(
        client, group_commit, vouchers_database, setup, "v1", [k, Call("redeem", "v1", "Z", "z", 1_000)], "Z"
    ) as plugged:
        retry = asyncio.ensure_future(send(vouchers, setup, k))
        owner = await asyncpg.connect(vouchers_database)
        try:

            async def retry_waits() -> str | None:
                return await owner.fetchval(  # type: ignore[no-any-return]
                    "SELECT wait_event FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE '%vouchers.redeem(%'"
                )

            await until(retry_waits, "the retry to wait")
            assert await retry_waits() == "advisory"  # on its key, before any row (not on X: "transactionid")
        finally:
            await owner.close()
        assert not retry.done()
        await plugged.release()
        first, second = await asyncio.gather(*plugged.sent)
        again = await asyncio.wait_for(retry, 10)
    assert [first.status_code, second.status_code, again.status_code] == [201, 201, 201], again.text
    assert again.json() == first.json()  # the batch's answer, replayed
    assert group_commit.fallbacks == fallbacks
    assert await check_database(vouchers_database) == []


async def test_a_void_while_a_batch_captures_a_hold_of_the_voucher(
    app: FastAPI,
    client: httpx.AsyncClient,
    vouchers: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A void locks the voucher's open holds, then the voucher (as a single capture does: hold, then voucher).
    A batch [capture of h on X, redemption on Q] (X < Q) waits for Q (locked by the test) while the bureau voids X
    in another app. Before ledger_batch() locked its holds first, the batch held X and the void held h: a deadlock
    whose victim, the void, was answered 500. Now the batch holds h and X, the void waits for h; Q is released:
    each gets an answer: the void 200, the capture 409 hold_not_active or 200."""
    group_commit: GroupCommit = app.state.group_commit
    monkeypatch.setattr(group_commit, "defer", False)  # the batch waits for Q instead of deferring its call
    supply = await model_supply(live_registry_client)
    codes = await issued_codes(client, live_registry_client, live_eligibility_client, [supply] * 3)
    x, q = sorted(codes[:2])
    setup = Setup({"X": x, "Q": q, "P": codes[2]}, {"v1": supply.vendor}, {}, f"gcv{time.time_ns()}")
    path, body, headers = Call("hold", "v1", "X", "pre-h", 50_000).request(setup)
    held = await client.post(path, json=body, headers=headers)
    assert held.status_code == 201, held.text
    setup.holds["h"] = int(held.json()["id"])
    calls = [Call("capture", "v1", "h", "cap"), Call("redeem", "v1", "Q", "rq", 1_000)]
    async with plugged_batch(client, group_commit, vouchers_database, setup, "v1", calls, "Q") as plugged:  # it holds X
        void = asyncio.ensure_future(
            vouchers.post(f"/v1/vouchers/{x}/void", json={"reason": "测试：作废"}, headers=OFFICER_CHEN)
        )

        async def void_waits() -> bool:
            return await plugged.waiting("") == 2  # the batch (for Q) and the void (for X)

        await until(void_waits, "the void to wait for X")
        await plugged.release()
        voided = await void
        answers = await asyncio.gather(*plugged.sent)
    assert voided.status_code == 200, voided.text
    assert answers[1].status_code == 201, answers[1].text
    assert answers[0].status_code in (200, 409), answers[0].text
    assert await check_database(vouchers_database) == []


async def test_a_batch_defers_the_calls_whose_voucher_another_transaction_holds(
    app: FastAPI,
    client: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch [X, Z, Z, Y] while the test holds Z's row (as another process's batch would): X and Y are answered by
    that batch at once; Z's two calls are deferred (nothing of them written) and go as the next batch, which waits
    for Z, without deferring again; released, they are answered 201, and the ledger's invariants hold."""
    group_commit: GroupCommit = app.state.group_commit
    monkeypatch.setattr(group_commit, "defer", True)  # VOUCHERS_GROUP_COMMIT_DEFER (off by default)
    first, second = await model_supply(live_registry_client), await model_supply(live_registry_client)
    codes = await issued_codes(client, live_registry_client, live_eligibility_client, [first, first, second, second])
    setup = Setup(
        {"X": codes[0], "Y": codes[1], "Z": codes[2], "P": codes[3]},
        {"v1": first.vendor, "v2": second.vendor},
        {},
        f"gcdf{time.time_ns()}",
    )
    calls = [
        Call("redeem", "v1", "X", "x", 1_000),
        Call("redeem", "v2", "Z", "z1", 1_000),
        Call("redeem", "v2", "Z", "z2", 2_000),
        Call("redeem", "v1", "Y", "y", 1_000),
    ]
    deferrals, fallbacks = group_commit.deferrals, group_commit.fallbacks
    async with plugged_batch(client, group_commit, vouchers_database, setup, "v2", calls, "Z") as plugged:
        # the batch waiting for Z is the second: the first answered X and Y and deferred Z's calls
        x, z1, z2, y = plugged.sent
        assert x.done()
        assert y.done()
        assert not z1.done()
        assert not z2.done()
        assert [x.result().status_code, y.result().status_code] == [201, 201]
        assert group_commit.deferrals - deferrals == 2
        keys = [f"{setup.run}-z1", f"{setup.run}-z2"]
        connection = await asyncpg.connect(vouchers_database)
        try:  # nothing of the deferred calls was written, not even their keys' claims
            assert await connection.fetchval("SELECT count(*) FROM vouchers.idempotency WHERE key = ANY($1)", keys) == 0
        finally:
            await connection.close()
        await plugged.release()
        answers = await asyncio.gather(z1, z2)
    assert [answer.status_code for answer in answers] == [201, 201], [answer.text for answer in answers]
    assert answers[1].json()["voucher"]["available_fen"] == VOUCHER_FEN - 1_000 * YUAN - 2_000 * YUAN
    assert group_commit.deferrals - deferrals == 2  # deferred once, then waited
    assert group_commit.fallbacks == fallbacks
    assert await check_database(vouchers_database) == []


#: plain M3 redemptions, each answered 201 (vouchers.ledger_captures() writes such a batch set by set)
PLAIN = [
    Call("redeem", "v1", "X", "p1", 100_000),
    Call("redeem", "v1", "Y", "p2", 300_000),
    Call("redeem", "v2", "Z", "p3", 250_000),
    Call("redeem", "v1", "X", "p4", 50_000),
    Call("redeem", "v2", "Z", "p5", 1_000),
    Call("redeem", "v1", "Y", "p6", 640_000),  # Y's last 640,000 (h2 and h3 hold the rest)
]

LEDGER_ROWS = """
SELECT (SELECT max(e.created_at) FROM vouchers.entries e WHERE e.request_id = ANY ($1::text[])) AS last_entry,
       (SELECT min(e.created_at) FROM vouchers.entries e WHERE e.request_id = ANY ($1::text[])) AS first_entry,
       (SELECT min(o.occurred_at) FROM vouchers.outbox o WHERE o.payload->>'invoice_number' = ANY ($2::text[]))
           AS first_event,
       (SELECT max(o.occurred_at) FROM vouchers.outbox o WHERE o.payload->>'invoice_number' = ANY ($2::text[]))
           AS last_event,
       (SELECT array_agg(o.payload ORDER BY o.id) FROM vouchers.outbox o
         WHERE o.payload->>'invoice_number' = ANY ($2::text[])) AS events
"""


async def test_a_batch_of_plain_redemptions_is_written_set_by_set_as_the_calls_one_by_one(
    app: FastAPI,
    client: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
    vouchers_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PLAIN as one batch (vouchers.ledger_captures(): every table written once for the batch, so its ledger
    entries and its events are written apart, not one of each in turn) and one by one with group commit off (each
    call's entry, then its event): the same answers, the same stored replies, the same events, balances and
    invariants."""
    group_commit: GroupCommit = app.state.group_commit
    runs: list[tuple[list[tuple[int, Any]], list[tuple[int, Any]], list[Any]]] = []
    for together in (True, False):
        setup = await prepare(client, live_registry_client, live_eligibility_client)
        names = setup.names()
        if together:
            responses = await batched(client, group_commit, vouchers_database, setup, PLAIN)
        else:
            monkeypatch.setattr(group_commit, "enabled", False)
            responses = [await send(client, setup, call) for call in PLAIN]
            monkeypatch.setattr(group_commit, "enabled", True)
        assert [r.status_code for r in responses] == [201] * len(PLAIN), [r.text for r in responses]
        replays = [await send(client, setup, call) for call in PLAIN]  # the stored replies
        connection = await asyncpg.connect(vouchers_database)
        try:
            row = await connection.fetchrow(
                LEDGER_ROWS,
                [r.headers["x-request-id"] for r in responses],
                [f"{setup.run}-{call.key}" for call in PLAIN],
            )
        finally:
            await connection.close()
        assert row is not None
        # set by set: the entries all written before the events or all after; one by one: entry, event, entry, …
        apart = row["last_entry"] < row["first_event"] or row["last_event"] < row["first_entry"]
        assert apart is together
        events = [json.loads(event) if isinstance(event, str) else event for event in row["events"]]
        runs.append(
            (
                [normalised(r, names) for r in responses],
                [normalised(r, names) for r in replays],
                sorted(  # by call: a batch runs its calls in voucher order, not arrival order
                    ({k: v for k, v in _clean_event(event, names).items() if k not in VOLATILE} for event in events),
                    key=lambda event: str(event["invoice_number"]),
                ),
            )
        )
        assert await check_database(vouchers_database) == []
        for symbol, spent in (("X", 150_000), ("Y", 940_000), ("Z", 251_000)):
            voucher = (await client.get(f"/v1/vouchers/{setup.codes[symbol]}")).json()
            assert voucher["redeemed_fen"] == spent * YUAN, symbol
    together, alone = runs
    assert together == alone
    assert together[0] == together[1]  # a replay is the stored answer


def _clean_event(event: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    text = json.dumps(event, sort_keys=True)
    for actual, symbol in names.items():
        text = text.replace(actual, symbol)
    cleaned: dict[str, Any] = json.loads(text)
    cleaned["holder"] = f"holder of {cleaned['voucher_code']}"  # fresh enterprises each run
    return cleaned
