"""Who may apply (issue #13): M1, M9, M11 are for AI enterprises; M6 for diagnosed industrial enterprises.

Each condition is a dated registry record read as of the application's date, so each is
tested three ways through the HTTP API: the record in force on the day (passes, the
boundary day included), absent (ineligible, naming the clause), and recorded only from the
day after (ineligible).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import httpx
import pytest

from tests.eligibility import seed

YUAN = 100
AS_OF = "2026-03-01"
DAY_AFTER = "2026-03-02"
Evidence = Callable[[httpx.AsyncClient, str], Awaitable[dict[str, Any]]]


async def apply(eligibility: httpx.AsyncClient, applicant: str, evidence: dict[str, Any]) -> dict[str, Any]:
    response = await eligibility.post(
        "/v1/applications",
        json={"applicant": applicant, "as_of": AS_OF, "as_of_reason": "逾期登记的纸质申请", "evidence": evidence},
    )
    assert response.status_code == 201, response.text
    decision: dict[str, Any] = response.json()["decision"]
    return decision


def failure_codes(decision: dict[str, Any], clause: str) -> set[str]:
    return {f["code"] for f in decision["failures"] if f["clause"] == clause}


# --- M1, M9, M11: AI enterprises ------------------------------------------------------------------


async def m1_evidence(r: httpx.AsyncClient, applicant: str) -> dict[str, Any]:
    await seed.revenue(r, applicant, 2025, 30_000_000 * YUAN)
    provider = await seed.vendor(r, is_compute_vendor=True)
    invoice = {
        "invoice_number": "INV-1",
        "provider_credit_code": provider,
        "paid_on": "2025-06-30",
        "lines": [{"kind": "compute", "description": "GPU", "amount_fen": 1_000_000 * YUAN}],
    }
    return {"measure": "M1", "fiscal_year": 2025, "purpose": "industry", "invoices": [invoice]}


async def m9_evidence(r: httpx.AsyncClient, applicant: str) -> dict[str, Any]:
    await seed.revenue(r, applicant, 2024, 18_000_000 * YUAN)
    await seed.revenue(r, applicant, 2025, 120_000_000 * YUAN)
    return {"measure": "M9", "year": 2025}


async def m11_evidence(r: httpx.AsyncClient, applicant: str) -> dict[str, Any]:
    await seed.revenue(r, applicant, 2025, 80_000_000 * YUAN)
    return {"measure": "M11", "year": 2025, "area_m2": "1500", "months": 12, "rent_paid_fen": 1500 * 120 * 12 * YUAN}


AI_MEASURES = [
    ("M1", m1_evidence, 300_000 * YUAN),
    ("M9", m9_evidence, 2_020_000 * YUAN),
    ("M11", m11_evidence, 600_000 * YUAN),
]
ORGANISATION = {
    "is_software_internet": True,
    "four_above_category": "above_scale_services",
    "owns_district_industrial_housing": False,
}


@pytest.mark.parametrize(("clause", "evidence", "amount"), AI_MEASURES, ids=[m for m, _, _ in AI_MEASURES])
@pytest.mark.parametrize("recognised_on", [AS_OF, None, DAY_AFTER], ids=["on the day", "absent", "the day after"])
async def test_ai_enterprise_recognition_in_force_on_the_application_date(
    clause: str,
    evidence: Evidence,
    amount: int,
    recognised_on: str | None,
    eligibility: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    clock: Callable[[date], None],
) -> None:
    r = live_registry_client
    clock(date.today())
    applicant = await seed.organisation(r, ai_enterprise=False, **ORGANISATION)
    if recognised_on is not None:
        await seed.ai_enterprise_recognition(r, applicant, recognised_on)
    decision = await apply(eligibility, applicant, await evidence(r, applicant))
    [step] = [s for s in decision["trace"] if s["clause"] == clause and "人工智能企业认定" in s["label"]["zh"]]
    if recognised_on == AS_OF:
        assert decision["outcome"] == "eligible", decision
        assert decision["amount_fen"] == amount
        assert step["outcome"] == "pass"
        assert step["inputs"]["recognitions"][0]["kind"] == "ai_enterprise"
    else:
        assert decision["outcome"] == "ineligible", decision
        assert "not_ai_enterprise" in failure_codes(decision, clause)
        assert step["outcome"] == "fail"
    if clause == "M11":
        assert "M11.ai_enterprises_only" in {p["id"] for p in step["parameters"]}


async def test_a_withdrawn_ai_recognition_no_longer_counts(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, clock: Callable[[date], None]
) -> None:
    r = live_registry_client
    clock(date.today())
    applicant = await seed.organisation(r, ai_enterprise=False, **ORGANISATION)
    recognition = await seed.ai_enterprise_recognition(r, applicant, "2025-01-01")
    withdrawn = await r.patch(f"/v1/recognitions/{recognition}", json={"active": False, "effective_from": "2026-02-01"})
    assert withdrawn.status_code == 200, withdrawn.text
    decision = await apply(eligibility, applicant, await m9_evidence(r, applicant))
    assert decision["outcome"] == "ineligible"
    assert "not_ai_enterprise" in failure_codes(decision, "M9")


# --- M6: industrial enterprises with the city's diagnosis --------------------------------------------


async def test_m6_industrial_by_recognition_and_diagnosis_on_the_day_pays(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, clock: Callable[[date], None]
) -> None:
    r = live_registry_client
    clock(date.today())
    applicant = await seed.organisation(r)  # not above scale: industrial by its classification
    await seed.recognition(
        r, applicant, AS_OF, kind="industrial_enterprise", industry_section="C", authority="龙岗区统计局"
    )
    evidence = await seed.m6_evidence(r, applicant, 1_000_000 * YUAN, recognised_on=AS_OF)
    decision = await apply(eligibility, applicant, evidence)
    assert decision["outcome"] == "eligible", decision
    assert decision["amount_fen"] == 500_000 * YUAN
    steps = [s for s in decision["trace"] if s["clause"] == "M6"]
    assert steps[0]["outcome"] == "pass"
    assert steps[0]["inputs"]["recognitions"][0]["kind"] == "industrial_enterprise"
    assert steps[1]["outcome"] == "pass"
    assert steps[1]["inputs"]["recognition"]["kind"] == "digital_diagnosis"
    assert steps[1]["inputs"]["recognition"]["details"]["authority"] == "深圳市工业和信息化局"


@pytest.mark.parametrize("recognised_on", [None, DAY_AFTER], ids=["absent", "the day after"])
async def test_m6_not_industrial_on_the_day_is_ineligible(
    recognised_on: str | None,
    eligibility: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    clock: Callable[[date], None],
) -> None:
    r = live_registry_client
    clock(date.today())
    applicant = await seed.organisation(r, four_above_category="above_scale_services")
    if recognised_on is not None:
        await seed.recognition(
            r, applicant, recognised_on, kind="industrial_enterprise", industry_section="C", authority="龙岗区统计局"
        )
    decision = await apply(eligibility, applicant, await seed.m6_evidence(r, applicant, 1_000_000 * YUAN))
    assert decision["outcome"] == "ineligible"
    assert failure_codes(decision, "M6") == {"not_industrial_enterprise"}


async def test_m6_diagnosis_recorded_only_after_the_application_date_is_ineligible(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, clock: Callable[[date], None]
) -> None:
    r = live_registry_client
    clock(date.today())
    applicant = await seed.organisation(r, four_above_category="above_scale_industrial")
    evidence = await seed.m6_evidence(r, applicant, 1_000_000 * YUAN, recognised_on=DAY_AFTER)
    decision = await apply(eligibility, applicant, evidence)
    assert decision["outcome"] == "ineligible"
    assert failure_codes(decision, "M6") == {"recognition_not_found"}


async def test_m6_without_a_diagnosis_record_is_ineligible(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, clock: Callable[[date], None]
) -> None:
    r = live_registry_client
    clock(date.today())
    applicant = await seed.organisation(r, four_above_category="above_scale_industrial")
    free_text = {"measure": "M6", "diagnosis_reference": "深工信诊断〔2025〕12号", "audited_investment_fen": 100 * YUAN}
    decision = await apply(eligibility, applicant, free_text)
    assert decision["outcome"] == "ineligible"
    assert failure_codes(decision, "M6") == {"diagnosis_not_referenced"}


async def test_m6_someone_elses_diagnosis_or_another_kind_is_ineligible(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, clock: Callable[[date], None]
) -> None:
    r = live_registry_client
    clock(date.today())
    applicant = await seed.organisation(r, four_above_category="above_scale_industrial")
    other = await seed.organisation(r, four_above_category="above_scale_industrial")
    theirs = await seed.m6_evidence(r, other, 1_000_000 * YUAN)
    decision = await apply(eligibility, applicant, theirs)
    assert failure_codes(decision, "M6") == {"recognition_not_applicants"}

    [ai] = (await r.get("/v1/recognitions", params={"credit_code": applicant, "kind": "ai_enterprise"})).json()["items"]
    assert ai["clause"] == "M1, M9, M11"
    decision = await apply(eligibility, applicant, {**theirs, "diagnosis_id": ai["id"]})
    assert failure_codes(decision, "M6") == {"wrong_recognition_kind"}


async def test_the_registry_keeps_the_new_recognitions_as_of_a_date(live_registry_client: httpx.AsyncClient) -> None:
    r = live_registry_client
    applicant = await seed.organisation(r, ai_enterprise=False)
    diagnosis = await seed.diagnosis(r, applicant, "2025-05-01")
    before = await r.get(f"/v1/recognitions/{diagnosis}", params={"as_of": "2025-04-30"})
    on = await r.get(f"/v1/recognitions/{diagnosis}", params={"as_of": "2025-05-01"})
    assert before.status_code == 404
    assert on.status_code == 200
    assert on.json()["clause"] == "M6"
    refused = await r.post(
        "/v1/recognitions",
        json={"credit_code": applicant, "recognised_on": "2025-05-01", "details": {"kind": "digital_diagnosis"}},
    )
    assert refused.status_code == 422, "a diagnosis names its project, reference and authority"


# --- M10 city matching: the city's support is a registry record -----------------------------------


@pytest.mark.parametrize(
    ("recorded_on", "outcome"),
    [(AS_OF, "eligible"), (DAY_AFTER, "recognition_not_found")],
    ids=["recorded on the day", "recorded the day after"],
)
async def test_m10_city_matching_matches_the_citys_recorded_support(
    recorded_on: str,
    outcome: str,
    eligibility: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    clock: Callable[[date], None],
) -> None:
    r = live_registry_client
    clock(date.today())
    applicant = await seed.organisation(r)
    support = await seed.city_support(r, applicant, 2025, 1_000_000 * YUAN, recognised_on=recorded_on)
    # the applicant declares more than the city gave: the registry's amount is matched
    evidence = {
        "measure": "M10",
        "track": "city_matching",
        "year": 2025,
        "recognition_id": support,
        "city_support_fen": 9_000_000 * YUAN,
    }
    decision = await apply(eligibility, applicant, evidence)
    if outcome == "eligible":
        assert (decision["outcome"], decision["amount_fen"]) == ("eligible", 300_000 * YUAN)
        [step] = [s for s in decision["trace"] if "declared_city_support_fen" in s["inputs"] and s["amounts"]]
        assert step["amounts"]["city_support_fen"] == 1_000_000 * YUAN
        assert step["inputs"]["declared_city_support_fen"] == 9_000_000 * YUAN
    else:
        assert decision["outcome"] == "ineligible"
        assert failure_codes(decision, "M10") == {outcome}


async def test_m10_a_self_declared_city_award_is_not_matched(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, clock: Callable[[date], None]
) -> None:
    r = live_registry_client
    clock(date.today())
    applicant = await seed.organisation(r)
    declared = {"measure": "M10", "track": "city_matching", "year": 2025, "city_support_fen": 1_000_000 * YUAN}
    decision = await apply(eligibility, applicant, declared)
    assert decision["outcome"] == "ineligible"
    assert failure_codes(decision, "M10") == {"city_support_not_recorded"}

    someone_elses = await seed.city_support(r, await seed.organisation(r), 2025, 1_000_000 * YUAN)
    decision = await apply(eligibility, applicant, {**declared, "recognition_id": someone_elses})
    assert failure_codes(decision, "M10") == {"recognition_not_applicants"}

    of_2024 = await seed.city_support(r, applicant, 2024, 1_000_000 * YUAN)
    decision = await apply(eligibility, applicant, {**declared, "recognition_id": of_2024})
    assert failure_codes(decision, "M10") == {"city_support_year_mismatch"}


async def test_an_event_record_names_its_lead_among_its_organisers(live_registry_client: httpx.AsyncClient) -> None:
    r = live_registry_client
    lead, other = await seed.organisation(r), await seed.organisation(r)
    details = {
        "kind": "major_event",
        "name": "龙岗人工智能大会",
        "event_type": "forum",
        "held_on": "2025-11-20",
        "venue": "龙岗国际会展中心",
        "district": "440307",
        "organisers": [other],
        "influence": "national",
    }
    refused = await r.post(
        "/v1/recognitions", json={"credit_code": lead, "recognised_on": "2025-11-20", "details": details}
    )
    assert refused.status_code == 422, refused.text
    event = await seed.event(r, [lead, other])
    assert (await r.get(f"/v1/recognitions/{event}")).json()["details"]["organisers"] == [lead, other]
