"""Issue #6: every aggregate endpoint's answer, its parameters, and the two forwarded to eligibility."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from shared.auth import DASHBOARD, DASHBOARD_DETAIL, OFFICER
from shared.peers import PeerClient, make_peer_client
from tests.aggregates.conftest import fetch, project
from tests.aggregates.data import m1_voucher, m3_voucher, this_year
from tests.auth import auth
from tests.vouchers.flow import YUAN, approved_m3, issue, redeem

DASHBOARD_CLIENT = auth(DASHBOARD, name="dashboard")
AS_OF = {"entry_id", "projected_at", "lag_entries"}
MONEY = ("issued_fen", "redeemed_fen", "held_fen", "settled_fen", "expired_fen", "voided_fen", "granted_fen")


@pytest_asyncio.fixture(scope="module")
async def some_activity(
    agg_app: FastAPI, agg_database: str, live_registry: str, live_eligibility: str
) -> AsyncIterator[None]:
    """An M3 voucher partly redeemed and an M1 voucher, projected."""
    transport = httpx.ASGITransport(app=agg_app)
    admin_headers = auth("admin", name="test admin")
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://vouchers", headers=admin_headers) as vouchers,
        httpx.AsyncClient(base_url=live_registry, headers=admin_headers, timeout=10) as registry,
        httpx.AsyncClient(base_url=live_eligibility, headers=admin_headers, timeout=30) as eligibility,
    ):
        m3 = await m3_voucher(vouchers, registry, eligibility)
        assert (await redeem(vouchers, m3.code, m3.vendors[0], 1_000 * YUAN, f"{m3.code}-e1")).status_code == 201
        await m1_voucher(
            vouchers,
            registry,
            eligibility,
            revenue_yuan=5_000_000,
            district_yuan=0,
            domestic_yuan=100_000,
            other_yuan=0,
        )
    await project(agg_database)
    yield


async def get(client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    response = await client.get(path, params=params, headers=headers or DASHBOARD_CLIENT)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def _as_of(body: dict[str, Any]) -> None:
    assert set(body["as_of"]) == AS_OF
    assert body["as_of"]["entry_id"] > 0
    assert body["as_of"]["lag_entries"] >= 0


@pytest.mark.usefixtures("some_activity")
async def test_summary(agg: httpx.AsyncClient) -> None:
    body = await get(agg, "/v1/aggregates/summary", year=this_year())
    assert set(body) == {"year", "totals", "by_measure", "as_of"}
    assert set(body["totals"]) == {*MONEY, "remaining_fen"}
    for line in body["by_measure"]:
        assert set(line) == {"measure", *MONEY, "remaining_fen"}
        if line["measure"] in ("M1", "M3"):
            assert line["remaining_fen"] >= 0
    measures = [line["measure"] for line in body["by_measure"]]
    assert {"M1", "M3"} <= set(measures)
    assert measures == sorted(measures, key=lambda m: int(m[1:]))
    for name in body["totals"]:
        assert body["totals"][name] == sum(line[name] for line in body["by_measure"])
    _as_of(body)
    default = await get(agg, "/v1/aggregates/summary")  # this year by default
    assert default["year"] == this_year()
    empty = await get(agg, "/v1/aggregates/summary", year=2001)
    assert (empty["by_measure"], empty["totals"]["issued_fen"]) == ([], 0)


@pytest.mark.usefixtures("some_activity")
async def test_monthly(agg: httpx.AsyncClient) -> None:
    body = await get(agg, "/v1/aggregates/monthly", year=this_year(), measure="M3")
    assert set(body) == {"year", "measure", "months", "as_of"}
    assert [m["month"] for m in body["months"]] == list(range(1, 13))
    for month in body["months"]:
        assert set(month) == {"month", "issued_fen", "redeemed_fen", "settled_fen", "expired_fen", "granted_fen"}
    every = await get(agg, "/v1/aggregates/monthly", year=this_year())
    total = sum(m["issued_fen"] for m in every["months"])
    assert total >= sum(m["issued_fen"] for m in body["months"]) > 0
    summary = await get(agg, "/v1/aggregates/summary", year=this_year())
    assert total == summary["totals"]["issued_fen"]


@pytest.mark.usefixtures("some_activity")
async def test_revenue_classes_and_compute_share(agg: httpx.AsyncClient) -> None:
    body = await get(agg, "/v1/aggregates/revenue-classes", year=this_year())
    assert set(body) == {"year", "classes", "as_of"}
    assert body["classes"]
    for line in body["classes"]:
        assert set(line) == {"revenue_class", "issued_fen", "redeemed_fen", "vouchers"}
        assert re.fullmatch(r"C\d|unknown", line["revenue_class"])
    shares = await get(agg, "/v1/aggregates/compute-share", year=this_year())
    assert set(shares) == {"year", "shares", "as_of"}
    assert [s["share"] for s in shares["shares"]][:3] == ["district", "domestic", "other"]
    for line in shares["shares"]:
        assert set(line) == {"share", "redeemed_fen", "issued_fen"}
    m1_issued = (await get(agg, "/v1/aggregates/summary", year=this_year()))["by_measure"]
    assert sum(s["issued_fen"] for s in shares["shares"]) == next(
        line["issued_fen"] for line in m1_issued if line["measure"] == "M1"
    )
    assert sum(c["issued_fen"] for c in body["classes"]) == sum(s["issued_fen"] for s in shares["shares"])


@pytest.mark.usefixtures("some_activity")
async def test_vendors(agg: httpx.AsyncClient) -> None:
    body = await get(agg, "/v1/aggregates/vendors", year=this_year(), limit=2)
    assert set(body) == {"year", "measure", "vendors", "as_of"}
    assert 0 < len(body["vendors"]) <= 2
    for line in body["vendors"]:
        assert set(line) == {"vendor", "redeemed_fen", "settled_fen", "redemptions"}
    ranked = [v["redeemed_fen"] for v in body["vendors"]]
    assert ranked == sorted(ranked, reverse=True)
    only_m1 = await get(agg, "/v1/aggregates/vendors", year=this_year(), measure="M1")
    assert only_m1["measure"] == "M1"


@pytest.mark.usefixtures("some_activity")
async def test_budget(agg: httpx.AsyncClient, agg_database: str) -> None:
    body = await get(agg, "/v1/aggregates/budget", year=2026)
    assert set(body) == {"year", "budget_file_version", "measures", "as_of"}
    lines = {line["measure"]: line for line in body["measures"]}
    assert set(lines) >= {f"M{n}" for n in range(1, 14)}  # every measure has a (provisional) budget
    for line in body["measures"]:
        assert set(line) == {
            "measure",
            "budget_fen",
            "used_fen",
            "committed_fen",
            "reserved_fen",
            "remaining_fen",
            "over_budget",
            "used_ratio",
            "budget_source",
            "budget_status",
        }
    m1 = lines["M1"]
    assert (m1["budget_fen"], m1["budget_status"]) == (10_000_000_000, "provisional")
    assert m1["remaining_fen"] == m1["budget_fen"] - m1["used_fen"]
    # the ceiling row agrees (A2): what the ledger committed plus what approvals reserved and were not issued yet
    assert (m1["committed_fen"], m1["over_budget"]) == (m1["used_fen"] + m1["reserved_fen"], False)
    assert re.fullmatch(r"\d+\.\d{4}", m1["used_ratio"])
    # used = what left the 2026 budget accounts (issued, granted) less what came back
    [row] = await fetch(
        agg_database,
        "SELECT coalesce(sum(CASE WHEN e.from_account_id = a.id THEN e.amount_fen ELSE -e.amount_fen END), 0) "
        "FROM vouchers.accounts a JOIN vouchers.entries e ON a.id IN (e.from_account_id, e.to_account_id) "
        "WHERE a.kind = 'budget' AND a.ref = 'M1:2026'",
    )
    assert m1["used_fen"] == row[0]
    none = await get(agg, "/v1/aggregates/budget", year=2030)  # no figure stands for 2030
    assert all(line["budget_fen"] is None and line["used_ratio"] is None for line in none["measures"])


@pytest.mark.usefixtures("some_activity")
async def test_ceiling_headroom(
    agg: httpx.AsyncClient,
    agg_database: str,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
) -> None:
    # an enterprise that claims its whole annual ceiling at once (30% of a 17,000,000 yuan contract ≥ 5,000,000)
    _, decision = await approved_m3(
        live_registry_client, live_eligibility_client, contract_fen=17_000_000 * YUAN, claim_fen=5_000_000 * YUAN
    )
    assert (await issue(agg, decision)).status_code == 201
    body = await get(agg, "/v1/aggregates/ceiling-headroom", year=this_year(), buckets=5)
    assert body["at_ceiling"] >= 1
    assert body["buckets"][0]["enterprises"] >= body["at_ceiling"]
    assert set(body) == {"year", "limit_fen", "buckets", "enterprises", "at_ceiling", "as_of"}
    assert body["limit_fen"] == 5_000_000 * YUAN
    assert len(body["buckets"]) == 5
    assert body["buckets"][0]["from_fen"] == 0
    assert body["buckets"][-1]["to_fen"] == body["limit_fen"]
    for before, after in zip(body["buckets"], body["buckets"][1:], strict=False):
        assert before["to_fen"] == after["from_fen"]
    [row] = await fetch(
        agg_database,
        "SELECT count(*) FROM vouchers.allowances WHERE kind = 'M3.claims' AND year = $1",
        this_year(),
    )
    assert body["enterprises"] == sum(b["enterprises"] for b in body["buckets"]) == row[0] > 0
    nothing = await get(agg, "/v1/aggregates/ceiling-headroom", year=2001)
    assert (nothing["buckets"], nothing["enterprises"], nothing["limit_fen"]) == ([], 0, None)


@pytest.mark.usefixtures("some_activity")
async def test_top_enterprises_only_with_the_detail_grant(agg: httpx.AsyncClient) -> None:
    refused = await agg.get("/v1/aggregates/top-enterprises", headers=DASHBOARD_CLIENT)
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    body = await get(agg, "/v1/aggregates/top-enterprises", auth(DASHBOARD, DASHBOARD_DETAIL), year=this_year())
    assert set(body) == {"year", "enterprises", "as_of"}
    assert body["enterprises"]
    for line in body["enterprises"]:
        assert set(line) == {"credit_code", "issued_fen", "redeemed_fen", "granted_fen"}
    awarded = [e["issued_fen"] + e["granted_fen"] for e in body["enterprises"]]
    assert awarded == sorted(awarded, reverse=True)
    officer = await get(agg, "/v1/aggregates/top-enterprises", auth(OFFICER), year=this_year(), limit=1)
    assert officer["enterprises"] == body["enterprises"][:1]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/aggregates/summary", {"year": "1999"}),
        ("/v1/aggregates/summary", {"year": "twenty"}),
        ("/v1/aggregates/monthly", {"measure": "M99"}),
        ("/v1/aggregates/vendors", {"limit": "0"}),
        ("/v1/aggregates/vendors", {"limit": "101"}),
        ("/v1/aggregates/ceiling-headroom", {"buckets": "0"}),
        ("/v1/aggregates/top-enterprises", {"limit": "-1"}),
        ("/v1/aggregates/applications", {"year": "3000"}),
    ],
)
async def test_bad_parameters_are_refused_cleanly(agg: httpx.AsyncClient, path: str, params: dict[str, str]) -> None:
    response = await agg.get(path, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed"


# --- forwarded to the eligibility service ---------------------------------------------------------------


@pytest.fixture
def eligibility_stub(agg_app: FastAPI) -> Any:
    """Swap the forwarding client for one answering from a handler; returns (set handler, requests seen)."""
    seen: list[httpx.Request] = []
    original = agg_app.state.eligibility_forwarder

    def install(handler: Callable[[httpx.Request], httpx.Response]) -> list[httpx.Request]:
        def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return handler(request)

        client = make_peer_client("http://eligibility.test", timeout_seconds=1, transport=httpx.MockTransport(record))
        agg_app.state.eligibility_forwarder = PeerClient("eligibility", client)
        return seen

    yield install
    agg_app.state.eligibility_forwarder = original


async def test_forwarded_with_the_callers_token_and_answer(agg: httpx.AsyncClient, eligibility_stub: Any) -> None:
    answer = {"year": 2026, "by_measure": [{"measure": "M1", "submitted": 3}], "totals": {"submitted": 3}}
    seen = eligibility_stub(lambda request: httpx.Response(200, json=answer))
    headers = {**DASHBOARD_CLIENT, "Accept-Language": "en"}
    response = await agg.get("/v1/aggregates/applications", params={"year": 2026}, headers=headers)
    assert (response.status_code, response.json()) == (200, answer)
    [request] = seen
    assert (request.url.path, request.url.params["year"]) == ("/v1/aggregates/applications", "2026")
    assert request.headers["authorization"] == DASHBOARD_CLIENT["Authorization"]
    assert request.headers["accept-language"] == "en"
    queue = {"waiting": 0, "oldest_submitted_at": None, "age_seconds": {}, "by_measure": []}
    seen = eligibility_stub(lambda request: httpx.Response(200, json=queue))
    assert (await agg.get("/v1/aggregates/review-queue", headers=DASHBOARD_CLIENT)).json() == queue
    assert seen[-1].url.path == "/v1/aggregates/review-queue"


async def test_a_refusal_of_eligibility_is_passed_on(agg: httpx.AsyncClient, eligibility_stub: Any) -> None:
    problem = {"type": "urn:longgang-ai:problem:forbidden", "code": "forbidden", "status": 403, "title": "x"}
    eligibility_stub(lambda request: httpx.Response(403, json=problem))
    response = await agg.get("/v1/aggregates/review-queue", headers=DASHBOARD_CLIENT)
    assert (response.status_code, response.json()) == (403, problem)
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("failure", ["500", "timeout", "refused", "not json"])
async def test_eligibility_down_means_503(agg: httpx.AsyncClient, eligibility_stub: Any, failure: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if failure == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        if failure == "refused":
            raise httpx.ConnectError("refused", request=request)
        if failure == "not json":
            return httpx.Response(200, text="<html>")
        return httpx.Response(500, text="boom")

    eligibility_stub(handler)
    response = await agg.get("/v1/aggregates/applications", headers=DASHBOARD_CLIENT)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "peer_unavailable"
    assert "retry-after" in response.headers


async def test_forwarded_to_the_real_eligibility_service(agg: httpx.AsyncClient) -> None:
    applications = await get(agg, "/v1/aggregates/applications", year=this_year())
    assert {"year", "by_measure", "totals"} <= set(applications)
    assert applications["year"] == this_year()
    queue = await get(agg, "/v1/aggregates/review-queue")
    assert {"waiting", "oldest_submitted_at", "age_seconds", "by_measure"} <= set(queue)
    # a grant alone is no role: refused here, before anything is forwarded
    refused = await agg.get("/v1/aggregates/review-queue", headers=auth(DASHBOARD_DETAIL))
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
