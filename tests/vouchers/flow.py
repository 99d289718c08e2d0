"""Getting an approved decision through the real registry and eligibility services."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import httpx

from shared.auth import APPROVER, OFFICER
from tests.auth import as_applicant, as_vendor, auth
from tests.eligibility import seed

YUAN = 100
_contracts = itertools.count(1)


@dataclass
class ModelSupply:
    holder: str
    vendor: str
    model_id: str


async def model_supply(registry: httpx.AsyncClient, *, filed_on: str = "2024-03-01") -> ModelSupply:
    holder = await seed.organisation(registry)
    vendor = await seed.vendor(registry, is_model_vendor=True)
    model_id = await seed.model(registry, vendor)
    await seed.filing(registry, model_id, filed_on)
    return ModelSupply(holder, vendor, model_id)


def m3_evidence(
    supply: ModelSupply, contract_fen: int, claim_fen: int | None, signed_on: str = "2025-04-01"
) -> dict[str, Any]:
    evidence: dict[str, Any] = {
        "measure": "M3",
        "contract": {
            "number": f"HT-{next(_contracts):05d}",
            "vendor_credit_code": supply.vendor,
            "model_id": supply.model_id,
            "signed_on": signed_on,
            "amount_fen": contract_fen,
            "components": [{"kind": "private_deployment", "amount_fen": contract_fen}],
        },
    }
    if claim_fen is not None:
        evidence["claim_fen"] = claim_fen
    return evidence


def late_application(applicant: str, evidence: dict[str, Any], as_of: str) -> dict[str, Any]:
    """An application body dated earlier than today by an officer (a paper application registered late: A4)."""
    return {"applicant": applicant, "as_of": as_of, "as_of_reason": "逾期登记的纸质申请", "evidence": evidence}


async def submit(
    eligibility: httpx.AsyncClient, applicant: str, evidence: dict[str, Any], as_of: str = "2025-05-01"
) -> dict[str, Any]:
    response = await eligibility.post("/v1/applications", json=late_application(applicant, evidence, as_of))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def vendor_call(vendor: str, key: str, **extra: str) -> dict[str, str]:
    """Headers of a vendor client's mutating call: its token (the vendor) and an Idempotency-Key."""
    return as_vendor(vendor, **{"Idempotency-Key": key, **extra})


#: The officers who act in these tests (their tokens name them; the ledger records the name).
OFFICER_CHEN = auth(OFFICER, name="officer-chen")
REVIEWER = auth(OFFICER, name="wang")
APPROVER_LI = auth(APPROVER, name="li")


async def approve(eligibility: httpx.AsyncClient, application: dict[str, Any]) -> str:
    """Officer wang reviews, approver li approves (two clients: four eyes); returns the decision id."""
    path = f"/v1/applications/{application['id']}"
    reviewed = await eligibility.post(
        path + "/reviews", json={"verdict": "approve", "reason": "合规"}, headers=REVIEWER
    )
    assert reviewed.status_code == 200, reviewed.text
    approved = await eligibility.post(
        path + "/approvals", json={"verdict": "approve", "reason": "同意"}, headers=APPROVER_LI
    )
    assert approved.status_code == 200, approved.text
    return str(application["decision"]["id"])


async def approved_m3(
    registry: httpx.AsyncClient,
    eligibility: httpx.AsyncClient,
    *,
    contract_fen: int = 10_000_000 * YUAN,
    claim_fen: int | None = 3_000_000 * YUAN,
    supply: ModelSupply | None = None,
) -> tuple[ModelSupply, str]:
    supply = supply or await model_supply(registry)
    application = await submit(eligibility, supply.holder, m3_evidence(supply, contract_fen, claim_fen))
    assert application["decision"]["outcome"] == "eligible", application["decision"]
    return supply, await approve(eligibility, application)


async def issue(vouchers: httpx.AsyncClient, decision_id: str) -> httpx.Response:
    """Officer chen issues (the token names the officer recorded as `issued_by`)."""
    return await vouchers.post("/v1/vouchers", json={"decision_id": decision_id}, headers=OFFICER_CHEN)


async def redeem(
    vouchers: httpx.AsyncClient, code: str, vendor: str, amount_fen: int, key: str, invoice: str = "FP-1"
) -> httpx.Response:
    return await vouchers.post(
        f"/v1/vouchers/{code}/redemptions",
        json={"amount_fen": amount_fen, "invoice_number": invoice},
        headers=vendor_call(vendor, key),
    )


async def authorise(vouchers: httpx.AsyncClient, code: str, holder: str, vendor: str) -> dict[str, Any]:
    """The holder lets a vendor spend its compute voucher (issue #12, finding 7): 201, or 200 if it stands."""
    response = await vouchers.post(
        f"/v1/vouchers/{code}/authorisations",
        json={"vendor": vendor},
        headers=as_applicant(holder, **{"Idempotency-Key": f"authorise-{code}-{vendor}"}),
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def m1_decision(registry: httpx.AsyncClient, eligibility: httpx.AsyncClient) -> tuple[str, str, dict[str, Any]]:
    """Class C1 (cap 500,000), 3,000,000 of compute fees → 500,000 (capped)."""
    holder = await seed.organisation(registry)
    await seed.revenue(registry, holder, 2025, 5_000_000 * YUAN)
    provider = await seed.vendor(registry, is_compute_vendor=True)
    evidence = {
        "measure": "M1",
        "fiscal_year": 2025,
        "purpose": "healthcare",
        "invoices": [
            {
                "invoice_number": "GPU-2025-01",
                "provider_credit_code": provider,
                "paid_on": "2025-03-31",
                "lines": [{"kind": "compute", "description": "A800 租用", "amount_fen": 3_000_000 * YUAN}],
            }
        ],
    }
    application = await submit(eligibility, holder, evidence, as_of="2026-02-01")
    assert application["decision"]["amount_fen"] == 500_000 * YUAN
    return holder, provider, application
