"""Property (issue #11): whatever the sequence of applications, reviews, approvals and A1 decisions,
no key is awarded twice (but by a named A1 override) and no enterprise's year passes a clause's cap.

Hypothesis draws sequences of operations against a real eligibility process (its own
database, committed data) and a real registry. Each example has its own enterprises and
things to claim: demonstration projects (M4, once each), events that two co-organisers
may both claim (M13, once each) and library purchases (M5, at most 300,000 yuan a year).
Operations: submit an application for a thing, review, approve, both (settle), an A1
decision of a drawn amount (sometimes naming the keys it overrides), in any order,
refusals included. After
each example the outcome is checked from what the API told (approved applications and
their amounts), not from the tables that enforce it:

- per claim key: at most one approved award, plus one per A1 decision that named it;
- per enterprise and year: the approved M5 amounts add up to at most the cap.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.auth import admin
from tests.eligibility.actors import DIRECTOR, LI, WANG
from tests.factories import new_credit_code, organisation_payload

YUAN = 100
M5_CAP_FEN = 300_000 * YUAN
THINGS = 2  # per kind and example: few, so that applications meet on the same key

Operation = tuple[str, int, int, int, bool]
operations = st.lists(
    st.tuples(
        st.sampled_from(["submit", "submit", "submit", "review", "approve", "settle", "settle", "a1", "a1"]),
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


class Example:
    """One example's world: two enterprises, the things they may claim, what the API answered."""

    def __init__(self, registry: httpx.Client, eligibility: httpx.Client) -> None:
        self.registry, self.eligibility = registry, eligibility
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
        self.event_names = [f"论坛-{new_credit_code()[-6:]}-{i}" for i in range(THINGS)]
        self.applications: list[dict[str, Any]] = []
        self.approved: dict[str, int] = {}  # application id → approved amount
        self.overridden: Counter[str] = Counter()  # claim key → A1 decisions that named it

    def _recognition(self, owner: str, kind: str, **details: Any) -> str:
        body = {"credit_code": owner, "recognised_on": "2025-06-01", "details": {"kind": kind, **details}}
        return str(post(self.registry, "/v1/recognitions", body)["id"])

    def evidence(self, enterprise: int, thing: int, amount_yuan: int) -> dict[str, Any]:
        kind, index = divmod(thing, THINGS)
        if kind == 0:
            return {"measure": "M4", "recognition_id": self.projects[enterprise][index]}
        if kind == 1:
            return {
                "measure": "M13",
                "event_name": self.event_names[index],
                "held_on": "2025-11-20",
                "held_in_longgang": True,
                "influence": "national",
                "audited_cost_fen": 600_000 * YUAN,
            }
        purchase = {"product_recognition_id": self.product, "amount_fen": amount_yuan * YUAN, "paid_on": "2025-04-01"}
        return {"measure": "M5", "year": 2025, "purchases": [purchase]}

    def run(self, operation: Operation) -> None:
        name, enterprise, thing, amount_yuan, override = operation
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
        if response.status_code == 200 and response.json()["status"] == "approved":
            current = response.json()
            amounts = [r["amount_fen"] for r in current["reviews"] if r["step"] == "approval"]
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


@pytest.fixture(scope="module")
def clients(live_registry: str, live_eligibility: str) -> Any:
    with (
        httpx.Client(base_url=live_registry, timeout=30, headers=admin()) as registry,
        httpx.Client(base_url=live_eligibility, timeout=30, headers=admin()) as eligibility,
    ):
        yield registry, eligibility


@settings(
    max_examples=25,
    deadline=None,
    database=None,  # each example builds its own enterprises in a shared database: nothing to replay
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=operations)
def test_no_key_twice_and_no_year_over_its_cap(clients: Any, sequence: list[Operation]) -> None:
    registry, eligibility = clients
    example = Example(registry, eligibility)
    for operation in sequence:
        example.run(operation)
    example.check()
