"""Policy as data: the parameter file's checks, coverage, the policy API, future versions, what-if."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from sqlalchemy import text

from services.eligibility.app import create_app
from services.eligibility.parameters import (
    DEFAULT_FILE,
    SPECS,
    ParameterFileError,
    coverage_gaps,
    load_parameter_file,
    parse_parameter_document,
    parse_value,
)
from services.eligibility.settings import EligibilitySettings
from shared.auth import ADMIN, APPROVER, OFFICER
from shared.db import get_session
from tests.auth import auth
from tests.conftest import DatabaseFactory
from tests.eligibility import seed
from tests.eligibility.actors import client_id
from tests.eligibility.conftest import eligibility_on
from tests.vouchers.flow import late_application

YUAN = 100


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))
    return loaded


def test_every_parameter_covers_the_whole_validity_window() -> None:
    parameters = load_parameter_file()
    assert (parameters.validity_start, parameters.validity_end) == (date(2024, 10, 1), date(2027, 9, 30))
    assert coverage_gaps(parameters) == []
    assert set(parameters.parameters) == set(SPECS)
    for parameter in parameters.parameters.values():
        for value in parameter.history:
            assert value.status in {"given", "provisional", "interpretation"}
            assert value.source.strip()


@pytest.mark.parametrize(
    ("parameter_id", "table"),
    [
        ("M9.thresholds", [{"over_fen": 2_000_000_000, "award_fen": 20_000_000}]),
        ("M1.revenue_classes", [{"class": "small", "from_fen": 0, "to_fen": None, "cap_fen": 100_000_000}]),
    ],
)
def test_a_table_valued_parameter_takes_a_version(parameter_id: str, table: list[dict[str, Any]]) -> None:
    """A version is checked when parsed and again when added to the set: the check takes the tuple it returns."""
    raw = {"effective_from": date(2027, 1, 1), "value": table, "status": "provisional", "source": "细则"}
    version = parse_value("a new version", parameter_id, raw, origin="version:new")
    versioned = load_parameter_file().with_versions([(parameter_id, version)])
    assert versioned.parameters[parameter_id].history[-1].value == tuple(table)


def test_a_gap_in_coverage_is_found() -> None:
    parameters = load_parameter_file()
    ratio = parameters.parameters["M6.ratio"]
    shortened = replace(ratio, history=(replace(ratio.history[0], effective_to=date(2026, 12, 31)),))
    broken = replace(parameters, parameters={**parameters.parameters, "M6.ratio": shortened})
    assert coverage_gaps(broken) == ["M6.ratio on 2027-01-01"]


def _broken(document: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    copied = copy.deepcopy(document)
    change(copied)
    return copied


def _set(path: list[str | int], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _append_history(parameter: str, entry: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["parameters"][parameter]["history"].append(entry)

    return change


def _close_first(parameter: str, until: date) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["parameters"][parameter]["history"][0]["effective_to"] = until

    return change


def _both(*changes: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        for item in changes:
            item(doc)

    return change


RATIO_2026 = {"effective_from": date(2026, 1, 1), "value": "0.40", "status": "provisional", "source": "test"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set(["colour"], "red"), "unknown top-level keys ['colour']"),
        (_set(["parameters", "M6.ratio", "unit"], "x"), "M6.ratio: unknown keys ['unit']"),
        (_set(["parameters", "M6.ratio", "history", 0, "note"], "x"), "M6.ratio.history[0]: unknown keys ['note']"),
        (_set(["parameters", "M99.bonus"], {}), "unknown parameters ['M99.bonus']"),
        (
            _set(["parameters", "M6.cap_fen", "history", 0, "value"], -1),
            "M6.cap_fen.history[0].value: amounts and caps cannot be negative",
        ),
        (
            _set(["parameters", "M6.ratio", "history", 0, "value"], 0.5),
            "M6.ratio.history[0].value: write ratios as quoted decimals",
        ),
        (_set(["parameters", "M6.ratio", "history", 0, "value"], "1.5"), "a ratio must be between 0 and 1"),
        (_set(["parameters", "M6.ratio", "history", 0, "status"], "guess"), "M6.ratio.history[0].status"),
        (_set(["parameters", "M6.ratio", "history", 0, "source"], " "), "every value names its source"),
        (_append_history("M6.ratio", RATIO_2026), "M6.ratio.history[1]: overlaps the open-ended value before it"),
        (
            _both(_close_first("M6.ratio", date(2025, 6, 30)), _append_history("M6.ratio", RATIO_2026)),
            "M6.ratio.history[1]: gap between 2025-06-30 and 2026-01-01",
        ),
        (
            _both(_close_first("M6.ratio", date(2026, 6, 30)), _append_history("M6.ratio", RATIO_2026)),
            "M6.ratio.history[1]: overlaps the value before it",
        ),
        (
            _set(["parameters", "M1.tiers", "history", 0, "value", 1, "from_fen"], 100000001),
            "M1.tiers.history[0].value[1]: a gap",
        ),
        (
            _set(["parameters", "M1.revenue_classes", "history", 0, "value", 2, "from_fen"], 4000000000),
            "M1.revenue_classes.history[0].value[2]: an overlap",
        ),
        (
            _set(["parameters", "M1.tiers", "history", 0, "value", 2, "to_fen"], 900000000),
            "the last range must be open-ended",
        ),
        (
            _set(["parameters", "M9.thresholds", "history", 0, "value", 1, "over_fen"], 2000000000),
            "thresholds must strictly increase",
        ),
        (
            _set(["parameters", "M7.level_rewards_fen", "history", 0, "value", "regional"], 1),
            "unknown keys ['regional']",
        ),
    ],
)
def test_bad_files_are_refused_naming_file_and_key(
    document: dict[str, Any], change: Callable[[dict[str, Any]], None], message: str
) -> None:
    with pytest.raises(ParameterFileError) as caught:
        parse_parameter_document(_broken(document, change), "policy/parameters.yaml")
    assert str(caught.value).startswith("policy/parameters.yaml")
    assert message in str(caught.value)


def test_a_missing_parameter_is_refused(document: dict[str, Any]) -> None:
    broken = copy.deepcopy(document)
    del broken["parameters"]["M13.cap_fen"]
    with pytest.raises(ParameterFileError, match=r"missing parameters \['M13.cap_fen'\]"):
        parse_parameter_document(broken, "p.yaml")


def test_the_service_refuses_to_start_on_a_bad_file(
    tmp_path: Path, document: dict[str, Any], database_url: str
) -> None:
    bad = tmp_path / "parameters.yaml"
    bad.write_text(yaml.safe_dump(_broken(document, _set(["parameters", "M6.cap_fen", "history", 0, "value"], -5))))
    with pytest.raises(ParameterFileError, match=r"parameters.yaml: M6.cap_fen.history\[0\].value"):
        create_app(EligibilitySettings(database_url=database_url, policy_file=bad))


async def test_a_changed_provisional_parameter_changes_the_result_without_code(
    tmp_path: Path,
    document: dict[str, Any],
    databases: DatabaseFactory,
    live_registry_client: httpx.AsyncClient,
    service_auth_env: dict[str, str],
) -> None:
    """M1 tiers are provisional: a new file changes the compute voucher, nothing else changes."""
    # a database of its own: the apps commit, and the session's database is the rolled-back tests' (they count rows)
    database_url = databases.create("longgang_policy_file")
    # two enterprises in the same situation: one enterprise's second application would build on its first
    applicants = []
    for _ in range(2):
        applicant = await seed.organisation(live_registry_client)
        await seed.revenue(live_registry_client, applicant, 2025, 30_000_000 * YUAN)
        applicants.append(applicant)
    provider = await seed.vendor(live_registry_client, is_compute_vendor=True)
    evidence = {
        "measure": "M1",
        "fiscal_year": 2025,
        "purpose": "finance",
        "invoices": [
            {
                "invoice_number": "A1",
                "provider_credit_code": provider,
                "paid_on": "2025-05-01",
                "lines": [{"kind": "compute", "description": "GPU", "amount_fen": 1_000_000 * YUAN}],
            }
        ],
    }
    changed = _broken(document, _set(["parameters", "M1.tiers", "history", 0, "value", 0, "ratio"], "0.25"))
    alternative = tmp_path / "parameters.yaml"
    alternative.write_text(yaml.safe_dump(changed, allow_unicode=True))
    amounts = []
    for applicant, policy_file in zip(applicants, (DEFAULT_FILE, alternative), strict=True):
        registry_url = str(live_registry_client.base_url)
        async with eligibility_on(database_url, registry_url, service_auth_env, policy_file) as client:
            response = await client.post(
                "/v1/applications",
                json=late_application(applicant, evidence, "2026-03-01"),
            )
            assert response.status_code == 201, response.text
            decision = response.json()["decision"]
            amounts.append(decision["amount_fen"])
            [tier_read] = [p for step in decision["trace"] for p in step["parameters"] if p["id"] == "M1.tiers"]
            assert tier_read["status"] == "provisional"
            assert tier_read["value"][0]["ratio"] == ("0.30" if policy_file == DEFAULT_FILE else "0.25")
    assert amounts == [300_000 * YUAN, 250_000 * YUAN]


async def test_policy_document_lists_clauses_rules_and_parameters(eligibility: httpx.AsyncClient) -> None:
    policy = (await eligibility.get("/v1/policy")).json()
    assert policy["validity_window"] == ["2024-10-01", "2027-09-30"]
    clauses = {clause["id"]: clause for clause in policy["clauses"]}
    assert {f"M{n}" for n in range(1, 14)} <= set(clauses)
    assert clauses["M11"]["rule_module"] == "services.eligibility.rules.m11_rent"
    assert "M11.rent_ratio" in clauses["M11"]["parameters"]
    assert len(policy["parameters"]) == len(SPECS)
    # the award register's vocabulary: every paying measure names what it pays for, with the clause
    kinds = {kind["kind"]: kind for kind in policy["claim_kinds"]}
    assert {kind["clause"] for kind in kinds.values()} == {f"M{n}" for n in range(1, 14)}
    assert kinds["M1.invoice"]["parts"] == ["enterprise", "benefit_year", "provider", "invoice_number"]
    assert "上年度" in kinds["M1.invoice"]["once_only"]["zh"]
    caps = {cap["kind"]: cap for cap in policy["cap_kinds"]}
    assert caps["M5.annual"]["parameter"] == "M5.annual_cap_fen"
    assert set(caps) == {
        "M1.class_cap",
        "M1.major_project_extra",
        "M5.annual",
        "M7.annual",
        "M10.first_sale",
        "M10.city_matching",
    }
    ratio = (await eligibility.get("/v1/policy/parameters/M3.contract_ratio")).json()
    assert ratio["clause"] == "M3"
    assert ratio["history"] == [
        {
            "effective_from": "2024-01-01",
            "effective_to": None,
            "value": "0.30",
            "status": "given",
            "source": ratio["history"][0]["source"],
            "origin": "file",
        }
    ]
    assert "30%" in ratio["history"][0]["source"]
    missing = await eligibility.get("/v1/policy/parameters/M3.nothing")
    assert (missing.status_code, missing.json()["code"]) == (404, "parameter_not_found")


async def _latest_version_row(app: FastAPI) -> dict[str, Any]:
    """The newest stored parameter version, read inside the rollback client's transaction."""
    sessions = app.dependency_overrides[get_session]()
    session = await anext(sessions)
    try:
        query = "SELECT created_by, client_id, request_id FROM eligibility.parameter_versions ORDER BY id DESC LIMIT 1"
        return dict((await session.execute(text(query))).mappings().one())
    finally:
        await sessions.aclose()


async def test_a_future_version_is_audited_and_changes_only_later_decisions(
    eligibility: httpx.AsyncClient,
    eligibility_app: FastAPI,
    live_registry_client: httpx.AsyncClient,
    clock: Callable[[date], None],
) -> None:
    applicant, evidence = await seed.m6_applicant(live_registry_client, 1_000_000 * YUAN)
    clock(date(2026, 11, 27))
    before = (
        await eligibility.post(
            "/v1/applications",
            json=late_application(applicant, evidence, "2026-11-01"),
        )
    ).json()
    assert before["decision"]["amount_fen"] == 500_000 * YUAN

    version = {
        "effective_from": "2027-01-01",
        "value": "0.40",
        "status": "provisional",
        "source": "实施细则（征求意见稿）",
        "reason": "财政预算调整",
    }
    named = await eligibility.post("/v1/policy/parameters/M6.ratio/versions", json={**version, "created_by": "zhang"})
    assert named.status_code == 422, "who loads a version comes from the token, never from the body"
    for role in (OFFICER, APPROVER):
        refused = await eligibility.post("/v1/policy/parameters/M6.ratio/versions", json=version, headers=auth(role))
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    past = await eligibility.post(
        "/v1/policy/parameters/M6.ratio/versions", json={**version, "effective_from": "2026-11-27"}
    )
    assert (past.status_code, past.json()["code"]) == (422, "parameter_effective_date_not_future")
    invalid = await eligibility.post("/v1/policy/parameters/M6.ratio/versions", json={**version, "value": "7"})
    assert (invalid.status_code, invalid.json()["code"]) == (422, "parameter_invalid")
    unknown = await eligibility.post("/v1/policy/parameters/M6.nothing/versions", json=version)
    assert unknown.status_code == 404

    zhang = auth(ADMIN, name="admin-zhang")
    added = await eligibility.post("/v1/policy/parameters/M6.ratio/versions", json=version, headers=zhang)
    assert added.status_code == 201, added.text
    stored = await _latest_version_row(eligibility_app)
    assert stored == {
        "created_by": "admin-zhang",
        "client_id": client_id(zhang),
        "request_id": added.headers["x-request-id"],
    }
    history = added.json()["history"]
    assert [(h["effective_from"], h["effective_to"], h["value"]) for h in history] == [
        ("2024-01-01", "2026-12-31", "0.50"),
        ("2027-01-01", None, "0.40"),
    ]
    assert history[1]["origin"].startswith("version:")

    clock(date(2027, 2, 1))
    after = (
        await eligibility.post(
            "/v1/applications",
            json=late_application(applicant, {**evidence, "diagnosis_reference": "诊断-2027"}, "2027-02-01"),
        )
    ).json()
    assert after["decision"]["amount_fen"] == 400_000 * YUAN, after["decision"]["failures"]
    unchanged = (await eligibility.get(f"/v1/decisions/{before['decision']['id']}")).json()
    assert unchanged["amount_fen"] == 500_000 * YUAN
    assert unchanged["parameters_digest"] != after["decision"]["parameters_digest"]


async def test_what_if_reports_differences_and_stores_nothing(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    """M5 (not M6, whose conditions issue #13 adds): three enterprises' purchases, at 25% instead of 30%."""
    ids = []
    for spend in (600_000, 1_500_000, 200_000):
        applicant = await seed.organisation(live_registry_client, four_above_category="above_scale_industrial")
        supplier = await seed.organisation(live_registry_client)
        product = await seed.recognition(
            live_registry_client, supplier, "2025-01-05", kind="digital_product", product="AI 排产"
        )
        purchase = {"product_recognition_id": product, "amount_fen": spend * YUAN, "paid_on": "2025-04-15"}
        response = await eligibility.post(
            "/v1/applications",
            json=late_application(applicant, {"measure": "M5", "year": 2025, "purchases": [purchase]}, "2026-03-01"),
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    decisions_before = [(await eligibility.get(f"/v1/applications/{i}")).json()["decision"] for i in ids]

    result = await eligibility.post("/v1/simulations", json={"application_ids": ids, "overrides": {"M5.ratio": "0.25"}})
    assert result.status_code == 200, result.text
    report = result.json()
    assert report["count"] == 3
    rows = {row["application_id"]: row for row in report["applications"]}
    # 600,000: 180,000 becomes 150,000; 1,500,000 stays capped at 300,000 (375,000); 200,000: 60,000 → 50,000
    assert [rows[i]["before_fen"] for i in ids] == [180_000 * YUAN, 300_000 * YUAN, 60_000 * YUAN]
    assert [rows[i]["after_fen"] for i in ids] == [150_000 * YUAN, 300_000 * YUAN, 50_000 * YUAN]
    assert [rows[i]["difference_fen"] for i in ids] == [-30_000 * YUAN, 0, -10_000 * YUAN]
    assert report["total_difference_fen"] == -40_000 * YUAN
    assert report["changed"] == 2
    decisions_after = [(await eligibility.get(f"/v1/applications/{i}")).json()["decision"] for i in ids]
    assert decisions_after == decisions_before

    by_measure = await eligibility.post(
        "/v1/simulations", json={"measure": "M5", "year": 2025, "overrides": {"M5.annual_cap_fen": 0}}
    )
    assert by_measure.json()["count"] >= 3
    assert by_measure.json()["total_after_fen"] == 0
    bad = await eligibility.post("/v1/simulations", json={"overrides": {}})
    assert bad.json()["code"] == "simulation_scope"
    bad_value = await eligibility.post("/v1/simulations", json={"application_ids": ids, "overrides": {"M5.ratio": 2}})
    assert bad_value.json()["code"] == "parameter_invalid"


async def test_date_parameters_are_versioned_and_simulated_through_the_api(
    eligibility: httpx.AsyncClient, clock: Callable[[date], None]
) -> None:
    """JSON has no dates: "YYYY-MM-DD" loads the real start date of the measures (A4) or M11's registration date."""
    clock(date(2026, 11, 27))
    version = {
        "effective_from": "2027-01-01",
        "value": "2021-01-01",
        "status": "given",
        "source": "实施细则（测试）",
        "reason": "载入实施细则的注册日期",
    }
    created = await eligibility.post("/v1/policy/parameters/M11.registered_on_or_after/versions", json=version)
    assert created.status_code == 201, created.text
    history = (await eligibility.get("/v1/policy/parameters/M11.registered_on_or_after")).json()["history"]
    assert [v["value"] for v in history] == ["2020-01-01", "2021-01-01"]
    for bad in ("2027-02-30", "next year", "2027-01-01T00:00:00"):
        refused = await eligibility.post("/v1/policy/parameters/A4.start_date/versions", json={**version, "value": bad})
        assert (refused.status_code, refused.json()["code"]) == (422, "parameter_invalid"), bad
    simulated = await eligibility.post(
        "/v1/simulations", json={"measure": "M6", "year": 2026, "overrides": {"A4.start_date": "2024-07-01"}}
    )
    assert simulated.status_code == 200, simulated.text
