"""events: outbox, webhook subscriptions and deliveries; ledger functions write events

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 15:00:00

The outbox every ledger change writes its event to, in the same transaction (append-only:
the service role may insert and read it, never change it), and the webhook subscriptions
and delivery log (shared/feed/tables.py, docs/webhooks.md). The redemption path's functions
(`redeem`, `finish_hold`, `release_hold`) are replaced by versions that insert their event
too (their version 2, functions/); downgrading restores version 1, migration 0002's.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

from shared.feed.tables import drop_events_tables_sql, events_tables_sql
from shared.migrations import sql_functions

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICE_ROLE = "vouchers_writer"
FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
REPLACED = ("redeem", "finish_hold", "release_hold")


def _load(version: int) -> None:
    for name in REPLACED:
        for statement in sql_functions(FUNCTIONS, name, version):
            op.execute(statement)


def upgrade() -> None:
    for statement in events_tables_sql("vouchers", grant_to=SERVICE_ROLE):
        op.execute(statement)
    _load(2)


def downgrade() -> None:
    _load(1)
    for statement in drop_events_tables_sql("vouchers"):
        op.execute(statement)
