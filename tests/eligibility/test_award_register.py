"""Nothing paid twice, across applications (issue #11): the award register through the HTTP API.

For every measure: an approved award registers its claim keys; a second application on
the same key is refused on the automatic path (naming the clause); an A1 decision on it is
refused by the database unless it names the key it overrides and why; the override is
listed for auditors. Year totals: fees split over two applications earn exactly what one
application earns (M1, M5). Benefit years outside the text's year or the validity window
are refused, naming the clause.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.eligibility import seed
from tests.eligibility.actors import DIRECTOR, LI, WANG
from tests.eligibility.test_examples import (
    invoice,
    m1,
    m1_5,
    m2_1,
    m6_1,
    m9_revenues,
    m10,
    m11,
    m12,
    m13,
)
from tests.vouchers import flow
from tests.vouchers.flow import m3_evidence, model_supply

YUAN = 100
Setup = Callable[[httpx.AsyncClient], Awaitable[tuple[str, dict[str, Any]]]]


async def submit(
    eligibility: httpx.AsyncClient, applicant: str, evidence: dict[str, Any], as_of: str = "2026-03-01"
) -> dict[str, Any]:
    return await flow.submit(eligibility, applicant, evidence, as_of=as_of)


async def review(eligibility: httpx.AsyncClient, application: dict[str, Any]) -> None:
    decision = application["decision"]
    body: dict[str, Any] = {"verdict": "approve", "reason": "材料齐全"}
    if decision["outcome"] == "needs_review":
        body["amount_fen"] = decision["amount_fen"] or 100_000 * YUAN
    reviewed = await eligibility.post(f"/v1/applications/{application['id']}/reviews", json=body, headers=WANG)
    assert reviewed.status_code == 200, reviewed.text


async def approve(eligibility: httpx.AsyncClient, application: dict[str, Any]) -> httpx.Response:
    return await eligibility.post(
        f"/v1/applications/{application['id']}/approvals", json={"verdict": "approve", "reason": "同意"}, headers=LI
    )


async def award(eligibility: httpx.AsyncClient, application: dict[str, Any]) -> None:
    await review(eligibility, application)
    approved = await approve(eligibility, application)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"


# --- setups for measures the worked examples do not cover -------------------------------------------


async def m1_room(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    """M1 with room left under the class cap (C4: 4,000,000), so that an A1 award can still be paid."""
    applicant = await seed.organisation(r)
    await seed.revenue(r, applicant, 2025, 300_000_000 * YUAN)
    provider = await seed.vendor(r, is_compute_vendor=True)
    return applicant, m1(invoice(provider, ("compute", 1_000_000)))


async def m2a(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    applicant = await seed.organisation(r)
    return applicant, {
        "measure": "M2",
        "track": "a",
        "achievement": "key_rnd_programme",
        "achievement_name": "国家重点研发计划：工业大模型",
    }


async def m2b(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    applicant = await seed.vendor(r, is_model_vendor=True)
    model_id = await seed.model(r, applicant, national_filing_date="2024-08-01", national_filing_rank=3)
    return applicant, {"measure": "M2", "track": "b", "model_id": model_id}


async def m3(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    supply = await model_supply(r)
    return supply.holder, m3_evidence(supply, 10_000_000 * YUAN, 3_000_000 * YUAN, signed_on="2026-02-01")


async def m4(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    applicant = await seed.organisation(r)
    project = await seed.recognition(
        r, applicant, "2025-06-01", kind="demonstration_project", project="AI 质检", authority="工业和信息化部"
    )
    return applicant, {"measure": "M4", "recognition_id": project}


def m5(*amounts_yuan: int) -> Setup:
    async def setup(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
        applicant = await seed.organisation(r, four_above_category="above_scale_industrial")
        supplier = await seed.organisation(r)
        product = await seed.recognition(r, supplier, "2025-01-05", kind="digital_product", product="AI 排产")
        purchases = [
            {"product_recognition_id": product, "amount_fen": amount * YUAN, "paid_on": f"2025-0{i + 1}-15"}
            for i, amount in enumerate(amounts_yuan)
        ]
        return applicant, {"measure": "M5", "year": 2025, "purchases": purchases}

    return setup


async def m7(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    applicant = await seed.organisation(r, is_software_internet=True)
    standard = await seed.recognition(
        r, applicant, "2025-04-01", kind="ai_standard", level="national", rank=1, standard="人工智能 术语"
    )
    return applicant, {"measure": "M7", "year": 2025, "standard_recognition_ids": [standard]}


async def m8(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    applicant = await seed.organisation(r)
    listed = await seed.recognition(
        r, applicant, "2025-03-01", kind="key_software_enterprise", list="shenzhen", year=2025
    )
    return applicant, {"measure": "M8", "recognition_id": listed}


def m10_city(r_support_yuan: int) -> Setup:
    async def setup(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
        applicant = await seed.organisation(r)
        support = await seed.city_support(r, applicant, 2025, r_support_yuan * YUAN)
        return applicant, {"measure": "M10", "track": "city_matching", "year": 2025, "recognition_id": support}

    return setup


#: one setup per measure (and track); the clause each key belongs to
MEASURES: list[tuple[str, str, Setup]] = [
    ("M1", "M1", m1_room),
    ("M2a", "M2", m2a),
    ("M2b", "M2", m2b),
    ("M3", "M3", m3),
    ("M4", "M4", m4),
    ("M5", "M5", m5(100_000)),
    ("M6", "M6", m6_1),
    ("M7", "M7", m7),
    ("M8", "M8", m8),
    ("M9", "M9", m9_revenues((2024, 18_000_000 * YUAN), (2025, 120_000_000 * YUAN))),
    ("M10 first sale", "M10", m10(10_000_000)),
    ("M10 city matching", "M10", m10_city(1_000_000)),
    ("M11", "M11", m11(80_000_000 * YUAN)),
    ("M12", "M12", m12("national")),
    ("M13", "M13", m13(800_000)),
]


@pytest.mark.parametrize(("name", "clause", "setup"), MEASURES, ids=[m[0] for m in MEASURES])
async def test_a_second_award_on_the_same_key_is_refused_on_every_path(
    name: str, clause: str, setup: Setup, eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    applicant, evidence = await setup(live_registry_client)
    first = await submit(eligibility, applicant, evidence)
    assert first["decision"]["outcome"] in ("eligible", "needs_review"), first["decision"]
    await award(eligibility, first)

    registered = await eligibility.get("/v1/awards", params={"application_id": first["id"]}, headers=LI)
    assert registered.status_code == 200, registered.text
    keys = {row["claim_key"]: row["clause"] for row in registered.json()["items"]}
    assert keys, "an award registers what it pays for"
    assert set(keys.values()) == {clause}
    assert set(keys) == set(first["decision"]["claims"])

    # automatic path: the same thing again is refused, naming the clause
    second = await submit(eligibility, applicant, evidence)
    decision = second["decision"]
    assert (second["status"], decision["outcome"]) == ("ineligible", "ineligible"), decision
    assert {failure["clause"] for failure in decision["failures"]} == {clause}, decision["failures"]
    assert second["decision"]["amount_fen"] is None

    # A1 path: the database refuses the key unless the decision names it and says why
    path = f"/v1/applications/{second['id']}/manual-decisions"
    refused = await eligibility.post(path, json={"amount_fen": 100 * YUAN, "reason": "一事一议"}, headers=DIRECTOR)
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["code"] == "already_awarded"
    assert problem["claim_key"] in keys
    assert problem["clause"] == clause
    assert first["id"] in problem["detail"] or first["id"] in problem.get("holder", "")
    assert (await eligibility.get(f"/v1/applications/{second['id']}")).json()["status"] == "ineligible"

    overrides = [{"claim_key": key, "reason": "区政府常务会议决定再次支持"} for key in second["decision"]["claims"]]
    decided = await eligibility.post(
        path, json={"amount_fen": 100 * YUAN, "reason": "一事一议", "overrides": overrides}, headers=DIRECTOR
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["decision"]["claims"] == second["decision"]["claims"]  # A1 keeps the keys
    double = (await eligibility.get("/v1/awards/double", headers=LI)).json()
    rows = [row for row in double["items"] if row["claim_key"] in second["decision"]["claims"]]
    overriding = [row for row in rows if row["overrides_id"] is not None]
    assert overriding
    assert all(row["override_reason"] == "区政府常务会议决定再次支持" for row in overriding)
    assert {row["path"] for row in overriding} == {"manual_a1"}


async def test_a1_keeps_the_keys_so_the_once_only_check_holds_after_it(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    """An A1 decision (different amount) pays for the same platform: a later application is refused."""
    applicant, evidence = await m12("provincial")(live_registry_client)
    first = await submit(eligibility, applicant, evidence)
    a1 = await eligibility.post(
        f"/v1/applications/{first['id']}/manual-decisions",
        json={"amount_fen": 150_000 * YUAN, "reason": "一事一议：平台规模特别重大"},
        headers=DIRECTOR,
    )
    assert a1.status_code == 200, a1.text
    again = await submit(eligibility, applicant, evidence)
    assert again["decision"]["outcome"] == "ineligible"
    assert "already_awarded" in {f["code"] for f in again["decision"]["failures"]}


async def test_a_key_pending_elsewhere_sends_the_second_to_review_and_only_one_approval_wins(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    applicant, evidence = await m4(live_registry_client)
    first = await submit(eligibility, applicant, evidence)
    second = await submit(eligibility, applicant, evidence)
    assert second["decision"]["outcome"] == "needs_review"
    assert "claimed_by_pending_application" in {r["code"] for r in second["decision"]["review_reasons"]}
    await review(eligibility, first)
    await review(eligibility, second)
    assert (await approve(eligibility, first)).status_code == 200
    refused = await approve(eligibility, second)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "already_awarded"
    assert refused.json()["clause"] == "M4"
    assert (await eligibility.get(f"/v1/applications/{second['id']}")).json()["status"] == "reviewed"


async def test_co_organisers_share_one_event_and_a_new_name_is_no_new_event(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    """Co-organisers reference the same registry record (the claim key): the first approved holds the one subsidy."""
    r = live_registry_client
    organiser, co_organiser = await seed.organisation(r), await seed.organisation(r)
    event_id = await seed.event(r, [organiser, co_organiser])
    evidence = {"measure": "M13", "event_id": event_id, "audited_cost_fen": 1_200_000 * YUAN}
    first = await submit(eligibility, organiser, evidence)
    assert (first["decision"]["outcome"], first["decision"]["amount_fen"]) == ("eligible", 500_000 * YUAN)
    assert first["decision"]["claims"] == [f"M13.event_record|{event_id}"]
    pending = await submit(eligibility, co_organiser, evidence)  # the co-organiser may apply: one of them is paid
    assert pending["decision"]["outcome"] == "needs_review"
    await award(eligibility, first)
    shared = await submit(eligibility, co_organiser, evidence)
    assert shared["decision"]["outcome"] == "ineligible"
    renamed = await submit(eligibility, organiser, {**evidence, "event_name": "龙岗 AI 大会（更名）"})
    assert renamed["decision"]["outcome"] == "ineligible"
    for application in (shared, renamed):
        assert {(f["clause"], f["code"]) for f in application["decision"]["failures"]} == {("M13", "already_awarded")}
    stranger = await submit(eligibility, await seed.organisation(r), evidence)
    assert "not_an_organiser" in [f["code"] for f in stranger["decision"]["failures"]]


# --- year totals --------------------------------------------------------------------------------


async def test_m1_fees_split_over_two_applications_earn_exactly_what_one_earns(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    """Marginal tiers (30% to 1M, 25% to 5M) and the major-project extra apply to the year as a whole."""
    registry = live_registry_client
    together, split = await seed.organisation(registry), await seed.organisation(registry)
    provider = await seed.vendor(registry, is_compute_vendor=True)
    for applicant in (together, split):
        await seed.revenue(registry, applicant, 2025, 300_000_000 * YUAN)  # C4: cap 4,000,000
        await seed.recognition(registry, applicant, "2025-05-01", kind="major_ai_project", project="大模型")
    fees = [invoice(provider, ("compute", 900_000), number="A"), invoice(provider, ("compute", 900_000), number="B")]

    one = await submit(eligibility, together, m1(*fees))
    first = await submit(eligibility, split, m1(fees[0]))
    await award(eligibility, first)
    second = await submit(eligibility, split, m1(fees[1]))
    await award(eligibility, second)

    # 1,800,000: 300,000 + 800,000 × 25% = 500,000; extra 10% = 180,000
    assert one["decision"]["amount_fen"] == 680_000 * YUAN
    parts = [first["decision"]["amount_fen"], second["decision"]["amount_fen"]]
    assert parts == [270_000 * YUAN + 90_000 * YUAN, 230_000 * YUAN + 90_000 * YUAN]
    assert sum(parts) == one["decision"]["amount_fen"]
    year_step = next(s for s in second["decision"]["trace"] if "year_base_fen" in s["amounts"])
    assert year_step["amounts"]["earlier_base_fen"] == 900_000 * YUAN
    assert year_step["amounts"]["year_base_fen"] == 1_800_000 * YUAN

    # the same invoice listed twice in one application is refused; in a later application it is left out
    twice = await eligibility.post(
        "/v1/applications",
        json={
            "applicant": split,
            "as_of": "2026-03-01",
            "as_of_reason": "逾期登记的纸质申请",
            "evidence": m1(fees[0], fees[0]),
        },
    )
    assert twice.status_code == 422
    assert "listed twice" in twice.text
    again = await submit(eligibility, split, m1(fees[0]))
    assert again["decision"]["outcome"] == "ineligible"
    assert "invoice_already_claimed" in str(again["decision"]["trace"])


async def test_m5_purchases_split_earn_what_one_application_earns_and_the_cap_holds_for_the_year(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    applicant, evidence = await m5(600_000, 500_000)(live_registry_client)
    [a, b] = evidence["purchases"]
    first = await submit(eligibility, applicant, {**evidence, "purchases": [a]})
    await award(eligibility, first)
    second = await submit(eligibility, applicant, {**evidence, "purchases": [b]})
    # 30% of 1,100,000 = 330,000, capped at 300,000 for the year: 180,000 + 120,000
    assert (first["decision"]["amount_fen"], second["decision"]["amount_fen"]) == (180_000 * YUAN, 120_000 * YUAN)
    await award(eligibility, second)
    again = await submit(eligibility, applicant, {**evidence, "purchases": [a]})
    assert again["decision"]["outcome"] == "ineligible"
    assert "purchase_already_claimed" in str(again["decision"]["trace"])


async def test_an_a1_award_cannot_pass_the_years_cap(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    """M5: 300,000 a year. An A1 decision pays outside the formulas, never above the clause's cap."""
    applicant, evidence = await m5(900_000, 100_000)(live_registry_client)
    [a, b] = evidence["purchases"]
    first = await submit(eligibility, applicant, {**evidence, "purchases": [a]})
    await award(eligibility, first)  # 270,000
    second = await submit(eligibility, applicant, {**evidence, "purchases": [b]})
    assert second["decision"]["amount_fen"] == 30_000 * YUAN
    refused = await eligibility.post(
        f"/v1/applications/{second['id']}/manual-decisions",
        json={"amount_fen": 50_000 * YUAN, "reason": "一事一议"},
        headers=DIRECTOR,
    )
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert (problem["code"], problem["clause"], problem["remaining_fen"]) == ("annual_cap_reached", "M5", 3_000_000)
    assert "30,000.00" in problem["detail"]
    decided = await eligibility.post(
        f"/v1/applications/{second['id']}/manual-decisions",
        json={"amount_fen": 30_000 * YUAN, "reason": "一事一议"},
        headers=DIRECTOR,
    )
    assert decided.status_code == 200, decided.text


# --- benefit years --------------------------------------------------------------------------------


async def m12_of_2023(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    """A platform recognised in 2023: last year for an application of November 2024, before the measures."""
    applicant = await seed.organisation(r)
    platform = await seed.recognition(
        r, applicant, "2023-09-01", kind="public_platform", platform="算力平台", level="national", year=2023
    )
    return applicant, {"measure": "M12", "recognition_id": platform}


async def m10_sold_before(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    """A catalogue product whose first sale (2024-01-15) came before the measures took effect."""
    applicant = await seed.organisation(r)
    entry = await seed.recognition(
        r,
        applicant,
        "2024-01-10",
        kind="first_version_software",
        product="龙岗调度软件",
        catalogue_year=2024,
        first_sale_on="2024-01-15",
    )
    evidence = {
        "measure": "M10",
        "track": "first_sale",
        "year": 2025,
        "recognition_id": entry,
        "received_within_year_fen": 1_000_000 * YUAN,
    }
    return applicant, evidence


def unchanged(evidence: dict[str, Any]) -> dict[str, Any]:
    return evidence


#: (clause, setup, how the evidence is changed, application date, the refusal's code)
OUT_OF_YEAR: dict[str, tuple[str, Setup, Callable[[dict[str, Any]], dict[str, Any]], str, str]] = {
    "M1 fees of two years ago": ("M1", m1_room, lambda e: {**e, "fiscal_year": 2024}, "2026-03-01", "not_allowed"),
    "M5 purchases of years ago": ("M5", m5(100_000), lambda e: {**e, "year": 2023}, "2026-03-01", "not_allowed"),
    "M7 standards of years ago": ("M7", m7, lambda e: {**e, "year": 2023}, "2026-03-01", "not_allowed"),
    "M9 a year in the 2010s": (
        "M9",
        m9_revenues((2015, 10_000_000 * YUAN), (2016, 30_000_000 * YUAN)),
        lambda e: {**e, "year": 2016},
        "2026-03-01",
        "not_allowed",
    ),
    "M10 city support not of last year": (
        "M10",
        m10_city(1_000_000),
        lambda e: {**e, "year": 2026},
        "2026-03-01",
        "not_allowed",
    ),
    "M10 first sale before the measures": (
        "M10",
        m10_sold_before,
        unchanged,
        "2026-03-01",
        "first_sale_outside_validity",
    ),
    "M11 not last year's rent": (
        "M11",
        m11(80_000_000 * YUAN),
        lambda e: {**e, "year": 2024},
        "2026-03-01",
        "not_allowed",
    ),
    "M12 recognised before the measures": ("M12", m12_of_2023, unchanged, "2024-11-01", "outside_validity"),
    "M13 an event before the measures": (
        "M13",
        m13(800_000, held_on="2023-05-01"),
        unchanged,
        "2026-03-01",
        "event_outside_validity",
    ),
}


@pytest.mark.parametrize("case", list(OUT_OF_YEAR))
async def test_benefit_years_outside_the_text_are_refused(
    case: str, eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    clause, setup, change, as_of, code = OUT_OF_YEAR[case]
    code = {"not_allowed": "benefit_year_not_allowed", "outside_validity": "benefit_year_outside_validity"}.get(
        code, code
    )
    applicant, evidence = await setup(live_registry_client)
    application = await submit(eligibility, applicant, change(evidence), as_of=as_of)
    assert application["decision"]["outcome"] == "ineligible"
    failures = [f for f in application["decision"]["failures"] if f["code"] == code]
    assert failures, application["decision"]["failures"]
    assert failures[0]["clause"] == clause


async def test_m2b_eleventh_model_is_still_refused(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    applicant, evidence = await m2_1(live_registry_client)
    assert (await submit(eligibility, applicant, evidence))["decision"]["outcome"] == "ineligible"


async def test_m1_major_project_extra_is_paid_once_for_the_year(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    applicant, evidence = await m1_5(live_registry_client)
    provider = evidence["invoices"][0]["provider_credit_code"]
    first = await submit(eligibility, applicant, evidence)
    assert first["decision"]["components"] == {"capped": 500_000 * YUAN, "major_project_extra": 300_000 * YUAN}
    await award(eligibility, first)
    more = await submit(eligibility, applicant, m1(invoice(provider, ("compute", 1_000_000), number="INV-2")))
    # the class cap (C1: 500,000) is used up; the extra: 10% of 4,000,000 = 400,000, less 300,000 already paid
    assert more["decision"]["components"] == {"capped": 0, "major_project_extra": 100_000 * YUAN}


async def test_m2b_rewards_each_of_an_entitys_first_ten_models_once(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    """第（二）条 前十名…一次性奖励: the ten places are models, so one entity's two models are both paid."""
    r = live_registry_client
    applicant = await seed.vendor(r, is_model_vendor=True)
    first_model = await seed.model(r, applicant, national_filing_date="2024-08-01", national_filing_rank=4)
    second_model = await seed.model(r, applicant, national_filing_date="2024-08-02", national_filing_rank=5)
    for model_id in (first_model, second_model):
        application = await submit(eligibility, applicant, {"measure": "M2", "track": "b", "model_id": model_id})
        assert application["decision"]["outcome"] == "eligible", application["decision"]
        assert application["decision"]["amount_fen"] == 2_000_000 * YUAN
        await award(eligibility, application)
    again = await submit(eligibility, applicant, {"measure": "M2", "track": "b", "model_id": second_model})
    assert again["decision"]["outcome"] == "ineligible"
    [failure] = again["decision"]["failures"]
    assert (failure["clause"], failure["code"]) == ("M2", "already_awarded")
