"""M3: the model must hold a CAC generative-AI service filing (备案) on the contract date and on the claim date.

`M3.filing_kinds` (a registration, 登记, is not a filing) and `M3.filing_in_force_on` (contract
date and claim date) are dated parameters (interpretation); these tests walk the boundaries
through the HTTP API with the registry's filing history.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.eligibility import seed
from tests.vouchers.flow import YUAN, ModelSupply, m3_evidence, submit

SIGNED = "2025-04-01"
CLAIMED = "2025-05-01"


async def supply(registry: httpx.AsyncClient, filed_on: str, kind: str = "filing") -> tuple[ModelSupply, str]:
    holder = await seed.organisation(registry)
    vendor = await seed.vendor(registry, is_model_vendor=True)
    model_id = await seed.model(registry, vendor)
    number = f"Guangdong-Test{holder[-8:]}-{filed_on.replace('-', '')}0001"
    created = await registry.post(
        "/v1/filings", json={"number": number, "model_id": model_id, "kind": kind, "filed_on": filed_on}
    )
    assert created.status_code == 201, created.text
    return ModelSupply(holder, vendor, model_id), number


async def claim(eligibility: httpx.AsyncClient, model: ModelSupply) -> dict[str, Any]:
    evidence = m3_evidence(model, 1_000_000 * YUAN, None, signed_on=SIGNED)
    decision: dict[str, Any] = (await submit(eligibility, model.holder, evidence, as_of=CLAIMED))["decision"]
    return decision


def m3_codes(decision: dict[str, Any]) -> list[str]:
    return [f["code"] for f in decision["failures"] if f["clause"] == "M3"]


@pytest.mark.parametrize(
    ("filed_on", "outcome"),
    [(SIGNED, "eligible"), ("2025-04-02", "model_not_filed")],
    ids=["filed on the contract date", "filed the day after"],
)
async def test_the_filing_must_be_in_force_on_the_contract_date(
    filed_on: str, outcome: str, eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    model, _ = await supply(live_registry_client, filed_on)
    decision = await claim(eligibility, model)
    if outcome == "eligible":
        assert (decision["outcome"], decision["amount_fen"]) == ("eligible", 300_000 * YUAN)
    else:
        assert m3_codes(decision) == [outcome]
    steps = [s for s in decision["trace"] if "备案" in s["label"]["zh"] and s["clause"] == "M3"]
    assert [s["inputs"]["date"] for s in steps] == [SIGNED, CLAIMED]
    assert {p["id"] for s in steps for p in s["parameters"]} >= {"M3.filing_kinds", "M3.filing_in_force_on"}


@pytest.mark.parametrize(
    ("revoked_on", "outcome"),
    [(CLAIMED, "model_not_filed_on_claim_date"), ("2025-04-15", "model_not_filed_on_claim_date"), ("2025-05-02", None)],
    ids=["revoked on the claim date", "revoked between contract and claim", "revoked the day after the claim"],
)
async def test_the_filing_must_still_be_in_force_on_the_claim_date(
    revoked_on: str,
    outcome: str | None,
    eligibility: httpx.AsyncClient,
    live_registry_client: httpx.AsyncClient,
) -> None:
    model, number = await supply(live_registry_client, "2024-03-01")
    revoked = await live_registry_client.patch(
        f"/v1/filings/{number}", json={"status": "revoked", "effective_from": revoked_on}
    )
    assert revoked.status_code == 200, revoked.text
    decision = await claim(eligibility, model)
    if outcome is None:
        assert decision["outcome"] == "eligible", decision
    else:
        assert decision["outcome"] == "ineligible"
        assert m3_codes(decision) == [outcome]
        [failure] = [f for f in decision["failures"] if f["code"] == outcome]
        assert CLAIMED in failure["zh"]


async def test_a_registration_is_not_a_filing(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    model, number = await supply(live_registry_client, "2024-03-01", kind="registration")
    decision = await claim(eligibility, model)
    assert decision["outcome"] == "ineligible"
    assert m3_codes(decision) == ["registration_is_not_filing"]
    [failure] = decision["failures"]
    assert number in failure["en"]
