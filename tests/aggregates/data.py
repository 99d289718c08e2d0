"""Ledger activity through the public APIs, and what the aggregates should say, computed by plain SQL.

`expected()` is written apart from the projector: it reads the ledger the way an auditor
would (entries joined to the vouchers, redemptions, grants, settlement batches and budget
accounts they concern) and answers in the aggregates API's shape, so a test can compare the
API's answers with it field by field.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from shared.auth import APPROVER, OFFICER
from tests.aggregates.conftest import fetch
from tests.auth import auth
from tests.eligibility import seed
from tests.vouchers.flow import OFFICER_CHEN, YUAN, approve, approved_m3, issue, submit, vendor_call

SHENZHEN = ZoneInfo("Asia/Shanghai")
_keys = itertools.count(1)


def this_year() -> int:
    return datetime.now(SHENZHEN).year


def key(prefix: str = "agg") -> str:
    return f"{prefix}-{next(_keys)}-{random.getrandbits(32):08x}"


@dataclass
class Voucher:
    code: str
    kind: str
    holder: str
    vendors: list[str]  # who may redeem it


@dataclass
class Activity:
    vouchers: list[Voucher] = field(default_factory=list)
    grants: list[int] = field(default_factory=list)
    holds: list[tuple[int, str]] = field(default_factory=list)
    vendors: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)

    def did(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


async def m3_voucher(
    vouchers: httpx.AsyncClient, registry: httpx.AsyncClient, eligibility: httpx.AsyncClient
) -> Voucher:
    supply, decision_id = await approved_m3(registry, eligibility, claim_fen=1_000_000 * YUAN)
    response = await issue(vouchers, decision_id)
    assert response.status_code == 201, response.text
    return Voucher(response.json()["code"], "M3", supply.holder, [supply.vendor])


async def m1_voucher(
    vouchers: httpx.AsyncClient,
    registry: httpx.AsyncClient,
    eligibility: httpx.AsyncClient,
    *,
    revenue_yuan: int,
    district_yuan: int,
    domestic_yuan: int,
    other_yuan: int,
) -> Voucher:
    """An M1 voucher whose compute base is split between a district, a domestic and a plain compute vendor."""
    holder = await seed.organisation(registry)
    await seed.revenue(registry, holder, 2025, revenue_yuan * YUAN)
    invoices = []
    providers = []
    for n, (flags, amount) in enumerate(
        (
            ({"district_compute": True}, district_yuan),
            ({"domestic_compute": True}, domestic_yuan),
            ({}, other_yuan),
        )
    ):
        if not amount:
            continue
        provider = await seed.vendor(registry, is_compute_vendor=True, **flags)
        providers.append(provider)
        invoices.append(
            {
                "invoice_number": f"GPU-2025-{n}",
                "provider_credit_code": provider,
                "paid_on": "2025-03-31",
                "lines": [{"kind": "compute", "description": "算力租用", "amount_fen": amount * YUAN}],
            }
        )
    evidence = {"measure": "M1", "fiscal_year": 2025, "purpose": "healthcare", "invoices": invoices}
    application = await submit(eligibility, holder, evidence, as_of="2026-02-01")
    assert application["decision"]["outcome"] == "eligible", application["decision"]
    response = await issue(vouchers, await approve(eligibility, application))
    assert response.status_code == 201, response.text
    return Voucher(response.json()["code"], "M1", holder, providers)


async def grant(vouchers: httpx.AsyncClient, registry: httpx.AsyncClient, eligibility: httpx.AsyncClient) -> int:
    holder, evidence = await seed.m6_applicant(registry, 400_000 * YUAN)
    application = await submit(eligibility, holder, evidence, as_of="2026-02-01")
    granted = await vouchers.post(
        "/v1/grants", json={"decision_id": await approve(eligibility, application)}, headers=OFFICER_CHEN
    )
    assert granted.status_code == 201, granted.text
    return int(granted.json()["id"])


async def random_activity(
    rng: random.Random,
    vouchers: httpx.AsyncClient,
    registry: httpx.AsyncClient,
    eligibility: httpx.AsyncClient,
    *,
    operations: int = 60,
) -> Activity:
    """Vouchers of both kinds, grants and a reversal, then a random mix of what vendors and officers do."""
    done = Activity()
    done.vouchers.append(await m3_voucher(vouchers, registry, eligibility))
    done.vouchers.append(await m3_voucher(vouchers, registry, eligibility))
    done.vouchers.append(
        await m1_voucher(
            vouchers,
            registry,
            eligibility,
            revenue_yuan=5_000_000,
            district_yuan=700_000,
            domestic_yuan=0,
            other_yuan=300_000,
        )
    )
    done.vouchers.append(
        await m1_voucher(
            vouchers,
            registry,
            eligibility,
            revenue_yuan=20_000_000,
            district_yuan=1_000_000,
            domestic_yuan=1_500_000,
            other_yuan=500_000,
        )
    )
    done.grants.append(await grant(vouchers, registry, eligibility))
    done.grants.append(await grant(vouchers, registry, eligibility))
    reversed_ = await vouchers.post(
        f"/v1/grants/{done.grants[0]}/reversal", json={"reason": "重复拨付"}, headers=auth(APPROVER, name="li")
    )
    assert reversed_.status_code in (200, 201), reversed_.text
    for voucher in done.vouchers:
        done.vendors.update(voucher.vendors)

    for _ in range(operations):
        voucher = rng.choice(done.vouchers)
        vendor = rng.choice(voucher.vendors)
        choice = rng.random()
        amount = rng.randint(1, 60_000) * YUAN
        if choice < 0.45:
            response = await vouchers.post(
                f"/v1/vouchers/{voucher.code}/redemptions",
                json={"amount_fen": amount, "invoice_number": key("FP")},
                headers=vendor_call(vendor, key()),
            )
            done.did(f"redeem {response.status_code}")
        elif choice < 0.65:
            response = await vouchers.post(
                f"/v1/vouchers/{voucher.code}/holds",
                json={"amount_fen": amount, "invoice_number": key("H")},
                headers=vendor_call(vendor, key()),
            )
            if response.status_code == 201:
                done.holds.append((int(response.json()["id"]), vendor))
            done.did(f"hold {response.status_code}")
        elif choice < 0.8 and done.holds:
            hold_id, holder_vendor = done.holds.pop(rng.randrange(len(done.holds)))
            action = rng.choice(("capture", "release"))
            response = await vouchers.post(f"/v1/holds/{hold_id}/{action}", headers=vendor_call(holder_vendor, key()))
            done.did(f"{action} {response.status_code}")
        elif choice < 0.9:
            settle_vendor = rng.choice(sorted(done.vendors))
            batch = await vouchers.post(
                "/v1/settlement-batches", json={"vendor": settle_vendor}, headers=auth(OFFICER, name="zhao")
            )
            if batch.status_code == 201:
                closed = await vouchers.post(
                    f"/v1/settlement-batches/{batch.json()['id']}/close", headers=auth(OFFICER, name="qian")
                )
                assert closed.status_code == 200, closed.text
            done.did(f"settle {batch.status_code}")
        elif choice < 0.95:
            response = await vouchers.post(
                f"/v1/vouchers/{voucher.code}/void", json={"reason": "申请撤回"}, headers=auth(OFFICER, name="zhao")
            )
            done.did(f"void {response.status_code}")
        else:
            new = await m3_voucher(vouchers, registry, eligibility)
            done.vouchers.append(new)
            done.vendors.update(new.vendors)
            done.did("issue")
    return done


# --- the aggregates by plain SQL over the ledger -----------------------------------------------------

LOCAL = "(e.created_at AT TIME ZONE 'Asia/Shanghai')"
YEAR = f"extract(year FROM {LOCAL})::int"
MONTH = f"extract(month FROM {LOCAL})::int"

VOUCHER_FLOWS = f"""
    SELECT v.kind AS measure, {YEAR} AS year, {MONTH} AS month, e.kind, e.amount_fen, r.vendor, v.holder,
           v.revenue_class, v.compute_base_fen AS base, v.compute_district_fen AS district,
           v.compute_domestic_fen AS domestic
    FROM vouchers.entries e
    JOIN vouchers.vouchers v ON v.id = e.voucher_id
    LEFT JOIN vouchers.redemptions r ON r.id = e.redemption_id
"""
GRANT_FLOWS = f"""
    SELECT g.measure, {YEAR} AS year, {MONTH} AS month, e.kind, e.amount_fen, g.holder
    FROM vouchers.entries e
    JOIN vouchers.grants g ON g.entry_id = coalesce(e.reverses_entry_id, e.id)
    WHERE e.kind IN ('grant', 'reversal')
"""
SETTLED = f"""
    SELECT rv.kind AS measure, {YEAR} AS year, {MONTH} AS month, b.vendor, r.amount_fen
    FROM vouchers.settlement_batches b
    JOIN vouchers.entries e ON e.id = b.entry_id
    JOIN vouchers.redemptions r ON r.settlement_batch_id = b.id
    JOIN vouchers.vouchers rv ON rv.id = r.voucher_id
"""
BUDGET = """
    SELECT split_part(a.ref, ':', 1) AS measure, split_part(a.ref, ':', 2)::int AS year,
           sum(CASE WHEN e.from_account_id = a.id THEN e.amount_fen ELSE -e.amount_fen END)::bigint AS used
    FROM vouchers.accounts a
    JOIN vouchers.entries e ON a.id IN (e.from_account_id, e.to_account_id)
    WHERE a.kind = 'budget'
    GROUP BY 1, 2
"""


def _fen(value: Any) -> int:
    return int(value or 0)


async def expected(dsn: str, year: int) -> dict[str, Any]:
    """The aggregates of `year` over the whole ledger, as the API should answer them."""
    flows = await fetch(dsn, VOUCHER_FLOWS)
    grants = await fetch(dsn, GRANT_FLOWS)
    settled = await fetch(dsn, SETTLED)
    budget = {(r["measure"], r["year"]): int(r["used"]) for r in await fetch(dsn, BUDGET)}

    measures: dict[str, dict[str, int]] = {}
    months = {m: dict.fromkeys(("issued", "redeemed", "settled", "expired", "granted"), 0) for m in range(1, 13)}
    classes: dict[str, dict[str, int]] = {}
    shares: dict[str, dict[str, int]] = {}
    vendors: dict[str, dict[str, int]] = {}
    holders: dict[str, dict[str, int]] = {}

    def line(measure: str) -> dict[str, int]:
        names = ("issued", "redeemed", "settled", "expired", "voided", "granted", "ever_issued", "ever_out", "held")
        return measures.setdefault(measure, dict.fromkeys(names, 0))

    for r in flows:
        kind, amount, this = r["kind"], int(r["amount_fen"]), r["year"] == year
        if r["year"] > year:
            continue
        m = line(r["measure"])
        # stocks at the end of the year: over this year and the years before
        m["ever_issued"] += amount if kind == "issue" else 0
        m["ever_out"] += amount if kind in ("redeem", "capture", "void", "expire") else 0
        m["held"] += {"hold": amount, "capture": -amount, "release": -amount}.get(kind, 0)
        if not this:
            continue
        flow = {"issue": "issued", "redeem": "redeemed", "capture": "redeemed", "void": "voided", "expire": "expired"}
        if kind in flow:
            m[flow[kind]] += amount
            if flow[kind] in months[r["month"]]:
                months[r["month"]][flow[kind]] += amount
        who = holders.setdefault(r["holder"], {"issued": 0, "redeemed": 0, "granted": 0})
        if kind == "issue":
            who["issued"] += amount
        if kind in ("redeem", "capture"):
            who["redeemed"] += amount
            v = vendors.setdefault(r["vendor"], {"redeemed": 0, "settled": 0, "redemptions": 0})
            v["redeemed"] += amount
            v["redemptions"] += 1
        if r["measure"] == "M1" and kind in ("issue", "redeem", "capture"):
            column = "issued" if kind == "issue" else "redeemed"
            c = classes.setdefault(r["revenue_class"] or "unknown", {"issued": 0, "redeemed": 0, "vouchers": 0})
            c[column] += amount
            c["vouchers"] += kind == "issue"
            if r["base"]:
                district = amount * r["district"] // r["base"]
                domestic = amount * r["domestic"] // r["base"]
                parts = {"district": district, "domestic": domestic, "other": amount - district - domestic}
            else:
                parts = {"unknown": amount}
            for share, fen in parts.items():
                s = shares.setdefault(share, {"issued": 0, "redeemed": 0})
                s[column] += fen
    for r in grants:
        if r["year"] != year:
            continue
        signed = int(r["amount_fen"]) * (1 if r["kind"] == "grant" else -1)
        line(r["measure"])["granted"] += signed
        months[r["month"]]["granted"] += signed
        holders.setdefault(r["holder"], {"issued": 0, "redeemed": 0, "granted": 0})["granted"] += signed
    for r in settled:
        if r["year"] != year:
            continue
        line(r["measure"])["settled"] += int(r["amount_fen"])
        months[r["month"]]["settled"] += int(r["amount_fen"])
        vendors.setdefault(r["vendor"], {"redeemed": 0, "settled": 0, "redemptions": 0})["settled"] += int(
            r["amount_fen"]
        )

    by_measure = {
        measure: {
            "issued_fen": m["issued"],
            "redeemed_fen": m["redeemed"],
            "held_fen": m["held"],
            "settled_fen": m["settled"],
            "expired_fen": m["expired"],
            "voided_fen": m["voided"],
            "granted_fen": m["granted"],
            "remaining_fen": m["ever_issued"] - m["ever_out"] - m["held"],
        }
        for measure, m in measures.items()
    }

    return {
        "by_measure": {k: v for k, v in by_measure.items() if any(v.values())},
        "months": months,
        "classes": classes,
        "shares": shares,
        "vendors": vendors,
        "holders": {h: v for h, v in holders.items() if any(v.values())},
        "budget_used": {m: used for (m, y), used in budget.items() if y == year},
    }
