"""Reading exports back: NDJSON with its trailer, CSV with its header; the role table."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import httpx

from shared.auth import ADMIN, APPROVER, AUDITOR, DASHBOARD, OFFICER, PLATFORM
from tests.auth import as_applicant, as_vendor, auth
from tests.factories import new_credit_code

PROBLEM = "application/problem+json"

#: (who, headers, expected status) for every export route
ROLES: list[tuple[str, dict[str, str], int]] = [
    ("platform", auth(PLATFORM, name="data platform"), 200),
    ("auditor", auth(AUDITOR, name="auditor"), 200),
    ("admin", auth(ADMIN, name="admin"), 200),
    ("officer", auth(OFFICER, name="officer"), 403),
    ("approver", auth(APPROVER, name="approver"), 403),
    ("dashboard", auth(DASHBOARD, name="dashboard"), 403),
    ("vendor", as_vendor(new_credit_code()), 403),
    ("applicant", as_applicant(new_credit_code()), 403),
    ("nobody", {"Authorization": ""}, 401),
]


def ndjson(response: httpx.Response) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(records, trailer) of a complete NDJSON export; fails unless the trailer counts the records."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    body = response.content
    assert body.endswith(b"\n")
    lines = body.decode("utf-8").split("\n")[:-1]
    assert lines, "an export always has its trailer"
    *rows, last = lines
    trailer = json.loads(last)["end"]
    records = [json.loads(line) for line in rows]
    assert all("end" not in record for record in records)
    assert trailer["rows"] == len(records)
    return records, trailer


def csv_rows(response: httpx.Response, *, bom: bool = False) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a CSV export, read with an RFC 4180 reader."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    raw = response.content
    assert raw.startswith(b"\xef\xbb\xbf") == bom
    text = raw.decode("utf-8-sig" if bom else "utf-8")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header, *records = list(reader)
    return header, [dict(zip(header, record, strict=True)) for record in records]


def instant(text: str) -> datetime:
    """An exported instant (always UTC with microseconds and a Z)."""
    assert text.endswith("Z"), text
    assert len(text) == len("2026-11-27T02:45:05.953712Z"), text
    return datetime.fromisoformat(text)


#: A text cell starting with one of these gets a `'` in front in CSV (formula injection, shared/exports/query.py)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def as_csv(value: Any, *, text: bool = False) -> str:
    """How a JSON value of a record reads in the CSV export (`text`: a text column's, neutralised)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if text and isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return str(value)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
