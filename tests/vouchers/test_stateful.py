"""Issue #4: a Hypothesis state machine drives a real vouchers process against a model of M3.

The model is the policy as the ledger should apply it: a claim is accepted iff its decision
was not issued before and the enterprise's claims this year stay within 5,000,000 yuan; a
redemption or hold is accepted iff the vendor is the contract's supplier, the voucher is
not voided and the amount fits the available balance (and the redemption ceiling); a hold
is captured or released once, by its vendor; a void needs an active voucher, releases its
open holds and returns what is left. A key used again with the same request gets the first
answer; with another request, 409 and nothing changes.

The vouchers process runs once for the module on a fresh database, and the pool of
approved decisions (two enterprises, prepared through the real registry and eligibility
processes) is claimed across all examples: the model is the world's, not one example's,
so it carries over from one example to the next like the database does. For the same
reason the rules have no Hypothesis preconditions (availability would differ between
examples with the same draws, which Hypothesis rejects as flaky generation): a rule with
nothing to act on — the pool used up, no voucher or hold yet — is a no-op step. After every
step the ledger must equal the model (balances, holds, ceilings, counts of entries,
redemptions and idempotency records) and every invariant must hold.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from devtools.devrun import Stack, start_service, stop_services, wait_ready
from services.vouchers.invariants import check_invariants
from shared.auth import OFFICER
from tests.auth import admin, as_vendor, auth
from tests.conftest import DatabaseFactory, free_port
from tests.eligibility import seed as registry_seed
from tests.vouchers.flow import YUAN, approve, m3_evidence, model_supply, submit

CEILING_FEN = 5_000_000 * YUAN  # M3: claims and redemptions per enterprise and calendar year
#: claims (in fen) of the pool's decisions, per enterprise: together far above the ceiling
POOL_FEN = [
    1_500_000 * YUAN,
    9_999,  # 30% of a 333.33 contract, rounded down
    1_200_000 * YUAN,
    900_000 * YUAN + 37,
    2_000_000 * YUAN,
    600_000 * YUAN,
    50_000 * YUAN,
    1_800_000 * YUAN,
    300_000 * YUAN,
    10_000 * YUAN,
    750_000 * YUAN,
    2_500_000 * YUAN,
    120_000 * YUAN,
    1_000_000 * YUAN,
]
SETTINGS = settings(
    max_examples=20,
    stateful_step_count=30,
    deadline=None,
    # the world persists across examples, so a failing example cannot be replayed on the same state:
    # no example database, no shrinking (it would report "flaky"), the failing run's steps are printed as is
    database=None,
    # the same draws every run: the coverage checks below (the ceiling refused a claim, ...) must not
    # depend on luck in `make test`
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
T = TypeVar("T")


class Background:
    """An event loop in its own thread, for the async parts (preparation, the database checks)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class PoolDecision:
    id: str
    holder: str
    vendor: str
    amount_fen: int


@dataclass
class ModelVoucher:
    code: str
    holder: str
    vendor: str
    amount_fen: int
    available_fen: int
    held_fen: int = 0
    redeemed_fen: int = 0
    returned_fen: int = 0
    voided: bool = False

    def balances(self) -> dict[str, Any]:
        return {
            "available_fen": self.available_fen,
            "held_fen": self.held_fen,
            "redeemed_fen": self.redeemed_fen,
            "returned_fen": self.returned_fen,
            "voided": self.voided,
        }

    @property
    def state(self) -> str:
        if self.voided:
            return "voided"
        if self.redeemed_fen == self.amount_fen:
            return "redeemed"
        return "partly_redeemed" if self.redeemed_fen or self.held_fen else "active"


@dataclass
class ModelRedemption:
    id: int
    code: str
    vendor: str
    amount_fen: int
    status: str  # captured | held | released
    hold: bool  # made by a hold (else a direct redemption: captured at once)


@dataclass
class Sent:
    """A keyed request and the answer it got: the reference for replays."""

    method_path: str
    body: dict[str, Any] | None
    vendor: str
    key: str
    status: int
    answer: dict[str, Any]


@dataclass
class World:
    """The model of everything written to the module's database so far (carried across examples)."""

    client: httpx.Client
    database: asyncpg.Connection
    background: Background
    decisions: list[PoolDecision]
    vendors: list[str]  # the enterprises' model vendors, then a stranger
    untried: list[PoolDecision] = field(default_factory=list)
    tried: list[PoolDecision] = field(default_factory=list)
    issued: dict[str, str] = field(default_factory=dict)  # decision id → voucher code
    claimed_fen: dict[str, int] = field(default_factory=dict)  # holder → claims this year
    counted_fen: dict[str, int] = field(default_factory=dict)  # holder → captured + held this year
    vouchers: dict[str, ModelVoucher] = field(default_factory=dict)
    redemptions: dict[int, ModelRedemption] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    entries: int = 0
    keys: int = 0  # idempotency records
    serial: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    checks: int = 0  # of the invariants (after every step)
    steps: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    failure: BaseException | None = None
    failed_steps: list[str] = field(default_factory=list)

    def new_key(self) -> str:
        self.serial += 1
        return f"sm-{self.serial}-{uuid.uuid4().hex[:8]}"


def comparable(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in ("request_id", "instance")}


# --- the module's process and pool ----------------------------------------------------------------


async def _prepare(registry_url: str, eligibility_url: str) -> tuple[list[PoolDecision], list[str]]:
    async with (
        httpx.AsyncClient(base_url=registry_url, timeout=30, headers=admin()) as registry,
        httpx.AsyncClient(base_url=eligibility_url, timeout=30, headers=admin()) as eligibility,
    ):
        supplies = [await model_supply(registry) for _ in range(2)]
        stranger = await registry_seed.vendor(registry, is_model_vendor=True)

        async def approved(index: int, claim: int) -> PoolDecision:
            supply = supplies[index % 2]
            contract = 33_333 if claim == 9_999 else -(-claim * 10 // 3) + (index % 7) * 1_000 * YUAN
            application = await submit(eligibility, supply.holder, m3_evidence(supply, contract, claim))
            assert application["decision"]["outcome"] == "eligible", application["decision"]
            assert application["decision"]["amount_fen"] == claim
            return PoolDecision(await approve(eligibility, application), supply.holder, supply.vendor, claim)

        plans = [(2 * i + e, claim) for i, claim in enumerate(POOL_FEN) for e in range(2)]
        decisions = await asyncio.gather(*(approved(index, claim) for index, claim in plans))
        return list(decisions), [s.vendor for s in supplies] + [stranger]


@pytest.fixture(scope="module")
def world(
    databases: DatabaseFactory,
    live_eligibility: str,
    live_registry: str,
    service_auth_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    database_url = databases.create("longgang_vouchers_stateful")
    stack = Stack(database_url, "127.0.0.1", {"vouchers": free_port()})
    log = tmp_path_factory.mktemp("vouchers_stateful") / "vouchers.log"
    with log.open("wb") as output:
        process: subprocess.Popen[bytes] = start_service(
            stack,
            "vouchers",
            log=output,
            extra_env={
                "ELIGIBILITY_URL": live_eligibility,
                "REGISTRY_URL": live_registry,
                **service_auth_env,
                "VOUCHERS_RATE_LIMIT_BURST": "1000000",  # not about rate limits (test_roles.py is)
                "VOUCHERS_RATE_LIMIT_MAX_IN_FLIGHT": "0",
                "VOUCHERS_RATE_LIMIT_WRITE_MAX_IN_FLIGHT": "0",
            },
        )
    background = Background()
    try:
        wait_ready(stack, {"vouchers": process}, timeout=60)
        decisions, vendors = background.run(_prepare(live_registry, live_eligibility))
        database = background.run(asyncpg.connect(database_url))
        with httpx.Client(base_url=stack.url("vouchers"), timeout=30, headers=admin()) as client:
            yield World(client, database, background, decisions, vendors, untried=list(decisions))
        background.run(database.close())
    finally:
        stop_services({"vouchers": process})
        background.close()
        print(f"vouchers log: {Path(log)}")


# --- the machine ---------------------------------------------------------------------------------


def guarded(method: Callable[..., None], *, log: bool = True) -> Callable[..., None]:
    """Record a failure instead of raising it, and make every later step a no-op.

    The database carries over between examples, so the same draws meet another state when
    Hypothesis runs them again: raising would make it report "flaky data generation" instead
    of the failure. The test raises the first failure, with the steps that led to it.
    """

    @functools.wraps(method)
    def wrapper(self: LedgerMachine, **kwargs: Any) -> None:
        world = self.world
        if world.failure is not None:
            return
        if log:
            world.steps.append(f"{method.__name__}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})")
        try:
            method(self, **kwargs)
        except Exception as exc:
            world.failure, world.failed_steps = exc, list(world.steps)

    return wrapper


PICK = st.integers(min_value=0, max_value=10_000)
VENDOR = st.sampled_from(["right"] * 8 + ["other", "stranger"])
AMOUNT = st.sampled_from(["small"] * 3 + ["part"] * 2 + ["all", "all_plus_one", "huge"])
LIVE = st.sampled_from([True, True, True, False])  # mostly vouchers with money left


class LedgerMachine(RuleBasedStateMachine):
    world: World

    def __init__(self) -> None:
        super().__init__()
        self.world.steps.append("--- a new example ---")

    # --- helpers ---

    def post(
        self, path: str, body: dict[str, Any] | None, vendor: str | None = None, key: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        # a vendor client's token for vendors' calls, an officer's for the rest
        headers = as_vendor(vendor) if vendor else auth(OFFICER, name="officer-zhao")
        if key:
            headers["Idempotency-Key"] = key
        response = self.world.client.post(path, json=body, headers=headers)
        assert response.status_code < 500, response.text
        answer: dict[str, Any] = response.json()
        return response.status_code, answer

    def read(self, code: str) -> dict[str, Any]:
        response = self.world.client.get(f"/v1/vouchers/{code}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def assert_voucher_matches(self, voucher: ModelVoucher) -> dict[str, Any]:
        """GET /v1/vouchers/{code} answers the model's balances and state."""
        read = self.read(voucher.code)
        actual = {k: read[k] for k in ("amount_fen", "available_fen", "held_fen", "redeemed_fen", "returned_fen")}
        expected = {k: v for k, v in voucher.balances().items() if k != "voided"}
        assert actual == {"amount_fen": voucher.amount_fen, **expected}, (voucher.code, actual, expected)
        assert read["state"] == voucher.state, (read["state"], voucher.state)
        return read

    def pick_voucher(self, pick: int, live: bool) -> ModelVoucher:
        vouchers = list(self.world.vouchers.values())
        if live:
            usable = [v for v in vouchers if not v.voided and v.available_fen > 0]
            vouchers = usable or vouchers
        return vouchers[pick % len(vouchers)]

    def vendor_for(self, choice: str, right: str, pick: int) -> str:
        if choice == "right":
            return right
        if choice == "stranger":
            return self.world.vendors[-1]
        return [v for v in self.world.vendors[:-1] if v != right][pick % (len(self.world.vendors) - 2)]

    @staticmethod
    def amount_for(choice: str, voucher: ModelVoucher, pick: int) -> int:
        return {
            "small": 1 + pick * 17,  # up to 1,700 yuan
            "part": 1 + pick * 7919 % max(1, voucher.available_fen),
            "all": max(1, voucher.available_fen),
            "all_plus_one": voucher.available_fen + 1,
            "huge": voucher.amount_fen + 1 + pick,
        }[choice]

    def refused(self, code: str | None, status: int, answer: dict[str, Any], expected: tuple[int, str]) -> None:
        self.note(f"refused: {expected[1]}")
        assert (status, answer.get("code")) == expected, (answer, expected)
        if code is not None:  # the voucher is exactly as before (the model did not change)
            self.assert_voucher_matches(self.world.vouchers[code])

    def note(self, outcome: str) -> None:
        self.world.outcomes[outcome] += 1

    # --- claims ---

    @rule(pick=PICK)
    @guarded
    def claim_new(self, pick: int) -> None:
        if not self.world.untried:
            return  # nothing to act on (yet): a no-op step
        decision = self.world.untried.pop(pick % len(self.world.untried))
        self.world.tried.append(decision)
        self.claim(decision)

    @rule(pick=PICK)
    @guarded
    def claim_again(self, pick: int) -> None:
        if not self.world.tried:
            return  # nothing to act on (yet): a no-op step
        self.claim(self.world.tried[pick % len(self.world.tried)])

    def claim(self, decision: PoolDecision) -> None:
        world = self.world
        status, answer = self.post("/v1/vouchers", {"decision_id": decision.id})
        used = world.claimed_fen.get(decision.holder, 0)
        if decision.id in world.issued:
            self.refused(None, status, answer, (409, "already_issued"))
        elif used + decision.amount_fen > CEILING_FEN:
            self.refused(None, status, answer, (409, "claim_ceiling"))
            assert answer["headroom_fen"] == CEILING_FEN - used, answer
        else:
            self.note("claim accepted")
            assert status == 201, answer
            assert (answer["holder"], answer["vendor"], answer["amount_fen"], answer["state"]) == (
                decision.holder,
                decision.vendor,
                decision.amount_fen,
                "active",
            )
            world.issued[decision.id] = answer["code"]
            world.claimed_fen[decision.holder] = used + decision.amount_fen
            world.vouchers[answer["code"]] = ModelVoucher(
                answer["code"], decision.holder, decision.vendor, decision.amount_fen, decision.amount_fen
            )
            world.entries += 1

    # --- redemptions and holds ---

    @rule(pick=PICK, live=LIVE, vendor=VENDOR, amount=AMOUNT, unknown=st.sampled_from([False] * 7 + [True]))
    @guarded
    def redeem(self, pick: int, live: bool, vendor: str, amount: str, unknown: bool) -> None:
        if unknown:
            self.redeem_an_unknown_voucher(pick)
        else:
            self.redeem_or_hold(pick, live, vendor, amount, hold=False)

    @rule(pick=PICK, live=LIVE, vendor=VENDOR, amount=AMOUNT)
    @guarded
    def hold(self, pick: int, live: bool, vendor: str, amount: str) -> None:
        self.redeem_or_hold(pick, live, vendor, amount, hold=True)

    def redeem_or_hold(self, pick: int, live: bool, vendor: str, amount: str, *, hold: bool) -> None:
        if not self.world.vouchers:
            return  # nothing to act on (yet): a no-op step
        world = self.world
        voucher = self.pick_voucher(pick, live)
        caller = self.vendor_for(vendor, voucher.vendor, pick)
        fen = self.amount_for(amount, voucher, pick)
        body = {"amount_fen": fen, "invoice_number": f"FP-{world.serial}"}
        path = f"/v1/vouchers/{voucher.code}/" + ("holds" if hold else "redemptions")
        key = world.new_key()
        status, answer = self.post(path, body, caller, key)
        world.sent.append(Sent(path, body, caller, key, status, answer))
        world.keys += 1
        counted = world.counted_fen.get(voucher.holder, 0)
        if caller != voucher.vendor:
            self.refused(voucher.code, status, answer, (404, "voucher_not_found"))  # not revealed
        elif voucher.voided:
            self.refused(voucher.code, status, answer, (409, "voucher_voided"))
        elif fen > voucher.available_fen:
            self.refused(voucher.code, status, answer, (409, "insufficient_balance"))
            assert (answer["available_fen"], answer["requested_fen"]) == (voucher.available_fen, fen)
        elif counted + fen > CEILING_FEN:
            self.refused(voucher.code, status, answer, (409, "redemption_ceiling"))
        else:
            self.note("hold accepted" if hold else "redemption accepted")
            assert status == 201, answer
            voucher.available_fen -= fen
            if hold:
                voucher.held_fen += fen
            else:
                voucher.redeemed_fen += fen
            world.counted_fen[voucher.holder] = counted + fen
            world.entries += 1
            world.redemptions[answer["id"]] = ModelRedemption(
                answer["id"], voucher.code, caller, fen, "held" if hold else "captured", hold
            )
            assert (answer["status"], answer["amount_fen"], answer["voucher_code"]) == (
                "held" if hold else "captured",
                fen,
                voucher.code,
            )
            assert answer["voucher"] == {
                "available_fen": voucher.available_fen,
                "held_fen": voucher.held_fen,
                "redeemed_fen": voucher.redeemed_fen,
                "amount_fen": voucher.amount_fen,
            }
            self.assert_voucher_matches(voucher)

    def redeem_an_unknown_voucher(self, pick: int) -> None:
        key = self.world.new_key()
        path = f"/v1/vouchers/M3-NONE{pick}-ZZZZZ/redemptions"
        body = {"amount_fen": 1 + pick, "invoice_number": "FP-none"}
        status, answer = self.post(path, body, self.world.vendors[0], key)
        self.world.sent.append(Sent(path, body, self.world.vendors[0], key, status, answer))
        self.world.keys += 1
        self.refused(None, status, answer, (404, "voucher_not_found"))

    @rule(pick=PICK, open_only=st.booleans(), right_vendor=st.sampled_from([True, True, True, False]))
    @guarded
    def capture(self, pick: int, open_only: bool, right_vendor: bool) -> None:
        self.finish_hold(pick, open_only, right_vendor, capture=True)

    @rule(pick=PICK, open_only=st.booleans(), right_vendor=st.sampled_from([True, True, True, False]))
    @guarded
    def release(self, pick: int, open_only: bool, right_vendor: bool) -> None:
        self.finish_hold(pick, open_only, right_vendor, capture=False)

    def finish_hold(self, pick: int, open_only: bool, right_vendor: bool, *, capture: bool) -> None:
        if not self.world.redemptions:
            return  # nothing to act on (yet): a no-op step
        world = self.world
        candidates = list(world.redemptions.values())  # holds, and direct redemptions now and then
        if open_only:
            candidates = [r for r in candidates if r.status == "held"] or candidates
        elif pick % 4:
            candidates = [r for r in candidates if r.hold] or candidates
        hold = candidates[pick % len(candidates)]
        voucher = world.vouchers[hold.code]
        caller = hold.vendor if right_vendor else self.vendor_for("other", hold.vendor, pick)
        action = "capture" if capture else "release"
        path = f"/v1/holds/{hold.id}/{action}"
        key = world.new_key()
        status, answer = self.post(path, None, caller, key)
        world.sent.append(Sent(path, None, caller, key, status, answer))
        world.keys += 1
        if not right_vendor:
            self.refused(voucher.code, status, answer, (404, "hold_not_found"))
        elif hold.status != "held":
            self.refused(voucher.code, status, answer, (409, "hold_not_active"))
            # the hold's status is only in the message: the problem's own `status` (409) hides the parameter
            assert f"（{hold.status}）" in answer["detail"], (answer, hold)
        else:
            self.note(f"{action} accepted")
            assert status == 200, answer
            voucher.held_fen -= hold.amount_fen
            if capture:
                voucher.redeemed_fen += hold.amount_fen
                hold.status = "captured"
            else:
                voucher.available_fen += hold.amount_fen
                world.counted_fen[voucher.holder] -= hold.amount_fen
                hold.status = "released"
            world.entries += 1
            assert (answer["id"], answer["status"], answer["amount_fen"]) == (hold.id, hold.status, hold.amount_fen)
            self.assert_voucher_matches(voucher)

    # --- replays ---

    @rule(pick=PICK)
    @guarded
    def replay_the_same_request(self, pick: int) -> None:
        if not self.world.sent:
            return  # nothing to act on (yet): a no-op step
        sent = self.world.sent[pick % len(self.world.sent)]
        status, answer = self.post(sent.method_path, sent.body, sent.vendor, sent.key)
        assert (status, comparable(answer)) == (sent.status, comparable(sent.answer))

    @rule(pick=PICK)
    @guarded
    def reuse_a_key_for_another_request(self, pick: int) -> None:
        if not self.world.sent:
            return  # nothing to act on (yet): a no-op step
        sent = self.world.sent[pick % len(self.world.sent)]
        path, body = sent.method_path, sent.body
        if body is not None:
            body = {**body, "amount_fen": body["amount_fen"] + 1}
        else:
            head, action = path.rsplit("/", 1)
            path = f"{head}/{'release' if action == 'capture' else 'capture'}"
        status, answer = self.post(path, body, sent.vendor, sent.key)
        assert (status, answer.get("code")) == (409, "idempotency_key_reused"), answer

    # --- officers ---

    @rule(pick=PICK, act=st.sampled_from(["read"] * 5 + ["void"]))
    @guarded
    def read_or_void(self, pick: int, act: str) -> None:
        if not self.world.vouchers:
            return  # nothing to act on (yet): a no-op step
        voucher = self.pick_voucher(pick, live=False)
        if act == "read":
            self.assert_voucher_matches(voucher)
            return
        with_holds = [v for v in self.world.vouchers.values() if v.held_fen]
        if with_holds and pick % 2:  # half the voids meet open holds (which they release)
            voucher = with_holds[pick % len(with_holds)]
        status, answer = self.post(f"/v1/vouchers/{voucher.code}/void", {"reason": "状态机测试：作废"})
        if voucher.state in ("voided", "redeemed"):
            self.refused(voucher.code, status, answer, (409, "voucher_not_active"))
        else:
            self.note("void accepted" + (" with open holds" if voucher.held_fen else ""))
            assert status == 200, answer
            # open holds are released first, each with a release entry (issue #12, finding 7)
            for redemption in self.world.redemptions.values():
                if redemption.code == voucher.code and redemption.status == "held":
                    redemption.status = "released"
                    voucher.held_fen -= redemption.amount_fen
                    voucher.available_fen += redemption.amount_fen
                    self.world.counted_fen[voucher.holder] -= redemption.amount_fen
                    self.world.entries += 1
            assert voucher.held_fen == 0, voucher
            if voucher.available_fen:
                self.world.entries += 1
            voucher.returned_fen += voucher.available_fen
            voucher.available_fen = 0
            voucher.voided = True
            assert answer["state"] == "voided"
            self.assert_voucher_matches(voucher)

    # --- after every step ---

    @invariant()
    @functools.partial(guarded, log=False)
    def the_ledger_is_the_model(self) -> None:
        world = self.world
        world.checks += 1
        snapshot = world.background.run(_snapshot(world.database))
        assert snapshot["violations"] == [], snapshot["violations"]
        assert snapshot["vouchers"] == {code: v.balances() for code, v in world.vouchers.items()}
        assert snapshot["redemptions"] == {r.id: r.status for r in world.redemptions.values()}
        claims = {(h, "M3.claims"): fen for h, fen in world.claimed_fen.items()}
        counted = {(h, "M3.redemptions"): fen for h, fen in world.counted_fen.items()}
        # A2: the M3 budget of the year has committed what the vouchers were issued for, less what voids returned
        budget = {("programme", "budget.M3"): sum(v.amount_fen - v.returned_fen for v in world.vouchers.values())}
        allowances = {k: v for k, v in snapshot["allowances"].items() if v or k[1] == "M3.claims"}
        assert allowances == {
            **claims,
            **{k: v for k, v in counted.items() if v},
            **{k: v for k, v in budget.items() if v},
        }
        assert (snapshot["entries"], snapshot["keys"]) == (world.entries, world.keys)
        for fen in (*world.claimed_fen.values(), *world.counted_fen.values()):
            assert 0 <= fen <= CEILING_FEN


async def _snapshot(connection: asyncpg.Connection) -> dict[str, Any]:
    vouchers = await connection.fetch(
        "SELECT code, available_fen, held_fen, redeemed_fen, returned_fen, voided_at IS NOT NULL AS voided "
        "FROM vouchers.vouchers"
    )
    redemptions = await connection.fetch("SELECT id, status FROM vouchers.redemptions")
    allowances = await connection.fetch(
        "SELECT holder, kind, used_fen FROM vouchers.allowances "
        "WHERE year = extract(year FROM now() AT TIME ZONE 'Asia/Shanghai')"
    )
    return {
        "vouchers": {r["code"]: {k: v for k, v in r.items() if k != "code"} for r in vouchers},
        "redemptions": {r["id"]: r["status"] for r in redemptions},
        "allowances": {(r["holder"], r["kind"]): r["used_fen"] for r in allowances},
        "entries": await connection.fetchval("SELECT count(*) FROM vouchers.entries"),
        "keys": await connection.fetchval("SELECT count(*) FROM vouchers.idempotency"),
        "violations": [str(v) for v in await check_invariants(connection)],
    }


def test_the_ledger_follows_the_m3_model(world: World) -> None:
    class Machine(LedgerMachine):
        pass

    Machine.world = world
    run_state_machine_as_test(Machine, settings=SETTINGS)
    if world.failure is not None:
        steps = "\n  ".join(world.failed_steps)
        raise AssertionError(f"{world.failure!r}\nsteps (most recent last):\n  {steps}") from world.failure
    print(f"{world.checks} checks of the model; outcomes:", dict(sorted(world.outcomes.items())))
    # the pool was worth it: the ceiling refused claims, and vouchers were redeemed
    assert world.issued, "no claim was ever accepted"
    assert any(d.id not in world.issued for d in world.tried), "the claim ceiling never refused a claim"
    assert world.redemptions, "nothing was ever redeemed"
