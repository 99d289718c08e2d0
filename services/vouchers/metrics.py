"""The vouchers service's own counters (GET /metrics; the kernel's are in shared/metrics.py).

- `vouchers_redemptions_total{action, outcome}` (redeem, hold, capture, release; `ok` or the
  refusal code the ledger function returned), counted by the redemption path (redemptions/service.py);
- `vouchers_ceiling_refusals_total{clause, code}` (M3 redemption and claim ceilings, M1 class
  cap, contract share, one claim per contract), counted wherever such a problem is answered
  (redemptions in redemptions/, claims in issuance/) by an observer of shared/errors.py;
- `vouchers_group_commit_calls_total{how}` and `vouchers_group_commit_batches_total{outcome}`: group commit
  (redemptions/group_commit.py), calls alone or batched and batches that failed.

Both count answers given: an idempotent replay of a refusal counts again. The scrape-time
figures of the ledger and its sealer are in ledger_metrics.py.
"""

from __future__ import annotations

from prometheus_client import Counter

from shared.errors import ErrorCode
from shared.metrics import Children

from .issuance.errors import CLAIM_CEILING, CLASS_CAP, CONTRACT_ALREADY_CLAIMED, OVER_CONTRACT_SHARE
from .redemptions.errors import REDEMPTION_CEILING

REDEMPTIONS = Counter(
    "vouchers_redemptions",
    "Answers of the redemption path by action and outcome (ok, or the refusal code); replays count again",
    ("action", "outcome"),
)
CEILING_REFUSALS = Counter(
    "vouchers_ceiling_refusals", "Requests refused by a ceiling, by clause and code", ("clause", "code")
)

LEDGER_CALLS = Counter(
    "vouchers_group_commit_calls",
    "Vendor calls sent to the ledger (group commit): alone, in a batch, or alone after their batch failed",
    ("how",),
)
LEDGER_BATCHES = Counter(
    "vouchers_group_commit_batches", "Batches of vendor calls sent to the ledger, by outcome", ("outcome",)
)

#: problem codes that are ceilings: counted by clause too
CEILING_CODES = frozenset(
    error.code
    for error in (REDEMPTION_CEILING, CLAIM_CEILING, CLASS_CAP, OVER_CONTRACT_SHARE, CONTRACT_ALREADY_CLAIMED)
)

_redemptions = Children(REDEMPTIONS)
_ceilings = Children(CEILING_REFUSALS)


_calls = Children(LEDGER_CALLS)
_batches = Children(LEDGER_BATCHES)


def count_ledger_calls(how: str, calls: int = 1) -> None:
    """Calls answered `alone`, `batched`, or `after_failed_batch`; or `deferred` to the next batch (not answered)."""
    _calls(how).inc(calls)


def count_batch(outcome: str) -> None:
    _batches(outcome).inc()


def count_redemption(action: str, outcome: str) -> None:
    _redemptions(action, outcome).inc()


def count_ceiling(error: ErrorCode) -> None:
    """A problem answered (an observer of shared/errors.py): a ceiling's is counted by clause and code."""
    if error.code in CEILING_CODES:
        _ceilings(error.clause or "-", error.code).inc()
