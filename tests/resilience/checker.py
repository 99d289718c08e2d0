"""The checker of a resilience run: pure functions over the history and the final state of the ledger.

`check(history, snapshot, expect)` returns a `Report` whose `violations` must be empty. No I/O:
the history is what the clients recorded (tests/resilience/history.py), the snapshot what was
read from the database and the service afterwards (tests/resilience/snapshot.py). What it proves:

- **attribution**: every ledger entry carries the request id the service assigned to the attempt
  that wrote it (its answer's `X-Request-ID`, or the audit log's row for the attempt's
  correlation id); each must belong to an attempt of an operation of the matching kind, on the
  same target, that was not refused (a 4xx, or a 503 `peer_unavailable`, which promises nothing
  was written). An entry whose request id no attempt has (no answer, and the audit row lost
  with a killed process) is attributed to an unanswered attempt of an operation of its kind on
  its target; an entry no attempt explains is a phantom.
- **exactly once**: every `ok` operation is in the ledger once — vouchers by decision id,
  redemptions and holds by their id and Idempotency-Key, captures, releases and voids by their
  target — no `refused` one is, each `indeterminate` one at most once; keyed operations all
  resolved (they are retried with the same key until they do); an idempotent replay after the
  run gets the first answer again.
- **ceilings**: no allowance above its limit; M3 claims, and M3 redemptions, per enterprise and
  year at most the policy's ceilings; M1 vouchers within their class cap; a `claim_ceiling`
  refusal was justified by the headroom it reported.
- **balances**: no negative balance (accounts recomputed from the entries, and every balance an
  answer showed); each voucher's amounts add up; the ledger's own invariants
  (`services.vouchers.invariants`: debits = credits, projections, ceilings, redemption entries).
- **the hash chain verifies**, **the outbox** has exactly one event per change, and **the
  projections** reconcile with the ledger (GET /v1/aggregates/reconciliation).
- **no 500**: an unavailable dependency is a 503; a 500 is a bug.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.resilience.history import KEYED_KINDS, Attempt, History, Op, comparable
from tests.resilience.snapshot import Snapshot

#: which operations write which kind of entry: a void releases the voucher's active holds (issue #12) with its
#: own request id, so a release entry is a release's or a void's
ENTRY_OPS: dict[str, tuple[str, ...]] = {
    "issue": ("claim",),
    "redeem": ("redeem",),
    "hold": ("hold",),
    "capture": ("capture",),
    "release": ("release", "void"),
    "void": ("void",),
}
#: the ledger remembers another vendor's voucher as such; the vendor is told it is not found (issue #5)
ANSWERED_AS = {"vendor_not_allowed": "voucher_not_found"}
#: the refusals each kind of operation may meet in this run; anything else (401, 403, 422 …) is a fault
REDEMPTION_REFUSALS = frozenset(
    {
        "insufficient_balance",
        "voucher_not_found",
        "voucher_voided",
        "redemption_ceiling",
        "vendor_not_compute_vendor",
        "vendor_not_authorised",  # justified by _authorisations
    }
)
EXPECTED_REFUSALS: dict[str, frozenset[str]] = {
    "claim": frozenset({"claim_ceiling", "already_issued", "contract_already_claimed", "class_cap"}),
    "redeem": REDEMPTION_REFUSALS,
    "hold": REDEMPTION_REFUSALS,
    "capture": frozenset({"hold_not_active", "hold_not_found"}),
    "release": frozenset({"hold_not_active", "hold_not_found"}),
    "void": frozenset({"voucher_not_active", "voucher_has_holds"}),
    "read": frozenset({"voucher_not_found"}),
}
EXAMPLES = 10  # violations listed per check at most (the count is always complete)


@dataclass(frozen=True)
class DecisionFacts:
    holder: str
    measure: str
    amount_fen: int
    #: M3: the contract's model vendor; M1: the compute vendor the application named, which issuance authorises
    vendor: str = ""


@dataclass(frozen=True)
class Expectations:
    claim_ceiling_fen: int  # M3, per enterprise and calendar year (policy parameter)
    redemption_ceiling_fen: int  # M3, per enterprise and calendar year (policy parameter)
    decisions: Mapping[str, DecisionFacts]
    reconciliation_required: bool = True
    #: when the eligibility service was entirely down (seconds since the start, from → to)
    eligibility_outages: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Violation:
    check: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.detail}"


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, check: str, detail: str) -> None:
        self.violations.append(Violation(check, detail))

    def by_check(self) -> Counter[str]:
        return Counter(v.check for v in self.violations)


@dataclass
class _Ledger:
    """The snapshot indexed the ways the checks need it."""

    snapshot: Snapshot
    vouchers_by_id: dict[int, dict[str, Any]]
    vouchers_by_code: dict[str, dict[str, Any]]
    vouchers_by_decision: dict[str, dict[str, Any]]
    redemptions: dict[int, dict[str, Any]]
    entries_by_voucher: dict[int, list[dict[str, Any]]]
    entries_by_redemption: dict[int, list[dict[str, Any]]]
    writer: dict[int, tuple[Op, Attempt]]  # entry id → the attempt that wrote it

    @classmethod
    def index(cls, snapshot: Snapshot, attempts: Mapping[str, tuple[Op, Attempt]]) -> _Ledger:
        by_voucher: dict[int, list[dict[str, Any]]] = defaultdict(list)
        by_redemption: dict[int, list[dict[str, Any]]] = defaultdict(list)
        writer: dict[int, tuple[Op, Attempt]] = {}
        for entry in snapshot.entries:
            if entry["redemption_id"] is not None:
                by_redemption[entry["redemption_id"]].append(entry)
            elif entry["voucher_id"] is not None:
                by_voucher[entry["voucher_id"]].append(entry)
            found = attempts.get(entry["request_id"] or "")
            if found is not None:
                writer[entry["id"]] = found
        return cls(
            snapshot,
            {v["id"]: v for v in snapshot.vouchers},
            {v["code"]: v for v in snapshot.vouchers},
            {str(v["decision_id"]): v for v in snapshot.vouchers},
            {r["id"]: r for r in snapshot.redemptions},
            by_voucher,
            by_redemption,
            writer,
        )

    def attribute_unanswered(self, history: History, report: Report) -> None:
        """Entries whose request id no attempt knows: an attempt without an answer whose audit row was lost
        (SIGKILL) wrote it, if an operation of the entry's kind on its target had one."""
        known = {id(attempt) for _, attempt in self.writer.values()}
        for entry in self.snapshot.entries:
            if entry["id"] in self.writer or ENTRY_OPS.get(entry["kind"]) is None:
                continue
            for op in history.ops:
                if op.kind not in ENTRY_OPS[entry["kind"]] or not _same_target(self, entry, op):
                    continue
                unanswered = [a for a in op.attempts if not a.answered and id(a) not in known]
                if unanswered:
                    self.writer[entry["id"]] = (op, unanswered[0])
                    known.add(id(unanswered[0]))
                    report.counts["entries attributed by target (no answer, audit row lost)"] += 1
                    break

    def entries_of(self, voucher: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        return [e for e in self.entries_by_voucher.get(voucher["id"], []) if e["kind"] == kind]


def _limited(report: Report, check: str, details: Iterable[str]) -> None:
    for detail in details:
        report.add(check, detail)


def check(history: History, snapshot: Snapshot, expect: Expectations) -> Report:
    report = Report()
    attempts = history.attempts_by_request_id(snapshot.audit)
    ledger = _Ledger.index(snapshot, attempts)
    ledger.attribute_unanswered(history, report)
    _count(history, snapshot, report)
    _refusals(history, report)
    _authorisations(history, ledger, expect, report)
    _outages(history, expect, report)
    _attribution(ledger, report)
    _claims(history, ledger, expect, report)
    _redemptions(history, ledger, report)
    _finished_holds(history, ledger, report)
    _voids(history, ledger, report)
    _ceilings(ledger, expect, report)
    _balances(history, ledger, report)
    _replays(history, report)
    _outbox(ledger, report)
    _services(history, snapshot, expect, report)
    return report


def _count(history: History, snapshot: Snapshot, report: Report) -> None:
    for op in history.ops:
        report.counts[f"op {op.kind} {op.outcome}"] += 1
        report.counts["attempts"] += len(op.attempts)
        if len(op.attempts) > 1:
            report.counts["ops retried"] += 1
    for entry in snapshot.entries:
        report.counts[f"entry {entry['kind']}"] += 1
    report.counts["vouchers"] = len(snapshot.vouchers)
    report.counts["redemptions"] = len(snapshot.redemptions)
    report.counts["events"] = len(snapshot.outbox)


def _refusals(history: History, report: Report) -> None:
    for op in history.ops:
        if op.outcome == "refused" and op.replay_of is None and op.code not in EXPECTED_REFUSALS.get(op.kind, ()):
            report.add("unexpected_refusal", f"{op.status} {op.code}: {op.describe()}")


def _authorisations(history: History, ledger: _Ledger, expect: Expectations, report: Report) -> None:
    """A compute voucher is spent only by a vendor its holder authorised (issue #12): in this run, the provider
    its application named. So `vendor_not_authorised` is right exactly for another vendor on an M1 voucher."""
    for op in history.ops:
        if op.code != "vendor_not_authorised" or op.replay_of is not None:
            continue
        voucher = ledger.vouchers_by_code.get(op.target or "")
        facts = None if voucher is None else expect.decisions.get(str(voucher["decision_id"]))
        if facts is None or facts.measure != "M1" or facts.vendor == op.actor:
            report.add("unjustified_refusal", f"the vendor was authorised to spend this voucher: {op.describe()}")
        report.counts["redemptions refused to an unauthorised vendor"] += 1
    for redemption in ledger.redemptions.values():
        voucher = ledger.vouchers_by_id.get(redemption["voucher_id"])
        facts = None if voucher is None else expect.decisions.get(str(voucher["decision_id"]))
        if facts is not None and facts.measure == "M1" and redemption["vendor"] != facts.vendor:
            report.add("unauthorised_spend", f"redemption {redemption['id']} by {redemption['vendor']} on {facts}")


def _outages(history: History, expect: Expectations, report: Report) -> None:
    """While eligibility was down, every claim was answered 503 peer_unavailable (and wrote nothing: attribution)."""
    for start, end in expect.eligibility_outages:
        for op in history.ops:
            for attempt in op.attempts if op.kind == "claim" else []:
                # an answer from the service (a client that gave up, impatient, heard nothing to judge)
                if start <= attempt.started and attempt.ended <= end and attempt.status is not None:
                    report.counts["claims while eligibility was down"] += 1
                    if (attempt.status, attempt.code) != (503, "peer_unavailable"):
                        report.add(
                            "outage_answer",
                            f"a claim while eligibility was down got {attempt.status} {attempt.code}: {op.describe()}",
                        )


# --- every entry written by an attempt that may have written it --------------------------------


def _attribution(ledger: _Ledger, report: Report) -> None:
    for entry in ledger.snapshot.entries:
        where = f"entry {entry['id']} ({entry['kind']}, {entry['amount_fen']} fen, request {entry['request_id']})"
        expected_ops = ENTRY_OPS.get(entry["kind"])
        if expected_ops is None:
            report.add("unexpected_entry", f"{where}: no operation of this run writes such an entry")
            continue
        found = ledger.writer.get(entry["id"])
        if found is None:
            report.add(
                "phantom_entry", f"{where}: no attempt of any operation has this request id, nor lost its answer"
            )
            continue
        op, attempt = found
        if attempt.outcome == "indeterminate":
            report.counts["entries written by an attempt whose answer was lost"] += 1
        if op.kind not in expected_ops:
            report.add("misattributed", f"{where} was written by a {op.kind}: {op.describe()}")
            continue
        if not _same_target(ledger, entry, op):
            report.add("misattributed", f"{where} is not on the target of {op.describe()}")
        if attempt.wrote_nothing_promised:
            report.add(
                "refused_in_ledger",
                f"{where} was written by an attempt answered {attempt.status} {attempt.code}: {op.describe()}",
            )
        elif op.outcome == "refused":
            report.add("refused_in_ledger", f"{where} belongs to a refused operation: {op.describe()}")


def _same_target(ledger: _Ledger, entry: dict[str, Any], op: Op) -> bool:
    if op.kind in ("capture", "release"):
        return str(entry["redemption_id"]) == op.target
    voucher_id = entry["voucher_id"]
    if voucher_id is None and entry["redemption_id"] is not None:  # a hold released by a void of its voucher
        voucher_id = ledger.redemptions.get(entry["redemption_id"], {}).get("voucher_id")
    voucher = ledger.vouchers_by_id.get(voucher_id)
    if voucher is None:
        return False
    if op.kind == "claim":
        return str(voucher["decision_id"]) == op.target
    return bool(voucher["code"] == op.target)


def _written_by(ledger: _Ledger, entries: list[dict[str, Any]], op: Op) -> bool:
    """Whether one of `entries` was written by an attempt of `op`."""
    for entry in entries:
        found = ledger.writer.get(entry["id"])
        if found is not None and found[0] is op:
            return True
    return False


# --- claims: vouchers by decision id ----------------------------------------------------------------


def _claims(history: History, ledger: _Ledger, expect: Expectations, report: Report) -> None:
    for voucher in ledger.snapshot.vouchers:
        decision_id = str(voucher["decision_id"])
        where = f"voucher {voucher['code']} (decision {decision_id})"
        issues = ledger.entries_of(voucher, "issue")
        if len(issues) != 1:
            report.add("issued_not_once", f"{where} has {len(issues)} issue entries")
        facts = expect.decisions.get(decision_id)
        if facts is None:
            report.add("phantom_voucher", f"{where}: no such approved decision was prepared")
        elif (voucher["holder"], voucher["kind"], voucher["amount_fen"]) != (
            facts.holder,
            facts.measure,
            facts.amount_fen,
        ):
            report.add(
                "voucher_mismatch",
                f"{where}: {voucher['holder']} {voucher['kind']} {voucher['amount_fen']} ≠ the decision's {facts}",
            )
    winners: dict[str, list[Op]] = defaultdict(list)
    for op in history.ops:
        if op.kind != "claim":
            continue
        issued = ledger.vouchers_by_decision.get(op.target)
        if op.outcome == "ok":
            winners[op.target].append(op)
            if issued is None:
                report.add("ok_not_in_ledger", f"a successful claim left no voucher: {op.describe()}")
            elif issued["code"] != op.answer.get("code") or issued["amount_fen"] != op.answer.get("amount_fen"):
                report.add("ok_mismatch", f"the ledger has {issued['code']}, the claim was told: {op.describe()}")
            elif not _written_by(ledger, ledger.entries_of(issued, "issue"), op):
                report.add("ok_written_by_another", f"{issued['code']} was issued by another request: {op.describe()}")
        elif op.outcome == "refused":
            code = op.code
            if code in ("already_issued", "contract_already_claimed") and issued is None:
                report.add("unjustified_refusal", f"refused as {code} but the decision has no voucher: {op.describe()}")
            elif code == "claim_ceiling":
                facts = expect.decisions.get(op.target)
                headroom = (op.answer or {}).get("headroom_fen")
                if facts is None or not isinstance(headroom, int) or facts.amount_fen <= headroom:
                    report.add("unjustified_refusal", f"the headroom would have allowed the claim: {op.describe()}")
                report.counts["claims refused at the ceiling"] += 1
        else:
            written = issued is not None and _written_by(ledger, ledger.entries_of(issued, "issue"), op)
            report.counts[f"indeterminate claims {'in' if written else 'not in'} the ledger"] += 1
    for decision_id, ops in winners.items():
        if len(ops) > 1:
            report.add("issued_twice", f"decision {decision_id} claimed {len(ops)} times: {ops[1].describe()}")


# --- redemptions and holds: by id and Idempotency-Key ---------------------------------------------


def _redemptions(history: History, ledger: _Ledger, report: Report) -> None:
    per_op: dict[int, list[int]] = defaultdict(list)
    for redemption in ledger.redemptions.values():
        where = f"redemption {redemption['id']} ({redemption['status']}, {redemption['amount_fen']} fen)"
        first = [e for e in ledger.entries_by_redemption.get(redemption["id"], []) if e["kind"] in ("redeem", "hold")]
        if len(first) != 1:
            report.add("redeemed_not_once", f"{where} has {len(first)} redeem/hold entries")
            continue
        found = ledger.writer.get(first[0]["id"])
        if found is None:
            continue  # a phantom entry, reported by the attribution
        op = found[0]
        per_op[op.id].append(redemption["id"])
        voucher = ledger.vouchers_by_id.get(redemption["voucher_id"], {})
        body = op.body or {}
        if (redemption["vendor"], redemption["amount_fen"], voucher.get("code")) != (
            op.actor,
            body.get("amount_fen"),
            op.target,
        ):
            report.add("redemption_mismatch", f"{where} differs from its request: {op.describe()}")
    ops = {op.id: op for op in history.ops}
    _limited(
        report,
        "redeemed_twice",
        (f"one key, {len(ids)} redemptions {ids}: {ops[i].describe()}" for i, ids in per_op.items() if len(ids) > 1),
    )
    idempotency = {(r["client"], r["key"]): r for r in ledger.snapshot.idempotency}
    answered: dict[int, Op] = {}
    for op in history.ops:
        if op.kind not in KEYED_KINDS or op.replay_of is not None:
            continue
        if op.outcome == "indeterminate":
            report.add("unresolved", f"a keyed operation never resolved, though retried: {op.describe()}")
            continue
        record = idempotency.get((op.actor, op.key or ""))
        if op.outcome == "ok":
            if record is None or record["status_code"] != op.status:
                report.add("idempotency_record", f"no stored first answer for a success: {op.describe()}")
        elif record is not None and record["response"] is not None:
            stored = record["response"].get("code")
            if ANSWERED_AS.get(stored, stored) != op.code:
                report.add("idempotency_record", f"stored {stored}, answered {op.code}: {op.describe()}")
        if op.kind not in ("redeem", "hold") or op.outcome != "ok":
            continue
        rid = op.answer.get("id")
        if rid in answered:
            report.add("redeemed_twice", f"two keys got redemption {rid}: {op.describe()} / {answered[rid].describe()}")
        answered[rid] = op
        if rid not in ledger.redemptions:
            report.add("ok_not_in_ledger", f"a successful {op.kind} is not in the ledger: {op.describe()}")
        elif rid not in per_op.get(op.id, []):
            report.add("ok_written_by_another", f"redemption {rid} was written by another request: {op.describe()}")


def _finished_holds(history: History, ledger: _Ledger, report: Report) -> None:
    for rid, entries in ledger.entries_by_redemption.items():
        finishes = [e for e in entries if e["kind"] in ("capture", "release")]
        if len(finishes) > 1:
            report.add("finished_twice", f"hold {rid} has {[e['kind'] for e in finishes]} entries")
    for op in history.ops:
        if op.kind not in ("capture", "release") or op.outcome != "ok" or op.replay_of is not None:
            continue
        redemption = ledger.redemptions.get(int(op.target))
        expected = "captured" if op.kind == "capture" else "released"
        if redemption is None or redemption["status"] != expected:
            status = None if redemption is None else redemption["status"]
            report.add("ok_not_in_ledger", f"a successful {op.kind}, but the hold is {status}: {op.describe()}")
            continue
        finishes = [e for e in ledger.entries_by_redemption.get(redemption["id"], []) if e["kind"] == op.kind]
        if not _written_by(ledger, finishes, op):
            report.add("ok_written_by_another", f"the {op.kind} entry is another request's: {op.describe()}")


def _voids(history: History, ledger: _Ledger, report: Report) -> None:
    voids: dict[str, list[Op]] = defaultdict(list)
    for op in history.ops:
        if op.kind == "void":
            voids[op.target].append(op)
    for voucher in ledger.snapshot.vouchers:
        code, entries = voucher["code"], ledger.entries_of(voucher, "void")
        if len(entries) > 1:
            report.add("voided_twice", f"{code} has {len(entries)} void entries")
        ops = voids.get(code, [])
        if voucher["voided_at"] is not None and not any(op.outcome in ("ok", "indeterminate") for op in ops):
            report.add("phantom_void", f"{code} is voided, but no void of it succeeded or was left open")
        succeeded = [op for op in ops if op.outcome == "ok"]
        if len(succeeded) > 1:
            report.add("voided_twice", f"{code} was voided successfully {len(succeeded)} times")
        if voucher["voided_at"] is not None:
            held = [
                r["id"]
                for r in ledger.redemptions.values()
                if r["voucher_id"] == voucher["id"] and r["status"] == "held"
            ]
            if held:
                report.add("hold_outlives_void", f"{code} is voided, but holds {held} are still held (issue #12)")
        for op in succeeded:
            if voucher["voided_at"] is None:
                report.add("ok_not_in_ledger", f"a successful void, but the voucher is not voided: {op.describe()}")
            elif voucher["returned_fen"] != op.answer.get("returned_fen"):
                report.add("ok_mismatch", f"{code} returned {voucher['returned_fen']}, the void said: {op.describe()}")
            elif voucher["returned_fen"] > 0 and not _written_by(ledger, entries, op):
                report.add("ok_written_by_another", f"the void entry of {code} is another request's: {op.describe()}")
        for op in ops:
            if op.outcome == "indeterminate":
                state = "in the ledger" if voucher["voided_at"] is not None else "not in the ledger"
                report.counts[f"indeterminate voids {state}"] += 1


# --- ceilings and balances -------------------------------------------------------------------------


def _ceilings(ledger: _Ledger, expect: Expectations, report: Report) -> None:
    snapshot = ledger.snapshot
    for allowance in snapshot.allowances:
        where = f"{allowance['kind']} of {allowance['holder']} in {allowance['year']}"
        if allowance["used_fen"] > allowance["limit_fen"]:
            report.add("ceiling_exceeded", f"{where}: used {allowance['used_fen']} > limit {allowance['limit_fen']}")
        wanted = {"M3.claims": expect.claim_ceiling_fen, "M3.redemptions": expect.redemption_ceiling_fen}
        if allowance["kind"] in wanted and allowance["limit_fen"] != wanted[allowance["kind"]]:
            report.add("ceiling_parameter", f"{where}: limit {allowance['limit_fen']} ≠ the policy's")
    claimed: Counter[tuple[str, int]] = Counter()
    m1: Counter[tuple[str, int]] = Counter()
    for voucher in snapshot.vouchers:
        (claimed if voucher["kind"] == "M3" else m1)[(voucher["holder"], voucher["year"])] += voucher["amount_fen"]
    for (holder, year), total in claimed.items():
        if total > expect.claim_ceiling_fen:
            report.add("ceiling_exceeded", f"M3 claims of {holder} in {year}: {total} > {expect.claim_ceiling_fen}")
    caps = {(a["holder"], a["year"]): a["limit_fen"] for a in snapshot.allowances if a["kind"] == "M1.class_cap"}
    for (holder, year), total in m1.items():
        if (holder, year) in caps and total > caps[(holder, year)]:
            report.add("ceiling_exceeded", f"M1 vouchers of {holder} in {year}: {total} > {caps[(holder, year)]}")
    redeemed: Counter[tuple[str, int]] = Counter()
    for redemption in snapshot.redemptions:
        of = ledger.vouchers_by_id.get(redemption["voucher_id"])
        if of is not None and of["kind"] == "M3" and redemption["status"] in ("captured", "held"):
            redeemed[(of["holder"], redemption["year"])] += redemption["amount_fen"]
    for (holder, year), total in redeemed.items():
        if total > expect.redemption_ceiling_fen:
            report.add(
                "ceiling_exceeded", f"M3 redemptions of {holder} in {year}: {total} > {expect.redemption_ceiling_fen}"
            )


BALANCE_FIELDS = ("available_fen", "held_fen", "redeemed_fen", "returned_fen")


def _balances(history: History, ledger: _Ledger, report: Report) -> None:
    snapshot = ledger.snapshot
    balance: Counter[int] = Counter()
    for entry in snapshot.entries:
        balance[entry["to_account_id"]] += entry["amount_fen"]
        balance[entry["from_account_id"]] -= entry["amount_fen"]
    kinds = {a["id"]: (a["kind"], a["ref"]) for a in snapshot.accounts}
    for account, fen in balance.items():
        kind = kinds.get(account, ("?", "?"))
        if fen < 0 and kind[0] != "budget":
            report.add("negative_balance", f"account {account} {kind}: {fen}")
    if sum(balance.values()) != 0:
        report.add("debits_credits", f"the accounts sum to {sum(balance.values())}")
    for voucher in snapshot.vouchers:
        parts = [voucher[f] for f in BALANCE_FIELDS]
        if min(parts) < 0 or sum(parts) != voucher["amount_fen"]:
            report.add("voucher_amounts", f"{voucher['code']}: {dict(zip(BALANCE_FIELDS, parts, strict=True))}")
        if (balance[voucher["account_id"]], balance[voucher["hold_account_id"]]) != (
            voucher["available_fen"],
            voucher["held_fen"],
        ):
            report.add("voucher_amounts", f"{voucher['code']}: its accounts' balances ≠ its available/held")
    for op in history.ops:
        for attempt in op.attempts:
            if attempt.outcome != "ok" or not isinstance(attempt.body, dict):
                continue
            shown = attempt.body.get("voucher") if op.kind != "read" else attempt.body
            if isinstance(shown, dict) and any(isinstance(shown.get(f), int) and shown[f] < 0 for f in BALANCE_FIELDS):
                report.add("negative_balance", f"an answer showed a negative balance: {op.describe()}")


# --- replays, events, the services' own checks ------------------------------------------------------


def _replays(history: History, report: Report) -> None:
    by_id = {op.id: op for op in history.ops}
    for op in history.ops:
        if op.replay_of is None:
            continue
        original = by_id[op.replay_of]
        if op.outcome == "indeterminate":
            report.add("unresolved", f"a replay never resolved: {op.describe()}")
        elif (op.status, comparable(op.answer)) != (original.status, comparable(original.answer)):
            report.add("replay_differs", f"{op.describe()}\n    first answer: {original.describe()}")


def _outbox(ledger: _Ledger, report: Report) -> None:
    """One event per change, in the same transaction: none lost, none doubled, none for nothing."""
    snapshot = ledger.snapshot
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for event in snapshot.outbox:
        if event["type"] in ("vouchers.voucher.issued", "vouchers.voucher.voided"):
            seen[event["type"]][event["subject"]] += 1
        else:
            seen[event["type"]][str((event["payload"] or {}).get("id"))] += 1
    wanted: dict[str, Counter[str]] = defaultdict(Counter)
    for voucher in snapshot.vouchers:
        wanted["vouchers.voucher.issued"][voucher["code"]] += 1
        if voucher["voided_at"] is not None:
            wanted["vouchers.voucher.voided"][voucher["code"]] += 1
    names = {"redeem": "vouchers.voucher.redeemed", "hold": "vouchers.voucher.held"}
    names |= {"capture": "vouchers.hold.captured", "release": "vouchers.hold.released"}
    for rid, entries in ledger.entries_by_redemption.items():
        expired = ledger.redemptions.get(rid, {}).get("status") == "expired"
        for entry in entries:
            name = "vouchers.hold.expired" if expired and entry["kind"] == "release" else names.get(entry["kind"])
            wanted[name or entry["kind"]][str(rid)] += 1
    for kind in sorted(set(seen) | set(wanted)):
        if seen[kind] != wanted[kind]:
            missing = sorted((wanted[kind] - seen[kind]).elements())[:EXAMPLES]
            extra = sorted((seen[kind] - wanted[kind]).elements())[:EXAMPLES]
            report.add("outbox", f"{kind}: missing events for {missing}, events without a change (or doubled) {extra}")


def _services(history: History, snapshot: Snapshot, expect: Expectations, report: Report) -> None:
    _limited(report, "ledger_invariant", snapshot.invariant_violations)
    if snapshot.chain is None:
        report.add("hash_chain", "not verified")
    elif not snapshot.chain.get("ok"):
        report.add("hash_chain", f"does not verify: {snapshot.chain.get('first_mismatch')}")
    else:
        report.counts["entries verified in the chain"] = int(snapshot.chain.get("entries_verified", 0))
    reconciliation = snapshot.reconciliation
    last_entry = max((e["id"] for e in snapshot.entries), default=0)
    if reconciliation is None:
        if expect.reconciliation_required:
            report.add("projections", "the projections were not reconciled with the ledger")
    elif not reconciliation.get("ok"):
        differences = reconciliation.get("differences", [])[:EXAMPLES]
        report.add("projections", f"{reconciliation.get('differences_total')} differences, e.g. {differences}")
    elif int(reconciliation.get("checked_through_entry_id", -1)) < last_entry:
        report.add(
            "projections",
            f"checked through entry {reconciliation.get('checked_through_entry_id')} only; the ledger has {last_entry}",
        )
    for op in history.ops:
        errors = [a for a in op.attempts if a.status is not None and a.status >= 500 and a.status != 503]
        if errors:
            report.add(
                "internal_error",
                f"{len(errors)} × {errors[0].status} {errors[0].code} (a dependency down is a 503; a 500 is a bug): "
                + op.describe(),
            )
