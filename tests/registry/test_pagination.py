"""Cursor pagination stays stable while rows are inserted between pages."""

from __future__ import annotations

import base64
import json

import httpx

from tests.factories import make_organisation


async def test_pages_see_every_existing_row_once_while_rows_are_inserted(registry: httpx.AsyncClient) -> None:
    existing = {(await make_organisation(registry))["credit_code"] for _ in range(25)}
    seen: list[str] = []
    inserted: set[str] = set()
    cursor = None
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = (await registry.get("/v1/organisations", params=params)).json()
        seen.extend(item["credit_code"] for item in page["items"])
        for _ in range(3):  # rows arrive while the client is paging
            inserted.add((await make_organisation(registry))["credit_code"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "a row was returned twice"
    assert existing <= set(seen), "an existing row was skipped"
    assert set(seen) <= existing | inserted


async def test_filters_and_pagination_compose(registry: httpx.AsyncClient) -> None:
    for i in range(7):
        await make_organisation(registry, kind="university" if i % 2 else "enterprise")
    universities: list[str] = []
    cursor = None
    while True:
        params = {"kind": "university", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await registry.get("/v1/organisations", params=params)).json()
        assert all(item["kind"] == "university" for item in page["items"])
        universities.extend(item["credit_code"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(universities) == 3


async def test_bad_cursors_are_refused(registry: httpx.AsyncClient) -> None:
    garbage = await registry.get("/v1/organisations", params={"cursor": "%%%not-base64"})
    assert garbage.status_code == 400
    assert garbage.json()["code"] == "invalid_cursor"
    other_listing = base64.urlsafe_b64encode(json.dumps({"l": "vendors", "a": 1}).encode()).decode()
    wrong = await registry.get("/v1/organisations", params={"cursor": other_listing})
    assert wrong.status_code == 400
    negative = base64.urlsafe_b64encode(json.dumps({"l": "organisations", "a": -5}).encode()).decode()
    assert (await registry.get("/v1/organisations", params={"cursor": negative})).status_code == 400
    too_big = await registry.get("/v1/organisations", params={"limit": 501})
    assert too_big.status_code == 422
    assert too_big.json()["errors"][0]["field"] == "query.limit"
