"""The clients of a resilience run: setup through the public APIs, then random concurrent operations.

**Setup.** Enterprises with model vendors, models and CAC filings (registry), M3 applications
whose claims add up to more than the annual claim ceiling per enterprise (so the ceiling is
contended), two M1 compute-voucher decisions, all reviewed by one officer and approved by
another (eligibility). Calls alternate between the two processes of each service.

**Operations.** A few clients per vouchers process (asyncio tasks) run random operations at a
steady pace over the run: claims (an officer issues a voucher from an approved decision),
redemptions and holds (vendors, sometimes more than is left, sometimes another vendor's
voucher), captures and releases of holds (sometimes finished ones), voids, reads. Vendors'
calls carry an Idempotency-Key; an indeterminate attempt (timeout, connection error, 5xx, 503)
is sent again with the same key and body, to either process, until it resolves. Officers'
calls have no key: an indeterminate claim or void is left so and resolved from the ledger
afterwards (its decision goes back to the pool: a later claim says `already_issued` with the
voucher's code if the first one went through). A few attempts are impatient (the client gives
up after 5 ms while the server carries on). Every attempt is recorded (tests/resilience/history.py).

The seed fixes the data, the mix, the amounts and the fault schedule; which voucher or hold an
operation meets depends on timing.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.auth import OFFICER
from tests.auth import admin, as_vendor, auth
from tests.eligibility import seed as registry_seed
from tests.resilience.checker import DecisionFacts
from tests.resilience.history import Attempt, History, Op, classify
from tests.vouchers.flow import APPROVER_LI, REVIEWER, YUAN, m1_decision, m3_evidence, model_supply

OFFICER_HEADERS = auth(OFFICER, name="officer-resilience")
NORMAL = httpx.Timeout(15.0, connect=3.0)
IMPATIENT = httpx.Timeout(15.0, connect=3.0, read=0.005)
KEYED_PATIENCE = 150.0  # seconds a keyed operation is retried before it is left unresolved
WEIGHTS = {"claim": 10.0, "redeem": 30.0, "hold": 14.0, "capture": 7.0, "release": 4.0, "void": 0.25, "read": 4.0}
REPLAYS = 1_000  # at most this many vendor calls are replayed after the run (all the retried ones first)


@dataclass
class Decision:
    id: str
    holder: str
    measure: str
    amount_fen: int
    vendor: str  # M3: the contract's model vendor; M1: the compute vendor that sold the compute
    reserve: bool = False  # claimable only once the eligibility outage begins

    def facts(self) -> DecisionFacts:
        return DecisionFacts(self.holder, self.measure, self.amount_fen, self.vendor)


@dataclass
class KnownVoucher:
    code: str
    kind: str
    vendor: str
    amount_fen: int
    available_hint: int
    voided: bool = False


@dataclass
class KnownHold:
    id: int
    vendor: str
    code: str
    finished: bool = False


# --- setup through the public APIs ---------------------------------------------------------------------


async def _submit(eligibility: httpx.AsyncClient, applicant: str, evidence: dict[str, Any]) -> dict[str, Any]:
    response = await eligibility.post(
        "/v1/applications",
        json={
            "applicant": applicant,
            "as_of": "2025-05-01",
            "as_of_reason": "逾期登记的纸质申请",
            "evidence": evidence,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["decision"]["outcome"] == "eligible", body["decision"]
    return body


async def _approve(reviewer: httpx.AsyncClient, approver: httpx.AsyncClient, application: dict[str, Any]) -> str:
    """Officer wang reviews on one eligibility process, approver li approves on the other (four eyes)."""
    path = f"/v1/applications/{application['id']}"
    reviewed = await reviewer.post(path + "/reviews", json={"verdict": "approve", "reason": "合规"}, headers=REVIEWER)
    assert reviewed.status_code == 200, reviewed.text
    approved = await approver.post(
        path + "/approvals", json={"verdict": "approve", "reason": "同意"}, headers=APPROVER_LI
    )
    assert approved.status_code == 200, approved.text
    return str(application["decision"]["id"])


async def prepare(
    rng: random.Random,
    registries: list[str],
    eligibilities: list[str],
    *,
    enterprises: int,
    claim_ceiling_fen: int,
    m1_enterprises: int = 2,
) -> tuple[list[Decision], str]:
    """Approved decisions (per M3 enterprise, claims adding up to about 1.4 × the annual ceiling), and a
    model vendor with no voucher of its own (for redemptions by the wrong vendor)."""
    decisions: list[Decision] = []
    clients = [httpx.AsyncClient(base_url=u, timeout=30, headers=admin()) for u in registries + eligibilities]
    registry, eligibility = clients[: len(registries)], clients[len(registries) :]
    try:
        for n in range(enterprises):
            supply = await model_supply(registry[n % 2])
            total = 0
            while total <= claim_ceiling_fen * 14 // 10:
                claim = rng.randrange(500_000, 1_700_000) * YUAN + rng.randrange(100)
                contract = math.ceil(claim * 10 / 3) + rng.randrange(0, 1_000_000) * YUAN  # claim ≤ 30% of it
                application = await _submit(eligibility[n % 2], supply.holder, m3_evidence(supply, contract, claim))
                decision_id = await _approve(eligibility[(n + 1) % 2], eligibility[n % 2], application)
                decisions.append(Decision(decision_id, supply.holder, "M3", claim, supply.vendor))
                total += claim
        for n in range(m1_enterprises):
            holder, provider, application = await m1_decision(registry[n % 2], eligibility[n % 2])
            decision_id = await _approve(eligibility[n % 2], eligibility[(n + 1) % 2], application)
            amount = int(application["decision"]["amount_fen"])
            decisions.append(Decision(decision_id, holder, "M1", amount, provider))
        stranger = await registry_seed.vendor(registry[0], is_model_vendor=True)
    finally:
        for client in clients:
            await client.aclose()
    m3 = [d for d in decisions if d.measure == "M3"]
    for decision in rng.sample(m3, k=max(1, len(m3) // 4)):
        decision.reserve = True
    return decisions, stranger


# --- the run -----------------------------------------------------------------------------------------------


@dataclass
class Workload:
    seed: int
    history: History
    decisions: list[Decision]
    vouchers_urls: list[str]
    operations: int
    duration: float
    clients_per_process: int
    stranger: str
    vouchers: dict[str, KnownVoucher] = field(default_factory=dict)
    holds: dict[int, KnownHold] = field(default_factory=dict)
    unclaimed: list[Decision] = field(default_factory=list)
    reserved: list[Decision] = field(default_factory=list)
    started: float = 0.0
    vendors: list[str] = field(init=False)
    _next: itertools.count[int] = field(default_factory=itertools.count)
    _clients: list[httpx.AsyncClient] = field(default_factory=list)
    _pending: set[asyncio.Task[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.unclaimed = [d for d in self.decisions if not d.reserve]
        self.reserved = [d for d in self.decisions if d.reserve]
        self.vendors = sorted({d.vendor for d in self.decisions} | {self.stranger})

    def now(self) -> float:
        return time.monotonic() - self.started

    def process_name(self, index: int) -> str:
        return f"vouchers-{index}"

    # --- sending, with the history kept ---

    async def attempt(
        self, op: Op, instance: int, method: str, path: str, headers: dict[str, str], patience: httpx.Timeout
    ) -> Attempt:
        correlation_id = f"rs-{self.seed}-{op.id}-{len(op.attempts)}-{uuid.uuid4().hex[:8]}"
        attempt = Attempt(correlation_id, self.process_name(instance), self.now(), correlation_id=correlation_id)
        op.attempts.append(attempt)
        try:
            response = await self._clients[instance].request(
                method, path, json=op.body, headers={**headers, "X-Correlation-ID": correlation_id}, timeout=patience
            )
        except httpx.TransportError as exc:  # timeouts included: the effect is unknown
            attempt.outcome, attempt.code = "indeterminate", type(exc).__name__
        else:
            attempt.status, attempt.outcome = response.status_code, classify(response.status_code)
            attempt.request_id = response.headers.get("x-request-id", correlation_id)  # the service's id
            try:
                attempt.body = response.json()
            except ValueError:
                attempt.body = {"text": response.text[:300]}
            if attempt.status >= 400 and isinstance(attempt.body, dict):
                attempt.code = attempt.body.get("code")
        attempt.ended = self.now()
        return attempt

    async def keyed(self, op: Op, instance: int, method: str, path: str, rng: random.Random) -> None:
        """A vendor's call: sent again with the same key and body until it resolves."""
        assert op.key is not None
        headers = as_vendor(op.actor, **{"Idempotency-Key": op.key})
        deadline = time.monotonic() + KEYED_PATIENCE
        tries = 0
        while True:
            patience = IMPATIENT if tries == 0 and rng.random() < 0.03 else NORMAL
            attempt = await self.attempt(op, (instance + tries) % 2, method, path, headers, patience)
            if attempt.outcome != "indeterminate" or time.monotonic() > deadline:
                break
            tries += 1
            await asyncio.sleep(min(0.1 * 2 ** min(tries, 5), 2.0) * (0.5 + rng.random()))
        op.resolve()

    async def officer(self, op: Op, instance: int, method: str, path: str, rng: random.Random) -> None:
        """An officer's call, without a key: one attempt (a 429 only is sent again)."""
        patience = IMPATIENT if rng.random() < 0.02 else NORMAL
        while True:
            attempt = await self.attempt(op, instance, method, path, OFFICER_HEADERS, patience)
            if attempt.status != 429:
                break
            await asyncio.sleep(0.2)
        op.resolve()

    # --- the operations ---

    async def claim(self, client: str, instance: int, rng: random.Random, decision: Decision | None = None) -> Op:
        if decision is None:
            if self.unclaimed and rng.random() < 0.85:
                decision = self.unclaimed.pop(rng.randrange(len(self.unclaimed)))
            else:
                decision = rng.choice([d for d in self.decisions if not d.reserve] or self.decisions)
        op = self.history.new("claim", client, "officer", decision.id, body={"decision_id": decision.id})
        await self.officer(op, instance, "POST", "/v1/vouchers", rng)
        answer = op.answer if isinstance(op.answer, dict) else {}
        if op.outcome == "ok":
            self.learn_voucher(answer["code"], decision)
        elif op.code == "already_issued" and str(answer.get("reference", "")).startswith(decision.measure):
            self.learn_voucher(str(answer["reference"]), decision)
        elif op.outcome == "indeterminate" and decision not in self.unclaimed:
            self.unclaimed.append(decision)  # perhaps issued, perhaps not: a later claim will tell
        return op

    def learn_voucher(self, code: str, decision: Decision) -> None:
        if code not in self.vouchers:
            self.vouchers[code] = KnownVoucher(code, decision.measure, decision.vendor, decision.amount_fen, 0)
            self.vouchers[code].available_hint = decision.amount_fen
        if decision in self.unclaimed:
            self.unclaimed.remove(decision)

    def amount(self, rng: random.Random, voucher: KnownVoucher) -> int:
        mode = rng.random()
        if mode < 0.50:
            return rng.randint(1, 20_000 * YUAN)
        if mode < 0.85:
            return rng.randint(1, max(1, voucher.amount_fen // 40))
        if mode < 0.86:
            return max(1, voucher.available_hint)  # all that was last seen available
        if mode < 0.93:
            return voucher.available_hint + 1
        return voucher.amount_fen + rng.randint(1, 1_000)

    async def redeem(self, client: str, instance: int, rng: random.Random, kind: str) -> Op | None:
        if not self.vouchers:
            return await self.claim(client, instance, rng)
        voucher = self.vouchers[rng.choice(sorted(self.vouchers))]
        vendor = voucher.vendor if rng.random() < 0.92 else rng.choice(self.vendors)
        op = self.history.new(kind, client, vendor, voucher.code)
        op.key = f"rs-{self.seed}-{op.id}"
        op.body = {"amount_fen": self.amount(rng, voucher), "invoice_number": f"FP-{self.seed}-{op.id}"}
        if rng.random() < 0.3:
            op.body["contract_number"] = f"HT-R-{rng.randrange(10_000)}"
        path = f"/v1/vouchers/{voucher.code}/" + ("holds" if kind == "hold" else "redemptions")
        await self.keyed(op, instance, "POST", path, rng)
        answer = op.answer if isinstance(op.answer, dict) else {}
        if op.outcome == "ok":
            voucher.available_hint = int(answer["voucher"]["available_fen"])
            if kind == "hold":
                self.holds[int(answer["id"])] = KnownHold(int(answer["id"]), vendor, voucher.code)
        elif op.code == "insufficient_balance" and isinstance(answer.get("available_fen"), int):
            voucher.available_hint = int(answer["available_fen"])
        return op

    async def finish(self, client: str, instance: int, rng: random.Random, kind: str) -> Op | None:
        if not self.holds:
            return await self.redeem(client, instance, rng, "hold")
        open_holds = [h for h in self.holds.values() if not h.finished]
        hold = rng.choice(open_holds) if open_holds and rng.random() < 0.85 else rng.choice(list(self.holds.values()))
        vendor = hold.vendor if rng.random() < 0.95 else rng.choice(self.vendors)
        op = self.history.new(kind, client, vendor, str(hold.id))
        op.key = f"rs-{self.seed}-{op.id}"
        await self.keyed(op, instance, "POST", f"/v1/holds/{hold.id}/{kind}", rng)
        if op.outcome == "ok" or op.code == "hold_not_active":
            hold.finished = True
        return op

    async def void(self, client: str, instance: int, rng: random.Random) -> Op | None:
        if not self.vouchers:
            return None
        voucher = self.vouchers[rng.choice(sorted(self.vouchers))]
        op = self.history.new("void", client, "officer", voucher.code, body={"reason": "韧性测试：作废"})
        await self.officer(op, instance, "POST", f"/v1/vouchers/{voucher.code}/void", rng)
        if op.outcome == "ok":
            voucher.voided = True
        return op

    async def read(self, client: str, instance: int, rng: random.Random) -> Op | None:
        if not self.vouchers:
            return None
        code = rng.choice(sorted(self.vouchers))
        op = self.history.new("read", client, "officer", code)
        await self.officer(op, instance, "GET", f"/v1/vouchers/{code}", rng)
        return op

    async def one(self, client: str, instance: int, index: int) -> None:
        rng = random.Random(self.seed * 1_000_003 + index)  # its own stream: the mix does not depend on timing
        weights = dict(WEIGHTS)
        if not self.unclaimed:
            weights["claim"] = 1.0
        kind = rng.choices(list(weights), weights=list(weights.values()))[0]
        if not self.vouchers:
            kind = "claim"
        if kind == "claim":
            await self.claim(client, instance, rng)
        elif kind in ("redeem", "hold"):
            await self.redeem(client, instance, rng, kind)
        elif kind in ("capture", "release"):
            await self.finish(client, instance, rng, kind)
        elif kind == "void":
            await self.void(client, instance, rng)
        else:
            await self.read(client, instance, rng)

    async def worker(self, name: str, instance: int) -> None:
        interval = self.duration / self.operations
        while (index := next(self._next)) < self.operations:
            wait = self.started + index * interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.one(name, instance, index)

    def release_reserve(self) -> list[Decision]:
        """The decisions kept back for the eligibility outage, claimable from now on."""
        released, self.reserved = self.reserved, []
        for decision in released:
            decision.reserve = False
        self.unclaimed.extend(released)
        return released

    async def claims_now(self, decisions: list[Decision], client: str = "fault-injector") -> list[Op]:
        """Claims sent at once (by the fault injector, while a peer is down), recorded like any other."""
        rng = random.Random(self.seed)
        for decision in decisions:
            if decision in self.unclaimed:
                self.unclaimed.remove(decision)
        return list(
            await asyncio.gather(*(self.claim(client, i % 2, rng, decision) for i, decision in enumerate(decisions)))
        )

    async def run(self, faults: Callable[[], Awaitable[None]]) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        self._clients = [httpx.AsyncClient(base_url=u, timeout=NORMAL, limits=limits) for u in self.vouchers_urls]
        self.started = time.monotonic()
        try:
            workers = [
                self.worker(f"client-{instance}.{n}", instance)
                for instance in range(len(self.vouchers_urls))
                for n in range(self.clients_per_process)
            ]
            await asyncio.gather(faults(), *workers)
        finally:
            for client in self._clients:
                await client.aclose()

    async def replay(self, concurrency: int = 16) -> None:
        """Resolved vendor calls sent again, same key and body, on the other process: they get the first answer.

        Every call that took more than one attempt (those the faults met), then a sample of the others."""
        resolved = [op for op in self.history.ops if op.key is not None and op.outcome in ("ok", "refused")]
        retried = [op for op in resolved if len(op.attempts) > 1]
        rest = [op for op in resolved if len(op.attempts) == 1]
        originals = retried + random.Random(self.seed + 2).sample(
            rest, k=max(0, min(len(rest), REPLAYS - len(retried)))
        )
        semaphore = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency * 2)
        self._clients = [httpx.AsyncClient(base_url=u, timeout=NORMAL, limits=limits) for u in self.vouchers_urls]
        rng = random.Random(self.seed + 1)

        async def again(original: Op) -> None:
            last = next(a for a in original.attempts if a.outcome in ("ok", "refused"))
            other = 1 - int(last.process.rsplit("-", 1)[1])
            op = self.history.new(original.kind, "replay", original.actor, original.target, key=original.key)
            op.body, op.replay_of = original.body, original.id
            path = (
                f"/v1/holds/{original.target}/{original.kind}"
                if original.kind in ("capture", "release")
                else f"/v1/vouchers/{original.target}/" + ("holds" if original.kind == "hold" else "redemptions")
            )
            async with semaphore:
                await self.keyed(op, other, "POST", path, rng)

        try:
            await asyncio.gather(*(again(op) for op in originals))
        finally:
            for client in self._clients:
                await client.aclose()
