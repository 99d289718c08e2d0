"""Vendors, models, affiliations and recognitions: create, read, change, list, refuse bad input."""

from __future__ import annotations

import httpx

from tests.factories import make_model, make_organisation, make_vendor, new_credit_code


async def test_duplicate_and_dangling_references_change_nothing(registry: httpx.AsyncClient) -> None:
    organisation = await make_organisation(registry)
    again = await registry.post("/v1/organisations", json={**organisation_fields(organisation)})
    assert again.status_code == 409
    assert again.json()["code"] == "record_exists"

    stranger = new_credit_code()
    vendor = await registry.post("/v1/vendors", json={"credit_code": stranger, "is_compute_vendor": True})
    assert vendor.status_code == 422
    assert vendor.json()["code"] == "reference_not_found"
    assert vendor.json()["errors"][0]["field"] == "credit_code"
    assert (await registry.get(f"/v1/vendors/{stranger}")).status_code == 404


def organisation_fields(read: dict[str, object]) -> dict[str, object]:
    keep = {"credit_code", "name", "kind", "registered_district", "registered_on", "is_software_internet"}
    return {k: v for k, v in read.items() if k in keep}


async def test_vendor_flags_and_filters(registry: httpx.AsyncClient) -> None:
    district = await make_vendor(registry, is_compute_vendor=True, is_model_vendor=False, district_compute=True)
    domestic = await make_vendor(registry, is_compute_vendor=True, is_model_vendor=False, domestic_compute=True)
    listed = (await registry.get("/v1/vendors", params={"district_compute": "true"})).json()["items"]
    assert [v["credit_code"] for v in listed] == [district["credit_code"]]
    changed = await registry.patch(f"/v1/vendors/{domestic['credit_code']}", json={"district_compute": True})
    assert changed.json()["district_compute"] is True
    listed = (await registry.get("/v1/vendors", params={"district_compute": "true"})).json()["items"]
    assert {v["credit_code"] for v in listed} == {district["credit_code"], domestic["credit_code"]}


async def test_models_belong_to_vendors(registry: httpx.AsyncClient) -> None:
    model = await make_model(registry, national_filing_date="2024-01-05", national_filing_rank=3)
    fetched = (await registry.get(f"/v1/models/{model['id']}")).json()
    assert fetched["national_filing_rank"] == 3
    assert fetched["valid_from"] == "2024-01-05"
    by_vendor = (await registry.get("/v1/models", params={"vendor_credit_code": model["vendor_credit_code"]})).json()
    assert [m["id"] for m in by_vendor["items"]] == [model["id"]]
    organisation = await make_organisation(registry)
    not_a_vendor = await registry.post(
        "/v1/models", json={"vendor_credit_code": organisation["credit_code"], "name": "x"}
    )
    assert not_a_vendor.status_code == 422
    assert not_a_vendor.json()["code"] == "reference_not_found"
    bad_rank = await registry.post(
        "/v1/models", json={"vendor_credit_code": model["vendor_credit_code"], "name": "y", "national_filing_rank": 0}
    )
    assert bad_rank.status_code == 422
    assert bad_rank.json()["errors"][0]["field"] == "body.national_filing_rank"
    huge_rank = await registry.post(  # beyond the integer column: refused, not a 500 (found by schemathesis)
        "/v1/models",
        json={"vendor_credit_code": model["vendor_credit_code"], "name": "z", "national_filing_rank": 2**40},
    )
    assert huge_rank.status_code == 422
    assert huge_rank.json()["errors"][0]["field"] == "body.national_filing_rank"


async def test_filing_numbers_in_any_script_are_reachable_by_their_location(registry: httpx.AsyncClient) -> None:
    """The key goes into the Location header percent-encoded (a header is latin-1: this was a 500)."""
    model = await make_model(registry)
    number = "粤网信备440307-龙岗大模型-202403010001"
    created = await registry.post(
        "/v1/filings", json={"number": number, "model_id": model["id"], "kind": "filing", "filed_on": "2024-03-01"}
    )
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    assert location.isascii()
    fetched = await registry.get(location)
    assert fetched.status_code == 200
    assert fetched.json()["number"] == number
    with_slash = await registry.post(
        "/v1/filings",
        json={"number": "Beijing/X-202403010001", "model_id": model["id"], "kind": "filing", "filed_on": "2024-03-01"},
    )
    assert with_slash.status_code == 422  # a key with "/" could never be read back by its URL
    assert with_slash.json()["errors"][0]["field"] == "body.number"


async def test_affiliations_are_symmetric_and_can_end(registry: httpx.AsyncClient) -> None:
    a = (await make_organisation(registry))["credit_code"]
    b = (await make_organisation(registry))["credit_code"]
    created = await registry.post(
        "/v1/affiliations",
        json={
            "credit_code_a": max(a, b),
            "credit_code_b": min(a, b),
            "relation": "control",
            "effective_from": "2023-01-01",
        },
    )
    assert created.status_code == 201, created.text
    affiliation = created.json()
    assert (affiliation["credit_code_a"], affiliation["credit_code_b"]) == (min(a, b), max(a, b))
    reverse = await registry.post("/v1/affiliations", json={"credit_code_a": a, "credit_code_b": b, "relation": "x"})
    assert reverse.status_code == 409
    self_affiliated = await registry.post(
        "/v1/affiliations", json={"credit_code_a": a, "credit_code_b": a, "relation": "x"}
    )
    assert self_affiliated.status_code == 422
    assert self_affiliated.json()["errors"][0]["code"] == "same_organisation"

    for code in (a, b):
        listed = (await registry.get("/v1/affiliations", params={"organisation": code})).json()["items"]
        assert [x["id"] for x in listed] == [affiliation["id"]]
    ended = await registry.patch(
        f"/v1/affiliations/{affiliation['id']}", json={"active": False, "effective_from": "2025-01-01"}
    )
    assert ended.json()["active"] is False
    in_2024 = await registry.get(
        "/v1/affiliations", params={"organisation": a, "as_of": "2024-06-01", "active": "true"}
    )
    assert [x["id"] for x in in_2024.json()["items"]] == [affiliation["id"]]
    now = await registry.get("/v1/affiliations", params={"organisation": a, "active": "true"})
    assert now.json()["items"] == []


async def test_recognitions_carry_their_clause_and_typed_details(registry: httpx.AsyncClient) -> None:
    code = (await make_organisation(registry))["credit_code"]
    standard = await registry.post(
        "/v1/recognitions",
        json={
            "credit_code": code,
            "recognised_on": "2025-04-01",
            "details": {"kind": "ai_standard", "standard": "人工智能 术语", "level": "national", "rank": 1},
        },
    )
    assert standard.status_code == 201, standard.text
    assert standard.json()["clause"] == "M7"
    platform = await registry.post(
        "/v1/recognitions",
        json={
            "credit_code": code,
            "recognised_on": "2025-02-01",
            "details": {"kind": "public_platform", "platform": "AI 公共服务平台", "level": "provincial", "year": 2024},
        },
    )
    assert platform.json()["clause"] == "M12"
    wrong_level = await registry.post(
        "/v1/recognitions",
        json={
            "credit_code": code,
            "recognised_on": "2025-02-01",
            "details": {"kind": "public_platform", "platform": "x", "level": "municipal", "year": 2024},
        },
    )
    assert wrong_level.status_code == 422
    assert wrong_level.json()["errors"][0]["field"] == "body.details.public_platform.level"
    unknown_kind = await registry.post(
        "/v1/recognitions", json={"credit_code": code, "recognised_on": "2025-02-01", "details": {"kind": "medal"}}
    )
    assert unknown_kind.status_code == 422
    standards = await registry.get("/v1/recognitions", params={"credit_code": code, "kind": "ai_standard"})
    assert [r["clause"] for r in standards.json()["items"]] == ["M7"]
    as_of = await registry.get(
        "/v1/recognitions", params={"credit_code": code, "kind": "public_platform", "as_of": "2025-03-01"}
    )
    assert [r["details"]["level"] for r in as_of.json()["items"]] == ["provincial"]
    before = await registry.get("/v1/recognitions", params={"credit_code": code, "as_of": "2025-01-01"})
    assert before.json()["items"] == []


async def test_revenues_by_year(registry: httpx.AsyncClient) -> None:
    code = (await make_organisation(registry))["credit_code"]
    created = await registry.post(
        "/v1/revenues", json={"credit_code": code, "year": 2024, "revenue_fen": 1_800_000_000}
    )
    assert created.status_code == 201
    assert created.headers["location"].endswith(f"/v1/revenues/{code}/2024")
    negative = await registry.post("/v1/revenues", json={"credit_code": code, "year": 2023, "revenue_fen": -1})
    assert negative.status_code == 422
    as_float = await registry.post("/v1/revenues", json={"credit_code": code, "year": 2023, "revenue_fen": 10.5})
    assert as_float.status_code == 422  # money is integer fen
    corrected = await registry.patch(f"/v1/revenues/{code}/2024", json={"revenue_fen": 1_900_000_000})
    assert corrected.json()["revenue_fen"] == 1_900_000_000
    listed = (await registry.get("/v1/revenues", params={"credit_code": code})).json()["items"]
    assert [(r["year"], r["revenue_fen"]) for r in listed] == [(2024, 1_900_000_000)]
