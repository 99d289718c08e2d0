"""Money is an integer JSON number, everywhere it is read (issue #12, finding 6).

A lax integer field takes `"100"`, `100.0`, `1e2` and `true` for 100 fen (or 1): each is refused
with a 422 problem naming the field (`int_type`), and nothing is written. Through the public APIs:
vendors' redemptions and holds on a real voucher, the registry's revenues (create, change, JSON and
CSV import: in CSV an amount is the integer's digits), and the eligibility service's evidence,
reviews and A1 decisions.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from shared.auth import APPROVER, OFFICER
from tests.auth import auth
from tests.factories import make_organisation, new_credit_code
from tests.vouchers.flow import approved_m3, issue, redeem, vendor_call

#: 100 fen as a lax integer field would read it, as raw JSON (httpx would send the float 1e2 as `100.0`)
NOT_INTEGERS: dict[str, str] = {"a string": '"100"', "a float": "100.0", "an exponent": "1e2", "a boolean": "true"}
AMOUNT = "<amount>"
JSON = {"Content-Type": "application/json"}


def raw(payload: Any, amount: str) -> bytes:
    """`payload` as JSON, with `amount` written verbatim where it says AMOUNT."""
    return json.dumps(payload, ensure_ascii=False).replace(json.dumps(AMOUNT), amount).encode()


def assert_refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [(field, "int_type")], problem["errors"]


async def test_redemptions_and_holds_take_integer_fen_only(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    supply, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    code = (await issue(vouchers, decision_id)).json()["code"]
    for what, amount in NOT_INTEGERS.items():
        redemption = raw({"amount_fen": AMOUNT, "invoice_number": "FP-1"}, amount)
        headers = {**vendor_call(supply.vendor, f"strict-redeem-{what}"), **JSON}
        assert_refused(
            await vouchers.post(f"/v1/vouchers/{code}/redemptions", content=redemption, headers=headers),
            "body.amount_fen",
        )
        hold = raw({"amount_fen": AMOUNT, "invoice_number": "FP-1", "hold_seconds": 60}, amount)
        headers = {**vendor_call(supply.vendor, f"strict-hold-{what}"), **JSON}
        assert_refused(
            await vouchers.post(f"/v1/vouchers/{code}/holds", content=hold, headers=headers), "body.amount_fen"
        )
    voucher = (await vouchers.get(f"/v1/vouchers/{code}")).json()
    assert (voucher["redeemed_fen"], voucher["held_fen"]) == (0, 0)
    # nothing was stored under a refused request's key: the same key with an integer goes through
    accepted = await redeem(vouchers, code, supply.vendor, 100, "strict-redeem-a string")
    assert accepted.status_code == 201, accepted.text
    assert (await vouchers.get(f"/v1/vouchers/{code}")).json()["redeemed_fen"] == 100


async def test_revenues_take_integer_fen_only(registry: httpx.AsyncClient) -> None:
    code = (await make_organisation(registry))["credit_code"]
    for amount in NOT_INTEGERS.values():
        created = raw({"credit_code": code, "year": 2024, "revenue_fen": AMOUNT}, amount)
        assert_refused(await registry.post("/v1/revenues", content=created, headers=JSON), "body.revenue_fen")
    assert (await registry.get("/v1/revenues", params={"credit_code": code})).json()["items"] == []
    made = await registry.post("/v1/revenues", json={"credit_code": code, "year": 2024, "revenue_fen": 100})
    assert made.status_code == 201, made.text
    for amount in NOT_INTEGERS.values():
        change = raw({"revenue_fen": AMOUNT}, amount)
        assert_refused(
            await registry.patch(f"/v1/revenues/{code}/2024", content=change, headers=JSON), "body.revenue_fen"
        )
        rows = raw([{"credit_code": code, "year": 2023, "revenue_fen": AMOUNT}], amount)
        imported = await registry.post("/v1/imports/revenues", content=rows, headers=JSON)
        assert imported.status_code == 422, imported.text
        assert [(e["field"], e["code"]) for row in imported.json()["rows"] for e in row["errors"]] == [
            ("revenue_fen", "int_type")
        ]
    listed = (await registry.get("/v1/revenues", params={"credit_code": code})).json()["items"]
    assert [(r["year"], r["revenue_fen"]) for r in listed] == [(2024, 100)]


@pytest.mark.parametrize("cell", ["100.0", "1e2", "true", "+100", " 100", "１００"])
async def test_a_csv_import_takes_an_amount_as_the_integers_digits(registry: httpx.AsyncClient, cell: str) -> None:
    code = (await make_organisation(registry))["credit_code"]
    csv = {"Content-Type": "text/csv"}
    refused = await registry.post(
        "/v1/imports/revenues", content=f'credit_code,year,revenue_fen\n{code},2023,"{cell}"\n'.encode(), headers=csv
    )
    assert refused.status_code == 422, refused.text
    [row] = refused.json()["rows"]
    assert [(e["field"], e["code"]) for e in row["errors"]] == [("revenue_fen", "int_type")]
    accepted = await registry.post(
        "/v1/imports/revenues", content=f"credit_code,year,revenue_fen\n{code},2023,100\n".encode(), headers=csv
    )
    assert accepted.status_code == 200, accepted.text
    assert (await registry.get(f"/v1/revenues/{code}/2023")).json()["revenue_fen"] == 100


async def test_evidence_reviews_and_a1_decisions_take_integer_fen_only(eligibility: httpx.AsyncClient) -> None:
    applicant = new_credit_code()
    for amount in NOT_INTEGERS.values():
        application = {
            "applicant": applicant,
            "as_of": "2026-03-01",
            "as_of_reason": "逾期登记的纸质申请",
            "evidence": {"measure": "M6", "diagnosis_reference": "x", "audited_investment_fen": AMOUNT},
        }
        response = await eligibility.post("/v1/applications", content=raw(application, amount), headers=JSON)
        assert response.status_code == 422, response.text
        errors = [(e["field"].rsplit(".", 1)[-1], e["code"]) for e in response.json()["errors"]]
        assert errors == [("audited_investment_fen", "int_type")]
        # checked before the application is looked up: an unknown one is enough
        path = f"/v1/applications/{uuid.uuid4()}"
        review = raw({"verdict": "approve", "reason": "合规审核", "amount_fen": AMOUNT}, amount)
        officer = {**auth(OFFICER, name="wang"), **JSON}
        assert_refused(await eligibility.post(path + "/reviews", content=review, headers=officer), "body.amount_fen")
        manual = raw({"reason": "一事一议", "amount_fen": AMOUNT}, amount)
        approver = {**auth(APPROVER, name="li"), **JSON}
        assert_refused(
            await eligibility.post(path + "/manual-decisions", content=manual, headers=approver), "body.amount_fen"
        )
    assert (await eligibility.get("/v1/applications", params={"applicant": applicant})).json()["items"] == []
