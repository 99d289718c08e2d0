"""Who acts in the eligibility tests: clients of tokens minted by `tests/auth.py`."""

from __future__ import annotations

from typing import Any

import httpx
import jwt

from shared.auth import APPROVER, OFFICER
from tests.auth import admin, auth

WANG = auth(OFFICER, name="wang")  # an officer
LI = auth(APPROVER, name="li")  # an approver
DIRECTOR = auth(APPROVER, name="director")  # an approver deciding under A1
WANG_BOTH = auth(OFFICER, APPROVER, name="wang")  # one client that may both review and approve


def client_id(headers: dict[str, str]) -> str:
    """The client a test token stands for (its `sub`)."""
    token = headers["Authorization"].removeprefix("Bearer ")
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


async def audit_row(eligibility: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    """The audit log's record of one request (read as an admin)."""
    response = await eligibility.get("/v1/audit", params={"request_id": request_id}, headers=admin())
    assert response.status_code == 200, response.text
    [row] = response.json()["items"]
    assert isinstance(row, dict)
    return row
