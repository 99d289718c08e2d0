"""The checker on hand-made histories and ledgers: silent on a consistent run, and it names each kind of violation.

No services, no database: part of `make test` (the run it checks is tests/resilience/test_history.py).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.resilience.checker import DecisionFacts, Expectations, Report, check
from tests.resilience.history import Attempt, History, Op, Outcome, classify
from tests.resilience.snapshot import Snapshot

HOLDER, VENDOR, OTHER = "91440307HOLDER0001", "91440307VENDOR0001", "91440307OTHER00001"
DECISION = "11111111-1111-1111-1111-111111111111"
CODE = "M3-AAAAA-BBBBB-CCCCC-DDDDD"
CEILING = 5_000
VOUCHER_ROW = {"id": 1, "voucher_id": None}


def attempt(rid: str, status: int | None, body: Any = None, code: str | None = None, at: float = 1.0) -> Attempt:
    """An attempt answered `status` (None: no answer, a timeout)."""
    outcome: Outcome = "indeterminate" if status is None else classify(status)
    if code is None:
        code = body.get("code") if isinstance(body, dict) and status and status >= 400 else None
    return Attempt(rid, "vouchers-0", at, at + 0.1, outcome, status, code or (None if status else "ReadTimeout"), body)


class World:
    """A small consistent run: one claim, one redemption, one hold captured; then broken on purpose."""

    def __init__(self) -> None:
        self.history = History(seed=7)
        self.snapshot = Snapshot(
            accounts=[
                {"id": 1, "kind": "budget", "ref": "M3:2026"},
                {"id": 2, "kind": "voucher", "ref": CODE},
                {"id": 3, "kind": "hold", "ref": CODE},
                {"id": 4, "kind": "vendor_receivable", "ref": VENDOR},
            ],
            allowances=[
                {"holder": HOLDER, "year": 2026, "kind": "M3.claims", "limit_fen": CEILING, "used_fen": 1_000},
                {"holder": HOLDER, "year": 2026, "kind": "M3.redemptions", "limit_fen": CEILING, "used_fen": 500},
            ],
            chain={"ok": True, "entries_verified": 4, "first_mismatch": None},
            reconciliation={"ok": True, "checked_through_entry_id": 4, "differences": [], "differences_total": 0},
        )
        self.snapshot.vouchers.append(
            {
                "id": 1,
                "code": CODE,
                "kind": "M3",
                "holder": HOLDER,
                "vendor": VENDOR,
                "decision_id": DECISION,
                "year": 2026,
                "amount_fen": 1_000,
                "available_fen": 500,
                "held_fen": 0,
                "redeemed_fen": 500,
                "returned_fen": 0,
                "voided_at": None,
                "account_id": 2,
                "hold_account_id": 3,
            }
        )
        claim = self.history.new("claim", "c", "officer", DECISION, body={"decision_id": DECISION})
        claim.attempts.append(attempt("r-claim", 201, {"code": CODE, "amount_fen": 1_000}))
        self.entry("issue", 1, 2, 1_000, "r-claim")
        self.snapshot.outbox.append({"id": 1, "type": "vouchers.voucher.issued", "subject": CODE, "payload": {}})
        self.redeem = self.keyed("redeem", CODE, 300, "r-redeem", 201, {"id": 1, "voucher": self.balances(700)})
        self.redemption(1, 300, "captured")
        self.entry("redeem", 2, 4, 300, "r-redeem", redemption=1)
        self.hold = self.keyed("hold", CODE, 200, "r-hold", 201, {"id": 2, "voucher": self.balances(500)})
        self.redemption(2, 200, "captured")
        self.entry("hold", 2, 3, 200, "r-hold", redemption=2)
        self.capture = self.keyed("capture", "2", None, "r-capture", 200, {"id": 2, "status": "captured"})
        self.entry("capture", 3, 4, 200, "r-capture", redemption=2)
        self.expect = Expectations(CEILING, CEILING, {DECISION: DecisionFacts(HOLDER, "M3", 1_000)})

    @staticmethod
    def balances(available: int) -> dict[str, int]:
        return {"available_fen": available, "held_fen": 0, "redeemed_fen": 1_000 - available, "amount_fen": 1_000}

    def keyed(self, kind: str, target: str, amount: int | None, rid: str, status: int, answer: Any) -> Op:
        body = None if amount is None else {"amount_fen": amount, "invoice_number": f"FP-{rid}"}
        op = self.history.new(kind, "c", VENDOR, target, key=f"key-{rid}", body=body)
        op.attempts.append(attempt(rid, status, answer))
        self.snapshot.idempotency.append({"client": VENDOR, "key": op.key, "status_code": status, "response": answer})
        return op

    def redemption(self, rid: int, amount: int, status: str) -> None:
        self.snapshot.redemptions.append(
            {"id": rid, "voucher_id": 1, "vendor": VENDOR, "amount_fen": amount, "status": status, "year": 2026}
        )

    def entry(
        self, kind: str, source: int, target: int, amount: int, rid: str | None, redemption: int | None = None
    ) -> int:
        entry_id = len(self.snapshot.entries) + 1
        self.snapshot.entries.append(
            {
                "id": entry_id,
                "kind": kind,
                "from_account_id": source,
                "to_account_id": target,
                "amount_fen": amount,
                "voucher_id": 1,
                "redemption_id": redemption,
                "request_id": rid,
            }
        )
        if redemption is not None:
            names = {"redeem": "voucher.redeemed", "hold": "voucher.held", "capture": "hold.captured"}
            names["release"] = "hold.released"
            event = {"type": f"vouchers.{names[kind]}", "subject": CODE, "payload": {"id": redemption}}
            self.snapshot.outbox.append({"id": len(self.snapshot.outbox) + 1, **event})
        return entry_id

    def check(self) -> Report:
        for op in self.history.ops:
            op.resolve()
        return check(self.history, self.snapshot, self.expect)


def checks(report: Report) -> set[str]:
    return set(report.by_check())


def test_a_consistent_run_has_no_violation() -> None:
    report = World().check()
    assert report.ok, [str(v) for v in report.violations]
    assert report.counts["vouchers"] == 1
    assert report.counts["op redeem ok"] == 1


def test_a_refused_operation_in_the_ledger() -> None:
    world = World()
    refused = world.keyed("redeem", CODE, 50, "r-refused", 409, {"code": "insufficient_balance"})
    world.redemption(3, 50, "captured")
    world.entry("redeem", 2, 4, 50, "r-refused", redemption=3)
    assert "refused_in_ledger" in checks(world.check())
    assert refused.outcome == "refused"


def test_a_503_that_promised_nothing_was_written_but_something_was() -> None:
    world = World()
    op = world.history.new("claim", "c", "officer", DECISION, body={"decision_id": DECISION})
    op.attempts.append(attempt("r-outage", 503, {"code": "peer_unavailable"}))
    world.snapshot.entries[0]["request_id"] = "r-outage"  # the issue entry is the outage claim's
    report = world.check()
    assert {"refused_in_ledger", "ok_written_by_another"} <= checks(report)


def test_an_indeterminate_operation_may_be_in_the_ledger_once() -> None:
    world = World()
    claim = world.history.ops[0]
    claim.attempts[0] = attempt("r-claim", None)  # the answer was lost; the voucher was issued
    report = world.check()
    assert report.ok, [str(v) for v in report.violations]
    assert report.counts["indeterminate claims in the ledger"] == 1


def test_a_success_missing_from_the_ledger() -> None:
    world = World()
    world.snapshot.redemptions = [r for r in world.snapshot.redemptions if r["id"] != 1]
    world.snapshot.entries = [e for e in world.snapshot.entries if e["redemption_id"] != 1]
    assert "ok_not_in_ledger" in checks(world.check())


def test_a_key_redeemed_twice() -> None:
    world = World()
    world.redemption(3, 300, "captured")
    world.entry("redeem", 2, 4, 300, "r-redeem", redemption=3)  # the same attempt wrote a second redemption
    assert "redeemed_twice" in checks(world.check())


def test_an_entry_no_attempt_explains() -> None:
    world = World()
    world.entry("void", 2, 1, 500, "someone-else")
    assert "phantom_entry" in checks(world.check())


def _unanswered_claim(world: World) -> Attempt:
    """The claim's answer was lost: the client knows only the correlation id it sent; the entry has the service's id."""
    lost = attempt("c-claim", None)
    lost.correlation_id = "c-claim"
    world.history.ops[0].attempts[0] = lost
    world.snapshot.entries[0]["request_id"] = "0123456789abcdef0123456789abcdef"
    return lost


def test_an_unanswered_attempt_is_found_through_the_audit_log() -> None:
    world = World()
    _unanswered_claim(world)
    world.snapshot.audit = {"c-claim": "0123456789abcdef0123456789abcdef"}
    report = world.check()
    assert report.ok, [str(v) for v in report.violations]
    assert report.counts["entries attributed by target (no answer, audit row lost)"] == 0


def test_an_unanswered_attempt_whose_audit_row_was_lost_is_found_by_target() -> None:
    world = World()
    _unanswered_claim(world)  # and no audit row: the process was killed
    report = world.check()
    assert report.ok, [str(v) for v in report.violations]
    assert report.counts["entries attributed by target (no answer, audit row lost)"] == 1
    # an entry that no operation of its kind on its target could have written is still a phantom
    world.entry("void", 2, 1, 500, "fedcba9876543210fedcba9876543210")
    assert "phantom_entry" in checks(world.check())


def test_a_voucher_issued_twice_and_a_claim_refused_without_reason() -> None:
    world = World()
    again = world.history.new("claim", "c", "officer", DECISION, body={"decision_id": DECISION})
    again.attempts.append(attempt("r-again", 201, {"code": CODE, "amount_fen": 1_000}))
    late = world.history.new("claim", "c", "officer", DECISION, body={"decision_id": DECISION})
    late.attempts.append(attempt("r-late", 409, {"code": "claim_ceiling", "headroom_fen": 4_000}))
    assert {"issued_twice", "unjustified_refusal"} <= checks(world.check())


def test_ceilings_exceeded() -> None:
    world = World()
    world.snapshot.allowances[0]["used_fen"] = CEILING + 1
    world.snapshot.vouchers[0]["amount_fen"] = CEILING + 1
    report = world.check()
    assert "ceiling_exceeded" in checks(report)
    assert len([v for v in report.violations if v.check == "ceiling_exceeded"]) == 2


def test_negative_balances_in_the_ledger_and_in_an_answer() -> None:
    world = World()
    world.redeem.attempts[0].body["voucher"]["available_fen"] = -1
    world.entry("redeem", 2, 4, 2_000, "r-redeem", redemption=1)
    report = world.check()
    assert "negative_balance" in checks(report)
    assert "voucher_amounts" in checks(report)


def test_a_replay_with_another_answer() -> None:
    world = World()
    replay = world.history.new("redeem", "replay", VENDOR, CODE, key=world.redeem.key, body=world.redeem.body)
    replay.replay_of = world.redeem.id
    replay.attempts.append(attempt("r-replay", 201, {"id": 99, "voucher": world.balances(700)}))
    assert "replay_differs" in checks(world.check())


def test_an_unresolved_keyed_operation_and_an_unexpected_refusal() -> None:
    world = World()
    lost = world.history.new("redeem", "c", VENDOR, CODE, key="key-lost", body={"amount_fen": 1})
    lost.attempts += [attempt("r-lost-1", None), attempt("r-lost-2", 503, {"code": "database_unavailable"})]
    odd = world.history.new("redeem", "c", VENDOR, CODE, key="key-odd", body={"amount_fen": 1})
    odd.attempts.append(attempt("r-odd", 401, {"code": "unauthorized"}))
    assert {"unresolved", "unexpected_refusal"} <= checks(world.check())


def test_a_500_is_a_violation_even_when_a_retry_succeeded() -> None:
    world = World()
    world.redeem.attempts.insert(0, attempt("r-500", 500, {"code": "internal_error"}))
    assert checks(world.check()) == {"internal_error"}


def test_a_claim_answered_while_eligibility_was_down() -> None:
    world = World()
    world.expect = Expectations(CEILING, CEILING, world.expect.decisions, eligibility_outages=((0.5, 3.0),))
    report = world.check()
    assert "outage_answer" in checks(report)  # the claim at 1.0 s got 201: eligibility cannot have answered
    world.history.ops[0].attempts[0].started, world.history.ops[0].attempts[0].ended = 4.0, 4.2  # after it
    assert "outage_answer" not in checks(world.check())
    impatient = world.history.new("claim", "c", "officer", DECISION, body={"decision_id": DECISION})
    impatient.attempts.append(attempt("r-impatient", None))  # the client gave up: the service said nothing
    assert "outage_answer" not in checks(world.check())


def test_events_lost_or_doubled() -> None:
    world = World()
    world.snapshot.outbox = [e for e in world.snapshot.outbox if e["type"] != "vouchers.hold.captured"]
    world.snapshot.outbox.append(copy.deepcopy(world.snapshot.outbox[0]))
    report = world.check()
    assert len([v for v in report.violations if v.check == "outbox"]) == 2


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda s: s.chain.update(ok=False, first_mismatch={"entry_id": 2}), "hash_chain"),
        (lambda s: s.reconciliation.update(ok=False, differences_total=1), "projections"),
        (lambda s: s.reconciliation.update(checked_through_entry_id=2), "projections"),
        (lambda s: setattr(s, "reconciliation", None), "projections"),
        (lambda s: s.invariant_violations.append("sum_is_zero: {'total': 1}"), "ledger_invariant"),
    ],
)
def test_the_services_own_checks(damage: Any, expected: str) -> None:
    world = World()
    damage(world.snapshot)
    assert checks(world.check()) == {expected}


def voided_with_a_hold(world: World) -> Op:
    """A hold of 100 on the voucher, then a void: the void releases the hold (issue #12) and returns the rest."""
    world.keyed("hold", CODE, 100, "r-hold-2", 201, {"id": 3, "voucher": world.balances(400)})
    world.redemption(3, 100, "released")
    world.entry("hold", 2, 3, 100, "r-hold-2", redemption=3)
    void = world.history.new("void", "c", "officer", CODE, body={"reason": "作废"})
    void.attempts.append(attempt("r-void", 200, {"code": CODE, "state": "voided", "returned_fen": 500}))
    world.entry("release", 3, 2, 100, "r-void", redemption=3)
    world.entry("void", 2, 1, 500, "r-void")
    world.snapshot.outbox.append({"id": 99, "type": "vouchers.voucher.voided", "subject": CODE, "payload": {}})
    voucher = world.snapshot.vouchers[0]
    voucher.update(available_fen=0, returned_fen=500, voided_at="2026-06-01T00:00:00+08:00")
    assert world.snapshot.reconciliation is not None
    world.snapshot.reconciliation["checked_through_entry_id"] = len(world.snapshot.entries)
    return void


def test_a_void_releases_the_vouchers_holds_under_its_own_request() -> None:
    world = World()
    voided_with_a_hold(world)
    report = world.check()
    assert report.ok, [str(v) for v in report.violations]


def test_a_hold_that_outlives_the_void_of_its_voucher() -> None:
    world = World()
    voided_with_a_hold(world)
    world.snapshot.redemptions[-1]["status"] = "held"
    assert "hold_outlives_void" in checks(world.check())


def test_a_release_entry_written_by_a_claim_is_misattributed() -> None:
    world = World()
    voided_with_a_hold(world)
    release = next(e for e in world.snapshot.entries if e["kind"] == "release")
    release["request_id"] = "r-claim"
    assert "misattributed" in checks(world.check())


def as_m1(world: World, authorised: str) -> None:
    """The world's voucher as a compute voucher whose application named `authorised` as its provider."""
    world.snapshot.vouchers[0]["kind"] = "M1"
    world.expect = Expectations(CEILING, CEILING, {DECISION: DecisionFacts(HOLDER, "M1", 1_000, authorised)})
    world.snapshot.allowances = []


def test_vendor_not_authorised_is_right_only_for_another_vendor_on_a_compute_voucher() -> None:
    world = World()
    as_m1(world, VENDOR)
    stranger = world.history.new("redeem", "c", OTHER, CODE, key="key-other", body={"amount_fen": 1})
    stranger.attempts.append(attempt("r-other", 403, {"code": "vendor_not_authorised"}))
    report = world.check()
    assert report.ok, [str(v) for v in report.violations]
    assert report.counts["redemptions refused to an unauthorised vendor"] == 1

    world = World()  # the voucher's own model vendor refused: the service was wrong
    refused = world.keyed("redeem", CODE, 1, "r-refused", 403, {"code": "vendor_not_authorised"})
    assert "unjustified_refusal" in checks(world.check())
    assert refused.outcome == "refused"


def test_a_compute_voucher_spent_by_a_vendor_its_holder_did_not_authorise() -> None:
    world = World()
    as_m1(world, OTHER)  # the redemptions in the world are VENDOR's
    assert "unauthorised_spend" in checks(world.check())
