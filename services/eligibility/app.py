"""The eligibility service (skeleton: health endpoints; the rules come with issue #3)."""

from __future__ import annotations

from fastapi import FastAPI

from shared.app import create_service_app

from .models import SCHEMA
from .settings import EligibilitySettings


def create_app(settings: EligibilitySettings | None = None) -> FastAPI:
    return create_service_app(
        service_name="eligibility",
        schema=SCHEMA,
        title="Longgang AI measures — eligibility (资格审核)",
        description="Scores applications against the policy (M1–M13, A1, A4).",
        settings=settings or EligibilitySettings(),
        routers=[],
    )
