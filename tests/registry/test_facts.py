"""`POST /v1/facts` (issue #16): one call answers what the separate record reads answer, as of a date.

An organisation with history on every kind of record it can have (revenue restated, an affiliation
ended, a vendor changed, a recognition withdrawn, a model's filing revoked) is read both ways on two
dates: before and after those changes. The answers must be the same records, field for field.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from services.registry.facts.schemas import FactsRead
from shared.auth import OFFICER, REGISTRY_READ
from tests.auth import auth
from tests.factories import make_model, make_organisation, make_vendor, new_credit_code

SERVICE = auth(REGISTRY_READ, name="eligibility")
DATES = ("2025-02-01", "2025-07-01")
FILINGS_ON = "2024-12-31"


async def _ok(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def _read(registry: httpx.AsyncClient, path: str, as_of: str) -> dict[str, Any] | None:
    response = await registry.get(path, params={"as_of": as_of})
    if response.status_code == 404:
        return None
    return await _ok(response, 200)


async def _list(registry: httpx.AsyncClient, path: str, **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: dict[str, str] = {}
    while True:
        page = await _ok(await registry.get(path, params={**params, "limit": "500", **cursor}), 200)
        items.extend(page["items"])
        if not page["next_cursor"]:
            return items
        cursor = {"cursor": page["next_cursor"]}


async def _history(registry: httpx.AsyncClient) -> dict[str, Any]:
    """An applicant and everything around it, each changed between the two dates."""
    code = (await make_organisation(registry, registered_on="2021-05-10"))["credit_code"]
    partner = (await make_organisation(registry))["credit_code"]
    for year, fen in ((2023, 5_000_000), (2024, 6_000_000)):
        await _ok(await registry.post("/v1/revenues", json={"credit_code": code, "year": year, "revenue_fen": fen}))
    await _ok(
        await registry.patch(
            f"/v1/revenues/{code}/2023", json={"revenue_fen": 5_500_000, "effective_from": "2025-03-01"}
        ),
        200,
    )
    affiliation = await _ok(
        await registry.post(
            "/v1/affiliations",
            json={
                "credit_code_a": code,
                "credit_code_b": partner,
                "relation": "control",
                "effective_from": "2022-01-01",
            },
        )
    )
    await _ok(
        await registry.patch(
            f"/v1/affiliations/{affiliation['id']}", json={"active": False, "effective_from": "2025-06-01"}
        ),
        200,
    )
    vendor = (await make_vendor(registry, is_compute_vendor=True, effective_from="2022-01-01"))["credit_code"]
    await _ok(
        await registry.patch(f"/v1/vendors/{vendor}", json={"district_compute": True, "effective_from": "2025-04-01"}),
        200,
    )
    late_vendor = (await make_vendor(registry, effective_from="2025-05-01"))["credit_code"]
    ids = []
    for recognised_on in ("2024-06-01", "2025-05-01"):
        created = await registry.post(
            "/v1/recognitions",
            json={
                "credit_code": code,
                "recognised_on": recognised_on,
                "details": {"kind": "ai_enterprise", "list": "龙岗区人工智能企业白名单", "authority": "龙岗区工信局"},
            },
        )
        ids.append((await _ok(created))["id"])
    await _ok(
        await registry.patch(f"/v1/recognitions/{ids[0]}", json={"active": False, "effective_from": "2025-06-20"}), 200
    )
    other = await registry.post(
        "/v1/recognitions",
        json={
            "credit_code": partner,
            "recognised_on": "2024-01-10",
            "details": {"kind": "digital_product", "product": "龙岗数字产品"},
        },
    )
    ids.append((await _ok(other))["id"])
    model = await make_model(
        registry, vendor_credit_code=vendor, national_filing_date="2024-02-01", national_filing_rank=5
    )
    await make_model(registry, vendor_credit_code=vendor, effective_from="2024-01-01")  # no national filing
    number = f"Guangdong-Facts{new_credit_code()[-8:]}-202403010001"
    await _ok(
        await registry.post(
            "/v1/filings", json={"number": number, "model_id": model["id"], "kind": "filing", "filed_on": "2024-03-01"}
        )
    )
    await _ok(
        await registry.patch(f"/v1/filings/{number}", json={"status": "revoked", "effective_from": "2025-06-15"}), 200
    )
    return {
        "code": code,
        "vendors": [vendor, late_vendor, new_credit_code()],  # the last one was never a vendor
        "recognition_ids": [*ids, str(uuid.uuid4())],  # the last one never existed
        "model_id": model["id"],
    }


async def _separately(registry: httpx.AsyncClient, seeded: dict[str, Any], day: str) -> dict[str, Any]:
    """What the record reads answer, one at a time."""
    code, model_id = seeded["code"], seeded["model_id"]
    return {
        "credit_code": code,
        "as_of": day,
        "organisation": await _read(registry, f"/v1/organisations/{code}", day),
        "revenues": await _list(registry, "/v1/revenues", credit_code=code, as_of=day),
        "affiliations": await _list(registry, "/v1/affiliations", organisation=code, active="true", as_of=day),
        "vendors": {v: await _read(registry, f"/v1/vendors/{v}", day) for v in sorted(seeded["vendors"])},
        "recognitions": await _list(registry, "/v1/recognitions", credit_code=code, as_of=day),
        "recognitions_by_id": {
            rid: await _read(registry, f"/v1/recognitions/{rid}", day) for rid in sorted(seeded["recognition_ids"])
        },
        "model": await _read(registry, f"/v1/models/{model_id}", day),
        "filings": await _list(registry, "/v1/filings", model_id=model_id, as_of=FILINGS_ON),
        "filings_on_as_of": await _list(registry, "/v1/filings", model_id=model_id, as_of=day),
        "ranked_models": [
            m for m in await _list(registry, "/v1/models", as_of=day) if m["national_filing_date"] is not None
        ],
    }


def _everything(seeded: dict[str, Any], day: str) -> dict[str, Any]:
    return {
        "credit_code": seeded["code"],
        "as_of": day,
        "revenues": True,
        "affiliations": True,
        "vendor_codes": seeded["vendors"],
        "recognitions": True,
        "recognition_ids": seeded["recognition_ids"],
        "model_id": seeded["model_id"],
        "filings_on": FILINGS_ON,
        "filings_on_as_of": True,
        "ranked_models": True,
    }


async def test_one_call_answers_what_the_separate_reads_answer_on_two_dates(registry: httpx.AsyncClient) -> None:
    seeded = await _history(registry)
    answers = []
    for day in DATES:
        facts = await _ok(await registry.post("/v1/facts", json=_everything(seeded, day), headers=SERVICE), 200)
        assert facts == await _separately(registry, seeded, day), day
        answers.append(facts)
    before, after = answers
    assert (len(before["affiliations"]), len(after["affiliations"])) == (1, 0)  # the two dates differ
    assert [f["status"] for f in before["filings_on_as_of"]] == ["filed"]
    assert [f["status"] for f in after["filings_on_as_of"]] == ["revoked"]
    late = seeded["vendors"][1]
    assert before["vendors"][late] is None
    assert after["vendors"][late] is not None


async def test_only_what_is_asked_is_read(registry: httpx.AsyncClient) -> None:
    seeded = await _history(registry)
    query = {"credit_code": seeded["code"], "as_of": DATES[1], "revenues": True}
    facts = await _ok(await registry.post("/v1/facts", json=query, headers=SERVICE), 200)
    assert facts["organisation"]["credit_code"] == seeded["code"]
    assert [r["year"] for r in facts["revenues"]] == [2023, 2024]
    not_asked = set(FactsRead.model_fields) - {"credit_code", "as_of", "organisation", "revenues"}
    assert {name for name, value in facts.items() if value is None} == not_asked


async def test_an_organisation_without_a_record_on_the_date_has_no_facts(registry: httpx.AsyncClient) -> None:
    seeded = await _history(registry)
    for code, day in ((seeded["code"], "2021-05-09"), (new_credit_code(), DATES[1])):
        facts = await _ok(
            await registry.post("/v1/facts", json=_everything({**seeded, "code": code}, day), headers=SERVICE), 200
        )
        assert facts["organisation"] is None
        assert all(value is None for name, value in facts.items() if name not in ("credit_code", "as_of")), facts


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"credit_code": "9144030071526726XA"}, "body.credit_code"),
        ({"as_of": None}, "body.as_of"),
        ({"vendor_codes": [new_credit_code() for _ in range(1001)]}, "body.vendor_codes"),
        ({"recognition_ids": [str(uuid.uuid4()) for _ in range(201)]}, "body.recognition_ids"),
        ({"recognition_ids": ["not-a-uuid"]}, "body.recognition_ids.0"),
        ({"known_at": "2025-01-01T00:00:00Z"}, "body.known_at"),
    ],
)
async def test_a_wrong_question_is_422(registry: httpx.AsyncClient, change: dict[str, Any], location: str) -> None:
    query = {"credit_code": new_credit_code(), "as_of": DATES[0], **change}
    response = await registry.post("/v1/facts", json=query, headers=SERVICE)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_failed"
    assert location in [error["field"] for error in body["errors"]], body


async def test_the_bureau_reads_records_one_by_one_not_here(registry: httpx.AsyncClient) -> None:
    query = {"credit_code": new_credit_code(), "as_of": DATES[0]}
    response = await registry.post("/v1/facts", json=query, headers=auth(OFFICER, name="alice"))
    assert (response.status_code, response.json()["code"]) == (403, "forbidden")


# --- POST /v1/facts/batch: several questions in one call (issue #16) ------------------------------------------------


async def test_a_batch_answers_each_question_as_it_is_answered_alone(registry: httpx.AsyncClient) -> None:
    seeded = await _history(registry)
    other = await _history(registry)
    queries = [
        _everything(seeded, DATES[0]),
        {"credit_code": other["code"], "as_of": DATES[1], "revenues": True},
        _everything(other, DATES[1]),
        {"credit_code": new_credit_code(), "as_of": DATES[1], "revenues": True},  # no record: no facts
        _everything(seeded, DATES[1]),
        {"credit_code": seeded["code"], "as_of": DATES[0]},
    ]
    batch = await _ok(await registry.post("/v1/facts/batch", json={"queries": queries}, headers=SERVICE), 200)
    alone = [await _ok(await registry.post("/v1/facts", json=q, headers=SERVICE), 200) for q in queries]
    assert batch["facts"] == alone  # in the order asked, each exactly its own answer
    assert [f["credit_code"] for f in batch["facts"]] == [q["credit_code"] for q in queries]
    assert batch["facts"][0]["affiliations"] != batch["facts"][4]["affiliations"]  # each on its own date
    assert batch["facts"][3]["organisation"] is None
    # the same mix of questions in another order: the same answers, in that order
    again = await _ok(await registry.post("/v1/facts/batch", json={"queries": queries[::-1]}, headers=SERVICE), 200)
    assert again["facts"] == alone[::-1]


GOOD = {"credit_code": "91440300MA5FXXXX1X", "as_of": DATES[0]}


@pytest.mark.parametrize(
    ("queries", "location"),
    [
        ([], "body.queries"),
        ([GOOD, {"credit_code": "9144030071526726XA", "as_of": DATES[0]}], "body.queries.1.credit_code"),
        ([GOOD, {**GOOD, "as_of": None}], "body.queries.1.as_of"),
        ([GOOD] * 65, "body.queries"),
    ],
)
async def test_a_batch_with_a_wrong_question_is_422_and_names_it(
    registry: httpx.AsyncClient, queries: list[dict[str, Any]], location: str
) -> None:
    response = await registry.post("/v1/facts/batch", json={"queries": queries}, headers=SERVICE)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert location in [error["field"] for error in problem["errors"]], problem


async def test_the_bureau_reads_no_batch_of_facts(registry: httpx.AsyncClient) -> None:
    body = {"queries": [{"credit_code": new_credit_code(), "as_of": DATES[0]}]}
    response = await registry.post("/v1/facts/batch", json=body, headers=auth(OFFICER, name="alice"))
    assert (response.status_code, response.json()["code"]) == (403, "forbidden")
