"""Facts for eligibility tests, written to the live registry through its public API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories import new_credit_code, organisation_payload


async def _post(registry: httpx.AsyncClient, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = await registry.post(path, json=payload)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def organisation(registry: httpx.AsyncClient, *, ai_enterprise: bool = True, **overrides: Any) -> str:
    """An organisation registered in Longgang; by default also recognised as an AI enterprise from the same day.

    M1, M9 and M11 are for AI enterprises (the `ai_enterprise` recognition); `ai_enterprise=False` leaves it out.
    """
    payload = organisation_payload(**{"registered_on": "2021-01-04", **overrides})
    code = str((await _post(registry, "/v1/organisations", payload))["credit_code"])
    if ai_enterprise:
        await ai_enterprise_recognition(registry, code, payload["registered_on"] or "2021-01-04")
    return code


async def ai_enterprise_recognition(registry: httpx.AsyncClient, code: str, recognised_on: str) -> str:
    """M1, M9, M11: 人工智能企业认定 (the district's AI-enterprise list)."""
    return await recognition(
        registry,
        code,
        recognised_on,
        kind="ai_enterprise",
        list="龙岗区人工智能企业白名单",
        authority="龙岗区工业和信息化局",
    )


async def diagnosis(
    registry: httpx.AsyncClient, code: str, recognised_on: str = "2024-06-01", reference: str = "深工信诊断〔2024〕12号"
) -> str:
    """M6: the city's manufacturing digital-transformation diagnosis of the organisation."""
    return await recognition(
        registry,
        code,
        recognised_on,
        kind="digital_diagnosis",
        project="制造业数字化转型咨询诊断（人工智能方向）",
        reference=reference,
        authority="深圳市工业和信息化局",
    )


async def m6_evidence(
    registry: httpx.AsyncClient, code: str, audited_investment_fen: int, *, recognised_on: str = "2024-06-01"
) -> dict[str, Any]:
    """M6 evidence referencing a diagnosis of `code` recorded for it (the applicant must also be industrial)."""
    reference = f"深工信诊断〔2024〕{new_credit_code()[-6:]}号"
    diagnosis_id = await diagnosis(registry, code, recognised_on, reference)
    return {
        "measure": "M6",
        "diagnosis_reference": reference,
        "diagnosis_id": diagnosis_id,
        "audited_investment_fen": audited_investment_fen,
    }


async def revenue(registry: httpx.AsyncClient, code: str, year: int, revenue_fen: int) -> None:
    await _post(registry, "/v1/revenues", {"credit_code": code, "year": year, "revenue_fen": revenue_fen})


async def vendor(registry: httpx.AsyncClient, **flags: Any) -> str:
    code = await organisation(registry)
    await _post(registry, "/v1/vendors", {"credit_code": code, "effective_from": "2021-01-04", **flags})
    return code


async def affiliation(registry: httpx.AsyncClient, a: str, b: str) -> None:
    await _post(
        registry,
        "/v1/affiliations",
        {"credit_code_a": a, "credit_code_b": b, "relation": "control", "effective_from": "2022-01-01"},
    )


async def recognition(registry: httpx.AsyncClient, code: str, recognised_on: str, **details: Any) -> str:
    body = await _post(
        registry, "/v1/recognitions", {"credit_code": code, "recognised_on": recognised_on, "details": details}
    )
    return str(body["id"])


async def model(registry: httpx.AsyncClient, vendor_code: str, **fields: Any) -> str:
    payload = {
        "vendor_credit_code": vendor_code,
        "name": f"模型-{new_credit_code()[-6:]}",
        "effective_from": "2021-01-04",
        **fields,
    }
    return str((await _post(registry, "/v1/models", payload))["id"])


async def filing(registry: httpx.AsyncClient, model_id: str, filed_on: str, number: str | None = None) -> str:
    number = number or f"Guangdong-Test{new_credit_code()[-8:]}-{filed_on.replace('-', '')}0001"
    await _post(
        registry, "/v1/filings", {"number": number, "model_id": model_id, "kind": "filing", "filed_on": filed_on}
    )
    return number


async def m6_applicant(
    registry: httpx.AsyncClient, audited_investment_fen: int = 3_000_000 * 100, **overrides: Any
) -> tuple[str, dict[str, Any]]:
    """An industrial enterprise (above scale) with the city's diagnosis, and M6 evidence referencing it."""
    code = await organisation(registry, **{"four_above_category": "above_scale_industrial", **overrides})
    return code, await m6_evidence(registry, code, audited_investment_fen)


async def city_support(
    registry: httpx.AsyncClient, code: str, year: int, amount_fen: int, recognised_on: str | None = None
) -> str:
    """M10 city matching: the city's first-version software support (深圳市首版次软件扶持) of `year`."""
    return await recognition(
        registry,
        code,
        recognised_on or f"{year}-12-01",
        kind="city_first_version_support",
        project="深圳市首版次软件扶持项目",
        year=year,
        amount_fen=amount_fen,
        authority="深圳市工业和信息化局",
    )


async def event(
    registry: httpx.AsyncClient,
    organisers: list[str],
    held_on: str = "2025-11-20",
    *,
    name: str = "龙岗人工智能大会",
    influence: str = "international",
    district: str = "440307",
) -> str:
    """M13: the registry's record of a major AI event; the first organiser is the lead (the record's owner)."""
    return await recognition(
        registry,
        organisers[0],
        held_on,
        kind="major_event",
        name=name,
        event_type="conference",
        held_on=held_on,
        venue="龙岗国际会展中心",
        district=district,
        organisers=organisers,
        influence=influence,
    )
