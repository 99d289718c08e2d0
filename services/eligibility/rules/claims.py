"""The award register's vocabulary: what each award pays for (claim keys) and which annual caps it uses.

Money safety across applications rests on two things the database enforces at approval
(and at A1), whatever path an award takes:

- **claim keys** — one row per key in `eligibility.awards`, unique: a second award on the
  same key is impossible unless an A1 decision names the key it overrides and why;
- **annual caps** — one row per (enterprise, cap, year) in `eligibility.year_caps`, taken
  by a conditional UPDATE: the year's awards never add up to more than the clause allows.

`CLAIM_KINDS` below is the table a policy officer checks against the text (also in
docs/awards.md). Each rule module says which keys an application asks for
(`claim_keys(evidence, applicant, p)`), computed from the evidence alone so they can be
looked up before the rules run. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..engine import Reason
from ..facts import ClaimHolder
from .common import reason


@dataclass(frozen=True)
class ClaimKind:
    """One kind of claim key: what it names, and the clause that makes it once-only."""

    kind: str
    clause: str
    parts: tuple[str, ...]
    zh: str
    en: str


CLAIM_KINDS: dict[str, ClaimKind] = {
    k.kind: k
    for k in (
        ClaimKind(
            "M1.invoice",
            "M1",
            ("enterprise", "benefit_year", "provider", "invoice_number"),
            "上年度实际支付的算力费用：同一发票只补贴一次",
            "Fees actually paid last year: one invoice is subsidised once",
        ),
        ClaimKind(
            "M2a.entity",
            "M2",
            ("entity",),
            "每个企业、高校院所一次性奖励",
            "One-time reward per enterprise, university or institute",
        ),
        ClaimKind(
            "M2b.model",
            "M2",
            ("model_id",),
            "通过国家大模型备案登记的前十名：每个模型一次性奖励",
            "First ten nationally filed industry models: one-time reward per model",
        ),
        ClaimKind(
            "M3.contract",
            "M3",
            ("vendor", "contract_number"),
            "同一合同仅能申领一次模型券",
            "One contract can be claimed only once",
        ),
        ClaimKind(
            "M4.project",
            "M4",
            ("recognition_id",),
            "每个示范项目扶持一次",
            "Each demonstration project is supported once",
        ),
        ClaimKind(
            "M5.purchase",
            "M5",
            ("enterprise", "product_recognition_id", "paid_on", "amount_fen"),
            "同一项目库产品采购只补贴一次",
            "One purchase of a library product is subsidised once",
        ),
        ClaimKind(
            "M6.project",
            "M6",
            ("enterprise", "diagnosis_reference"),
            "每个数字化转型标杆项目扶持一次",
            "Each benchmark transformation project is supported once",
        ),
        ClaimKind(
            "M7.standard",
            "M7",
            ("recognition_id",),
            "每项标准按主导单位排名奖励一次（认定记录 = 标准 + 单位 + 排名）",
            "Each standard is rewarded once per leading unit's rank (a recognition = standard + unit + rank)",
        ),
        ClaimKind("M8.enterprise", "M8", ("enterprise",), "最高一次性奖励", "A one-time reward"),
        ClaimKind(
            "M9.threshold",
            "M9",
            ("enterprise", "over_fen"),
            "营业收入首次超过门槛：每个门槛一次性",
            "Revenue first exceeding a threshold: once per threshold",
        ),
        ClaimKind(
            "M9.growth",
            "M9",
            ("enterprise", "year"),
            "营收增速奖励：每个年度一次",
            "Growth reward: once per year",
        ),
        ClaimKind(
            "M10.first_sale",
            "M10",
            ("recognition_id",),
            "首版次产品首次销售后1年内到账额：每个产品一次",
            "Amount received within a year of a product's first sale: once per product",
        ),
        ClaimKind(
            "M10.city_matching",
            "M10",
            ("enterprise", "year"),
            "上一年度深圳市首版次扶持的配套：每个年度一次",
            "Matching of last year's Shenzhen first-version support: once per year",
        ),
        ClaimKind(
            "M11.rent",
            "M11",
            ("enterprise", "year"),
            "上年度租金：每个年度一次",
            "Last year's rent: once per year",
        ),
        ClaimKind(
            "M12.platform",
            "M12",
            ("recognition_id",),
            "公共平台按认定级别一次性奖励",
            "A platform's one-time reward for its recognition level",
        ),
        ClaimKind(
            "M13.event_record",
            "M13",
            ("event_id",),
            "单个活动补贴一次：登记簿的活动记录，联合主办方共享一次补贴",
            "One subsidy per event: the registry's event record, shared by its co-organisers",
        ),
        ClaimKind(
            "M13.event",
            "M13",
            ("held_on", "event_name"),
            "单个活动补贴一次（活动记录之前的决定：日期与名称）",
            "One subsidy per event (decisions made before the event record: date and name)",
        ),
        ClaimKind(
            "M13.organiser_day",
            "M13",
            ("organiser", "held_on"),
            "同一主办方同一日期视为同一活动（活动记录之前的决定：换名不能再次申报）",
            "One organiser's event on one date is one event (decisions before the event record: a new name is none)",
        ),
    )
}


@dataclass(frozen=True)
class CapKind:
    """An annual cap that applies to the enterprise's year as a whole (across applications)."""

    kind: str
    clause: str
    parameter: str
    zh: str
    en: str


CAP_KINDS: dict[str, CapKind] = {
    k.kind: k
    for k in (
        CapKind(
            "M1.class_cap", "M1", "M1.revenue_classes", "算力券：按企业类别的年度上限", "Compute vouchers: class cap"
        ),
        CapKind(
            "M1.major_project_extra",
            "M1",
            "M1.major_project_extra_cap_fen",
            "重大人工智能项目额外补贴年度上限",
            "Major-project extra: annual cap",
        ),
        CapKind("M5.annual", "M5", "M5.annual_cap_fen", "每年补贴最高不超过30万元", "At most 300,000 a year"),
        CapKind(
            "M7.annual", "M7", "M7.annual_cap_fen", "同一企业同一年度累计不超过200万元", "At most 2,000,000 a year"
        ),
        CapKind(
            "M10.first_sale",
            "M10",
            "M10.annual_cap_fen",
            "首版次销售：同一企业同一年度不超过300万元",
            "First sale: at most 3,000,000 a year",
        ),
        CapKind(
            "M10.city_matching",
            "M10",
            "M10.annual_cap_fen",
            "市级配套：同一企业同一年度不超过300万元",
            "City matching: at most 3,000,000 a year",
        ),
    )
}


def key(kind: str, *parts: object) -> str:
    """`kind|part|part…`: readable, and a `|` inside a part cannot forge another key."""
    if kind not in CLAIM_KINDS:
        raise ValueError(f"unknown claim kind {kind}")
    if len(parts) != len(CLAIM_KINDS[kind].parts):
        raise ValueError(f"{kind} takes {CLAIM_KINDS[kind].parts}")
    return "|".join([kind, *(str(part).replace("%", "%25").replace("|", "%7C") for part in parts)])


def kind_of(claim_key: str) -> ClaimKind:
    return CLAIM_KINDS[claim_key.split("|", 1)[0]]


def normalised(text: str) -> str:
    """Names compared as a person would: no case, no spaces (full-width ones included)."""
    return "".join(text.split()).replace("\u3000", "").casefold()


#: a cap that covers whatever components the award has (M7: one component per standard)
EVERY_COMPONENT = "*"


@dataclass(frozen=True)
class Cap:
    """One annual cap an award uses: which components it covers and the limit in effect."""

    kind: str
    year: int
    limit_fen: int
    components: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        spec = CAP_KINDS[self.kind]
        return {
            "kind": self.kind,
            "year": self.year,
            "limit_fen": self.limit_fen,
            "components": list(self.components),
            "clause": spec.clause,
            "parameter": spec.parameter,
        }


def held(claimed: Mapping[str, ClaimHolder], keys: Iterable[str]) -> dict[str, ClaimHolder]:
    return {k: claimed[k] for k in keys if k in claimed}


def claim_reasons(holders: Mapping[str, ClaimHolder]) -> tuple[list[Reason], list[Reason]]:
    """Failures for keys already awarded; review reasons for keys another application is waiting on."""
    failures: list[Reason] = []
    reviews: list[Reason] = []
    for claim_key, holder in sorted(holders.items()):
        clause = kind_of(claim_key).clause
        if holder.status == "awarded":
            failures.append(
                reason(
                    clause,
                    "already_awarded",
                    f"{claim_key} 已由申请 {holder.application_id} 获得扶持（{clause} 一次性）",
                    f"{claim_key} was already awarded to application {holder.application_id} ({clause}: once only)",
                )
            )
        else:
            reviews.append(
                reason(
                    clause,
                    "claimed_by_pending_application",
                    f"{claim_key} 也在申请 {holder.application_id} 中待审：只能核准其中一个",
                    f"{claim_key} is also claimed by application {holder.application_id}, still in review: "
                    "only one of them can be approved",
                )
            )
    return failures, reviews


def allocate(amount_fen: int, components: Mapping[str, int]) -> dict[str, int]:
    """Spread an approved amount over the decision's components in order; what is left is `a1`.

    A reviewer may approve less than the rule computed (the first components are filled
    first); an A1 decision may pay more (the rest is `a1`, charged to the first cap).
    """
    left = amount_fen
    spread: dict[str, int] = {}
    for name, value in components.items():
        if name == "a1":
            continue
        part = min(left, max(0, value))
        if part:
            spread[name] = part
        left -= part
    if left > 0:
        spread["a1"] = left
    return spread


def cap_uses(amount_fen: int, components: Mapping[str, int], caps: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """How much of each cap an award of `amount_fen` uses (an A1 surplus counts on the first cap)."""
    caps = list(caps)
    if not caps:
        return []
    spread = allocate(amount_fen, components)
    uses: list[dict[str, Any]] = []
    for index, cap in enumerate(caps):
        covered = cap["components"]
        used = sum(value for name, value in spread.items() if name in covered or EVERY_COMPONENT in covered)
        if index == 0 and EVERY_COMPONENT not in covered:
            used += spread.get("a1", 0)
        if used:
            uses.append({**cap, "amount_fen": used})
    return uses
