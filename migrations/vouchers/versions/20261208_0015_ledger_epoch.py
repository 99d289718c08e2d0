"""the ledger's transaction ids survive a restore into a fresh cluster (issue #15)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08 10:00:00

The sealer seals entries in (txid, id) order below the oldest running transaction. A dump restored
into a new PostgreSQL cluster brings entries with the old cluster's transaction ids, and the new
cluster's counter starts far below them: the first new entry sorted before the last sealed one,
was never sealed, and verify reported it `not_in_chain` while the seal lag said 0. Now an entry's
`txid` is the ledger's own id, the cluster's plus `vouchers.ledger_epoch.offset_xid`
(functions/ledger_epoch.sql), and `vouchers.bridge_epoch()`, run by the owner after every
migration (migrations/vouchers/env.py) and by `make restore`, raises the offset above the last
id the ledger holds when the cluster's counter is behind it. The offset stays 0 on a cluster that
was never restored, so nothing changes there. `vouchers.budget_committed()` compares entries
with its own transaction's id in the same epoch (functions/budget_committed.sql, version 2).

The service's login reads the offset (its functions run as the caller) and may not change it or
run the bridge.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

from shared.migrations import sql_functions

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GROUP = "vouchers_writer"
FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE vouchers.ledger_epoch (
            one boolean PRIMARY KEY DEFAULT true CHECK (one),
            offset_xid bigint NOT NULL DEFAULT 0 CHECK (offset_xid >= 0),
            bridged_from bigint,
            bridged_at timestamptz
        )
        """
    )
    op.execute("INSERT INTO vouchers.ledger_epoch DEFAULT VALUES")
    op.execute(f"GRANT SELECT ON vouchers.ledger_epoch TO {GROUP}")
    for statement in sql_functions(FUNCTIONS, "ledger_epoch", version=1):
        op.execute(statement)
    op.execute("REVOKE EXECUTE ON FUNCTION vouchers.bridge_epoch() FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION vouchers.ledger_txid(), vouchers.ledger_watermark() TO {GROUP}")
    op.execute("ALTER TABLE vouchers.entries ALTER COLUMN txid SET DEFAULT vouchers.ledger_txid()")
    for statement in sql_functions(FUNCTIONS, "budget_committed", version=2):
        op.execute(statement)


def downgrade() -> None:
    for statement in sql_functions(FUNCTIONS, "budget_committed", version=1):
        op.execute(statement)
    op.execute("ALTER TABLE vouchers.entries ALTER COLUMN txid SET DEFAULT pg_current_xact_id()::text::bigint")
    op.execute("DROP FUNCTION vouchers.bridge_epoch()")
    op.execute("DROP FUNCTION vouchers.ledger_watermark()")
    op.execute("DROP FUNCTION vouchers.ledger_txid()")
    op.execute("DROP TABLE vouchers.ledger_epoch")
