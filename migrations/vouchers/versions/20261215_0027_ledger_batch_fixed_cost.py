"""a batch written set by set costs less whatever its size: ids drawn first, fewer statements (issue #16)

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-15 12:00:00

Two vouchers processes on two cores send smaller group-commit batches than one, and about three quarters of
PostgreSQL's work for a batch of one plain M3 redemption did not depend on the batch's size: executor start-up of
its statements, window functions, sorts and joins that matched ids back to calls, a PL/pgSQL call per vendor
account. vouchers.ledger_captures() version 3 draws the batch's redemption and entry ids before it writes (the
k-th call takes the k-th smallest of each), checks without running sums (amounts are positive, so a total that
fits means every running sum fits), joins the vendor's receivable account (a vendor without one yet goes call by
call, as before the set-by-set path), and reads the entries' and events' transaction ids once per batch.
vouchers.ledger_batch() version 7 finds and locks the batch's M3 ceilings with one statement, without the holds'
part, when the batch has no capture or release and does not defer (every batch written set by set). Same rows, same answers, same locks in
the same order (tests/vouchers/test_group_commit.py compares the set-by-set answers and rows with one-by-one
ones); `bench/ledger_batch_cost.py` measures the cost.
"""

from collections.abc import Sequence
from pathlib import Path

from shared.migrations import load_functions

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
VERSIONS = {"ledger_captures": 3, "ledger_batch": 7}


def upgrade() -> None:
    load_functions(FUNCTIONS, VERSIONS)


def downgrade() -> None:
    load_functions(FUNCTIONS, {name: version - 1 for name, version in VERSIONS.items()})
