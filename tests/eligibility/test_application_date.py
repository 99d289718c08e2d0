"""The application date is the server's (issue #11, A4): nobody escapes the validity window by back-dating.

An application is dated the day the service receives it (Shenzhen time). Only an officer
may record an earlier day — a paper application registered late — with a written reason,
kept with the application, shown in the decision's trace and in the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import httpx

from tests.auth import as_applicant
from tests.eligibility import seed
from tests.eligibility.actors import WANG, audit_row


async def count(eligibility: httpx.AsyncClient, applicant: str) -> int:
    listed = await eligibility.get("/v1/applications", params={"applicant": applicant})
    items: list[Any] = listed.json()["items"]
    return len(items)


async def test_an_application_is_dated_the_day_it_is_received(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, clock: Callable[[date], None]
) -> None:
    clock(date(2026, 3, 2))
    applicant, evidence = await seed.m6_applicant(live_registry_client, 100_000_00)
    response = await eligibility.post(
        "/v1/applications", json={"applicant": applicant, "evidence": evidence}, headers=as_applicant(applicant)
    )
    assert response.status_code == 201, response.text
    application = response.json()
    assert (application["as_of"], application["as_of_reason"], application["as_of_recorded_by"]) == (
        "2026-03-02",
        None,
        None,
    )
    first = application["decision"]["trace"][0]
    assert (first["clause"], first["inputs"]["received_on"]) == ("A4", "2026-03-02")


async def test_only_an_officer_records_an_earlier_date_and_must_say_why(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient, clock: Callable[[date], None]
) -> None:
    clock(date(2027, 10, 5))  # the measures expired on 2027-09-30 (A4)
    applicant, evidence = await seed.m6_applicant(live_registry_client, 100_000_00)
    back_dated = {"applicant": applicant, "as_of": "2027-09-01", "evidence": evidence}

    by_applicant = await eligibility.post(
        "/v1/applications", json={**back_dated, "as_of_reason": "想早一点"}, headers=as_applicant(applicant)
    )
    assert by_applicant.status_code == 403, by_applicant.text
    assert (by_applicant.json()["code"], by_applicant.json()["clause"]) == ("as_of_officer_only", "A4")
    assert "2027-10-05" in by_applicant.json()["detail"]

    without_reason = await eligibility.post("/v1/applications", json=back_dated, headers=WANG)
    assert (without_reason.status_code, without_reason.json()["code"]) == (422, "as_of_reason_required")
    assert await count(eligibility, applicant) == 0, "a refusal writes nothing"

    # today's date after the window: refused by A4, as the text says
    today = await eligibility.post(
        "/v1/applications", json={"applicant": applicant, "evidence": evidence}, headers=as_applicant(applicant)
    )
    assert today.json()["decision"]["outcome"] == "ineligible"
    assert "outside_validity_window" in {f["code"] for f in today.json()["decision"]["failures"]}

    reason = "2027-09-01 收到的纸质申请，因系统故障逾期登记（收件登记簿第 12 号）"
    recorded = await eligibility.post("/v1/applications", json={**back_dated, "as_of_reason": reason}, headers=WANG)
    assert recorded.status_code == 201, recorded.text
    application = recorded.json()
    assert (application["as_of"], application["as_of_reason"], application["as_of_recorded_by"]) == (
        "2027-09-01",
        reason,
        "wang",
    )
    assert application["decision"]["outcome"] == "eligible"
    first = application["decision"]["trace"][0]
    assert first["clause"] == "A4"
    assert first["inputs"] == {
        "received_on": "2027-10-05",
        "as_of": "2027-09-01",
        "recorded_by": "wang",
        "reason": reason,
    }
    audited = await audit_row(eligibility, recorded.headers["x-request-id"])
    assert audited["path"] == "/v1/applications"
