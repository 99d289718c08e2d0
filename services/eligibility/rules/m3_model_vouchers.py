"""M3 — model vouchers (第（三）条 模型券) for buying CAC-filed domestic models.

The model must exist, come from the contract's vendor, and hold a CAC generative-AI
service filing (备案; a registration, 登记, does not count: `M3.filing_kinds`) in force on the
contract date and on the claim date (`M3.filing_in_force_on`) (EXAMPLES M3-5: absent, or
revoked before the contract date → "model_not_filed"). The
eligible base is the contract's cost components of the kinds in
`M3.eligible_cost_components`; one claim is at most `M3.contract_ratio` of it, rounded down
(M3-4: 333.33 → 99.99; M3-3: 3,000,000.01 on 10,000,000.00 → "over_contract_share").
Without a claimed amount the maximum is claimed (M3-1).

Ceilings: the vouchers ledger enforces "one claim per contract" and the annual ceilings
atomically when a voucher is claimed (M3-2, M3-6..8, M3-9..14). Here an earlier standing
decision carrying this contract's component key ("contract:<vendor credit code>:<number>")
makes a second application on the contract ineligible (M3-2, early); the annual claim
headroom (`M3.annual_claim_ceiling_fen` in the calendar year of the claim, less standing
decisions) is shown in the trace but decides nothing: a decision is not a claim, and the
ledger counts claims when they happen (M3-6 / M3-7).
"""

from __future__ import annotations

from typing import Any

from ..engine import ParamView, Reason, Result, Trace
from ..evidence import M3Evidence
from ..facts import Facts, FactsRequest
from . import claims
from .checks import share, was_awarded, yuan
from .common import awarded_in, reason

MEASURE = "M3"
TITLE = {"zh": "模型券", "en": "Model vouchers"}
#: Filing statuses (registry vocabulary) that mean the filing / registration is in force.
IN_FORCE = ("filed", "registered")


def claim_keys(evidence: M3Evidence, applicant: str, p: Any) -> list[str]:
    return [claims.key("M3.contract", evidence.contract.vendor_credit_code, evidence.contract.number)]


def facts_needed(evidence: M3Evidence) -> FactsRequest:
    contract = evidence.contract
    return FactsRequest(
        model_id=contract.model_id, filings_on=contract.signed_on, filings_on_as_of=True, prior_awards=True
    )


def check_filing(evidence: M3Evidence, facts: Facts, p: ParamView, trace: Trace) -> list[Reason]:
    """已在国家互联网信息办公室完成生成式人工智能服务备案: a filing of the kinds that count, in force on each date.

    Which CAC records count (`M3.filing_kinds`: a 备案, not a 登记) and on which dates the
    filing must be in force (`M3.filing_in_force_on`: the contract date and the claim date)
    are dated parameters, our reading of the text.
    """
    contract = evidence.contract
    kinds: tuple[str, ...] = p("M3.filing_kinds")
    on: tuple[str, ...] = p("M3.filing_in_force_on")
    dates = {"contract_date": (contract.signed_on, facts.filings), "claim_date": (facts.as_of, facts.filings_on_as_of)}
    failures: list[Reason] = []
    for which in on:
        day, read = dates[which]
        if read is None:  # facts recorded before the claim date was checked (a decision re-run on them)
            trace.step(
                "M3",
                "申领日的备案记录未读取（事实记录早于该项检查），不作判断",
                "The filings on the claim date were not read (facts recorded before this check): not decided",
                inputs={"date": day.isoformat()},
                outcome="not_read",
            )
            continue
        filings = read
        in_force = [f for f in filings if f.status in IN_FORCE and f.filed_on <= day]
        counted = [f for f in in_force if f.kind in kinds]
        zh_day, en_day = ("合同签订日", "contract date") if which == "contract_date" else ("申领日", "claim date")
        trace.step(
            "M3",
            f"模型须在{zh_day}已完成网信办生成式人工智能服务备案且备案有效",
            f"The model must hold a CAC generative-AI filing in force on the {en_day}",
            inputs={
                "date": day.isoformat(),
                "filings": [
                    {"number": f.number, "kind": f.kind, "status": f.status, "filed_on": f.filed_on.isoformat()}
                    for f in filings
                ],
                "in_force": [f.number for f in counted],
                "kinds_counted": list(kinds),
                "statuses_in_force": list(IN_FORCE),
            },
            outcome="pass" if counted else "fail",
        )
        if counted:
            continue
        if in_force:  # a registration (登记) only: an app calling a filed model, not a filed model
            numbers = ", ".join(f.number for f in in_force)
            failures.append(
                reason(
                    "M3",
                    "registration_is_not_filing",
                    f"{zh_day} {day} 该模型只有网信办登记（{numbers}），没有生成式人工智能服务备案",
                    f"On the {en_day} {day} the model only had a CAC registration ({numbers}), "
                    "not a generative-AI service filing",
                )
            )
        else:
            failures.append(
                reason(
                    "M3",
                    "model_not_filed" if which == "contract_date" else "model_not_filed_on_claim_date",
                    f"{zh_day} {day} 该模型没有有效的网信办生成式人工智能服务备案（未备案或已撤销）",
                    f"On the {en_day} {day} the model had no CAC generative-AI filing in force (absent or revoked)",
                )
            )
    return failures[:1]  # the first date that fails says why; the trace shows every date


def contract_key(evidence: M3Evidence) -> str:
    """The component key that marks a contract as claimed."""
    return f"contract:{evidence.contract.vendor_credit_code}:{evidence.contract.number}"


def evaluate(evidence: M3Evidence, facts: Facts, p: ParamView, trace: Trace) -> Result:
    contract = evidence.contract
    failures: list[Reason] = []

    if contract.signed_on > facts.as_of:
        failures.append(
            reason(
                "M3",
                "contract_not_signed",
                f"合同签订日期 {contract.signed_on} 晚于申领日期 {facts.as_of}：须在签订合同后申领",
                f"The contract is dated {contract.signed_on}, after the claim date {facts.as_of}: "
                "claims come after signing",
            )
        )

    model = facts.model
    model_failures: list[Reason] = []
    if model is None:
        model_failures.append(
            reason(
                "M3",
                "model_not_found",
                f"登记簿中没有模型 {contract.model_id}",
                f"The registry has no model {contract.model_id}",
            )
        )
    elif model.vendor_credit_code != contract.vendor_credit_code:
        model_failures.append(
            reason(
                "M3",
                "model_not_from_vendor",
                f"模型 {model.name} 的供应商为 {model.vendor_credit_code}，"
                f"不是合同供应商 {contract.vendor_credit_code}",
                f"The model {model.name} is supplied by {model.vendor_credit_code}, "
                f"not by the contract's vendor {contract.vendor_credit_code}",
            )
        )
    trace.step(
        "M3",
        "模型须存在且由合同供应商提供",
        "The model must exist and come from the contract's vendor",
        inputs={
            "model_id": str(contract.model_id),
            "found": model is not None,
            "model_vendor": model.vendor_credit_code if model else None,
            "contract_vendor": contract.vendor_credit_code,
            "signed_on": contract.signed_on.isoformat(),
            "claimed_on": facts.as_of.isoformat(),
        },
        outcome="fail" if failures or model_failures else "pass",
    )
    failures += model_failures

    failures += check_filing(evidence, facts, p, trace)

    counted: tuple[str, ...] = p("M3.eligible_cost_components")
    base = sum(c.amount_fen for c in contract.components if c.kind in counted)
    excluded = [{"kind": c.kind, "amount_fen": c.amount_fen} for c in contract.components if c.kind not in counted]
    ratio = p("M3.contract_ratio")
    maximum = share(base, ratio)
    trace.step(
        "M3",
        "单次申领不超过合同额（计入部分）的比例，向下取整到分",
        "One claim is at most the ratio of the contract's eligible costs, rounded down to the fen",
        inputs={"contract": contract.number, "excluded_components": excluded},
        amounts={"contract_fen": contract.amount_fen, "eligible_base_fen": base, "max_claim_fen": maximum},
        outcome="pass" if maximum > 0 else "fail",
    )
    if maximum == 0:
        failures.append(
            reason(
                "M3",
                "no_eligible_costs",
                "合同中没有可计入的模型费用（私有化部署、云化部署、API调用、一体机中大模型部分）",
                "The contract has no eligible model costs (private or cloud deployment, API calls, "
                "the model part of an appliance)",
            )
        )
    amount = evidence.claim_fen if evidence.claim_fen is not None else maximum
    if amount > maximum:
        failures.append(
            reason(
                "M3",
                "over_contract_share",
                f"申领金额 {yuan(amount)} 元超过合同计入金额的 {ratio:%} 上限 {yuan(maximum)} 元",
                f"The claim of {yuan(amount)} yuan exceeds {ratio:%} of the contract's eligible costs: "
                f"at most {yuan(maximum)} yuan",
            )
        )

    key = contract_key(evidence)
    claimed_before = was_awarded(facts.prior_awards, key)
    year = facts.as_of.year
    ceiling: int = p("M3.annual_claim_ceiling_fen")
    already = awarded_in(facts.prior_awards, year)
    headroom = max(0, ceiling - already)
    trace.step(
        "M3",
        "同一合同仅能申领一次；每自然年度累计申领不超过上限（按申领日期所在年度）",
        "One claim per contract; claims per calendar year at most the ceiling (year of the claim date)",
        inputs={"contract_key": key, "contract_claimed_before": claimed_before, "year": year},
        amounts={
            "claim_fen": amount,
            "annual_ceiling_fen": ceiling,
            "claimed_in_year_fen": already,
            "headroom_fen": headroom,
        },
        # the headroom here is advisory: decisions are not claims, the ledger enforces the
        # annual ceilings atomically when the voucher is claimed (M3-6..M3-8)
        outcome="fail" if claimed_before else ("info: over the remaining headroom" if amount > headroom else "pass"),
    )
    if claimed_before:
        failures.append(
            reason(
                "M3",
                "contract_already_claimed",
                f"合同 {contract.number} 已申领过模型券",
                f"Model vouchers were already claimed on contract {contract.number}",
            )
        )
    if failures:
        return Result.ineligible(*failures)
    trace.step("M3", "模型券金额", "Model voucher amount", amounts={"amount_fen": amount}, outcome="eligible")
    return Result.eligible(amount, {key: amount})
