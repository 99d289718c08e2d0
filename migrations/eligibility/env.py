"""Alembic environment of the eligibility schema (see shared/migrations.py)."""

from services.eligibility.models import SCHEMA, Base
from shared.migrations import run_env

run_env("eligibility", SCHEMA, Base.metadata)
