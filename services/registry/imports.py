"""Bulk import for the municipal data platform: CSV or JSON, upsert by natural key.

Every row is validated first (fields, credit-code check characters, references,
duplicates within the file) and reported by its row number. In `all_or_nothing` mode
(the default) one bad row means nothing is written; in `best_effort` the good rows are
written. Re-importing the same data is idempotent: unchanged rows write nothing.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from datetime import date
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.errors import FieldError, Language, ProblemError, field_errors_from_pydantic, request_language

from . import upserts
from .errors import IMPORT_EMPTY, IMPORT_REJECTED, IMPORT_TOO_MANY_ROWS, IMPORT_UNKNOWN_COLUMNS, IMPORT_UNREADABLE
from .kinds import Resource
from .schemas import ImportReport, ImportRowError
from .states import check_references, today

logger = logging.getLogger("services.registry.imports")

MAX_ROWS = 20_000
#: an import that created or changed at least this many records has its tables analysed right after it (below)
ANALYZE_AFTER_ROWS = 1_000
ANALYZE_SQL = "SELECT registry.analyze_after_import($1)"
#: A CSV cell holding an amount in fen: digits only (money is strict, shared/money.py; in JSON an
#: amount must be an integer number, and CSV has only text, so here it must be an integer's digits)
_FEN_CELL = re.compile(r"^[0-9]{1,16}$")


def _cell(name: str, value: str) -> Any:
    """A CSV cell as JSON would carry it: an amount in fen written as digits becomes that integer
    (anything else, `100.0`, `1e2`, stays text and is refused by the strict money type)."""
    if name.endswith("_fen") and _FEN_CELL.match(value):
        return int(value)
    return value


def _parse_csv(body: bytes, allowed: set[str]) -> list[dict[str, Any]]:
    try:
        content = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProblemError(IMPORT_UNREADABLE, reason=f"not UTF-8 (byte {exc.start})") from exc
    reader = csv.DictReader(io.StringIO(content, newline=""))
    header = reader.fieldnames or []
    unknown = [name for name in header if name not in allowed]
    if unknown:
        raise ProblemError(IMPORT_UNKNOWN_COLUMNS, columns=", ".join(unknown))
    rows: list[dict[str, Any]] = []
    try:
        for record in reader:
            if None in record:  # more cells than header columns
                rows.append({"__malformed__": "more cells than columns"})
                continue
            rows.append({name: _cell(name, value) for name, value in record.items() if value not in ("", None)})
    except csv.Error as exc:
        raise ProblemError(IMPORT_UNREADABLE, reason=str(exc)) from exc
    return rows


def _parse_json(body: bytes) -> list[Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProblemError(IMPORT_UNREADABLE, reason=f"invalid JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
    if not isinstance(data, list):
        raise ProblemError(IMPORT_UNREADABLE, reason="expected a JSON array of objects")
    return data


async def read_rows(request: Request, resource: Resource) -> list[Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    allowed = set(resource.create.model_fields)
    if content_type in ("text/csv", "application/csv", "text/plain"):
        rows: list[Any] = _parse_csv(body, allowed)
    elif content_type in ("application/json", ""):
        rows = _parse_json(body)
    else:
        from shared.errors import UNSUPPORTED_MEDIA_TYPE

        raise ProblemError(UNSUPPORTED_MEDIA_TYPE, content_type=content_type)
    if not rows:
        raise ProblemError(IMPORT_EMPTY)
    if len(rows) > MAX_ROWS:
        raise ProblemError(IMPORT_TOO_MANY_ROWS, limit=MAX_ROWS)
    return rows


def _row_error(number: int, key: str | None, errors: list[FieldError], language: Language) -> ImportRowError:
    return ImportRowError(row=number, key=key, errors=[error.render(language) for error in errors])


def _validate_row(resource: Resource, raw: Any) -> tuple[BaseModel, date]:
    """One row → (state, effective date); raises ValidationError or a list of FieldErrors."""
    if not isinstance(raw, dict) or "__malformed__" in raw:
        raise _RowProblem([FieldError("row", "malformed_row", "行格式错误", "Malformed row")])
    payload = resource.create.model_validate(raw)
    state = resource.state.model_validate(dict(resource.to_state(payload.model_dump(exclude={"effective_from"}))))
    effective_from: date = getattr(payload, "effective_from", None) or resource.natural_date(state) or today()
    if effective_from > today():
        raise _RowProblem(
            [
                FieldError(
                    "effective_from",
                    "effective_date_in_future",
                    "生效日期晚于今天",
                    "effective_from is in the future",
                )
            ]
        )
    return state, effective_from


class _RowProblem(Exception):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("row problem")
        self.errors = errors


async def run_import(session: AsyncSession, resource: Resource, request: Request, mode: str) -> ImportReport:
    language = request_language(request)
    raw_rows = await read_rows(request, resource)
    failures: list[ImportRowError] = []
    accepted: list[tuple[int, str, BaseModel, date]] = []
    first_seen: dict[tuple[Any, ...], int] = {}
    for number, raw in enumerate(raw_rows, start=1):
        unique = resource.unique_fields
        label = resource.key_label(raw, unique) if isinstance(raw, dict) and all(k in raw for k in unique) else None
        try:
            state, effective_from = _validate_row(resource, raw)
        except ValidationError as exc:
            failures.append(_row_error(number, label, field_errors_from_pydantic(exc.errors()), language))
            continue
        except _RowProblem as problem:
            failures.append(_row_error(number, label, problem.errors, language))
            continue
        key = tuple(getattr(state, name) for name in unique)
        if key in first_seen:
            duplicate = FieldError(
                ",".join(unique),
                "duplicate_in_file",
                f"与第 {first_seen[key]} 行的键重复",
                f"Same key as row {first_seen[key]}",
                {"first_row": first_seen[key]},
            )
            failures.append(_row_error(number, label, [duplicate], language))
            continue
        first_seen[key] = number
        accepted.append((number, resource.key_label(state.model_dump(), unique), state, effective_from))

    missing = await check_references(session, resource, [state for _, _, state, _ in accepted])
    if missing:
        failures.extend(
            _row_error(accepted[index][0], accepted[index][1], [error], language) for index, error in missing.items()
        )
        accepted = [item for index, item in enumerate(accepted) if index not in missing]
    failures.sort(key=lambda failure: failure.row)

    if failures and mode == "all_or_nothing":
        raise ProblemError(
            IMPORT_REJECTED,
            failed=len(failures),
            total=len(raw_rows),
            rows=[failure.model_dump() for failure in failures],
        )
    await upserts.lock_for_import(session, resource)
    outcome = await upserts.upsert_states(session, resource, [(state, day) for _, _, state, day in accepted])
    return ImportReport(
        mode="all_or_nothing" if mode == "all_or_nothing" else "best_effort",
        total=len(raw_rows),
        created=outcome.created,
        updated=outcome.updated,
        unchanged=outcome.unchanged,
        failed=len(failures),
        errors=failures,
    )


async def analyze_imported(database: Database, resource: Resource) -> None:
    """ANALYZE the table an import wrote many rows into, and the snapshots' table (registry migration 0015): the
    facts function is planned once per connection from the statistics of that moment, and a registry's first
    imports would otherwise be read with the statistics of empty tables (whole-table scans per call) until autovacuum
    comes by. Run after the import has committed and been answered; a failure only leaves that to autovacuum."""
    try:
        async with database.statements.acquire() as connection:
            for table in (resource.table.__tablename__, "versions"):
                await connection.execute(ANALYZE_SQL, table)
    except Exception as exc:  # an optimisation: never the import's failure
        logger.warning("the tables of an import of %s were not analysed: %s", resource.plural, exc)
