"""Every clause of the text (M1–M15, A1–A4 and the preamble) and what the service does for it.

`GET /v1/policy` lists them all, so a policy officer can check the service against the text
clause by clause — the ones that pay nothing included, recorded as such. The measures'
conditions are in docs/conditions.md; their amounts in the rule modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Treatment = Literal["computed", "record_only", "manual_decision", "administration", "precedence", "validity", "scope"]


@dataclass(frozen=True)
class Clause:
    id: str
    zh: str
    en: str
    treatment: Treatment
    pays: bool
    does_zh: str
    does_en: str


def _measure(clause: str, zh: str, en: str, does_zh: str, does_en: str) -> Clause:
    return Clause(clause, zh, en, "computed", True, does_zh, does_en)


CLAUSES: dict[str, Clause] = {
    c.id: c
    for c in (
        Clause(
            "preamble",
            "适用范围：龙岗区",
            "Scope: Longgang District",
            "scope",
            False,
            "申请人须在龙岗区注册（M13 除外：活动在龙岗举办）",
            "Applicants must be registered in Longgang (not for M13: the event is held there)",
        ),
        _measure(
            "M1",
            "算力券",
            "Compute vouchers",
            "人工智能相关企业上年度向非关联方支付的算力费用，按梯度比例与企业类别上限计算；发算力券",
            "Last year's compute fees an AI-related enterprise paid to non-affiliates, tiered and capped by "
            "revenue class; paid as compute vouchers",
        ),
        _measure(
            "M2",
            "支持自主开发大模型",
            "Self-developed large models",
            "（a）国家重大项目或奖项：核准金额，最高500万元；（b）国家备案前十名的模型：每个模型200万元",
            "(a) a national project or award: an approved amount, at most 5,000,000; (b) each model among the "
            "first ten nationally filed: 2,000,000",
        ),
        _measure(
            "M3",
            "模型券",
            "Model vouchers",
            "已完成网信办备案的模型的采购合同：单次不超过合同额30%；发模型券，年度上限由账本执行",
            "A contract for a CAC-filed model: at most 30% of the contract per claim; paid as model vouchers, "
            "the annual ceilings held by the ledger",
        ),
        _measure(
            "M4", "人工智能软件应用示范项目", "AI demonstration projects", "每个项目30万元", "300,000 per project"
        ),
        _measure(
            "M5",
            "四上企业数字化转型",
            "Four-above digital transformation",
            "采购项目库产品的比例补贴，每年最高30万元",
            "A share of spend on library products, at most 300,000 a year",
        ),
        _measure(
            "M6",
            "人工智能数字化转型标杆项目",
            "Benchmark digital-transformation projects",
            "获市诊断的工业企业：审计投入的50%，最高100万元",
            "Industrial enterprises with the city's diagnosis: 50% of the audited investment, at most 1,000,000",
        ),
        _measure(
            "M7",
            "人工智能技术标准",
            "AI standards",
            "按标准级别与主导排名奖励，每年最高200万元",
            "By standard level and leading rank, at most 2,000,000 a year",
        ),
        _measure(
            "M8",
            "重点软件企业",
            "Key software enterprises",
            "一次性奖励最高30万元",
            "A one-time reward, at most 300,000",
        ),
        _measure(
            "M9",
            "人工智能企业发展壮大",
            "Growth of AI enterprises",
            "人工智能类软件和互联网企业：营收首次超过门槛与增速奖励",
            "AI software and internet enterprises: revenue thresholds first exceeded, and growth",
        ),
        _measure(
            "M10",
            "人工智能产品首版次销售",
            "First-version AI software sales",
            "首次销售后1年内到账额的20%；市首版次扶持的30%配套（登记簿记录）；各每年最高300万元",
            "20% of the amount received within a year of the first sale; 30% matching of the city's recorded "
            "support; each at most 3,000,000 a year",
        ),
        _measure(
            "M11",
            "产业用房租金补贴",
            "Rent subsidies",
            "具有人工智能能力的规模以上软件及互联网企业的租金补贴（区属创新型产业用房按其办法，不在此计算）",
            "Rent subsidy for above-scale AI software and internet enterprises (district-owned innovative "
            "housing follows its own rules: not computed here)",
        ),
        _measure(
            "M12",
            "人工智能公共平台",
            "Public platforms",
            "上年度国家级认定50万元，省级20万元",
            "Recognised last year: national 500,000, provincial 200,000",
        ),
        _measure(
            "M13",
            "人工智能领域重大活动",
            "Major AI events",
            "登记簿中的活动记录：审计金额的50%，单个活动最高50万元，联合主办方共享一次",
            "The registry's event record: 50% of the audited cost, at most 500,000 per event, shared by its "
            "co-organisers",
        ),
        Clause(
            "M14",
            "人工智能领域人才集聚",
            "Talent",
            "record_only",
            False,
            "条文未规定扶持标准或金额：不计算、不发放；列出以示完整",
            "The text sets no criteria or amounts: nothing is computed or paid; listed for completeness",
        ),
        Clause(
            "M15",
            "加大人工智能产业投入",
            "Investment in the AI industry",
            "record_only",
            False,
            "条文未规定扶持标准或金额：不计算、不发放；列出以示完整",
            "The text sets no criteria or amounts: nothing is computed or paid; listed for completeness",
        ),
        Clause(
            "A1",
            "一事一议",
            "Case-by-case decisions",
            "manual_decision",
            True,
            "审批人的人工决定，须写明理由，受年度上限约束，全程审计（POST …/manual-decisions）",
            "An approver's manual decision with a written reason, held to the annual caps, audited "
            "(POST …/manual-decisions)",
        ),
        Clause(
            "A2",
            "由区工业和信息化局负责解释",
            "Interpreted by the district bureau",
            "administration",
            False,
            "区局管理本项目：审核与审批（四眼原则）、参数版本、预算上限（券服务）",
            "The bureau runs the programme: review and approval (four eyes), parameter versions, budget "
            "ceilings (vouchers service)",
        ),
        Clause(
            "A3",
            "与其他规定不一致的以本措施为准",
            "These measures prevail over inconsistent district rules",
            "precedence",
            False,
            "每份申请附申请人声明：同一事项未获区其他扶持；声明有其他扶持的转人工审核；声明随申请保存并显示在审核轨迹中",
            "Each application carries the applicant's declaration that the same item has no other district "
            "funding; declaring other funding sends it to review; the declaration is stored with the "
            "application and shown in the trace",
        ),
        Clause(
            "A4",
            "施行日期与有效期",
            "Effective date and validity",
            "validity",
            False,
            "申请日期须在有效期内（起始日期为可由管理员加载的参数）",
            "The application date must be inside the validity window (its start date is a parameter an "
            "administrator loads)",
        ),
    )
}
