"""As-of reads: a filing revoked in June does not change what the registry said about March (M3)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from tests.factories import make_filing, make_organisation


async def test_filing_status_as_of_dates_across_a_revocation(registry: httpx.AsyncClient) -> None:
    filing = await make_filing(registry, filed_on="2024-03-01")
    number = filing["number"]
    assert filing["status"] == "filed"
    assert filing["valid_from"] == "2024-03-01"  # a filing takes effect on its filing date

    revoked = await registry.patch(f"/v1/filings/{number}", json={"status": "revoked", "effective_from": "2025-06-15"})
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert revoked.json()["version"] == 2

    march = await registry.get(f"/v1/filings/{number}", params={"as_of": "2025-03-10"})
    assert march.status_code == 200
    assert march.json()["status"] == "filed"
    assert march.json()["version"] == 1

    july = await registry.get(f"/v1/filings/{number}", params={"as_of": "2025-07-01"})
    assert july.json()["status"] == "revoked"
    day_of = await registry.get(f"/v1/filings/{number}", params={"as_of": "2025-06-15"})
    assert day_of.json()["status"] == "revoked"
    eve = await registry.get(f"/v1/filings/{number}", params={"as_of": "2025-06-14"})
    assert eve.json()["status"] == "filed"

    now = await registry.get(f"/v1/filings/{number}")
    assert now.json()["status"] == "revoked"

    before = await registry.get(f"/v1/filings/{number}", params={"as_of": "2024-02-29"})
    assert before.status_code == 404
    assert before.json()["code"] == "record_not_found_as_of"

    history = await registry.get(f"/v1/filings/{number}/history")
    assert [(v["version"], v["valid_from"], v["data"]["status"]) for v in history.json()] == [
        (1, "2024-03-01", "filed"),
        (2, "2025-06-15", "revoked"),
    ]


async def test_lists_as_of_a_date_filter_on_the_state_then(registry: httpx.AsyncClient) -> None:
    filing = await make_filing(registry, filed_on="2024-03-01")
    await registry.patch(f"/v1/filings/{filing['number']}", json={"status": "revoked", "effective_from": "2025-06-15"})
    model_id = filing["model_id"]

    filed_in_march = await registry.get(
        "/v1/filings", params={"model_id": model_id, "status": "filed", "as_of": "2025-03-10"}
    )
    assert [f["number"] for f in filed_in_march.json()["items"]] == [filing["number"]]
    filed_now = await registry.get("/v1/filings", params={"model_id": model_id, "status": "filed"})
    assert filed_now.json()["items"] == []
    revoked_now = await registry.get("/v1/filings", params={"model_id": model_id, "status": "revoked"})
    assert [f["number"] for f in revoked_now.json()["items"]] == [filing["number"]]


async def test_known_at_ignores_changes_recorded_later(registry: httpx.AsyncClient) -> None:
    filing = await make_filing(registry, filed_on="2024-03-01")
    history = (await registry.get(f"/v1/filings/{filing['number']}/history")).json()
    first_recorded = history[0]["recorded_at"]
    await registry.patch(f"/v1/filings/{filing['number']}", json={"status": "revoked", "effective_from": "2025-06-15"})
    as_said_then = await registry.get(
        f"/v1/filings/{filing['number']}", params={"as_of": "2025-07-01", "known_at": first_recorded}
    )
    assert as_said_then.status_code == 200
    assert as_said_then.json()["status"] == "filed"  # the revocation was not yet recorded then
    as_known_now = await registry.get(f"/v1/filings/{filing['number']}", params={"as_of": "2025-07-01"})
    assert as_known_now.json()["status"] == "revoked"
    long_ago = datetime(2020, 1, 1, tzinfo=UTC).isoformat()
    unknown = await registry.get(
        f"/v1/filings/{filing['number']}", params={"as_of": "2025-07-01", "known_at": long_ago}
    )
    assert unknown.status_code == 404


async def test_a_back_dated_change_does_not_replace_the_current_state(registry: httpx.AsyncClient) -> None:
    organisation = await make_organisation(registry, registered_on="2020-05-01", name="旧名称科技")
    code = organisation["credit_code"]
    renamed = await registry.patch(
        f"/v1/organisations/{code}", json={"name": "新名称科技", "effective_from": "2024-01-01"}
    )
    assert renamed.json()["name"] == "新名称科技"
    corrected = await registry.patch(
        f"/v1/organisations/{code}", json={"industry": "软件和信息技术服务业", "effective_from": "2022-01-01"}
    )
    assert corrected.status_code == 200
    assert corrected.json()["version"] == 3
    current = (await registry.get(f"/v1/organisations/{code}")).json()
    assert current["name"] == "新名称科技"
    assert current["industry"] is None  # the 2024 snapshot did not have it
    in_2023 = (await registry.get(f"/v1/organisations/{code}", params={"as_of": "2023-06-01"})).json()
    assert (in_2023["name"], in_2023["industry"]) == ("旧名称科技", "软件和信息技术服务业")


async def test_changes_cannot_take_effect_in_the_future_or_before_the_record(registry: httpx.AsyncClient) -> None:
    organisation = await make_organisation(registry, registered_on="2021-05-10")
    code = organisation["credit_code"]
    future = await registry.patch(f"/v1/organisations/{code}", json={"name": "未来", "effective_from": "2999-01-01"})
    assert future.status_code == 422
    assert future.json()["code"] == "effective_date_in_future"
    early = await registry.patch(f"/v1/organisations/{code}", json={"name": "过去", "effective_from": "2019-01-01"})
    assert early.status_code == 422
    assert early.json()["code"] == "effective_date_before_record"
    history = (await registry.get(f"/v1/organisations/{code}/history")).json()
    assert len(history) == 1


async def test_an_unchanged_patch_writes_no_version(registry: httpx.AsyncClient) -> None:
    organisation = await make_organisation(registry)
    code = organisation["credit_code"]
    same = await registry.patch(f"/v1/organisations/{code}", json={"name": organisation["name"]})
    assert same.status_code == 200
    assert len((await registry.get(f"/v1/organisations/{code}/history")).json()) == 1
