"""Demo data for `make demo`: a small Longgang data set, loaded into a running registry.

    python -m devtools.demo [REGISTRY_URL]      # default $REGISTRY_URL or http://127.0.0.1:8001

The data is `deploy/demo/registry.json`; it goes in through the registry's public HTTP
API only (bulk imports for organisations, revenues and filings; single POSTs for the
rest). Loading is idempotent: what is already there (409 `record_exists`, an unchanged
import row, a model of the same vendor and name, an equal recognition or affiliation, a
status change already in the filing's history) is counted and left alone. Any other
answer is a `RuntimeError` carrying the registry's problem+json body.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from devtools.devauth import DEMO_VENDOR, fetch_token

ROOT = Path(__file__).resolve().parent.parent
DATA_FILE = ROOT / "deploy" / "demo" / "registry.json"
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
PAGE_SIZE = 500

Json = dict[str, Any]


class _Tally:
    """Per kind of record: how many the data set has, and how many this run created."""

    def __init__(self) -> None:
        self.total: dict[str, int] = {}
        self.created: dict[str, int] = {}
        self.updated: dict[str, int] = {}

    def count(self, kind: str, *, created: int = 0, existing: int = 0, updated: int = 0) -> None:
        self.total[kind] = self.total.get(kind, 0) + created + existing + updated
        self.created[kind] = self.created.get(kind, 0) + created
        self.updated[kind] = self.updated.get(kind, 0) + updated

    def summary(self, registry_url: str) -> str:
        parts = ", ".join(f"{count} {kind}" for kind, count in self.total.items())
        created = sum(self.created.values())
        present = sum(self.total.values()) - created - sum(self.updated.values())
        line = f"demo data in {registry_url}: {parts} ({created} created, {present} already present"
        updated = sum(self.updated.values())
        return line + (f", {updated} updated)" if updated else ")")


class _Registry:
    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> httpx.Response:
        """One request; an answer outside `ok` is a RuntimeError with the problem body."""
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RuntimeError(f"demo data: {method} {path} failed: {exc!r}") from exc
        if response.status_code not in ok:
            raise RuntimeError(f"demo data: {method} {path} answered {response.status_code}: {response.text}")
        return response

    def create(self, path: str, payload: Json) -> Json | None:
        """POST a record: its JSON if created, None if it already exists (409 record_exists)."""
        response = self.call("POST", path, ok=(201, 409), json=payload)
        if response.status_code == 409:
            if _problem_code(response) != "record_exists":
                raise RuntimeError(f"demo data: POST {path} answered 409: {response.text}")
            return None
        return _json_object(response)

    def list_all(self, path: str, params: Mapping[str, str]) -> Iterator[Json]:
        """Every item of a list endpoint, following `next_cursor`."""
        query = {**params, "limit": str(PAGE_SIZE)}
        while True:
            page = _json_object(self.call("GET", path, params=query))
            yield from page["items"]
            if not page.get("next_cursor"):
                return
            query["cursor"] = page["next_cursor"]

    def bulk_import(self, plural: str, rows: list[Json]) -> Json:
        body = json.dumps(rows, ensure_ascii=False).encode("utf-8")
        response = self.call(
            "POST", f"/v1/imports/{plural}", content=body, headers={"Content-Type": "application/json"}
        )
        report = _json_object(response)
        if report.get("failed"):
            raise RuntimeError(f"demo data: import of {plural} reported failed rows: {response.text}")
        return report


def _json_object(response: httpx.Response) -> Json:
    try:
        data = response.json()
    except ValueError as exc:
        raise RuntimeError(f"demo data: {response.request.url} answered non-JSON: {response.text[:500]}") from exc
    if not isinstance(data, dict):
        raise RuntimeError(f"demo data: {response.request.url} answered {type(data).__name__}, expected an object")
    return data


def _problem_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def _matches(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Every field given in `wanted` (recursively for objects) has that value in `existing`."""
    for name, value in wanted.items():
        if isinstance(value, Mapping):
            inner = existing.get(name)
            if not isinstance(inner, Mapping) or not _matches(inner, value):
                return False
        elif existing.get(name) != value:
            return False
    return True


def _import(registry: _Registry, tally: _Tally, plural: str, rows: list[Json]) -> None:
    if not rows:
        return
    report = registry.bulk_import(plural, rows)
    tally.count(
        plural,
        created=int(report["created"]),
        existing=int(report["unchanged"]),
        updated=int(report["updated"]),
    )


def _load_models(registry: _Registry, tally: _Tally, models: list[Json]) -> dict[tuple[str, str], str]:
    """Create the models that are missing; (vendor credit code, name) → model id."""
    ids: dict[tuple[str, str], str] = {}
    for vendor in sorted({model["vendor_credit_code"] for model in models}):
        for item in registry.list_all("/v1/models", {"vendor_credit_code": vendor}):
            ids[(vendor, item["name"])] = str(item["id"])
    for model in models:
        key = (model["vendor_credit_code"], model["name"])
        if key in ids:
            tally.count("models", existing=1)
            continue
        created = registry.create("/v1/models", model)
        if created is None:  # created concurrently by someone else
            raise RuntimeError(f"demo data: model {key} exists but is not listed for its vendor")
        ids[key] = str(created["id"])
        tally.count("models", created=1)
    return ids


def _load_filings(
    registry: _Registry, tally: _Tally, filings: list[Json], model_ids: dict[tuple[str, str], str]
) -> None:
    """Import the filings (as filed), then apply their later status changes (e.g. a revocation).

    Re-importing a filing's original row is a no-op even after a revocation: the import
    compares each row with the version in effect on the row's own date.
    """
    rows: list[Json] = []
    for filing in filings:
        reference = filing["model"]
        key = (reference["vendor_credit_code"], reference["name"])
        if key not in model_ids:
            raise RuntimeError(f"demo data: filing {filing['number']} names an unknown model {key}")
        row = {name: value for name, value in filing.items() if name not in ("model", "changes")}
        rows.append({**row, "model_id": model_ids[key]})
    _import(registry, tally, "filings", rows)

    for filing in filings:
        changes: list[Json] = filing.get("changes") or []
        if not changes:
            continue
        path = f"/v1/filings/{filing['number']}"
        history = _json_list(registry.call("GET", path + "/history"))
        for change in changes:
            state = {name: value for name, value in change.items() if name != "effective_from"}
            done = any(
                version["valid_from"] == change["effective_from"] and _matches(version["data"], state)
                for version in history
            )
            if done:
                tally.count("filing status changes", existing=1)
                continue
            registry.call("PATCH", path, json=change)
            tally.count("filing status changes", created=1)


def _json_list(response: httpx.Response) -> list[Json]:
    data = response.json()
    if not isinstance(data, list):
        raise RuntimeError(f"demo data: {response.request.url} answered {type(data).__name__}, expected a list")
    return data


def _load_affiliations(registry: _Registry, tally: _Tally, affiliations: list[Json]) -> None:
    for affiliation in affiliations:
        pair = {affiliation["credit_code_a"], affiliation["credit_code_b"]}
        existing = registry.list_all("/v1/affiliations", {"organisation": affiliation["credit_code_a"]})
        if any({item["credit_code_a"], item["credit_code_b"]} == pair for item in existing):
            tally.count("affiliations", existing=1)
        else:
            if registry.create("/v1/affiliations", affiliation) is None:
                raise RuntimeError(f"demo data: affiliation {sorted(pair)} exists but is not listed")
            tally.count("affiliations", created=1)


def _load_recognitions(registry: _Registry, tally: _Tally, recognitions: list[Json]) -> None:
    known: dict[str, list[Json]] = {}
    for recognition in recognitions:
        code = recognition["credit_code"]
        if code not in known:
            known[code] = list(registry.list_all("/v1/recognitions", {"credit_code": code}))
        wanted = {name: value for name, value in recognition.items() if name != "effective_from"}
        if any(_matches(item, wanted) for item in known[code]):
            tally.count("recognitions", existing=1)
            continue
        created = registry.create("/v1/recognitions", recognition)
        if created is None:
            raise RuntimeError(f"demo data: recognition of {code} exists but is not listed")
        known[code].append(created)
        tally.count("recognitions", created=1)


def _headers(registry_url: str, clients: Json, client_id: str) -> dict[str, str]:
    """Request headers with an access token from the registry's token endpoint (client credentials)."""
    try:
        token = fetch_token(registry_url, clients[client_id])
    except (KeyError, httpx.HTTPError) as exc:
        raise RuntimeError(f"demo data: no token for client {client_id}: {exc}") from exc
    return {"Accept": "application/json", "Accept-Language": "en", "Authorization": f"Bearer {token}"}


def load_demo(registry_url: str, clients: Json, data_file: Path = DATA_FILE) -> str:
    """Load the demo data set into the registry at `registry_url` as the data platform; a one-line summary."""
    data: Json = json.loads(data_file.read_text(encoding="utf-8"))
    tally = _Tally()
    headers = _headers(registry_url, clients, "dev-platform")
    with httpx.Client(base_url=registry_url.rstrip("/"), timeout=TIMEOUT, headers=headers) as client:
        registry = _Registry(client)
        _import(registry, tally, "organisations", data.get("organisations", []))
        _import(registry, tally, "revenues", data.get("revenues", []))
        for vendor in data.get("vendors", []):
            created = registry.create("/v1/vendors", vendor) is not None
            tally.count("vendors", created=int(created), existing=int(not created))
        model_ids = _load_models(registry, tally, data.get("models", []))
        _load_filings(registry, tally, data.get("filings", []), model_ids)
        _load_affiliations(registry, tally, data.get("affiliations", []))
        _load_recognitions(registry, tally, data.get("recognitions", []))
    return tally.summary(registry_url)


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else os.environ.get("REGISTRY_URL", "http://127.0.0.1:8001")
    clients_file = Path(os.environ.get("AUTH_DIR", ROOT / ".data" / "auth")) / "clients.json"
    try:
        print(load_demo(url, json.loads(clients_file.read_text(encoding="utf-8"))))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))


# --- applications, decisions and a voucher, through the other two services -----------------------

DEMO_APPLICATIONS: list[tuple[str, str, Json, bool]] = [
    # (applicant, as_of, evidence, approve?)
    (
        "91440300708461136T",
        "2026-03-02",
        {
            "measure": "M6",
            "diagnosis_reference": "深工信数字化诊断〔2025〕031号",
            "audited_investment_fen": 300_000_000,
        },
        True,
    ),
    (
        "91440307MA5GJ8KQ2Y",
        "2026-03-05",
        {"measure": "M11", "year": 2025, "area_m2": "1500", "months": 12, "rent_paid_fen": 216_000_000},
        False,
    ),
    ("914403001922038216", "2026-03-06", {"measure": "M9", "year": 2025}, False),
]
DEMO_HOLDER = "91440307MA5GJ8KQ2Y"


def _m3_evidence(model_id: str) -> Json:
    return {
        "measure": "M3",
        "contract": {
            "number": "LX-2025-0301",
            "vendor_credit_code": DEMO_VENDOR,
            "model_id": model_id,
            "signed_on": "2025-03-01",
            "amount_fen": 200_000_000,
            "components": [
                {"kind": "private_deployment", "amount_fen": 150_000_000},
                {"kind": "api_calls", "amount_fen": 50_000_000},
            ],
        },
        "claim_fen": 60_000_000,
    }


def _with_diagnosis(registry: httpx.Client, applicant: str, evidence: Json) -> Json:
    """M6 references the applicant's diagnosis record (registry.json): its id is the registry's, found by reference."""
    if evidence["measure"] != "M6":
        return evidence
    params = {"credit_code": applicant, "kind": "digital_diagnosis"}
    found = _json_object(registry.get("/v1/recognitions", params=params)).get("items") or []
    [diagnosis] = [r for r in found if r["details"]["reference"] == evidence["diagnosis_reference"]]
    return {**evidence, "diagnosis_id": diagnosis["id"]}


def _submit_once(
    client: httpx.Client, approver: dict[str, str], applicant: str, as_of: str, evidence: Json, approve: bool
) -> Json:
    """Submit unless this applicant already applied for the measure; approve when asked."""
    listed = client.get("/v1/applications", params={"applicant": applicant, "measure": evidence["measure"]})
    existing = _json_object(listed).get("items") or []
    if existing:
        application: Json = existing[0]
        return application
    created = client.post(
        "/v1/applications",
        json={
            "applicant": applicant,
            "as_of": as_of,
            "as_of_reason": "演示数据：按示例的申请日期登记",
            "evidence": evidence,
        },
    )
    application = _json_object(created)
    if created.status_code != 201:
        raise RuntimeError(f"demo data: application of {applicant} failed: {created.text}")
    if approve and application["status"] == "in_review":
        path = f"/v1/applications/{application['id']}"
        client.post(path + "/reviews", json={"verdict": "approve", "reason": "材料齐全"})
        approved = client.post(path + "/approvals", json={"verdict": "approve", "reason": "同意"}, headers=approver)
        if approved.status_code != 200:
            raise RuntimeError(f"demo data: approval of {applicant}'s application failed: {approved.text}")
        application = _json_object(approved)
    return application


def load_flows(registry_url: str, eligibility_url: str, vouchers_url: str, clients: Json) -> str:
    """A few applications (some approved, some waiting in the review queue), a grant, a model voucher and a
    redemption: so every service has real records to show. Each step is done by the role that does it:
    an officer enters and reviews, an approver approves, the vendor redeems."""
    officer = _headers(registry_url, clients, "dev-officer")
    approver = _headers(registry_url, clients, "dev-approver")
    vendor = _headers(registry_url, clients, "dev-vendor")
    with (
        httpx.Client(base_url=registry_url.rstrip("/"), timeout=TIMEOUT, headers=officer) as registry,
        httpx.Client(base_url=eligibility_url.rstrip("/"), timeout=TIMEOUT, headers=officer) as eligibility,
        httpx.Client(base_url=vouchers_url.rstrip("/"), timeout=TIMEOUT, headers=officer) as vouchers,
    ):
        rows = [
            (code, day, _with_diagnosis(registry, code, evidence), go) for code, day, evidence, go in DEMO_APPLICATIONS
        ]
        decisions = [_submit_once(eligibility, approver, *row) for row in rows]
        models = _json_object(registry.get("/v1/models", params={"vendor_credit_code": DEMO_VENDOR}))["items"]
        model_id = next(m["id"] for m in models if m["name"] == "星图行业大模型")
        m3 = _submit_once(eligibility, approver, DEMO_HOLDER, "2026-03-10", _m3_evidence(model_id), True)
        issue = [{"decision_id": d["decision"]["id"]} for d in (decisions[0], m3)]
        grant = vouchers.post("/v1/grants", json=issue[0])
        issued = vouchers.post("/v1/vouchers", json=issue[1])
        # a repeated demo run finds them issued (409 already_issued); any other answer is a failure
        for answer in (grant, issued):
            if answer.status_code != 201 and _json_object(answer).get("code") != "already_issued":
                raise RuntimeError(f"demo data: issuing failed: {answer.text}")
        # 409 already_issued names the voucher issued by an earlier demo run
        voucher_code = str(issued.json()["code" if issued.status_code == 201 else "reference"])
        redemption = {"amount_fen": 10_000_000, "invoice_number": "XT-2026-0001", "contract_number": "LX-2025-0301"}
        vouchers.post(
            f"/v1/vouchers/{voucher_code}/redemptions",
            json=redemption,
            headers={**vendor, "Idempotency-Key": "demo-redemption-1"},
        )
    waiting = sum(1 for d in decisions if d["status"] in ("in_review", "reviewed"))
    return (
        f"demo flows: {len(decisions) + 1} applications ({waiting} waiting in the review queue), "
        f"1 grant (M6), model voucher {voucher_code} with one redemption"
    )
