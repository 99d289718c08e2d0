"""The history of a resilience run: every operation a client invoked, and every attempt at it.

An operation (`Op`) is one thing a client wants done: claim a decision, redeem, hold,
capture, release, void, read. It is sent one or more times (`Attempt`); each attempt sends its
own `X-Correlation-ID`. The vouchers service assigns the request id (issue #12) and writes it into
every ledger entry it makes; an answered attempt learns it from the answer's `X-Request-ID`, an
unanswered one through the audit log, which keeps each request id with its correlation id (read
with the ledger, tests/resilience/snapshot.py). So the checker can tell which attempt of which
operation made which entry: the audit rows of a process killed with SIGKILL may be lost (the
last ~200 ms), and an entry whose attempt had no answer and no audit row is attributed to an
unanswered attempt of an operation of its kind on its target (tests/resilience/checker.py).

An attempt ends

- `ok`            a 2xx answer;
- `refused`       a 4xx answer, with its problem `code` (429 excepted: rate limiting is no answer);
- `indeterminate` a timeout, a connection error, a 5xx (503 included) or a 429: the effect is
                  unknown. Keyed operations (vendors' calls) are sent again with the same
                  Idempotency-Key and body until they resolve; officers' calls (issue, void)
                  have no key and are resolved by reading the ledger afterwards.

An operation's outcome is its first `ok` or `refused` attempt, else `indeterminate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["invoked", "ok", "refused", "indeterminate"]
#: 503 answers whose code promises that nothing was changed (the service had not started writing)
NOTHING_WRITTEN_CODES = frozenset({"peer_unavailable"})
KEYED_KINDS = frozenset({"redeem", "hold", "capture", "release"})
OFFICER_KINDS = frozenset({"claim", "void"})


@dataclass
class Attempt:
    #: the service's id of the request once known (the answer's X-Request-ID, or the audit log's), else the
    #: correlation id the attempt sent
    request_id: str
    process: str
    started: float  # seconds since the start of the run
    ended: float = 0.0
    outcome: Outcome = "invoked"
    status: int | None = None
    code: str | None = None  # the problem's code, or the transport error's class name
    body: Any = None  # the JSON answer
    correlation_id: str | None = None  # what the attempt sent as X-Correlation-ID

    @property
    def answered(self) -> bool:
        return self.status is not None

    @property
    def wrote_nothing_promised(self) -> bool:
        """A refusal, or a 503 that says nothing was changed: this attempt may not be in the ledger."""
        return self.outcome == "refused" or (self.status == 503 and self.code in NOTHING_WRITTEN_CODES)


@dataclass
class Op:
    id: int
    kind: str  # claim | redeem | hold | capture | release | void | read | replay
    client: str
    actor: str  # "officer", or the vendor's credit code
    target: str  # claim: decision id; redeem, hold, void, read: voucher code; capture, release: hold id
    key: str | None = None
    body: dict[str, Any] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    outcome: Outcome = "invoked"
    replay_of: int | None = None  # replays: the operation whose key and body were sent again

    @property
    def answer(self) -> Any:
        """The body of the attempt that resolved the operation (None while unresolved)."""
        for attempt in self.attempts:
            if attempt.outcome in ("ok", "refused"):
                return attempt.body
        return None

    @property
    def status(self) -> int | None:
        for attempt in self.attempts:
            if attempt.outcome in ("ok", "refused"):
                return attempt.status
        return None

    @property
    def code(self) -> str | None:
        """The refusal's code (None unless refused)."""
        for attempt in self.attempts:
            if attempt.outcome == "refused":
                return attempt.code
        return None

    def resolve(self) -> None:
        self.outcome = "indeterminate"
        for attempt in self.attempts:
            if attempt.outcome in ("ok", "refused"):
                self.outcome = attempt.outcome
                return

    def describe(self) -> str:
        tries = ", ".join(
            f"{a.process}:{a.status or a.code}{'/' + a.code if a.status and a.code else ''}@{a.started:.1f}s"
            for a in self.attempts
        )
        return (
            f"op {self.id} {self.kind} by {self.actor} on {self.target} key={self.key} body={self.body} → "
            f"{self.outcome} [{tries}] answer={str(self.answer)[:240]}"
        )


def classify(status: int) -> Outcome:
    if 200 <= status < 300:
        return "ok"
    if 400 <= status < 500 and status != 429:
        return "refused"
    return "indeterminate"


def comparable(answer: Any) -> Any:
    """Two answers to the same request may differ only by request id and instance."""
    if isinstance(answer, dict):
        return {k: v for k, v in answer.items() if k not in ("request_id", "instance")}
    return answer


@dataclass
class History:
    seed: int
    ops: list[Op] = field(default_factory=list)
    faults: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, what happened)

    def new(self, kind: str, client: str, actor: str, target: str, **fields: Any) -> Op:
        op = Op(len(self.ops), kind, client, actor, target, **fields)
        self.ops.append(op)
        return op

    def attempts_by_request_id(self, audit: Mapping[str, str] | None = None) -> dict[str, tuple[Op, Attempt]]:
        """By the service's request id: an unanswered attempt's is found in the audit log (correlation id → request
        id) when its row was written."""
        found: dict[str, tuple[Op, Attempt]] = {}
        for op in self.ops:
            for attempt in op.attempts:
                request_id = attempt.request_id
                if not attempt.answered and attempt.correlation_id is not None and audit:
                    request_id = audit.get(attempt.correlation_id, request_id)
                found[request_id] = (op, attempt)
        return found


#: what the resilience tests have to say, printed at the end of the pytest session (tests/resilience/conftest.py):
#: with output captured (the default), a summary in the middle of the services' logs would be lost
SUMMARIES: list[str] = []
