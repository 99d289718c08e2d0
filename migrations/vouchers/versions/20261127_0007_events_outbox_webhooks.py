"""events: outbox, webhook subscriptions and deliveries; ledger functions write events

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 15:00:00

The outbox every ledger change writes its event to, in the same transaction (append-only:
the service role may insert and read it, never change it), and the webhook subscriptions
and delivery log (shared/feed/tables.py, docs/webhooks.md). The redemption path's functions
(`redeem`, `finish_hold`, `release_hold`) are replaced by versions that insert their event
too (ledger_functions_events.sql); downgrading restores those of migration 0002.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

from shared.feed.tables import drop_events_tables_sql, events_tables_sql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE_ROLE = "vouchers_writer"
HERE = Path(__file__).resolve().parent.parent
REPLACED = ("FUNCTION vouchers.redeem(", "FUNCTION vouchers.finish_hold(", "FUNCTION vouchers.release_hold(")


def _statements(name: str) -> list[str]:
    text = (HERE / name).read_text(encoding="utf-8")
    parts = [part.strip() for part in text.split("\n-- ;;\n")]
    return [part for part in parts if any(not line.startswith("--") for line in part.splitlines() if line.strip())]


def upgrade() -> None:
    for statement in events_tables_sql("vouchers", grant_to=SERVICE_ROLE):
        op.execute(statement)
    for statement in _statements("ledger_functions_events.sql"):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements("ledger_functions.sql"):
        if any(name in statement for name in REPLACED):
            op.execute(statement.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    for statement in drop_events_tables_sql("vouchers"):
        op.execute(statement)
