"""What an M1 voucher records at issuance for the aggregates: its revenue class and compute base split.

The eligibility service's approved decision carries them (`facets`, from the decision's
trace; an A1 decision carries those of the decision it replaces); the voucher row keeps
them. District compute includes compute that is both district and domestic.
"""

from __future__ import annotations

from typing import Any

import httpx

from shared.auth import APPROVER
from tests.aggregates.conftest import fetch
from tests.auth import auth
from tests.eligibility import seed
from tests.vouchers.flow import YUAN, approve, issue, submit

COLUMNS = "revenue_class, compute_base_fen, compute_district_fen, compute_domestic_fen"


async def _application(registry: httpx.AsyncClient, eligibility: httpx.AsyncClient) -> dict[str, Any]:
    holder = await seed.organisation(registry)
    await seed.revenue(registry, holder, 2025, 60_000_000 * YUAN)  # C3: 50M–200M
    invoices = []
    for n, (flags, yuan) in enumerate(
        (
            ({"district_compute": True, "domestic_compute": True}, 200_000),
            ({"district_compute": True}, 100_000),
            ({"domestic_compute": True}, 300_000),
            ({}, 400_000),
        )
    ):
        provider = await seed.vendor(registry, is_compute_vendor=True, **flags)
        invoices.append(
            {
                "invoice_number": f"GPU-F-{n}",
                "provider_credit_code": provider,
                "paid_on": "2025-06-30",
                "lines": [{"kind": "compute", "description": "训练算力", "amount_fen": yuan * YUAN}],
            }
        )
    evidence = {"measure": "M1", "fiscal_year": 2025, "purpose": "industry", "invoices": invoices}
    return await submit(eligibility, holder, evidence, as_of="2026-02-01")


async def test_an_m1_voucher_records_its_class_and_compute_split(
    agg: httpx.AsyncClient,
    agg_database: str,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
) -> None:
    application = await _application(live_registry_client, live_eligibility_client)
    decision_id = await approve(live_eligibility_client, application)
    approved = await live_eligibility_client.get(f"/v1/approved-decisions/{decision_id}")
    assert approved.json()["facets"] == {
        "revenue_class": "C3",
        "compute_base_fen": 1_000_000 * YUAN,
        "compute_paid_to": {"district": 100_000 * YUAN, "domestic": 300_000 * YUAN, "both": 200_000 * YUAN},
    }
    code = (await issue(agg, decision_id)).json()["code"]
    [row] = await fetch(agg_database, f"SELECT {COLUMNS} FROM vouchers.vouchers WHERE code = $1", code)
    assert tuple(row) == ("C3", 1_000_000 * YUAN, 300_000 * YUAN, 300_000 * YUAN)


async def test_an_a1_decision_carries_the_facets_of_the_decision_it_replaces(
    agg: httpx.AsyncClient,
    agg_database: str,
    live_registry_client: httpx.AsyncClient,
    live_eligibility_client: httpx.AsyncClient,
) -> None:
    application = await _application(live_registry_client, live_eligibility_client)
    manual = await live_eligibility_client.post(
        f"/v1/applications/{application['id']}/manual-decisions",
        json={"amount_fen": 150_000 * YUAN, "reason": "测试：一事一议"},
        headers=auth(APPROVER, name="director"),
    )
    assert manual.status_code == 200, manual.text
    issued = await issue(agg, manual.json()["decision"]["id"])
    assert issued.status_code == 201, issued.text
    [row] = await fetch(agg_database, f"SELECT {COLUMNS} FROM vouchers.vouchers WHERE code = $1", issued.json()["code"])
    assert tuple(row) == ("C3", 1_000_000 * YUAN, 300_000 * YUAN, 300_000 * YUAN)


def test_facets_that_do_not_add_up_are_not_recorded() -> None:
    from services.vouchers.issuance.service import m1_facets

    assert m1_facets({"facets": {}}) == {"revenue_class": None}
    assert m1_facets({}) == {"revenue_class": None}
    broken = {"revenue_class": "C1", "compute_base_fen": 100, "compute_paid_to": {"district": 80, "domestic": 30}}
    assert m1_facets({"facets": broken}) == {"revenue_class": "C1"}  # more than the base: the split is dropped
    fine = {**broken, "compute_paid_to": {"district": 20, "domestic": 30, "both": 10}}
    assert m1_facets({"facets": fine}) == {
        "revenue_class": "C1",
        "compute_base_fen": 100,
        "compute_district_fen": 30,
        "compute_domestic_fen": 30,
    }
