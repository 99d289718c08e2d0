"""Placeholder: filled in by the chain work (see issue #4)."""

from fastapi import APIRouter

router = APIRouter()
