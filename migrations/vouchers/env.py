"""Alembic environment of the vouchers schema (see shared/migrations.py)."""

from services.vouchers.models import SCHEMA, Base
from shared.migrations import run_env

run_env("vouchers", SCHEMA, Base.metadata)
