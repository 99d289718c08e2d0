"""Issue #13, small things: list filters refuse a malformed credit code with 422 (never an empty
list that looks like "none"), and renaming a model to a name its vendor already uses is 409."""

from __future__ import annotations

import httpx
import pytest

from tests.eligibility import seed

FILTERS = [
    "/v1/revenues?credit_code={code}",
    "/v1/affiliations?organisation={code}",
    "/v1/models?vendor_credit_code={code}",
    "/v1/recognitions?credit_code={code}",
]


@pytest.mark.parametrize("template", FILTERS)
async def test_a_credit_code_filter_in_lower_case_is_refused_not_answered_empty(
    template: str, registry: httpx.AsyncClient
) -> None:
    code = await seed.vendor(registry, is_model_vendor=True)
    await seed.revenue(registry, code, 2025, 1_000)
    await seed.model(registry, code)
    upper = await registry.get(template.format(code=code))
    assert upper.status_code == 200, upper.text
    lower = await registry.get(template.format(code=code.lower()))
    assert lower.status_code == 422, lower.text
    problem = lower.json()
    assert problem["code"] == "validation_failed"
    assert problem["errors"][0]["code"] == "invalid_credit_code"


async def test_renaming_a_model_to_a_name_its_vendor_uses_is_a_conflict_and_changes_nothing(
    registry: httpx.AsyncClient,
) -> None:
    vendor = await seed.vendor(registry, is_model_vendor=True)
    first = await seed.model(registry, vendor, name="龙岗大模型")
    second = await seed.model(registry, vendor, name="龙岗小模型")
    renamed = await registry.patch(f"/v1/models/{second}", json={"name": "龙岗大模型"})
    assert renamed.status_code == 409, renamed.text
    assert renamed.json()["code"] == "record_exists"
    kept = await registry.get(f"/v1/models/{second}")
    assert kept.json()["name"] == "龙岗小模型"
    assert (await registry.get(f"/v1/models/{first}")).json()["name"] == "龙岗大模型"
