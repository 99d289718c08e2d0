"""Placeholder: filled in by the settlement work (see issue #4)."""

from fastapi import APIRouter

router = APIRouter()
