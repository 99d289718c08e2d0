"""`GET /v1/exports/{records}`: every registry kind, current rows and history, NDJSON and CSV.

Records are written through the registry's API (committed, in a database of this module's
own); each export must give back exactly what the API shows: the list's items for current
rows, each record's `/history` for `versions=true`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from services.registry.resources import ALL
from shared.auth import PLATFORM
from shared.dbroles import login_url
from tests.auth import admin, auth
from tests.conftest import DatabaseFactory
from tests.exports.helpers import ROLES, as_csv, assert_problem, csv_rows, ndjson, utc
from tests.factories import new_credit_code

PLATFORM_HEADERS = auth(PLATFORM, name="data platform")
PLURALS = [resource.plural for resource in ALL]
TRICKY_NAME = '深圳市"龙岗",人工智能\n有限公司, 第一'


@pytest.fixture(scope="module")
def registry_database(databases: DatabaseFactory) -> str:
    return databases.create("exports_registry")


@pytest_asyncio.fixture(scope="module")
async def registry_export_app(registry_database: str) -> AsyncIterator[FastAPI]:
    from services.registry.app import create_app
    from services.registry.settings import RegistrySettings

    app = create_app(RegistrySettings(database_url=login_url(registry_database, "registry")))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        yield app


@pytest_asyncio.fixture(scope="module")
async def written(registry_export_app: FastAPI) -> dict[str, Any]:
    """Records of every kind, written through the API (admin); one of them changed twice."""
    transport = httpx.ASGITransport(app=registry_export_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry", headers=admin()) as api:

        async def post(path: str, payload: dict[str, Any]) -> dict[str, Any]:
            response = await api.post(path, json=payload)
            assert response.status_code == 201, response.text
            body: dict[str, Any] = response.json()
            return body

        a, b, c = sorted(new_credit_code() for _ in range(3))
        await post(
            "/v1/organisations",
            {"credit_code": a, "name": TRICKY_NAME, "kind": "enterprise", "registered_on": "2021-01-04",
             "registered_district": "440307", "is_software_internet": True},
        )  # fmt: skip
        await post("/v1/organisations", {"credit_code": b, "name": "龙岗模型科技有限公司", "kind": "enterprise"})
        await post(
            "/v1/organisations",
            {"credit_code": c, "name": "University of Longgang", "kind": "university", "industry": "教育"},
        )
        await post("/v1/revenues", {"credit_code": a, "year": 2024, "revenue_fen": 120_000_000})
        await post("/v1/revenues", {"credit_code": a, "year": 2025, "revenue_fen": 150_000_000, "source": "审计报告"})
        await post("/v1/affiliations", {"credit_code_a": a, "credit_code_b": b, "relation": "control, 控股"})
        await post("/v1/vendors", {"credit_code": b, "is_model_vendor": True, "effective_from": "2021-01-04"})
        model = await post(
            "/v1/models",
            {"vendor_credit_code": b, "name": 'Model "One", 大模型', "national_filing_date": "2024-03-01"},
        )
        await post(
            "/v1/filings",
            {
                "number": "Guangdong-Test-202403010001",
                "model_id": model["id"],
                "kind": "filing",
                "filed_on": "2024-03-01",
            },
        )
        await post(
            "/v1/recognitions",
            {"credit_code": a, "recognised_on": "2024-06-01",
             "details": {"kind": "key_software_enterprise", "list": "shenzhen", "year": 2024}},
        )  # fmt: skip
        await post(
            "/v1/recognitions",
            {"credit_code": b, "recognised_on": "2024-07-01",
             "details": {"kind": "first_version_software", "product": '产品, "v1"\n第二行', "catalogue_year": 2024}},
        )  # fmt: skip
        changed = await api.patch(f"/v1/organisations/{a}", json={"name": TRICKY_NAME + "（更名）"})
        assert changed.status_code == 200, changed.text
        assert changed.json()["version"] == 2
        lists = {}
        for plural in PLURALS:
            listed = await api.get(f"/v1/{plural}", params={"limit": 500})
            assert listed.status_code == 200, listed.text
            lists[plural] = listed.json()["items"]
        histories = {}
        for code in (a, b, c):
            history = await api.get(f"/v1/organisations/{code}/history")
            histories[code] = history.json()
        return {"codes": (a, b, c), "lists": lists, "histories": histories, "changed": changed.json()}


@pytest_asyncio.fixture
async def client(registry_export_app: FastAPI, written: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=registry_export_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry", headers=PLATFORM_HEADERS) as http:
        yield http


def same_instants(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "recorded_at": utc(record["recorded_at"])}


@pytest.mark.parametrize("plural", PLURALS)
async def test_current_rows_as_ndjson_are_what_the_api_shows(
    client: httpx.AsyncClient, written: dict[str, Any], plural: str
) -> None:
    records, trailer = ndjson(await client.get(f"/v1/exports/{plural}"))
    listed = written["lists"][plural]
    assert listed, "every kind has records"
    assert [same_instants(r) for r in records] == [same_instants(item) for item in listed]
    assert trailer["kind"] == plural


@pytest.mark.parametrize("plural", PLURALS)
async def test_current_rows_as_csv_are_what_the_api_shows(
    client: httpx.AsyncClient, written: dict[str, Any], plural: str
) -> None:
    response = await client.get(f"/v1/exports/{plural}", params={"format": "csv"})
    header, rows = csv_rows(response)
    listed = written["lists"][plural]
    assert set(header) == set(listed[0])
    assert len(rows) == len(listed)
    for row, item in zip(rows, listed, strict=True):
        assert utc(row.pop("recorded_at")) == utc(item.pop("recorded_at"))
        for name, value in item.items():
            if isinstance(value, dict | list):  # JSON columns: their JSON text
                assert json.loads(row[name]) == value, name
            else:
                assert row[name] == as_csv(value), name
    assert response.headers["content-disposition"].startswith(f'attachment; filename="registry-{plural}-')


async def test_a_name_with_quotes_commas_and_a_line_break_survives_csv(
    client: httpx.AsyncClient, written: dict[str, Any]
) -> None:
    a = written["codes"][0]
    _, rows = csv_rows(await client.get("/v1/exports/organisations", params={"format": "csv", "bom": "true"}), bom=True)
    assert {row["credit_code"]: row["name"] for row in rows}[a] == TRICKY_NAME + "（更名）"


async def test_history_is_what_each_record_history_shows(client: httpx.AsyncClient, written: dict[str, Any]) -> None:
    records, trailer = ndjson(await client.get("/v1/exports/organisations", params={"versions": "true"}))
    assert trailer["kind"] == "organisations-versions"
    by_code: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_code.setdefault(record.pop("credit_code"), []).append(same_instants(record))
    assert by_code == {code: [same_instants(v) for v in history] for code, history in written["histories"].items()}
    assert [len(v) for v in by_code.values()] == [2, 1, 1]


@pytest.mark.parametrize("plural", PLURALS)
async def test_history_of_every_kind_as_csv(client: httpx.AsyncClient, plural: str) -> None:
    header, rows = csv_rows(await client.get(f"/v1/exports/{plural}", params={"versions": "true", "format": "csv"}))
    assert header[-5:] == ["version", "valid_from", "recorded_at", "request_id", "data"]
    assert rows
    assert all(isinstance(json.loads(row["data"]), dict) for row in rows)


async def test_revenue_history_keys_keep_their_types(client: httpx.AsyncClient, written: dict[str, Any]) -> None:
    records, _ = ndjson(await client.get("/v1/exports/revenues", params={"versions": "true"}))
    assert [(r["credit_code"], r["year"]) for r in records] == [
        (written["codes"][0], 2024),
        (written["codes"][0], 2025),
    ]


async def test_filters_apply_to_rows_and_to_snapshots(client: httpx.AsyncClient, written: dict[str, Any]) -> None:
    a, b, c = written["codes"]
    for versions in ("false", "true"):
        found, trailer = ndjson(
            await client.get("/v1/exports/affiliations", params={"organisation": b, "versions": versions})
        )
        assert len(found) == 1
        assert trailer["filters"] == {"organisation": b}
        none, _ = ndjson(await client.get("/v1/exports/affiliations", params={"organisation": c, "versions": versions}))
        assert none == []
        kind = {"kind": "first_version_software", "versions": versions}
        recognitions, _ = ndjson(await client.get("/v1/exports/recognitions", params=kind))
        details = [r["details"] if versions == "false" else r["data"]["details"] for r in recognitions]
        assert [d["kind"] for d in details] == ["first_version_software"]
    current, _ = ndjson(await client.get("/v1/exports/organisations", params={"is_software_internet": "false"}))
    assert sorted(r["credit_code"] for r in current) == sorted([b, c])
    snapshots, _ = ndjson(
        await client.get("/v1/exports/organisations", params={"is_software_internet": "true", "versions": "true"})
    )
    assert [(r["credit_code"], r["version"]) for r in snapshots] == [(a, 1), (a, 2)]


async def test_recorded_at_bounds(client: httpx.AsyncClient, written: dict[str, Any]) -> None:
    """The change recorded at T is in [T, …) and not in [… , T)."""
    a = written["codes"][0]
    moment = written["changed"]["recorded_at"]
    later, trailer = ndjson(await client.get("/v1/exports/organisations", params={"versions": "true", "from": moment}))
    assert [(r["credit_code"], r["version"]) for r in later] == [(a, 2)]
    assert utc(trailer["from"]) == utc(moment)
    earlier, _ = ndjson(await client.get("/v1/exports/organisations", params={"versions": "true", "to": moment}))
    assert (a, 2) not in [(r["credit_code"], r["version"]) for r in earlier]
    assert len(earlier) == 3
    current, _ = ndjson(await client.get("/v1/exports/organisations", params={"from": moment}))
    assert [r["credit_code"] for r in current] == [a]


@pytest.mark.parametrize("plural", PLURALS)
@pytest.mark.parametrize(("who", "headers", "status"), ROLES, ids=[r[0] for r in ROLES])
async def test_roles(client: httpx.AsyncClient, plural: str, who: str, headers: dict[str, str], status: int) -> None:
    response = await client.get(f"/v1/exports/{plural}", headers=headers)
    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/exports/organisations", {"versions": "maybe"}, "query.versions"),
        ("/v1/exports/organisations", {"is_software_internet": "maybe"}, "query.is_software_internet"),
        ("/v1/exports/revenues", {"year": "twenty"}, "query.year"),
        ("/v1/exports/revenues", {"year": "70000"}, "query.year"),  # a smallint column
        ("/v1/exports/organisations", {"kind": "enterprise\x00"}, "query.kind"),
        ("/v1/exports/filings", {"model_id": "not-a-uuid"}, "query.model_id"),
        ("/v1/exports/models", {"from": "2026-02-30"}, "query.from"),
        ("/v1/exports/vendors", {"from": "2026-03-01T10:00", "to": "2026-03-02"}, "query.from"),
    ],
)
async def test_invalid_parameters_are_422_problems(
    client: httpx.AsyncClient, path: str, params: dict[str, str], field: str
) -> None:
    body = assert_problem(await client.get(path, params=params), 422, "validation_failed")
    assert [e["field"] for e in body["errors"]] == [field]


async def test_an_unknown_kind_is_not_a_route(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/exports/things"), 404, "route_not_found")
