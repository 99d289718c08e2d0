"""Issue #13, small things: `POST /v1/vouchers` and `POST /v1/grants` honour `Idempotency-Key`.

A retry with the same key and body answers the first call's 201 again (nothing issued twice);
the same key with another body is 409 `idempotency_key_reused`; without a key a repeat is
`already_issued`, as before.
"""

from __future__ import annotations

import httpx

from tests.eligibility.test_award_register import m4, submit
from tests.vouchers.flow import OFFICER_CHEN, approve, approved_m3


async def test_a_retried_issuance_answers_the_first_voucher_and_issues_nothing_more(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    _, decision_id = await approved_m3(live_registry_client, live_eligibility_client)
    _, other_decision = await approved_m3(live_registry_client, live_eligibility_client)
    headers = {**OFFICER_CHEN, "Idempotency-Key": f"issue-{decision_id}"}
    first = await vouchers.post("/v1/vouchers", json={"decision_id": decision_id}, headers=headers)
    assert first.status_code == 201, first.text
    again = await vouchers.post("/v1/vouchers", json={"decision_id": decision_id}, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["code"] == first.json()["code"]
    assert again.headers["Idempotent-Replayed"] == "true"
    reused = await vouchers.post("/v1/vouchers", json={"decision_id": other_decision}, headers=headers)
    assert (reused.status_code, reused.json()["code"]) == (409, "idempotency_key_reused")
    without = await vouchers.post("/v1/vouchers", json={"decision_id": decision_id}, headers=OFFICER_CHEN)
    assert (without.status_code, without.json()["code"]) == (409, "already_issued")


async def test_a_retried_grant_answers_the_first_grant(
    vouchers: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, live_eligibility_client: httpx.AsyncClient
) -> None:
    applicant, evidence = await m4(live_registry_client)
    application = await submit(live_eligibility_client, applicant, evidence)
    decision_id = await approve(live_eligibility_client, application)
    headers = {**OFFICER_CHEN, "Idempotency-Key": f"grant-{decision_id}"}
    first = await vouchers.post("/v1/grants", json={"decision_id": decision_id}, headers=headers)
    assert first.status_code == 201, first.text
    again = await vouchers.post("/v1/grants", json={"decision_id": decision_id}, headers=headers)
    assert (again.status_code, again.json()["id"]) == (201, first.json()["id"])
    without = await vouchers.post("/v1/grants", json={"decision_id": decision_id}, headers=OFFICER_CHEN)
    assert (without.status_code, without.json()["code"]) == (409, "already_issued")
