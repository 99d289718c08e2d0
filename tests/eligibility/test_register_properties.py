"""Property (issue #11): whatever the sequence of applications, reviews, approvals, A1 decisions,
grants and reversals, no key is awarded twice (but by a named A1 override), no enterprise's year
passes a clause's cap, and the money committed never passes the programme's budget.

Hypothesis draws sequences of operations against real processes — registry, eligibility
and vouchers (each its own database, committed data; the vouchers process reads a small
budget file). Each example has its own enterprises and things to claim: demonstration
projects (M4, once each), events that two co-organisers may both claim (M13, once each)
and library purchases (M5, at most 300,000 yuan a year). Operations: submit an
application for a thing, review, approve, both (settle), an A1 decision of a drawn amount
(sometimes naming the keys it overrides), a grant of an approved decision, the reversal
of a grant; in any order, refusals included. After each example the outcome is checked
from what the API told (approved applications and their amounts, grants and reversals),
not from the tables that enforce it:

- per claim key: at most one approved award, plus one per A1 decision that named it;
- per enterprise and year: the approved M5 amounts add up to at most the cap;
- per measure and budget year: granted − reversed ≤ the budget, over all examples so far
  (the ledger is the world's: it carries over from one example to the next);
- per measure and budget year: approved − reversed ≤ the budget (A2: an approval reserves its
  amount in the vouchers process before it commits, a grant consumes the reservation; the
  eligibility process reserves in the same vouchers process, so approvals meet the budget too).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from devtools.devrun import Stack, start_service, stop_services, wait_ready
from shared.auth import APPROVER, OFFICER
from tests.auth import admin, auth
from tests.conftest import DatabaseFactory, free_port
from tests.eligibility.actors import DIRECTOR, LI, WANG
from tests.factories import new_credit_code, organisation_payload

YUAN = 100
M5_CAP_FEN = 300_000 * YUAN
THINGS = 2  # per kind and example: few, so that applications meet on the same key
#: the vouchers process's budgets (A2), small enough to run out within the run, per measure and any year
BUDGET_FEN = {"M4": 500_000 * YUAN, "M5": 200_000 * YUAN, "M13": 400_000 * YUAN}
SHENZHEN = ZoneInfo("Asia/Shanghai")
GRANTOR = auth(OFFICER, name="grantor")
REVERSER = auth(APPROVER, name="reverser")

Operation = tuple[str, int, int, int, bool]
operations = st.lists(
    st.tuples(
        st.sampled_from(["submit"] * 3 + ["review", "approve"] + ["settle", "a1", "grant"] * 2 + ["reverse"]),
        st.integers(0, 1),  # enterprise
        st.integers(0, 3 * THINGS - 1),  # thing (kind = thing // THINGS) or application index
        st.sampled_from([1_000, 50_000, 150_000, 250_000, 400_000]),  # yuan: an A1 amount or a purchase
        st.booleans(),  # an A1 decision names the keys it would pay again
    ),
    min_size=6,
    max_size=30,
)


def post(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@dataclass
class Ledger:
    """The vouchers process and what it answered, over all examples (its database persists)."""

    client: httpx.Client
    committed: Counter[tuple[str, int]] = field(default_factory=Counter)  # (measure, budget year) → fen
    approved: Counter[tuple[str, int]] = field(default_factory=Counter)  # reserved by approvals (A2), less reversals
    grants: list[dict[str, Any]] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)

    @staticmethod
    def budget_of(granted: dict[str, Any]) -> tuple[str, int]:
        """A grant leaves the budget of its measure and of the year it was made (Shenzhen time)."""
        issued_at = datetime.fromisoformat(granted["issued_at"].replace("Z", "+00:00"))
        return granted["measure"], issued_at.astimezone(SHENZHEN).year

    def grant(self, decision_id: str) -> None:
        response = self.client.post("/v1/grants", json={"decision_id": decision_id}, headers=GRANTOR)
        assert response.status_code in (201, 409), response.text
        if response.status_code == 409:
            self.refused[response.json()["code"]] += 1
            return
        granted = response.json()
        self.grants.append(granted)
        self.committed[self.budget_of(granted)] += granted["amount_fen"]

    def reverse(self, index: int) -> None:
        if not self.grants:
            return
        granted = self.grants[index % len(self.grants)]
        path = f"/v1/grants/{granted['id']}/reversal"
        response = self.client.post(path, json={"reason": "性质测试：撤销"}, headers=REVERSER)
        assert response.status_code in (201, 409), response.text
        if response.status_code == 201:
            self.committed[self.budget_of(granted)] -= granted["amount_fen"]
            self.approved[self.budget_of(granted)] -= granted["amount_fen"]

    def approval(self, measure: str, amount_fen: int) -> None:
        """An approval reserved `amount_fen` of this year's budget (Shenzhen time)."""
        self.approved[(measure, datetime.now(SHENZHEN).year)] += amount_fen

    def check(self) -> None:
        for (measure, year), committed in self.committed.items():
            assert committed <= BUDGET_FEN[measure], (measure, year, committed)
        for (measure, year), approved in self.approved.items():
            assert approved <= BUDGET_FEN[measure], (measure, year, approved)


class Example:
    """One example's world: two enterprises, the things they may claim, what the API answered."""

    def __init__(self, registry: httpx.Client, eligibility: httpx.Client, ledger: Ledger) -> None:
        self.registry, self.eligibility, self.ledger = registry, eligibility, ledger
        self.enterprises = [
            post(registry, "/v1/organisations", organisation_payload(four_above_category="above_scale_industrial"))[
                "credit_code"
            ]
            for _ in range(2)
        ]
        supplier = post(registry, "/v1/organisations", organisation_payload())["credit_code"]
        self.projects = [
            [
                self._recognition(e, "demonstration_project", project=f"项目{i}", authority="工信部")
                for i in range(THINGS)
            ]
            for e in self.enterprises
        ]
        self.product = self._recognition(supplier, "digital_product", product="AI 排产")
        # each event co-organised by every enterprise: any of them may claim it, one is paid
        self.events = [self._event(f"论坛-{new_credit_code()[-6:]}-{i}") for i in range(THINGS)]
        self.applications: list[dict[str, Any]] = []
        self.approved: dict[str, int] = {}  # application id → approved amount
        self.overridden: Counter[str] = Counter()  # claim key → A1 decisions that named it

    def _recognition(self, owner: str, kind: str, **details: Any) -> str:
        body = {"credit_code": owner, "recognised_on": "2025-06-01", "details": {"kind": kind, **details}}
        return str(post(self.registry, "/v1/recognitions", body)["id"])

    def _event(self, name: str) -> str:
        details = {
            "name": name,
            "event_type": "forum",
            "held_on": "2025-11-20",
            "venue": "龙岗国际会展中心",
            "district": "440307",
            "organisers": list(self.enterprises),
            "influence": "national",
        }
        return self._recognition(self.enterprises[0], "major_event", **details)

    def evidence(self, enterprise: int, thing: int, amount_yuan: int) -> dict[str, Any]:
        kind, index = divmod(thing, THINGS)
        if kind == 0:
            return {"measure": "M4", "recognition_id": self.projects[enterprise][index]}
        if kind == 1:
            return {"measure": "M13", "event_id": self.events[index], "audited_cost_fen": 600_000 * YUAN}
        purchase = {"product_recognition_id": self.product, "amount_fen": amount_yuan * YUAN, "paid_on": "2025-04-01"}
        return {"measure": "M5", "year": 2025, "purchases": [purchase]}

    def run(self, operation: Operation) -> None:
        name, enterprise, thing, amount_yuan, override = operation
        if name == "reverse":
            self.ledger.reverse(thing)
            return
        if name == "submit":
            body = {
                "applicant": self.enterprises[enterprise],
                "as_of": "2026-03-01",
                "as_of_reason": "性质测试：补登",
                "evidence": self.evidence(enterprise, thing, amount_yuan),
            }
            self.applications.append(post(self.eligibility, "/v1/applications", body))
            return
        if not self.applications:
            return
        if name == "grant":  # one of the approved decisions (granted before or not)
            approved = [a for a in self.applications if a["id"] in self.approved]
            if approved:
                self.ledger.grant(approved[thing % len(approved)]["decision"]["id"])
            return
        application = self.applications[thing % len(self.applications)]
        if name == "settle":
            self.run(("review", enterprise, thing, amount_yuan, override))
            name = "approve"
        path = f"/v1/applications/{application['id']}"
        if name == "review":
            decision = application["decision"]
            body = {"verdict": "approve", "reason": "合规", "amount_fen": decision["amount_fen"] or 1}
            response = self.eligibility.post(path + "/reviews", json=body, headers=WANG)
        elif name == "approve":
            response = self.eligibility.post(
                path + "/approvals", json={"verdict": "approve", "reason": "同意"}, headers=LI
            )
        else:
            claims = application["decision"]["claims"]
            body = {"amount_fen": amount_yuan * YUAN, "reason": "一事一议"}
            if override:
                body["overrides"] = [{"claim_key": key, "reason": "性质测试：再次支持"} for key in claims]
            response = self.eligibility.post(path + "/manual-decisions", json=body, headers=DIRECTOR)
            if response.status_code == 200 and override:
                self.overridden.update(claims)
        assert response.status_code < 500, response.text
        if response.status_code == 409 and response.json()["code"] == "budget_exhausted":
            self.ledger.refused["budget_exhausted"] += 1
        if response.status_code == 200 and response.json()["status"] == "approved":
            current = response.json()
            amounts = [r["amount_fen"] for r in current["reviews"] if r["step"] == "approval"]
            if application["id"] not in self.approved and amounts[-1]:
                self.ledger.approval(application["measure"], amounts[-1])
            self.approved[application["id"]] = amounts[-1]
            application["decision"] = current["decision"]

    def check(self) -> None:
        awarded: Counter[str] = Counter()
        year_totals: defaultdict[str, int] = defaultdict(int)
        for application in self.applications:
            amount = self.approved.get(application["id"])
            if amount is None:
                continue
            awarded.update(application["decision"]["claims"])
            if application["measure"] == "M5":
                year_totals[application["applicant"]] += amount
        for key, count in awarded.items():
            assert count <= 1 + self.overridden[key], (key, count, self.overridden[key])
        for applicant, total in year_totals.items():
            assert total <= M5_CAP_FEN, (applicant, total)
        self.ledger.check()


def small_budgets(directory: Path) -> Path:
    measures = {
        measure: {
            "clause": "A2",
            "label": {"zh": measure, "en": measure},
            "history": [
                {
                    "year": year,
                    "budget_fen": budget,
                    "effective_from": date(2024, 1, 1),
                    "status": "interpretation",
                    "source": "tests: small, so that it runs out",
                }
                for year in range(2024, 2031)
            ],
        }
        for measure, budget in BUDGET_FEN.items()
    }
    path = directory / "budgets.yaml"
    document = {"version": "tests-small", "published": date(2024, 1, 1), "budgets": measures}
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def clients(
    databases: DatabaseFactory,
    live_registry: str,
    service_auth_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[httpx.Client, httpx.Client, Ledger]]:
    """An eligibility and a vouchers process of their own, calling each other: approvals reserve here."""
    ports = {"eligibility": free_port(), "vouchers": free_port()}
    vouchers_stack = Stack(
        databases.create("longgang_vouchers_properties"), "127.0.0.1", {"vouchers": ports["vouchers"]}
    )
    eligibility_stack = Stack(
        databases.create("longgang_eligibility_properties"), "127.0.0.1", {"eligibility": ports["eligibility"]}
    )
    common = {"REGISTRY_URL": live_registry, **service_auth_env}
    processes = {
        "vouchers": start_service(
            vouchers_stack,
            "vouchers",
            extra_env={
                **common,
                "ELIGIBILITY_URL": eligibility_stack.url("eligibility"),
                "VOUCHERS_BUDGET_FILE": str(small_budgets(tmp_path_factory.mktemp("budgets"))),
            },
        ),
        "eligibility": start_service(
            eligibility_stack, "eligibility", extra_env={**common, "VOUCHERS_URL": vouchers_stack.url("vouchers")}
        ),
    }
    try:
        wait_ready(vouchers_stack, {"vouchers": processes["vouchers"]}, timeout=60)
        wait_ready(eligibility_stack, {"eligibility": processes["eligibility"]}, timeout=60)
        with (
            httpx.Client(base_url=live_registry, timeout=30, headers=admin()) as registry,
            httpx.Client(base_url=eligibility_stack.url("eligibility"), timeout=30, headers=admin()) as eligibility,
            httpx.Client(base_url=vouchers_stack.url("vouchers"), timeout=30, headers=admin()) as ledger,
        ):
            world = Ledger(ledger)
            yield registry, eligibility, world
            # the run reached the budget: refusals by it were seen, so the property was put to the test
            assert world.refused["budget_exhausted"] > 0, world.refused
    finally:
        stop_services(processes)


@settings(
    max_examples=25,
    deadline=None,
    database=None,  # each example builds its own enterprises in a shared database: nothing to replay
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=operations)
# first, two demonstration projects approved and granted: 300,000 + 300,000 passes the M4 budget of 500,000
# (the second approval is refused: it cannot reserve the budget)
@example(
    sequence=[
        ("submit", 0, 0, 1_000, False),
        ("settle", 0, 0, 1_000, False),
        ("grant", 0, 0, 1_000, False),
        ("submit", 1, 0, 1_000, False),
        ("settle", 0, 1, 1_000, False),
        ("grant", 0, 1, 1_000, False),
    ]
)
def test_no_key_twice_no_year_over_its_cap_no_budget_passed(
    clients: tuple[httpx.Client, httpx.Client, Ledger], sequence: list[Operation]
) -> None:
    registry, eligibility, ledger = clients
    example = Example(registry, eligibility, ledger)
    for operation in sequence:
        example.run(operation)
    example.check()
