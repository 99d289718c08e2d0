"""Alembic environment of the vouchers schema (see shared/migrations.py)."""

from services.vouchers.models import SCHEMA, Base
from shared.feed.tables import bridge_feed_epoch_sql
from shared.migrations import run_env

#: after every migration (a restore is followed by one): the ledger's transaction ids stay above those it holds
#: (functions/ledger_epoch.sql), and the change feed's (shared/feed/tables.py); before revisions 0015 and 0019
#: the functions do not exist yet
BRIDGE_EPOCH = """
DO $$ BEGIN
    IF to_regprocedure('vouchers.bridge_epoch()') IS NOT NULL THEN
        PERFORM vouchers.bridge_epoch();
    END IF;
END $$
"""

run_env("vouchers", SCHEMA, Base.metadata, after=[BRIDGE_EPOCH, bridge_feed_epoch_sql("vouchers")])
