"""Every clause of the text is represented (issue #13): the policy listing, A3's declaration, A4's start date.

`GET /v1/policy` lists M1–M15 and A1–A4 with what the service does for each (M14, M15 pay
nothing, recorded as such); A3's declaration is stored with the application and shown in
the trace; an administrator loads A4's real start date through the API and decisions
change from the version's date only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import httpx

from tests.auth import ADMIN, auth
from tests.eligibility import seed

YUAN = 100


async def test_the_policy_lists_every_clause_of_the_text_with_what_the_service_does(
    eligibility: httpx.AsyncClient,
) -> None:
    policy = (await eligibility.get("/v1/policy")).json()
    clauses = {clause["id"]: clause for clause in policy["clauses"]}
    text = [f"M{n}" for n in range(1, 16)] + ["A1", "A2", "A3", "A4"]
    assert set(text) <= set(clauses)
    assert [c["id"] for c in policy["clauses"] if c["id"] in text] == text, "in the order of the text"
    for measure in (f"M{n}" for n in range(1, 14)):
        assert (clauses[measure]["treatment"], clauses[measure]["pays"]) == ("computed", True), measure
        assert clauses[measure]["rule_module"].startswith("services.eligibility.rules.m")
    for unpaid in ("M14", "M15"):
        assert (clauses[unpaid]["treatment"], clauses[unpaid]["pays"], clauses[unpaid]["rule_module"]) == (
            "record_only",
            False,
            None,
        )
        assert "nothing is computed or paid" in clauses[unpaid]["service_does"]["en"]
    assert clauses["A1"]["treatment"] == "manual_decision"
    assert clauses["A3"]["treatment"] == "precedence"
    assert "declaration" in clauses["A3"]["service_does"]["en"]
    assert "声明" in clauses["A3"]["service_does"]["zh"]
    assert clauses["A4"]["parameters"] == ["A4.start_date", "A4.validity_years"]
    for clause in clauses.values():
        assert clause["title"]["zh"]
        assert clause["title"]["en"]
        assert clause["service_does"]["zh"]
        assert clause["service_does"]["en"]


async def _apply(
    eligibility: httpx.AsyncClient, applicant: str, evidence: dict[str, Any], as_of: str
) -> httpx.Response:
    return await eligibility.post(
        "/v1/applications",
        json={"applicant": applicant, "as_of": as_of, "as_of_reason": "逾期登记的纸质申请", "evidence": evidence},
    )


def _a3_step(decision: dict[str, Any]) -> dict[str, Any]:
    [step] = [s for s in decision["trace"] if s["clause"] == "A3"]
    return step


async def test_a3_the_declaration_is_stored_with_the_application_and_shown_in_the_trace(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    applicant, evidence = await seed.m6_applicant(live_registry_client, 1_000_000 * YUAN)
    declared = {**evidence, "declarations": {"no_other_district_funding": True}}
    created = await _apply(eligibility, applicant, declared, "2026-03-01")
    assert created.status_code == 201, created.text
    decision = created.json()["decision"]
    assert (decision["outcome"], decision["amount_fen"]) == ("eligible", 500_000 * YUAN)
    step = _a3_step(decision)
    assert (step["outcome"], step["inputs"]) == ("pass", {"no_other_district_funding": True})
    read = (await eligibility.get(f"/v1/applications/{created.json()['id']}")).json()
    assert read["evidence"]["declarations"] == {"no_other_district_funding": True}

    applicant_b, evidence_b = await seed.m6_applicant(live_registry_client, 1_000_000 * YUAN)
    other_funding = {**evidence_b, "declarations": {"no_other_district_funding": False}}
    decision = (await _apply(eligibility, applicant_b, other_funding, "2026-03-01")).json()["decision"]
    assert (decision["outcome"], decision["amount_fen"]) == ("needs_review", 500_000 * YUAN)
    assert [(r["clause"], r["code"]) for r in decision["review_reasons"]] == [("A3", "other_district_funding_declared")]
    assert _a3_step(decision)["outcome"] == "review"


async def test_a3_an_application_without_a_declaration_says_so(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    applicant, evidence = await seed.m6_applicant(live_registry_client, 1_000_000 * YUAN)
    decision = (await _apply(eligibility, applicant, evidence, "2026-03-01")).json()["decision"]
    assert decision["outcome"] == "eligible"
    assert _a3_step(decision) | {"parameters": []} == {
        "clause": "A3",
        "label": {
            "zh": "申请人声明：同一事项未获区其他专项资金扶持",
            "en": "The applicant's declaration: the same item has no other district funding",
        },
        "inputs": {"no_other_district_funding": None},
        "parameters": [],
        "amounts": {},
        "outcome": "not_declared",
    }
    refused = await _apply(eligibility, applicant, {**evidence, "declarations": {}}, "2026-03-01")
    assert refused.status_code == 422, "a declarations object says what it declares"


async def test_a4_an_administrator_loads_the_start_date_and_decisions_change_from_its_date_only(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, clock: Callable[[date], None]
) -> None:
    """The file's start (2024-10-01, provisional) ends the window on 2027-09-30; the real start, 2025-01-01,
    loaded from 2027-10-21, ends it on 2027-12-31 for decisions dated from then on."""
    applicant, evidence = await seed.m6_applicant(live_registry_client, 1_000_000 * YUAN)
    clock(date(2027, 10, 20))
    late = await _apply(eligibility, applicant, evidence, "2027-10-15")
    assert late.json()["decision"]["outcome"] == "ineligible"

    version = {
        "effective_from": "2027-10-21",
        "value": "2025-01-01",
        "status": "given",
        "source": "区工信局公告：本措施自2025年1月1日起施行",
        "reason": "施行日期公布",
    }
    loaded = await eligibility.post(
        "/v1/policy/parameters/A4.start_date/versions", json=version, headers=auth(ADMIN, name="admin-zhang")
    )
    assert loaded.status_code == 201, loaded.text
    assert [(h["effective_from"], h["value"]) for h in loaded.json()["history"]][-1] == ("2027-10-21", "2025-01-01")

    clock(date(2027, 10, 25))
    day_before = (await _apply(eligibility, applicant, evidence, "2027-10-20")).json()["decision"]
    from_the_date = (await _apply(eligibility, applicant, evidence, "2027-10-21")).json()["decision"]
    assert day_before["outcome"] == "ineligible"
    assert "outside_validity_window" in {f["code"] for f in day_before["failures"]}
    assert (from_the_date["outcome"], from_the_date["amount_fen"]) == ("eligible", 500_000 * YUAN)
    a4 = next(s for s in from_the_date["trace"] if s["clause"] == "A4" and "window" in s["inputs"])
    assert a4["inputs"]["window"] == ["2025-01-01", "2027-12-31"]
    start = next(p for p in a4["parameters"] if p["id"] == "A4.start_date")
    assert (start["value"], start["status"], start["origin"].startswith("version:")) == ("2025-01-01", "given", True)
    # the decision made before the version is as it was
    stored = (await eligibility.get(f"/v1/applications/{late.json()['id']}")).json()
    assert stored["decision"]["outcome"] == "ineligible"
