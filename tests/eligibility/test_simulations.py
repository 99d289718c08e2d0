"""What if, as a bureau would take it to a meeting (issue #13): `POST /v1/simulations` and its CSV export.

Status scoping (a rejected or ineligible application is never money), before = what was
approved (an A1 decision's amount included), after = the new rules with each enterprise's
year recomputed in order (the second application gets only what the first left of the cap),
totals per measure and per clause, one application's trace on request, and the CSV export
parsed back. Through the HTTP API, on real PostgreSQL; approvals reserve in a live vouchers
service.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import httpx

from services.eligibility.simulation import CSV_COLUMNS
from shared.exports.query import FORMULA_STARTS
from tests.eligibility import seed
from tests.eligibility.actors import DIRECTOR, LI
from tests.eligibility.test_award_register import award, m4, m5, review, submit
from tests.eligibility.test_examples import invoice, m1

YUAN = 100
#: M5 at 40% instead of 30% (cap 300,000 a year unchanged), M4 at 200,000 instead of 300,000
NEW_RULES = {"M5.ratio": "0.40", "M4.award_fen": 200_000 * YUAN}


async def simulate(eligibility: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await eligibility.post("/v1/simulations", json={"overrides": NEW_RULES, **body})
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["application_id"]: row for row in report["applications"]}


async def m5_application(
    eligibility: httpx.AsyncClient, registry: httpx.AsyncClient, spend_yuan: int, **organisation: Any
) -> dict[str, Any]:
    applicant, evidence = await m5(spend_yuan)(registry)
    if organisation:  # another enterprise buying the same library product, with other registry facts
        other = await seed.organisation(registry, **organisation)
        applicant = other
    return await submit(eligibility, applicant, evidence)


async def reject(eligibility: httpx.AsyncClient, application: dict[str, Any]) -> None:
    await review(eligibility, application)
    rejected = await eligibility.post(
        f"/v1/applications/{application['id']}/approvals", json={"verdict": "reject", "reason": "材料不实"}, headers=LI
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"


async def test_status_scopes_and_rejected_or_ineligible_applications_are_never_money(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    approved = await m5_application(eligibility, live_registry_client, 600_000)  # 180,000
    await award(eligibility, approved)
    pending = await m5_application(eligibility, live_registry_client, 500_000)  # 150,000, in review
    rejected = await m5_application(eligibility, live_registry_client, 400_000)  # 120,000, then rejected
    await reject(eligibility, rejected)
    ineligible = await m5_application(eligibility, live_registry_client, 300_000, four_above_category=None)
    assert ineligible["status"] == "ineligible", ineligible["decision"]
    ids = [approved["id"], pending["id"], rejected["id"], ineligible["id"]]

    only_approved = await simulate(eligibility, application_ids=ids, status="approved")
    assert [r["application_id"] for r in only_approved["applications"]] == [approved["id"]]
    [row] = only_approved["applications"]
    assert (row["before_source"], row["before_fen"], row["after_fen"]) == ("approved", 180_000 * YUAN, 240_000 * YUAN)

    only_pending = await simulate(eligibility, application_ids=ids, status="pending")
    [row] = only_pending["applications"]
    assert row["application_id"] == pending["id"]
    assert (row["before_source"], row["before_fen"], row["after_fen"]) == ("automatic", 150_000 * YUAN, 200_000 * YUAN)

    everything = await simulate(eligibility, application_ids=ids, status="all")
    by_id = rows(everything)
    assert set(by_id) == set(ids)
    assert everything["count"] == 4
    for listed, status in ((rejected, "rejected"), (ineligible, "ineligible")):
        row = by_id[listed["id"]]
        assert (row["status"], row["counted"], row["before_source"]) == (status, False, "not_money")
        assert (row["before_fen"], row["after_fen"], row["difference_fen"]) == (0, 0, 0)
    # the rejected one would still be eligible under the new rules: shown, never added up
    assert by_id[rejected["id"]]["after_outcome"] == "eligible"
    assert (everything["total_before_fen"], everything["total_after_fen"]) == (330_000 * YUAN, 440_000 * YUAN)
    assert everything["total_difference_fen"] == 110_000 * YUAN
    assert everything["changed"] == 2
    assert everything["status"] == "all"
    assert "order received" in everything["order"]

    refused = await eligibility.post(
        "/v1/simulations", json={"application_ids": ids, "status": "rejected", "overrides": {}}
    )
    assert (refused.status_code, refused.json()["errors"][0]["field"]) == (422, "body.status")


async def test_an_a1_decision_is_the_before_and_its_part_above_the_formula_is_clause_a1(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    decided = await m5_application(eligibility, live_registry_client, 600_000)  # formula: 180,000
    a1 = await eligibility.post(
        f"/v1/applications/{decided['id']}/manual-decisions",
        json={"amount_fen": 250_000 * YUAN, "reason": "一事一议：产线改造规模特别重大"},
        headers=DIRECTOR,
    )
    assert a1.status_code == 200, a1.text

    report = await simulate(eligibility, application_ids=[decided["id"]], status="approved")
    [row] = report["applications"]
    assert (row["before_source"], row["before_fen"], row["before_a1_fen"]) == (
        "approved_a1",
        250_000 * YUAN,
        70_000 * YUAN,
    )
    assert (row["after_outcome"], row["after_fen"], row["difference_fen"]) == (
        "eligible",
        240_000 * YUAN,
        -10_000 * YUAN,
    )
    clauses = {total["clause"]: total for total in report["by_clause"]}
    assert (clauses["M5"]["before_fen"], clauses["M5"]["after_fen"]) == (180_000 * YUAN, 240_000 * YUAN)
    assert (clauses["A1"]["before_fen"], clauses["A1"]["after_fen"]) == (70_000 * YUAN, 0)
    [measure] = report["by_measure"]
    assert (measure["measure"], measure["budget_impact_fen"]) == ("M5", -10_000 * YUAN)


async def test_annual_caps_are_recomputed_across_the_enterprises_year_in_application_order(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    """M5, 300,000 a year: at 40%, 600,000 earns 240,000; the second purchase gets only the 60,000 left.

    Each application's stored facts say the first got 180,000 (30%): without recomputing the
    year the second would get 120,000 and the year 360,000, past the cap.
    """
    applicant, evidence = await m5(600_000, 500_000)(live_registry_client)
    [a, b] = evidence["purchases"]
    first = await submit(eligibility, applicant, {**evidence, "purchases": [a]}, as_of="2026-03-01")
    await award(eligibility, first)
    second = await submit(eligibility, applicant, {**evidence, "purchases": [b]}, as_of="2026-03-02")
    assert (first["decision"]["amount_fen"], second["decision"]["amount_fen"]) == (180_000 * YUAN, 120_000 * YUAN)

    report = await simulate(eligibility, application_ids=[first["id"], second["id"]])
    by_id = rows(report)
    assert by_id[first["id"]]["after_fen"] == 240_000 * YUAN
    assert by_id[second["id"]]["after_fen"] == 60_000 * YUAN
    assert by_id[second["id"]]["earlier_in_year"] == [first["id"]]
    assert report["total_after_fen"] == 300_000 * YUAN  # the year's cap, not 360,000

    # the first counts even when only the second is simulated (standing, outside the scope)
    alone = await simulate(eligibility, application_ids=[second["id"]], include_trace=True)
    [row] = alone["applications"]
    assert (row["after_fen"], row["earlier_in_year"]) == (60_000 * YUAN, [first["id"]])
    steps = alone["trace"]["trace"]
    assert steps[0]["inputs"]["earlier_awards"][0]["amount_fen"] == 240_000 * YUAN
    cap_step = next(s for s in steps if "already_awarded_fen" in s["amounts"])
    assert cap_step["amounts"]["already_awarded_fen"] == 240_000 * YUAN
    assert cap_step["amounts"]["after_cap_fen"] == 60_000 * YUAN

    # a lower cap: the first takes all of it, the second is left nothing
    lower = await eligibility.post(
        "/v1/simulations",
        json={
            "application_ids": [first["id"], second["id"]],
            "overrides": {"M5.ratio": "0.40", "M5.annual_cap_fen": 200_000 * YUAN},
        },
    )
    by_id = rows(lower.json())
    assert by_id[first["id"]]["after_fen"] == 200_000 * YUAN
    assert (by_id[second["id"]]["after_outcome"], by_id[second["id"]]["after_fen"]) == ("ineligible", 0)
    assert by_id[second["id"]]["difference_fen"] == -120_000 * YUAN


async def test_totals_per_measure_and_per_clause(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    purchase = await m5_application(eligibility, live_registry_client, 500_000)  # 150,000 → 200,000
    applicant, evidence = await m4(live_registry_client)
    project = await submit(eligibility, applicant, evidence)  # 300,000 → 200,000
    assert project["decision"]["amount_fen"] == 300_000 * YUAN, project["decision"]
    await award(eligibility, project)

    report = await simulate(eligibility, application_ids=[purchase["id"], project["id"]])
    measures = {m["measure"]: m for m in report["by_measure"]}
    assert [m["measure"] for m in report["by_measure"]] == ["M4", "M5"]
    assert (measures["M4"]["before_fen"], measures["M4"]["after_fen"]) == (300_000 * YUAN, 200_000 * YUAN)
    assert measures["M4"]["budget_impact_fen"] == -100_000 * YUAN
    assert (measures["M5"]["before_fen"], measures["M5"]["after_fen"]) == (150_000 * YUAN, 200_000 * YUAN)
    assert measures["M5"]["difference_fen"] == 50_000 * YUAN
    assert {c["clause"]: c["difference_fen"] for c in report["by_clause"]} == {
        "M4": -100_000 * YUAN,
        "M5": 50_000 * YUAN,
    }
    assert report["total_difference_fen"] == sum(m["difference_fen"] for m in report["by_measure"])


async def test_the_trace_of_one_application_on_request(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    one = await m5_application(eligibility, live_registry_client, 600_000)
    two = await m5_application(eligibility, live_registry_client, 100_000)

    plain = await simulate(eligibility, application_ids=[one["id"], two["id"]])
    assert plain["trace"] is None
    traced = await simulate(eligibility, application_ids=[one["id"], two["id"]], trace_of=two["id"])
    trace = traced["trace"]
    assert (trace["application_id"], trace["outcome"], trace["amount_fen"]) == (two["id"], "eligible", 40_000 * YUAN)
    ratio = [p for step in trace["trace"] for p in step["parameters"] if p["id"] == "M5.ratio"]
    assert [(p["value"], p["origin"]) for p in ratio][:1] == [("0.40", "simulation")]
    assert {step["clause"] for step in trace["trace"]} >= {"A4", "M5", "register"}

    for body in (
        {"application_ids": [one["id"]], "trace_of": two["id"]},  # not in the scope
        {"application_ids": [one["id"], two["id"]], "include_trace": True},  # which one?
        {"measure": "M5", "year": 2025, "include_trace": True},
    ):
        refused = await eligibility.post("/v1/simulations", json={"overrides": {}, **body})
        assert (refused.status_code, refused.json()["code"]) == (422, "simulation_trace_scope"), body


async def test_the_per_application_table_exports_as_csv(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    approved = await m5_application(eligibility, live_registry_client, 600_000)
    await award(eligibility, approved)
    rejected = await m5_application(eligibility, live_registry_client, 400_000)
    await reject(eligibility, rejected)
    ids = [approved["id"], rejected["id"]]
    report = await simulate(eligibility, application_ids=ids)

    posted = await eligibility.post("/v1/simulations/export", json={"application_ids": ids, "overrides": NEW_RULES})
    assert posted.status_code == 200, posted.text
    assert posted.headers["content-type"].startswith("text/csv; charset=utf-8")
    parsed = list(csv.reader(io.StringIO(posted.content.decode("utf-8"))))
    assert parsed[0] == list(CSV_COLUMNS)
    table = {line[0]: dict(zip(parsed[0], line, strict=True)) for line in parsed[1:]}
    assert set(table) == set(ids)
    assert len(parsed) == 3
    for application_id, row in rows(report).items():
        line = table[application_id]
        assert int(line["before_fen"]) == row["before_fen"]
        assert int(line["after_fen"]) == row["after_fen"]
        assert int(line["difference_fen"]) == row["difference_fen"]
        assert (line["status"], line["counted"]) == (row["status"], "true" if row["counted"] else "false")
    assert table[approved["id"]]["difference_fen"] == str(60_000 * YUAN)
    assert table[rejected["id"]]["before_source"] == "not_money"
    for cells in parsed[1:]:
        text_cells = [cell for name, cell in zip(parsed[0], cells, strict=True) if not name.endswith("_fen")]
        assert not any(cell.startswith(FORMULA_STARTS) for cell in text_cells)

    linked = await eligibility.get(
        "/v1/simulations/export",
        params={"application_id": ids, "status": "approved", "overrides": '{"M5.ratio": "0.40"}'},
    )
    assert linked.status_code == 200, linked.text
    [header, only] = list(csv.reader(io.StringIO(linked.text)))
    assert header == list(CSV_COLUMNS)
    assert (only[0], only[header.index("after_fen")]) == (approved["id"], str(240_000 * YUAN))

    for overrides in ("[1]", "{", '{"M5.ratio": 2}', '{"no.such": 1}', "[" * 5000 + "]" * 5000):
        refused = await eligibility.get(
            "/v1/simulations/export", params={"application_id": ids, "overrides": overrides}
        )
        assert refused.status_code in (404, 422), refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
    unscoped = await eligibility.get("/v1/simulations/export")
    assert unscoped.json()["code"] == "simulation_scope"


async def test_a_simulation_scoped_by_year_is_refused_nothing_and_stores_nothing(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    pending = await m5_application(eligibility, live_registry_client, 200_000)
    before = (await eligibility.get(f"/v1/applications/{pending['id']}")).json()
    report = await simulate(eligibility, measure="M5", year=2025, status="pending")
    assert pending["id"] in rows(report)
    assert all(row["status"] in ("in_review", "reviewed") for row in report["applications"])
    assert (await eligibility.get(f"/v1/applications/{pending['id']}")).json() == before


# --- the worked example of docs/simulations.md ---------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "simulations.md"


def yuan(fen: int) -> str:
    return f"{fen / YUAN:,.2f}"


def tables(report: dict[str, Any], labels: dict[str, str]) -> list[str]:
    """The report's tables in Markdown, as docs/simulations.md shows them (enterprises by label)."""
    lines = [
        "| measure | applications | before (yuan) | after (yuan) | budget impact (yuan) |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in report["by_measure"]:
        lines.append(
            f"| {m['measure']} | {m['count']} | {yuan(m['before_fen'])} | {yuan(m['after_fen'])} | "
            f"{yuan(m['budget_impact_fen'])} |"
        )
    lines.append(
        f"| **total** | {sum(m['count'] for m in report['by_measure'])} | {yuan(report['total_before_fen'])} | "
        f"{yuan(report['total_after_fen'])} | {yuan(report['total_difference_fen'])} |"
    )
    lines += ["", "| clause | before (yuan) | after (yuan) | difference (yuan) |", "|---|---:|---:|---:|"]
    for c in report["by_clause"]:
        lines.append(
            f"| {c['clause']} | {yuan(c['before_fen'])} | {yuan(c['after_fen'])} | {yuan(c['difference_fen'])} |"
        )
    lines += [
        "",
        "| application | status | before (source) | after (outcome) | difference | earlier in the year |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in report["applications"]:
        earlier = ", ".join(labels[i] for i in row["earlier_in_year"]) or "—"
        lines.append(
            f"| {labels[row['application_id']]} | {row['status']} | {yuan(row['before_fen'])} ({row['before_source']}) "
            f"| {yuan(row['after_fen'])} ({row['after_outcome']}) | {yuan(row['difference_fen'])} | {earlier} |"
        )
    return lines


async def test_the_worked_example_of_docs_simulations_md(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    """The example the docs walk through, run for real: the docs' tables are this report (also in test-artifacts/)."""
    registry = live_registry_client
    a_applicant, a_evidence = await m5(600_000, 500_000)(registry)
    [a1_purchase, a2_purchase] = a_evidence["purchases"]
    a_first = await submit(eligibility, a_applicant, {**a_evidence, "purchases": [a1_purchase]}, as_of="2026-03-01")
    await award(eligibility, a_first)
    a_second = await submit(eligibility, a_applicant, {**a_evidence, "purchases": [a2_purchase]}, as_of="2026-03-02")
    b = await m5_application(eligibility, registry, 600_000)
    decided = await eligibility.post(
        f"/v1/applications/{b['id']}/manual-decisions",
        json={"amount_fen": 250_000 * YUAN, "reason": "一事一议：产线改造规模特别重大"},
        headers=DIRECTOR,
    )
    assert decided.status_code == 200, decided.text
    c = await m5_application(eligibility, registry, 400_000)
    await reject(eligibility, c)
    d_applicant, d_evidence = await m4(registry)
    d = await submit(eligibility, d_applicant, d_evidence)
    await award(eligibility, d)
    labels = {a_first["id"]: "A-1", a_second["id"]: "A-2", b["id"]: "B", c["id"]: "C", d["id"]: "D"}

    report = await simulate(eligibility, application_ids=list(labels), status="all")
    rendered = tables(report, labels)
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "simulation-example.md").write_text("\n".join(rendered) + "\n", encoding="utf-8")

    assert (report["total_before_fen"], report["total_after_fen"]) == (850_000 * YUAN, 740_000 * YUAN)
    assert {m["measure"]: m["budget_impact_fen"] for m in report["by_measure"]} == {
        "M4": -100_000 * YUAN,
        "M5": -10_000 * YUAN,
    }
    assert {c["clause"]: c["difference_fen"] for c in report["by_clause"]} == {
        "M4": -100_000 * YUAN,
        "M5": 60_000 * YUAN,
        "A1": -70_000 * YUAN,
    }
    # what the page says of A-2's trace, and of the same request on approved applications only
    traced = await simulate(eligibility, application_ids=list(labels), trace_of=a_second["id"])
    year_step = next(step for step in traced["trace"]["trace"] if "year_spend_fen" in step["amounts"])
    assert year_step["amounts"] == {
        "spend_fen": 500_000 * YUAN,
        "earlier_spend_fen": 600_000 * YUAN,
        "year_spend_fen": 1_100_000 * YUAN,
        "before_cap_fen": 440_000 * YUAN,
    }
    approved_only = await simulate(eligibility, application_ids=list(labels), status="approved")
    assert {labels[row["application_id"]] for row in approved_only["applications"]} == {"A-1", "B", "D"}
    assert approved_only["total_before_fen"] == 730_000 * YUAN
    assert rows(approved_only)[a_first["id"]] == rows(report)[a_first["id"]]

    documented = DOC.read_text(encoding="utf-8")
    missing = [line for line in rendered if line and line not in documented]
    assert not missing, "docs/simulations.md is out of date; see test-artifacts/simulation-example.md"


async def test_m1_class_cap_is_recomputed_across_the_fiscal_year(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    """M1, tiers on the year's base and the class cap on the year: 35% on the first tier, C4 capped at 400,000.

    Fees of 1,000,000 and 1,000,000 in two applications of one fiscal year (revenue class C4):
    today 300,000 + 250,000. Under the new rules the first earns 350,000 and the year
    600,000, capped at 400,000: the second gets the 50,000 left (stored facts alone would give
    it 100,000, and the year 450,000).
    """
    registry = live_registry_client
    applicant = await seed.organisation(registry)
    await seed.revenue(registry, applicant, 2025, 300_000_000 * YUAN)
    provider = await seed.vendor(registry, is_compute_vendor=True)
    first = await submit(eligibility, applicant, m1(invoice(provider, ("compute", 1_000_000), number="INV-1")))
    await award(eligibility, first)
    second = await submit(
        eligibility, applicant, m1(invoice(provider, ("compute", 1_000_000), number="INV-2")), as_of="2026-03-02"
    )
    assert (first["decision"]["amount_fen"], second["decision"]["amount_fen"]) == (300_000 * YUAN, 250_000 * YUAN)

    policy = (await eligibility.get("/v1/policy/parameters/M1.revenue_classes")).json()
    classes = [dict(row) for row in policy["history"][-1]["value"]]
    tiers = (await eligibility.get("/v1/policy/parameters/M1.tiers")).json()["history"][-1]["value"]
    for row in classes:
        if row["class"] == "C4":
            row["cap_fen"] = 400_000 * YUAN
    overrides = {"M1.revenue_classes": classes, "M1.tiers": [{**tiers[0], "ratio": "0.35"}, *tiers[1:]]}
    response = await eligibility.post(
        "/v1/simulations",
        json={"application_ids": [first["id"], second["id"]], "overrides": overrides, "trace_of": second["id"]},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    by_id = rows(report)
    assert by_id[first["id"]]["after_fen"] == 350_000 * YUAN
    assert by_id[second["id"]]["after_fen"] == 50_000 * YUAN
    assert report["total_after_fen"] == 400_000 * YUAN
    capped = next(s for s in report["trace"]["trace"] if "year_after_cap_fen" in s["amounts"])
    assert capped["amounts"]["year_after_cap_fen"] == 400_000 * YUAN
    assert capped["amounts"]["already_awarded_fen"] == 350_000 * YUAN


async def test_another_benefit_year_of_the_same_enterprise_has_its_own_cap(
    eligibility: httpx.AsyncClient, live_registry_client: httpx.AsyncClient
) -> None:
    """M5's cap is per year: purchases of 2025 and of 2026 are each capped on their own year."""
    applicant, evidence = await m5(900_000, 500_000)(live_registry_client)
    [a, b] = evidence["purchases"]
    last_year = await submit(eligibility, applicant, {**evidence, "purchases": [a]}, as_of="2026-03-01")
    await award(eligibility, last_year)
    this_year = await submit(
        eligibility,
        applicant,
        {**evidence, "year": 2026, "purchases": [{**b, "paid_on": "2026-02-10"}]},
        as_of="2026-03-02",
    )
    assert this_year["decision"]["amount_fen"] == 150_000 * YUAN, this_year["decision"]
    report = await simulate(eligibility, application_ids=[last_year["id"], this_year["id"]])
    by_id = rows(report)
    assert by_id[last_year["id"]]["after_fen"] == 300_000 * YUAN  # 360,000 capped
    assert (by_id[this_year["id"]]["after_fen"], by_id[this_year["id"]]["earlier_in_year"]) == (200_000 * YUAN, [])
