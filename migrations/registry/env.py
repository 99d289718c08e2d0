"""Alembic environment of the registry schema (see shared/migrations.py)."""

from services.registry.models import SCHEMA, Base
from shared.migrations import run_env

run_env("registry", SCHEMA, Base.metadata)
