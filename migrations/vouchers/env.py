"""Alembic environment of the vouchers schema (see shared/migrations.py)."""

from services.vouchers.models import SCHEMA, Base
from shared.migrations import run_env

#: after every migration (a restore is followed by one): the ledger's transaction ids stay above those it holds
#: (functions/ledger_epoch.sql); before revision 0015 the function does not exist yet
BRIDGE_EPOCH = """
DO $$ BEGIN
    IF to_regprocedure('vouchers.bridge_epoch()') IS NOT NULL THEN
        PERFORM vouchers.bridge_epoch();
    END IF;
END $$
"""

run_env("vouchers", SCHEMA, Base.metadata, after=[BRIDGE_EPOCH])
