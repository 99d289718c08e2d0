"""Alembic environment of the eligibility schema (see shared/migrations.py)."""

from services.eligibility.models import SCHEMA, Base
from shared.feed.tables import bridge_feed_epoch_sql
from shared.migrations import run_env

#: after every migration (a restore is followed by one): the change feed's ids stay above those it holds
run_env("eligibility", SCHEMA, Base.metadata, after=[bridge_feed_epoch_sql("eligibility")])
