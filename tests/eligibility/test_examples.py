"""The worked examples of docs/policy.md (M1, M2, M6, M9–M13, A4) as data-driven cases through the HTTP API.

The registry is a real process on a real PostgreSQL; each case writes its own facts to
it (fresh credit codes), then submits an application to the eligibility service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
import pytest

from tests.eligibility import seed

YUAN = 100  # fen per yuan
Setup = Callable[[httpx.AsyncClient], Awaitable[tuple[str, dict[str, Any]]]]


@dataclass(frozen=True)
class Case:
    id: str
    clause: str
    setup: Setup
    expected_outcome: str
    expected_fen: int | None = None
    failure_codes: tuple[str, ...] = ()
    as_of: str = "2026-03-01"
    trace_mentions: tuple[str, ...] = field(default=())


def invoice(
    provider: str, *lines: tuple[str, int], number: str = "INV-1", paid_on: str = "2025-06-30"
) -> dict[str, Any]:
    return {
        "invoice_number": number,
        "provider_credit_code": provider,
        "paid_on": paid_on,
        "lines": [{"kind": kind, "description": f"{kind} service", "amount_fen": yuan * YUAN} for kind, yuan in lines],
    }


def m1(*invoices: dict[str, Any]) -> dict[str, Any]:
    return {"measure": "M1", "fiscal_year": 2025, "purpose": "industry", "invoices": list(invoices)}


# --- M1 ------------------------------------------------------------------------------------


async def m1_1(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    applicant = await seed.organisation(r)
    await seed.revenue(r, applicant, 2025, 30_000_000 * YUAN)
    provider = await seed.vendor(r, is_compute_vendor=True)
    return applicant, m1(invoice(provider, ("compute", 1_000_000), ("storage", 200_000), ("network", 100_000)))


async def m1_2(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    applicant = await seed.organisation(r)
    await seed.revenue(r, applicant, 2025, 30_000_000 * YUAN)
    affiliated = await seed.vendor(r, is_compute_vendor=True)
    await seed.affiliation(r, applicant, affiliated)
    stranger = await seed.vendor(r, is_compute_vendor=True)
    return applicant, m1(
        invoice(affiliated, ("compute", 2_000_000), number="INV-A"),
        invoice(stranger, ("compute", 500_000), number="INV-B"),
    )


async def m1_3(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    applicant = await seed.organisation(r)
    await seed.revenue(r, applicant, 2025, 5_000_000 * YUAN)  # class C1, cap 500,000
    provider = await seed.vendor(r, is_compute_vendor=True)
    return applicant, m1(invoice(provider, ("compute", 3_000_000)))


async def m1_4(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    applicant = await seed.organisation(r)
    await seed.revenue(r, applicant, 2025, 100_000_000 * YUAN)  # C3, cap 2,000,000
    district = await seed.vendor(r, is_compute_vendor=True, district_compute=True)
    plain = await seed.vendor(r, is_compute_vendor=True)
    return applicant, m1(
        invoice(district, ("compute", 1_000_000), number="INV-D"),
        invoice(plain, ("compute", 1_000_000), number="INV-P"),
    )


async def m1_5(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    applicant = await seed.organisation(r)
    await seed.revenue(r, applicant, 2025, 5_000_000 * YUAN)  # C1, cap 500,000
    await seed.recognition(r, applicant, "2025-05-01", kind="major_ai_project", project="龙岗工业大模型")
    provider = await seed.vendor(r, is_compute_vendor=True)
    return applicant, m1(invoice(provider, ("compute", 3_000_000)))


# --- M2, M6 ----------------------------------------------------------------------------------


async def m2_1(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    applicant = await seed.vendor(r, is_model_vendor=True)
    model_id = await seed.model(r, applicant, national_filing_date="2024-08-01", national_filing_rank=11)
    return applicant, {"measure": "M2", "track": "b", "model_id": model_id}


async def m6_1(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    applicant = await seed.organisation(r, four_above_category="above_scale_industrial")
    return applicant, await seed.m6_evidence(r, applicant, 3_000_000 * YUAN)


# --- M9 --------------------------------------------------------------------------------------


def m9_revenues(*pairs: tuple[int, int]) -> Setup:
    async def setup(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
        applicant = await seed.organisation(r, is_software_internet=True)
        for year, fen in pairs:
            await seed.revenue(r, applicant, year, fen)
        return applicant, {"measure": "M9", "year": 2025}

    return setup


# --- M10 -------------------------------------------------------------------------------------


def m10(received_yuan: int) -> Setup:
    async def setup(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
        applicant = await seed.organisation(r)
        entry = await seed.recognition(
            r,
            applicant,
            "2025-01-10",
            kind="first_version_software",
            product="龙岗智算调度软件",
            catalogue_year=2025,
            first_sale_on="2025-02-01",
        )
        return applicant, {
            "measure": "M10",
            "track": "first_sale",
            "year": 2026,
            "recognition_id": entry,
            "received_within_year_fen": received_yuan * YUAN,
        }

    return setup


# --- M11 -------------------------------------------------------------------------------------


def m11(
    revenue_fen: int, *, registered_on: str = "2021-01-04", area: str = "1500", rent_per_m2_month: int = 120
) -> Setup:
    async def setup(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
        applicant = await seed.organisation(
            r,
            registered_on=registered_on,
            four_above_category="above_scale_services",
            is_software_internet=True,
            owns_district_industrial_housing=False,
        )
        await seed.revenue(r, applicant, 2025, revenue_fen)
        rent = int(float(area) * rent_per_m2_month * 12 * YUAN)
        return applicant, {"measure": "M11", "year": 2025, "area_m2": area, "months": 12, "rent_paid_fen": rent}

    return setup


# --- M12, M13, A4 -----------------------------------------------------------------------------


def m12(level: str) -> Setup:
    async def setup(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
        applicant = await seed.organisation(r)
        platform = await seed.recognition(
            r,
            applicant,
            "2025-09-01",
            kind="public_platform",
            platform="人工智能公共算力服务平台",
            level=level,
            year=2025,
        )
        return applicant, {"measure": "M12", "recognition_id": platform}

    return setup


def m13(cost_yuan: int, held_on: str = "2025-11-20") -> Setup:
    async def setup(r: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
        applicant = await seed.organisation(r)
        event_id = await seed.event(r, [applicant], held_on)
        return applicant, {"measure": "M13", "event_id": event_id, "audited_cost_fen": cost_yuan * YUAN}

    return setup


CASES = [
    Case("M1-1", "M1", m1_1, "eligible", 300_000 * YUAN, trace_mentions=("not_compute", "M1.tiers")),
    Case("M1-2", "M1", m1_2, "eligible", 150_000 * YUAN, trace_mentions=("affiliated_provider",)),
    Case("M1-3", "M1", m1_3, "eligible", 500_000 * YUAN, trace_mentions=("C1", "M1.revenue_classes")),
    Case("M1-4", "M1", m1_4, "eligible", 600_000 * YUAN, trace_mentions=("M1.bonus_ratios",)),
    Case("M1-5", "M1", m1_5, "eligible", 800_000 * YUAN, trace_mentions=("M1.major_project_extra_ratio",)),
    Case("M2-1", "M2", m2_1, "ineligible", failure_codes=("not_in_first_ten",)),
    Case("M6-1", "M6", m6_1, "eligible", 1_000_000 * YUAN),
    Case(
        "M9-1", "M9", m9_revenues((2024, 18_000_000 * YUAN), (2025, 120_000_000 * YUAN)), "eligible", 2_020_000 * YUAN
    ),
    Case(
        "M9-2",
        "M9",
        m9_revenues((2023, 25_000_000 * YUAN), (2024, 18_000_000 * YUAN), (2025, 30_000_000 * YUAN)),
        "eligible",
        120_000 * YUAN,  # 20M was first exceeded in 2023: growth reward only (1% of 12,000,000)
    ),
    Case(
        "M9 exactly 20,000,000",
        "M9",
        m9_revenues((2024, 10_000_000 * YUAN), (2025, 20_000_000 * YUAN)),
        "eligible",
        100_000 * YUAN,  # 超过 is strict: no threshold reward; growth 100% → 1% of 10,000,000
    ),
    Case(
        "M9 20,000,000.01",
        "M9",
        m9_revenues((2024, 10_000_000 * YUAN), (2025, 20_000_000 * YUAN + 1)),
        "eligible",
        200_000 * YUAN + 100_000 * YUAN,  # threshold 200,000 + 1% of 10,000,000.01 rounded down
    ),
    Case("M10-1", "M10", m10(10_000_000), "eligible", 2_000_000 * YUAN),
    Case("M10-2", "M10", m10(20_000_000), "eligible", 3_000_000 * YUAN),
    Case("M11-1", "M11", m11(80_000_000 * YUAN), "eligible", 600_000 * YUAN),
    Case("M11-2", "M11", m11(150_000_000 * YUAN), "eligible", 900_000 * YUAN),
    Case(
        "M11-3",
        "M11",
        m11(80_000_000 * YUAN, registered_on="2019-06-01"),
        "ineligible",
        failure_codes=("registered_too_early",),
    ),
    Case("M11 revenue exactly 100,000,000", "M11", m11(100_000_000 * YUAN), "eligible", 600_000 * YUAN),
    Case("M11 revenue 100,000,000.01", "M11", m11(100_000_000 * YUAN + 1), "eligible", 900_000 * YUAN),
    Case(
        "M11 exactly 1,000 m²",
        "M11",
        m11(80_000_000 * YUAN, area="1000", rent_per_m2_month=80),
        "eligible",
        480_000 * YUAN,
    ),  # 50% of 960,000 rent; the 50 yuan/m²/month cap (600,000) does not bind
    Case(
        "M11 1,000.01 m²",
        "M11",
        m11(80_000_000 * YUAN, area="1000.01", rent_per_m2_month=80),
        "eligible",
        480_000 * YUAN,
    ),  # only the rent of 1,000 m² counts
    Case(
        "M11 registered 2020-01-01",
        "M11",
        m11(80_000_000 * YUAN, registered_on="2020-01-01"),
        "eligible",
        600_000 * YUAN,
    ),
    Case("M12-1 national", "M12", m12("national"), "eligible", 500_000 * YUAN),
    Case("M12-1 provincial", "M12", m12("provincial"), "eligible", 200_000 * YUAN),
    Case("M13-1 800,000", "M13", m13(800_000), "eligible", 400_000 * YUAN),
    Case("M13-1 1,200,000", "M13", m13(1_200_000), "eligible", 500_000 * YUAN),
    Case("A4 first day", "A4", m6_1, "eligible", 1_000_000 * YUAN, as_of="2024-10-01"),
    Case("A4 day before", "A4", m6_1, "ineligible", failure_codes=("outside_validity_window",), as_of="2024-09-30"),
    Case("A4 last day", "A4", m6_1, "eligible", 1_000_000 * YUAN, as_of="2027-09-30"),
    Case("A4-1", "A4", m6_1, "ineligible", failure_codes=("outside_validity_window",), as_of="2027-10-01"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_worked_example(
    case: Case,
    eligibility: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
    clock: Callable[[date], None],
) -> None:
    applicant, evidence = await case.setup(live_registry_client)
    as_of = date.fromisoformat(case.as_of)
    clock(max(as_of, date.today()))
    response = await eligibility.post(
        "/v1/applications",
        json={"applicant": applicant, "as_of": case.as_of, "as_of_reason": "逾期登记的纸质申请", "evidence": evidence},
    )
    assert response.status_code == 201, response.text
    application = response.json()
    decision = application["decision"]
    assert decision["outcome"] == case.expected_outcome, decision
    assert decision["amount_fen"] == case.expected_fen, decision
    assert tuple(f["code"] for f in decision["failures"] if f["code"] in case.failure_codes) == case.failure_codes
    if case.failure_codes:
        assert application["status"] == "ineligible"
    trace = str(decision["trace"])
    assert f"'clause': '{case.clause}'" in trace, "the trace cites the clause"
    for mention in case.trace_mentions:
        assert mention in trace
    assert decision["policy_version"]
    assert decision["engine_version"]
    if case.id == "A4-1":
        [failure] = [f for f in decision["failures"] if f["code"] == "outside_validity_window"]
        assert "2024-10-01" in failure["zh"]
        assert "2027-09-30" in failure["en"]
    stored = await eligibility.get(f"/v1/applications/{application['id']}")
    assert stored.json()["decision"]["id"] == decision["id"]
