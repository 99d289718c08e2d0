"""Bulk import for the data platform: 10,000 rows, per-row errors, all-or-nothing, idempotent."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx

from tests.factories import new_credit_code

FIELDS = ["credit_code", "name", "kind", "registered_district", "registered_on", "is_software_internet"]


def _rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "credit_code": new_credit_code(),
            "name": f"批量导入企业{i}",
            "kind": "enterprise",
            "registered_district": "440307",
            "registered_on": "2022-01-15",
            "is_software_internet": "true" if i % 2 else "false",
        }
        for i in range(count)
    ]


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return ("\ufeff" + buffer.getvalue()).encode()  # with a BOM, as Excel writes it


async def _count(registry: httpx.AsyncClient) -> int:
    total, cursor = 0, None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = (await registry.get("/v1/organisations", params=params)).json()
        total += len(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return total


async def test_ten_thousand_rows_with_bad_ones(registry: httpx.AsyncClient) -> None:
    rows = _rows(10_000)
    rows[99]["credit_code"] = rows[99]["credit_code"][:17] + ("0" if rows[99]["credit_code"][17] != "0" else "1")
    rows[4999]["name"] = ""
    rows[8887]["kind"] = "partnership"
    body = _csv(rows)
    headers = {"Content-Type": "text/csv"}

    rejected = await registry.post("/v1/imports/organisations", content=body, headers=headers)
    assert rejected.status_code == 422, rejected.text
    problem = rejected.json()
    assert problem["code"] == "import_rejected"
    assert problem["failed"] == 3
    assert [(r["row"], r["errors"][0]["field"]) for r in problem["rows"]] == [
        (100, "credit_code"),
        (5000, "name"),
        (8888, "kind"),
    ]
    assert problem["rows"][0]["errors"][0]["code"] == "invalid_credit_code"
    assert problem["rows"][0]["errors"][0]["position"] == 18
    assert await _count(registry) == 0  # all-or-nothing: nothing written

    partial = await registry.post("/v1/imports/organisations?mode=best_effort", content=body, headers=headers)
    assert partial.status_code == 200, partial.text
    report = partial.json()
    assert (report["total"], report["created"], report["updated"], report["unchanged"], report["failed"]) == (
        10_000,
        9_997,
        0,
        0,
        3,
    )
    assert [r["row"] for r in report["errors"]] == [100, 5000, 8888]
    assert await _count(registry) == 9_997

    sample = rows[1234]
    fetched = await registry.get(f"/v1/organisations/{sample['credit_code']}")
    assert fetched.json()["name"] == sample["name"]
    assert fetched.json()["is_software_internet"] is False


async def test_reimport_is_idempotent_and_changes_make_versions(registry: httpx.AsyncClient) -> None:
    rows = _rows(300)
    headers = {"Content-Type": "text/csv"}
    first = (await registry.post("/v1/imports/organisations", content=_csv(rows), headers=headers)).json()
    assert (first["created"], first["unchanged"]) == (300, 0)

    again = (await registry.post("/v1/imports/organisations", content=_csv(rows), headers=headers)).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 300)
    code = rows[7]["credit_code"]
    assert len((await registry.get(f"/v1/organisations/{code}/history")).json()) == 1

    rows[7]["name"] = "改名后的企业"
    changed = (await registry.post("/v1/imports/organisations", content=_csv(rows), headers=headers)).json()
    assert (changed["created"], changed["updated"], changed["unchanged"]) == (0, 1, 299)
    history = (await registry.get(f"/v1/organisations/{code}/history")).json()
    assert [v["data"]["name"] for v in history] == ["批量导入企业7", "改名后的企业"]
    assert (await registry.get(f"/v1/organisations/{code}")).json()["name"] == "改名后的企业"


async def test_json_import_of_revenues_checks_references(registry: httpx.AsyncClient) -> None:
    organisations = _rows(2)
    await registry.post("/v1/imports/organisations", json=organisations)
    known = organisations[0]["credit_code"]
    stranger = new_credit_code()
    revenues = [
        {"credit_code": known, "year": 2024, "revenue_fen": 1_800_000_000},
        {"credit_code": known, "year": 2025, "revenue_fen": 12_000_000_000},
        {"credit_code": stranger, "year": 2025, "revenue_fen": 100},
        {"credit_code": known, "year": 2025, "revenue_fen": 5},
        {"credit_code": known, "year": 2023, "revenue_fen": 1.5},
    ]
    rejected = await registry.post("/v1/imports/revenues", json=revenues)
    assert rejected.status_code == 422
    codes = {r["row"]: r["errors"][0]["code"] for r in rejected.json()["rows"]}
    assert codes == {3: "reference_not_found", 4: "duplicate_in_file", 5: "int_type"}  # money is strict

    accepted = await registry.post("/v1/imports/revenues", json=revenues[:2])
    assert accepted.json()["created"] == 2
    revenue = (await registry.get(f"/v1/revenues/{known}/2025")).json()
    assert revenue["revenue_fen"] == 12_000_000_000
    assert revenue["valid_from"] == "2026-01-01"  # a year's revenue is a fact once the year is over


async def test_import_refuses_unknown_columns_and_bad_files(registry: httpx.AsyncClient) -> None:
    unknown = await registry.post(
        "/v1/imports/organisations",
        content=b"credit_code,name,kind,colour\n9144030071526726XG,a,enterprise,red\n",
        headers={"Content-Type": "text/csv"},
    )
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "import_unknown_columns"
    assert "colour" in unknown.json()["detail"]

    not_utf8 = await registry.post(
        "/v1/imports/organisations",
        content="credit_code,name,kind\n9144030071526726XG,深圳,enterprise\n".encode("gbk"),
        headers={"Content-Type": "text/csv"},
    )
    assert not_utf8.status_code == 422
    assert not_utf8.json()["code"] == "import_unreadable"

    empty = await registry.post("/v1/imports/organisations", json=[])
    assert empty.json()["code"] == "import_empty"
    garbage = await registry.post(
        "/v1/imports/organisations", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert garbage.status_code == 422
    assert garbage.json()["code"] == "import_unreadable"
    xml = await registry.post("/v1/imports/organisations", content=b"<a/>", headers={"Content-Type": "application/xml"})
    assert xml.status_code == 415
    not_objects = await registry.post("/v1/imports/organisations", json=[1, "x"])
    assert not_objects.status_code == 422
    assert [r["row"] for r in not_objects.json()["rows"]] == [1, 2]
    assert await _count(registry) == 0


async def test_filings_import_upserts_by_number(registry: httpx.AsyncClient) -> None:
    from tests.factories import make_model

    model = await make_model(registry)
    rows = [
        {
            "number": "Beijing-DeepseekChat-202404280016",
            "model_id": model["id"],
            "kind": "filing",
            "filed_on": "2024-04-28",
        },
        {"number": "not-a-known-format", "model_id": model["id"], "kind": "registration", "filed_on": "2024-05-01"},
    ]
    report = (await registry.post("/v1/imports/filings", json=rows)).json()
    assert report["created"] == 2
    good = (await registry.get("/v1/filings/Beijing-DeepseekChat-202404280016")).json()
    assert (good["status"], good["warnings"]) == ("filed", [])
    odd = (await registry.get("/v1/filings/not-a-known-format")).json()
    assert (odd["status"], odd["warnings"]) == ("registered", ["genai_filing_format"])  # a warning, not a rejection

    rows[0]["status"] = "revoked"
    rows[0]["effective_from"] = "2025-06-15"
    report = (await registry.post("/v1/imports/filings", json=rows)).json()
    assert (report["updated"], report["unchanged"]) == (1, 1)
    as_of_march = await registry.get("/v1/filings/Beijing-DeepseekChat-202404280016", params={"as_of": "2025-03-01"})
    assert as_of_march.json()["status"] == "filed"

    # The original rows again: each is the fact in effect on its own date, so nothing changes
    # (a later revocation does not make the original filing row "new").
    original = [{**rows[0], "status": "filed", "effective_from": "2024-04-28"}, rows[1]]
    report = (await registry.post("/v1/imports/filings", json=original)).json()
    assert (report["created"], report["updated"], report["unchanged"]) == (0, 0, 2)
    history = (await registry.get("/v1/filings/Beijing-DeepseekChat-202404280016/history")).json()
    assert [(v["valid_from"], v["data"]["status"]) for v in history] == [
        ("2024-04-28", "filed"),
        ("2025-06-15", "revoked"),
    ]
