"""Instants in queries are bounded as the exports bound theirs (issue #12, finding 10).

`?known_at=` on registry reads and `?since=` / `?until=` on `GET /v1/audit` (all three
services) used to answer 500 for an instant UTC cannot hold (Python's `OverflowError` when it
was converted for PostgreSQL): now a 422 problem naming the field, as the exports' `from` / `to`.
An instant without a UTC offset is refused too, as in the exports.
"""

from __future__ import annotations

import httpx
import pytest

from tests.factories import new_credit_code

#: (instant, the field error's code)
BAD_INSTANTS = [
    ("9999-12-31T20:00:00-05:00", "instant_out_of_range"),  # the year 10000 in UTC
    ("0001-01-01T00:00:00+08:00", "instant_out_of_range"),  # before the year 1 in UTC
    ("2026-03-01T00:00:00", "timezone_aware"),  # no offset: which 24 hours?
]
IDS = ["after 9999 in UTC", "before year 1 in UTC", "no offset"]


def assert_names(response: httpx.Response, field: str, code: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [(field, code)]


@pytest.mark.parametrize(("instant", "code"), BAD_INSTANTS, ids=IDS)
async def test_registry_reads_known_at(registry: httpx.AsyncClient, instant: str, code: str) -> None:
    one = await registry.get(f"/v1/organisations/{new_credit_code()}", params={"known_at": instant})
    assert_names(one, "query.known_at", code)
    dated = await registry.get(
        f"/v1/organisations/{new_credit_code()}", params={"as_of": "2025-01-01", "known_at": instant}
    )
    assert_names(dated, "query.known_at", code)
    listed = await registry.get("/v1/organisations", params={"known_at": instant})
    assert_names(listed, "query.known_at", code)


async def test_the_largest_instants_utc_holds_are_still_read(registry: httpx.AsyncClient) -> None:
    for instant in ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59+00:00", "0001-01-01T08:00:00+08:00"):
        listed = await registry.get("/v1/organisations", params={"known_at": instant})
        assert listed.status_code == 200, (instant, listed.text)
        audit = await registry.get("/v1/audit", params={"since": instant, "until": instant})
        assert audit.status_code == 200, (instant, audit.text)


@pytest.mark.parametrize(("instant", "code"), BAD_INSTANTS, ids=IDS)
@pytest.mark.parametrize("bound", ["since", "until"])
async def test_audit_bounds_on_every_service(
    registry: httpx.AsyncClient,
    eligibility: httpx.AsyncClient,
    vouchers: httpx.AsyncClient,
    bound: str,
    instant: str,
    code: str,
) -> None:
    for service in (registry, eligibility, vouchers):
        response = await service.get("/v1/audit", params={bound: instant})
        assert_names(response, f"query.{bound}", code)
