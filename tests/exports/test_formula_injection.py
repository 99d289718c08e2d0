"""CSV cells a spreadsheet would run as formulas are neutralised; only text cells (issue #12, finding 14).

A small export over literal rows, through the shared machinery (`export_response`, COPY on a real
PostgreSQL, an HTTP client): each kind of column next to text that starts with `=`, `+`, `-`, `@`,
a tab or a carriage return. Text gets a `'` in front; a negative number, a JSON value, a date,
a boolean stay what they are, and NDJSON is never altered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Annotated

import httpx
import pytest_asyncio
from fastapi import Depends, FastAPI, Request
from starlette.responses import StreamingResponse

from shared.errors import install_error_handlers
from shared.exports.params import ExportOptions, export_options
from shared.exports.query import Column, ExportQuery
from shared.exports.stream import export_response
from tests.exports.helpers import csv_rows, ndjson

#: (text, the same text as the CSV has it)
TEXTS = [
    ("=1+1", "'=1+1"),
    ('=HYPERLINK("https://attacker.example/","点击")', '\'=HYPERLINK("https://attacker.example/","点击")'),
    ("+1", "'+1"),
    ("-1", "'-1"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\tcmd", "'\tcmd"),
    ("\r=1", "'\r=1"),
    ("'=already quoted", "'=already quoted"),  # starts with a quote: nothing to do
    ("a=b", "a=b"),
    ("１＋１", "１＋１"),  # full-width: no spreadsheet runs it
    ("", ""),
]
SOURCE = (
    "(SELECT n AS id, -n AS negative, t AS text, to_jsonb(-n) AS number_json, to_jsonb(t) AS text_json, "
    "DATE '2026-03-01' AS day, n % 2 = 0 AS flag FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n)) r"
)
COLUMNS = (
    Column("id", "r.id", "int"),
    Column("negative", "r.negative", "int"),
    Column("text", "r.text"),
    Column("number_json", "r.number_json", "json"),
    Column("text_json", "r.text_json", "json"),
    Column("day", "r.day", "date"),
    Column("flag", "r.flag", "bool"),
)


@pytest_asyncio.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.state.service_name = "cells"
    app.state.settings = SimpleNamespace(
        async_read_database_url=database_url, export_max_concurrent=2, export_timeout_seconds=60
    )

    @app.get("/cells")
    async def cells(request: Request, options: Annotated[ExportOptions, Depends(export_options)]) -> StreamingResponse:
        query = ExportQuery("cells", COLUMNS, SOURCE, "r.id", "r.day")
        query.param([text for text, _ in TEXTS])  # $1
        return await export_response(request, query, options, filename_stem="cells")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cells") as http:
        yield http


async def test_text_cells_are_neutralised_and_nothing_else(client: httpx.AsyncClient) -> None:
    header, rows = csv_rows(await client.get("/cells", params={"format": "csv"}))
    assert header == [column.name for column in COLUMNS]
    assert [row["text"] for row in rows] == [csv for _, csv in TEXTS]
    for number, row in enumerate(rows, start=1):
        assert row["negative"] == str(-number)  # a negative number stays a number
        assert row["number_json"] == str(-number)
        assert row["text_json"].startswith('"')  # JSON text: a quoted string, never a formula
        assert (row["day"], row["flag"]) == ("2026-03-01", "true" if number % 2 == 0 else "false")


async def test_ndjson_is_never_altered(client: httpx.AsyncClient) -> None:
    records, trailer = ndjson(await client.get("/cells"))
    assert [r["text"] for r in records] == [text for text, _ in TEXTS]
    assert [r["negative"] for r in records] == [-n for n in range(1, len(TEXTS) + 1)]
    assert [r["text_json"] for r in records] == [text for text, _ in TEXTS]
    assert trailer["rows"] == len(TEXTS)
