"""Unit tests of the measure rules M2–M13: pure functions, no database, no HTTP.

Each test builds evidence and registry facts directly, loads the shipped parameter file
and calls `evaluate_application`, then checks the outcome, the amount (fen), the failure
codes and that the trace names the parameters it read. Example ids (M2-1, M3-4, …) are
those of docs/policy.md's worked examples; clause ids those of docs/policy.md.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.eligibility.evidence import (
    CostComponent,
    LibraryPurchase,
    M2Evidence,
    M3Evidence,
    M4Evidence,
    M5Evidence,
    M6Evidence,
    M7Evidence,
    M8Evidence,
    M9Evidence,
    M10Evidence,
    M12Evidence,
    M13Evidence,
    ModelContract,
)
from services.eligibility.facts import (
    ClaimHolder,
    Facts,
    FilingFacts,
    ModelFacts,
    OrganisationFacts,
    PriorAward,
    RecognitionFacts,
)
from services.eligibility.parameters import DEFAULT_FILE, ParameterSet, Value, load_parameter_file
from services.eligibility.rules import RULES, Evaluation, evaluate_application, facts_needed
from services.eligibility.rules.claims import key
from shared.money import yuan

APPLICANT = "9144030071526726XG"
VENDOR = "914403001922038216"
OTHER = "91440300708461136T"
AS_OF = date(2025, 6, 1)
PARAMS = load_parameter_file()


# --- builders ---------------------------------------------------------------------------------


def organisation(**overrides: Any) -> OrganisationFacts:
    values: dict[str, Any] = {
        "credit_code": APPLICANT,
        "name": "深圳龙岗测试科技有限公司",
        "kind": "enterprise",
        "registered_district": "440307",
        "registered_on": date(2021, 5, 10),
        "four_above_category": "above_scale_services",
        "is_software_internet": True,
        "owns_district_industrial_housing": False,
    }
    return OrganisationFacts(**(values | overrides))


def make_facts(as_of: date = AS_OF, org: OrganisationFacts | None = None, **fields: Any) -> Facts:
    """Facts of an applicant recognised as an AI enterprise (M1, M9, M11) and as industrial, with its diagnosis (M6)."""
    org = org or organisation()
    fields["recognitions"] = [*STANDING, *fields.get("recognitions", [])]
    events = {str(e.id): e for e in (event(held, level) for held in (True, False) for level in INFLUENCES)}
    fields["referenced"] = {str(DIAGNOSIS.id): DIAGNOSIS, **events, **fields.get("referenced", {})}
    return Facts(as_of=as_of, organisation=org, applicant=org.credit_code, **fields)


def awarded(*claim_keys: str) -> dict[str, ClaimHolder]:
    """The award register already holds these keys (an earlier approved award)."""
    return {k: ClaimHolder(application_id="earlier", status="awarded") for k in claim_keys}


def recognition(
    kind: str,
    *,
    owner: str = APPLICANT,
    active: bool = True,
    recognised_on: date = date(2025, 3, 1),
    rid: uuid.UUID | None = None,
    **details: Any,
) -> RecognitionFacts:
    return RecognitionFacts(
        id=rid or uuid.uuid4(),
        credit_code=owner,
        recognised_on=recognised_on,
        active=active,
        details={"kind": kind, **details},
    )


INFLUENCES = ("international", "national", "regional")

#: M10 city matching: the city's first-version support of 2024, as the registry records it
CITY_SUPPORT = recognition(
    "city_first_version_support",
    recognised_on=date(2024, 12, 1),
    project="深圳市首版次软件扶持",
    year=2024,
    amount_fen=500_000_000,
    authority="深圳市工业和信息化局",
)
CITY_MATCHING = M10Evidence(measure="M10", track="city_matching", year=2024, recognition_id=CITY_SUPPORT.id)

#: what every applicant of these tests holds unless a test says otherwise
STANDING = (
    recognition(
        "ai_enterprise", recognised_on=date(2021, 5, 10), list="龙岗区人工智能企业白名单", authority="区工信局"
    ),
    recognition("industrial_enterprise", recognised_on=date(2021, 5, 10), industry_section="C", authority="区统计局"),
)
DIAGNOSIS = recognition(
    "digital_diagnosis",
    recognised_on=date(2024, 6, 1),
    project="诊断",
    reference="深工信诊断〔2024〕12号",
    authority="市工信局",
)


def referenced(*recognitions: RecognitionFacts) -> dict[str, RecognitionFacts | None]:
    return {str(r.id): r for r in recognitions}


def prior(
    year: int, amount_fen: int, components: dict[str, int] | None = None, basis: dict[str, Any] | None = None
) -> PriorAward:
    return PriorAward(
        decision_id=uuid.uuid4(), year=year, amount_fen=amount_fen, components=components or {}, basis=basis or {}
    )


def run(evidence: Any, facts: Facts, parameters: ParameterSet = PARAMS) -> Evaluation:
    return evaluate_application(evidence, facts.as_of, facts, parameters)


def codes(evaluation: Evaluation) -> list[str]:
    return [failure.code for failure in evaluation.result.failures]


def review_codes(evaluation: Evaluation) -> list[str]:
    return [r.code for r in evaluation.result.review_reasons]


def parameters_read(evaluation: Evaluation) -> set[str]:
    return {entry["id"] for step in evaluation.trace for entry in step["parameters"]}


def assert_eligible(evaluation: Evaluation, amount_fen: int) -> None:
    result = evaluation.result
    assert result.outcome == "eligible", (result.failures, result.review_reasons)
    assert result.amount_fen == amount_fen
    assert not result.failures


def assert_ineligible(evaluation: Evaluation, *expected: str) -> None:
    result = evaluation.result
    assert result.outcome == "ineligible", result
    assert result.amount_fen is None
    assert sorted(codes(evaluation)) == sorted(expected)
    for failure in result.failures:
        assert failure.zh
        assert failure.en


def test_every_measure_module_follows_the_pattern() -> None:
    assert sorted(RULES, key=lambda m: int(m[1:])) == [f"M{i}" for i in range(1, 14)]
    for measure, module in RULES.items():
        assert measure == module.MEASURE
        assert set(module.TITLE) == {"zh", "en"}
        assert module.__doc__
        assert measure in module.__doc__
        assert callable(module.facts_needed)
        assert callable(module.evaluate)


# --- M2 self-developed large models -------------------------------------------------------------


def filed_model(owner: str = APPLICANT, filed: date | None = date(2024, 6, 1), **extra: Any) -> ModelFacts:
    return ModelFacts(
        id=extra.pop("id", uuid.uuid4()),
        vendor_credit_code=owner,
        name="行业大模型",
        national_filing_date=filed,
        **extra,
    )


def others_filed(count: int, on: date = date(2024, 1, 1)) -> list[ModelFacts]:
    return [filed_model(owner=OTHER, filed=on) for _ in range(count)]


def m2b(model: ModelFacts) -> M2Evidence:
    return M2Evidence(measure="M2", track="b", model_id=model.id)


def test_m2_b_facts_needed() -> None:
    model_id = uuid.uuid4()
    request = facts_needed(M2Evidence(measure="M2", track="b", model_id=model_id))
    assert request.model_id == model_id
    assert request.ranked_models
    assert not request.prior_awards  # once per model: the award register says (facts.claimed)


@pytest.mark.parametrize(("earlier", "outcome"), [(0, "eligible"), (9, "eligible"), (10, "ineligible")])
def test_m2_b_only_the_first_ten_by_filing_date(earlier: int, outcome: str) -> None:
    """M2-1: the 11th industry model to pass the national filing → ineligible: top ten already awarded."""
    model = filed_model()
    later = others_filed(3, on=date(2024, 12, 1))  # filed after ours: never ahead of it
    facts = make_facts(model=model, ranked_models=[*others_filed(earlier), model, *later])
    evaluation = run(m2b(model), facts)
    assert evaluation.result.outcome == outcome
    if outcome == "eligible":
        assert_eligible(evaluation, yuan(2_000_000))
        assert evaluation.result.components == {"b": yuan(2_000_000)}
    else:
        assert_ineligible(evaluation, "not_in_first_ten")
        assert "11" in evaluation.result.failures[0].en
    assert {"M2.b_first_n", "M2.b_ranking"} <= parameters_read(evaluation)
    rank_step = next(s for s in evaluation.trace if "rank" in s["inputs"])
    assert rank_step["inputs"]["rank"] == earlier + 1


@pytest.mark.parametrize(("other_id_first", "outcome"), [(True, "ineligible"), (False, "eligible")])
def test_m2_b_ties_on_the_filing_date_go_by_id(other_id_first: bool, outcome: str) -> None:
    same_day = date(2024, 6, 1)
    ours = filed_model(filed=same_day, id=uuid.UUID(int=500))
    rival = filed_model(owner=OTHER, filed=same_day, id=uuid.UUID(int=1 if other_id_first else 900))
    facts = make_facts(model=ours, ranked_models=[*others_filed(9), rival, ours])
    assert run(m2b(ours), facts).result.outcome == outcome


@pytest.mark.parametrize(("rank", "outcome"), [(10, "eligible"), (11, "ineligible")])
def test_m2_b_the_registry_rank_wins_over_dates(rank: int, outcome: str) -> None:
    model = filed_model(national_filing_rank=rank)
    facts = make_facts(model=model, ranked_models=[model])  # by date alone it would be first
    evaluation = run(m2b(model), facts)
    assert evaluation.result.outcome == outcome


def test_m2_b_collects_every_failed_condition() -> None:
    model = filed_model(owner=OTHER, filed=None)
    facts = make_facts(model=model, ranked_models=[], claimed=awarded(key("M2b.model", model.id)))
    assert_ineligible(run(m2b(model), facts), "model_not_applicants", "not_nationally_filed", "already_awarded")


def test_m2_b_unknown_model() -> None:
    evidence = M2Evidence(measure="M2", track="b", model_id=uuid.uuid4())
    assert_ineligible(run(evidence, make_facts()), "model_not_found")


def m2a() -> M2Evidence:
    return M2Evidence(
        measure="M2", track="a", achievement="national_major_project", achievement_name="科技创新2030重大项目"
    )


@pytest.mark.parametrize("kind", ["enterprise", "university", "research_institute"])
def test_m2_a_goes_to_review_with_the_cap(kind: str) -> None:
    evaluation = run(m2a(), make_facts(org=organisation(kind=kind)))
    assert evaluation.result.outcome == "needs_review"
    assert evaluation.result.amount_fen == yuan(5_000_000)
    assert review_codes(evaluation) == ["amount_set_on_approval"]
    assert evaluation.result.components == {"a": yuan(5_000_000)}
    assert "M2.a_cap_fen" in parameters_read(evaluation)


def test_m2_a_is_one_time_per_entity() -> None:
    facts = make_facts(claimed=awarded(key("M2a.entity", APPLICANT)))
    assert_ineligible(run(m2a(), facts), "already_awarded")
    # a track-b award does not use up track a
    facts = make_facts(claimed=awarded(key("M2b.model", uuid.uuid4())))
    assert run(m2a(), facts).result.outcome == "needs_review"


def test_m2_a_other_applicant_kinds_are_ineligible() -> None:
    assert_ineligible(run(m2a(), make_facts(org=organisation(kind="individual"))), "applicant_kind")


# --- M3 model vouchers -----------------------------------------------------------------------------

MODEL_ID = uuid.UUID("00000000-0000-0000-0000-0000000000aa")
SIGNED = date(2025, 3, 1)


def m3(
    amount_fen: int = yuan(10_000_000),
    claim_fen: int | None = None,
    components: list[tuple[str, int]] | None = None,
    number: str = "HT-2025-001",
    signed_on: date = SIGNED,
) -> M3Evidence:
    parts = components or [("private_deployment", amount_fen)]
    return M3Evidence(
        measure="M3",
        contract=ModelContract(
            number=number,
            vendor_credit_code=VENDOR,
            model_id=MODEL_ID,
            signed_on=signed_on,
            amount_fen=amount_fen,
            components=[CostComponent(kind=kind, amount_fen=fen) for kind, fen in parts],  # type: ignore[arg-type]
        ),
        claim_fen=claim_fen,
    )


def m3_facts(
    as_of: date = AS_OF,
    filings: list[FilingFacts] | None = None,
    model_vendor: str = VENDOR,
    prior_awards: list[PriorAward] | None = None,
) -> Facts:
    model = ModelFacts(id=MODEL_ID, vendor_credit_code=model_vendor, name="DeepseekChat")
    if filings is None:
        filings = [
            FilingFacts(
                number="Beijing-DeepseekChat-202404280016", kind="filing", status="filed", filed_on=date(2024, 4, 28)
            )
        ]
    return make_facts(
        as_of=as_of, model=model, filings=filings, filings_on_as_of=filings, prior_awards=prior_awards or []
    )


def test_m3_facts_needed_reads_filings_on_the_contract_date_and_the_claim_date() -> None:
    request = facts_needed(m3())
    assert request.model_id == MODEL_ID
    assert request.filings_on == SIGNED
    assert request.filings_on_as_of
    assert request.prior_awards


def test_m3_1_claim_within_thirty_percent() -> None:
    """M3-1: 10,000,000.00 contract, claim 3,000,000.00 → accepted."""
    evaluation = run(m3(claim_fen=yuan(3_000_000)), m3_facts())
    assert_eligible(evaluation, yuan(3_000_000))
    assert evaluation.result.components == {f"contract:{VENDOR}:HT-2025-001": yuan(3_000_000)}
    assert {"M3.contract_ratio", "M3.eligible_cost_components", "M3.annual_claim_ceiling_fen"} <= parameters_read(
        evaluation
    )


def test_m3_2_a_contract_is_claimed_once() -> None:
    earlier = prior(2025, yuan(1_000_000), {f"contract:{VENDOR}:HT-2025-001": yuan(1_000_000)})
    assert_ineligible(run(m3(claim_fen=yuan(1)), m3_facts(prior_awards=[earlier])), "contract_already_claimed")


def test_m3_3_over_thirty_percent() -> None:
    """M3-3: 3,000,000.01 on a 10,000,000.00 contract → rejected, the answer says the maximum."""
    evaluation = run(m3(claim_fen=yuan("3000000.01")), m3_facts())
    assert_ineligible(evaluation, "over_contract_share")
    assert "3,000,000.00" in evaluation.result.failures[0].en
    assert "30%" in evaluation.result.failures[0].zh


def test_m3_4_maximum_rounds_down_to_the_fen() -> None:
    """M3-4: contract of 333.33, claim the maximum → 99.99."""
    assert_eligible(run(m3(amount_fen=yuan("333.33")), m3_facts()), yuan("99.99"))


def test_m3_only_model_costs_enter_the_base() -> None:
    evidence = m3(components=[("api_calls", yuan(8_000_000)), ("other", yuan(2_000_000))])
    evaluation = run(evidence, m3_facts())
    assert_eligible(evaluation, yuan(2_400_000))
    step = next(s for s in evaluation.trace if "eligible_base_fen" in s["amounts"])
    assert step["inputs"]["excluded_components"] == [{"kind": "other", "amount_fen": yuan(2_000_000)}]


@pytest.mark.parametrize(
    "filings",
    [
        pytest.param([], id="absent"),
        pytest.param(
            [FilingFacts(number="Beijing-X-20240428", kind="filing", status="revoked", filed_on=date(2024, 4, 28))],
            id="revoked-before-contract",
        ),
        pytest.param(
            [FilingFacts(number="Beijing-X-20250401", kind="filing", status="filed", filed_on=date(2025, 4, 1))],
            id="filed-after-contract",
        ),
    ],
)
def test_m3_5_model_not_filed(filings: list[FilingFacts]) -> None:
    evaluation = run(m3(), m3_facts(filings=filings))
    assert_ineligible(evaluation, "model_not_filed")


def test_m3_facts_recorded_before_the_claim_date_check_are_not_refused_for_it() -> None:
    """A decision re-run on stored facts that never read the claim date's filings: that date is not decided."""
    facts = m3_facts().model_copy(update={"filings_on_as_of": None})
    evaluation = run(m3(), facts)
    assert_eligible(evaluation, yuan(3_000_000))
    assert [s["outcome"] for s in evaluation.trace if "date" in s["inputs"] and s["clause"] == "M3"] == [
        "pass",
        "not_read",
    ]


def test_m3_a_registration_is_not_a_filing() -> None:
    """已……完成生成式人工智能服务备案: a 登记 (an app calling a filed model) is not a 备案 (M3.filing_kinds)."""
    filings = [
        FilingFacts(
            number="Guangdong-App-202405010001", kind="registration", status="registered", filed_on=date(2024, 5, 1)
        )
    ]
    evaluation = run(m3(), m3_facts(filings=filings))
    assert codes(evaluation) == ["registration_is_not_filing"]
    assert "M3.filing_kinds" in parameters_read(evaluation)


def test_m3_6_annual_headroom_is_shown_but_the_ledger_decides() -> None:
    """M3-6 is enforced by the ledger at claim time; the decision only shows the headroom."""
    earlier = prior(2025, yuan(3_000_000), {f"contract:{VENDOR}:HT-2025-000": yuan(3_000_000)})
    evaluation = run(m3(claim_fen=yuan(3_000_000)), m3_facts(prior_awards=[earlier]))
    assert_eligible(evaluation, yuan(3_000_000))
    step = next(s for s in evaluation.trace if "headroom_fen" in s["amounts"])
    assert step["amounts"]["headroom_fen"] == yuan(2_000_000)
    assert step["outcome"] == "info: over the remaining headroom"


def test_m3_6_the_remaining_headroom_can_be_claimed() -> None:
    earlier = prior(2025, yuan(3_000_000))
    assert_eligible(run(m3(claim_fen=yuan(2_000_000)), m3_facts(prior_awards=[earlier])), yuan(2_000_000))


def test_m3_7_the_ceiling_is_per_calendar_year_of_the_claim() -> None:
    """M3-7: as M3-6, but claimed on 2026-01-02 (contract signed in 2025) → accepted."""
    earlier = prior(2025, yuan(3_000_000))
    evaluation = run(m3(claim_fen=yuan(3_000_000)), m3_facts(as_of=date(2026, 1, 2), prior_awards=[earlier]))
    assert_eligible(evaluation, yuan(3_000_000))


def test_m3_collects_every_failed_condition() -> None:
    evaluation = run(
        m3(claim_fen=yuan(3_500_000)),
        m3_facts(filings=[], model_vendor=OTHER, prior_awards=[prior(2025, yuan(4_000_000))]),
    )
    assert_ineligible(evaluation, "model_not_from_vendor", "model_not_filed", "over_contract_share")


def test_m3_unknown_model_and_unsigned_contract() -> None:
    facts = make_facts(model=None, filings=[])
    evaluation = run(m3(signed_on=date(2025, 7, 1)), facts)
    assert_ineligible(evaluation, "contract_not_signed", "model_not_found", "model_not_filed")


# --- M4 demonstration projects -------------------------------------------------------------------


def test_m4_award_per_project() -> None:
    project = recognition("demonstration_project", project="智慧园区", authority="工业和信息化部")
    evaluation = run(M4Evidence(measure="M4", recognition_id=project.id), make_facts(referenced=referenced(project)))
    assert_eligible(evaluation, yuan(300_000))
    assert evaluation.result.components == {str(project.id): yuan(300_000)}
    assert "M4.award_fen" in parameters_read(evaluation)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"kind": "public_platform"}, ["wrong_recognition_kind"]),
        ({"active": False}, ["recognition_inactive"]),
        ({"owner": OTHER}, ["recognition_not_applicants"]),
        ({"active": False, "owner": OTHER}, ["recognition_inactive", "recognition_not_applicants"]),
        ({"missing": True}, ["recognition_not_found"]),
        ({"awarded": True}, ["already_awarded"]),
    ],
)
def test_m4_failures(change: dict[str, Any], expected: list[str]) -> None:
    project = recognition(
        change.get("kind", "demonstration_project"),
        owner=change.get("owner", APPLICANT),
        active=change.get("active", True),
    )
    claimed = awarded(key("M4.project", project.id)) if change.get("awarded") else {}
    facts = make_facts(referenced={} if change.get("missing") else referenced(project), claimed=claimed)
    assert_ineligible(run(M4Evidence(measure="M4", recognition_id=project.id), facts), *expected)


# --- M5 four-above digital transformation ------------------------------------------------------


def product(active: bool = True, kind: str = "digital_product") -> RecognitionFacts:
    return recognition(kind, owner=VENDOR, active=active, product="AI 质检系统")


def purchase(item: RecognitionFacts | uuid.UUID, amount: int, paid_on: date = date(2024, 5, 1)) -> LibraryPurchase:
    rid = item if isinstance(item, uuid.UUID) else item.id
    return LibraryPurchase(product_recognition_id=rid, amount_fen=amount, paid_on=paid_on)


def test_m5_only_library_products_paid_in_the_year() -> None:
    good, inactive = product(), product(active=False)
    unknown = uuid.uuid4()
    evidence = M5Evidence(
        measure="M5",
        year=2024,
        purchases=[
            purchase(good, yuan("400000.01")),
            purchase(good, yuan(100_000), paid_on=date(2023, 12, 31)),
            purchase(inactive, yuan(100_000)),
            purchase(unknown, yuan(100_000)),
        ],
    )
    evaluation = run(evidence, make_facts(referenced={**referenced(good, inactive), str(unknown): None}))
    assert_eligible(evaluation, yuan(120_000))  # 30% of 400,000.01 = 120,000.003 → 120,000.00
    step = next(s for s in evaluation.trace if "excluded" in s["inputs"])
    assert sorted(row["reason"] for row in step["inputs"]["excluded"]) == [
        "not_in_library",
        "not_in_library",
        "not_paid_in_year",
    ]
    assert {"M5.ratio", "M5.annual_cap_fen"} <= parameters_read(evaluation)


@pytest.mark.parametrize(
    ("spend", "earlier", "expected"),
    [
        (yuan(2_000_000), 0, yuan(300_000)),  # capped
        (yuan(1_000_000), yuan(200_000), yuan(100_000)),  # cap less this year's earlier award
        (yuan(1_000), yuan(200_000), yuan(300)),
    ],
)
def test_m5_annual_cap(spend: int, earlier: int, expected: int) -> None:
    """The year's spend (this and the earlier award's 666,666.67 yuan) earns its share, less the earlier award."""
    good = product()
    this_year = prior(2024, earlier, {"subsidy": earlier}, {"spend_fen": 66_666_667})
    awards = [this_year, prior(2023, yuan(300_000))] if earlier else [prior(2023, yuan(300_000))]
    evidence = M5Evidence(measure="M5", year=2024, purchases=[purchase(good, spend)])
    assert_eligible(run(evidence, make_facts(referenced=referenced(good), prior_awards=awards)), expected)


def test_m5_cap_reached() -> None:
    good = product()
    evidence = M5Evidence(measure="M5", year=2024, purchases=[purchase(good, yuan(10_000))])
    facts = make_facts(referenced=referenced(good), prior_awards=[prior(2024, yuan(300_000))])
    assert_ineligible(run(evidence, facts), "annual_cap_reached")


def test_m5_collects_every_failed_condition() -> None:
    wrong_kind = product(kind="public_platform")
    evidence = M5Evidence(measure="M5", year=2024, purchases=[purchase(wrong_kind, yuan(10_000))])
    facts = make_facts(org=organisation(four_above_category=None), referenced=referenced(wrong_kind))
    assert_ineligible(run(evidence, facts), "not_four_above", "no_library_products")


def test_m5_no_purchase_in_the_year() -> None:
    good = product()
    evidence = M5Evidence(measure="M5", year=2025, purchases=[purchase(good, yuan(10_000))])
    assert_ineligible(run(evidence, make_facts(referenced=referenced(good))), "no_purchases_in_year")


# --- M6 benchmark transformation -----------------------------------------------------------------


def m6(investment_fen: int) -> M6Evidence:
    return M6Evidence(
        measure="M6",
        diagnosis_reference="深工信诊断〔2024〕12号",
        diagnosis_id=DIAGNOSIS.id,
        audited_investment_fen=investment_fen,
    )


@pytest.mark.parametrize(
    ("investment", "expected"),
    [
        pytest.param(yuan(3_000_000), yuan(1_000_000), id="M6-1"),
        (yuan(2_000_000), yuan(1_000_000)),
        (yuan(1_999_999), yuan("999999.50")),
        (yuan("0.03"), yuan("0.01")),  # 0.015 → 0.01: rounded down
    ],
)
def test_m6_half_the_audited_investment_capped(investment: int, expected: int) -> None:
    evaluation = run(m6(investment), make_facts())
    assert_eligible(evaluation, expected)
    assert {"M6.ratio", "M6.cap_fen"} <= parameters_read(evaluation)
    cap_step = [step for step in evaluation.trace if step["clause"] == "M6"][-1]
    assert cap_step["amounts"]["before_cap_fen"] == investment // 2
    assert cap_step["amounts"]["after_cap_fen"] == expected


def test_m6_a_new_parameter_version_changes_the_result_without_code() -> None:
    version = Value(
        effective_from=date(2025, 1, 1),
        effective_to=None,
        value=Decimal("0.40"),
        status="provisional",
        source="test: administrator version",
        origin="version:test",
    )
    changed = PARAMS.with_versions([("M6.ratio", version)])
    after = run(m6(yuan(1_000_000)), make_facts(), changed)
    assert_eligible(after, yuan(400_000))
    used = next(e for s in after.trace for e in s["parameters"] if e["id"] == "M6.ratio")
    assert used["value"] == "0.40"
    assert used["origin"] == "version:test"
    # before the version's date the file's value still applies
    assert_eligible(run(m6(yuan(1_000_000)), make_facts(as_of=date(2024, 12, 1)), changed), yuan(500_000))
    assert_eligible(run(m6(yuan(1_000_000)), make_facts(), PARAMS), yuan(500_000))


def test_m6_an_edited_parameter_file_changes_the_result(tmp_path: Path) -> None:
    document = yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))
    document["parameters"]["M6.cap_fen"]["history"][0]["value"] = yuan(800_000)
    path = tmp_path / "parameters.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    edited = load_parameter_file(path)
    assert edited.digest != PARAMS.digest
    evaluation = run(m6(yuan(3_000_000)), make_facts(), edited)
    assert_eligible(evaluation, yuan(800_000))
    assert evaluation.parameters_digest == edited.digest


# --- M7 AI standards ----------------------------------------------------------------------------


def standard(level: str, rank: int, published: date = date(2025, 2, 1), **kw: Any) -> RecognitionFacts:
    return recognition("ai_standard", recognised_on=published, standard="人工智能 术语", level=level, rank=rank, **kw)


def m7(*standards: RecognitionFacts, year: int = 2025) -> M7Evidence:
    return M7Evidence(measure="M7", year=year, standard_recognition_ids=[s.id for s in standards])


def test_m7_reward_by_level_and_rank() -> None:
    first = standard("international", 1)
    second = standard("national", 2)
    third = standard("industry", 3)
    old = standard("industry", 1, published=date(2024, 12, 31))
    evaluation = run(m7(first, second, third, old), make_facts(referenced=referenced(first, second, third, old)))
    assert_eligible(evaluation, yuan(1_250_000))
    assert evaluation.result.components == {str(first.id): yuan(1_000_000), str(second.id): yuan(250_000)}
    step = next(s for s in evaluation.trace if "not_rewarded" in s["inputs"])
    reasons = {row["recognition_id"]: row["reason"] for row in step["inputs"]["not_rewarded"]}
    assert reasons == {str(third.id): "rank_not_rewarded", str(old.id): "not_published_in_year"}
    assert {"M7.level_rewards_fen", "M7.rank_shares", "M7.annual_cap_fen"} <= parameters_read(evaluation)


@pytest.mark.parametrize(
    ("earlier", "expected", "parts"),
    [
        (0, yuan(2_000_000), [yuan(1_000_000), yuan(1_000_000)]),  # three internationals: 3,000,000 capped
        (yuan(1_500_000), yuan(500_000), [yuan(500_000)]),  # less this year's earlier award
    ],
)
def test_m7_annual_cap(earlier: int, expected: int, parts: list[int]) -> None:
    items = [standard("international", 1) for _ in range(3)]
    awards = [prior(2025, earlier)] if earlier else []
    evaluation = run(m7(*items), make_facts(referenced=referenced(*items), prior_awards=awards))
    assert_eligible(evaluation, expected)
    assert list(evaluation.result.components.values()) == parts


def test_m7_a_standard_is_rewarded_once() -> None:
    done, new = standard("national", 1), standard("industry", 1)
    awards = [prior(2025, yuan(500_000), {str(done.id): yuan(500_000)})]
    evaluation = run(m7(done, new), make_facts(referenced=referenced(done, new), prior_awards=awards))
    assert_eligible(evaluation, yuan(300_000))
    assert evaluation.result.components == {str(new.id): yuan(300_000)}


def test_m7_nothing_rewardable() -> None:
    done, low, old = standard("national", 1), standard("national", 3), standard("national", 1, date(2023, 1, 1))
    awards = [prior(2024, yuan(500_000), {str(done.id): yuan(500_000)})]
    evaluation = run(m7(done, low, old), make_facts(referenced=referenced(done, low, old), prior_awards=awards))
    assert_ineligible(evaluation, "already_rewarded", "rank_not_rewarded", "not_published_in_year")


def test_m7_software_enterprises_with_their_own_standards_only() -> None:
    theirs = standard("national", 1, owner=OTHER)
    facts = make_facts(org=organisation(is_software_internet=False), referenced=referenced(theirs))
    assert_ineligible(run(m7(theirs), facts), "not_software_enterprise", "recognition_not_applicants")


# --- M8 key software enterprises --------------------------------------------------------------------


def test_m8_one_time_reward() -> None:
    listed = recognition("key_software_enterprise", list="shenzhen", year=2024)
    evidence = M8Evidence(measure="M8", recognition_id=listed.id)
    evaluation = run(evidence, make_facts(referenced=referenced(listed)))
    assert_eligible(evaluation, yuan(300_000))
    assert "M8.award_fen" in parameters_read(evaluation)
    again = make_facts(referenced=referenced(listed), claimed=awarded(key("M8.enterprise", APPLICANT)))
    assert_ineligible(run(evidence, again), "already_awarded")


def test_m8_recognition_must_be_active_and_the_right_kind() -> None:
    wrong = recognition("demonstration_project", active=False)
    evaluation = run(M8Evidence(measure="M8", recognition_id=wrong.id), make_facts(referenced=referenced(wrong)))
    assert_ineligible(evaluation, "wrong_recognition_kind", "recognition_inactive")


# --- M9 growth ------------------------------------------------------------------------------------


def m9_facts(**fields: Any) -> Facts:
    """M9 rewards the latest complete year: the 2025 revenue is claimed in 2026."""
    return make_facts(as_of=date(2026, 3, 1), **fields)


def m9(year: int = 2025) -> M9Evidence:
    return M9Evidence(measure="M9", year=year)


def revenues(**by_year: int | str) -> dict[int, int]:
    return {int(year.removeprefix("y")): yuan(amount) for year, amount in by_year.items()}


def test_m9_1_highest_new_threshold_plus_growth() -> None:
    """M9-1: 18,000,000 in 2024, 120,000,000 in 2025 → 1,000,000 + 1,020,000."""
    evaluation = run(m9(), m9_facts(revenues=revenues(y2024=18_000_000, y2025=120_000_000)))
    assert_eligible(evaluation, yuan(2_020_000))
    assert evaluation.result.components == {"threshold_10000000000": yuan(1_000_000), "growth": yuan(1_020_000)}
    assert {
        "M9.thresholds",
        "M9.multiple_thresholds",
        "M9.growth_min_ratio",
        "M9.growth_award_ratio",
        "M9.growth_cap_fen",
    } <= parameters_read(evaluation)


@pytest.mark.parametrize(
    ("by_year", "awards"),
    [
        pytest.param({"y2023": 25_000_000, "y2024": 18_000_000, "y2025": 30_000_000}, [], id="exceeded-in-2023"),
        pytest.param(
            {"y2024": 18_000_000, "y2025": 30_000_000},
            [prior(2023, yuan(200_000), {"threshold_2000000000": yuan(200_000)})],
            id="rewarded-before",
        ),
    ],
)
def test_m9_2_a_threshold_is_rewarded_once(by_year: dict[str, int], awards: list[PriorAward]) -> None:
    """M9-2: a threshold already crossed or rewarded in an earlier year → not rewarded again (growth still is)."""
    evaluation = run(m9(), m9_facts(revenues=revenues(**by_year), prior_awards=awards))
    assert_eligible(evaluation, yuan(120_000))  # growth only: 1% of 12,000,000
    assert evaluation.result.components == {"growth": yuan(120_000)}


@pytest.mark.parametrize(
    ("revenue_2025", "expected"),
    [("20000000.00", None), ("20000000.01", yuan(200_000))],
    ids=["exactly-20M-does-not-exceed", "one-fen-more-exceeds"],
)
def test_m9_threshold_is_strictly_greater(revenue_2025: str, expected: int | None) -> None:
    facts = m9_facts(revenues=revenues(y2024=19_000_000, y2025=revenue_2025))  # growth 5%: no growth reward
    evaluation = run(m9(), facts)
    if expected is None:
        assert_ineligible(evaluation, "no_new_threshold", "growth_below_minimum")
    else:
        assert_eligible(evaluation, expected)
        assert evaluation.result.components == {"threshold_2000000000": expected}


@pytest.mark.parametrize(
    ("revenue_2025", "expected"),
    [("12000000.00", yuan(20_000)), ("11999999.99", None)],
    ids=["exactly-20pct-counts", "just-below-20pct"],
)
def test_m9_growth_of_twenty_percent_counts(revenue_2025: str, expected: int | None) -> None:
    facts = m9_facts(revenues=revenues(y2024=10_000_000, y2025=revenue_2025))
    evaluation = run(m9(), facts)
    if expected is None:
        assert_ineligible(evaluation, "no_new_threshold", "growth_below_minimum")
    else:
        assert_eligible(evaluation, expected)
        assert evaluation.result.components == {"growth": expected}


def test_m9_growth_is_capped() -> None:
    facts = m9_facts(revenues=revenues(y2024=600_000_000, y2025=900_000_000))
    evaluation = run(m9(), facts)
    assert_eligible(evaluation, yuan(2_000_000))
    step = next(s for s in evaluation.trace if "after_cap_fen" in s["amounts"])
    assert step["amounts"]["before_cap_fen"] == yuan(3_000_000)
    assert step["amounts"]["after_cap_fen"] == yuan(2_000_000)


def test_m9_growth_for_a_year_is_paid_once() -> None:
    """A second application for the same year gets no second growth reward."""
    facts = m9_facts(revenues=revenues(y2024=50_000_000, y2025=80_000_000))
    first = run(m9(), facts)
    assert_eligible(first, yuan(300_000))
    again = run(
        m9(), m9_facts(revenues=facts.revenues, prior_awards=[prior(2025, yuan(300_000), {"growth": yuan(300_000)})])
    )
    assert_ineligible(again, "no_new_threshold", "growth_already_awarded")


def with_mode(mode: str) -> ParameterSet:
    version = Value(date(2024, 1, 1), None, mode, "interpretation", "test", "version:test")
    return PARAMS.with_versions([("M9.multiple_thresholds", version)])


@pytest.mark.parametrize(
    ("mode", "threshold_components"),
    [
        ("highest", {"threshold_50000000000": yuan(2_000_000)}),
        ("sum", {"threshold_10000000000": yuan(1_000_000), "threshold_50000000000": yuan(2_000_000)}),
        ("difference", {"threshold_50000000000": yuan(1_800_000)}),  # 2,000,000 − 200,000 (20M before)
    ],
)
def test_m9_several_thresholds_in_one_year(mode: str, threshold_components: dict[str, int]) -> None:
    awards = [prior(2024, yuan(200_000), {"threshold_2000000000": yuan(200_000)})]
    facts = m9_facts(revenues=revenues(y2024=50_000_000, y2025=600_000_000), prior_awards=awards)
    evaluation = run(m9(), facts, with_mode(mode))
    growth = yuan(2_000_000)  # 1% of 550,000,000, capped
    assert evaluation.result.components == {**threshold_components, "growth": growth}
    assert_eligible(evaluation, sum(threshold_components.values()) + growth)


def test_m9_without_last_years_revenue_growth_is_not_computed() -> None:
    evaluation = run(m9(), m9_facts(revenues=revenues(y2025=30_000_000)))
    assert_eligible(evaluation, yuan(200_000))
    assert any(s["outcome"] == "not_computed" for s in evaluation.trace)


def test_m9_missing_revenue_needs_review() -> None:
    evaluation = run(m9(), m9_facts(revenues=revenues(y2024=30_000_000)))
    assert evaluation.result.outcome == "needs_review"
    assert review_codes(evaluation) == ["revenue_missing"]


@pytest.mark.parametrize(
    ("by_year", "expected"),
    [
        ({"y2025": 30_000_000}, ["not_software_internet"]),
        ({"y2024": 30_000_000}, ["not_software_internet"]),  # no revenue: still ineligible, not review
        (
            {"y2024": 19_000_000, "y2025": 20_000_000},
            ["not_software_internet", "no_new_threshold", "growth_below_minimum"],
        ),
    ],
)
def test_m9_software_and_internet_enterprises_only(by_year: dict[str, int], expected: list[str]) -> None:
    facts = m9_facts(org=organisation(is_software_internet=False), revenues=revenues(**by_year))
    assert_ineligible(run(m9(), facts), *expected)


# --- M10 first-version software ------------------------------------------------------------------


def catalogue_entry(**kw: Any) -> RecognitionFacts:
    return recognition(
        "first_version_software", product="AI 视觉平台", catalogue_year=2024, first_sale_on="2024-11-01", **kw
    )


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        pytest.param(yuan(10_000_000), yuan(2_000_000), id="M10-1"),
        pytest.param(yuan(20_000_000), yuan(3_000_000), id="M10-2"),
        (yuan(15_000_000), yuan(3_000_000)),
        (yuan("0.04"), 0),
    ],
)
def test_m10_first_sale(received: int, expected: int) -> None:
    entry = catalogue_entry()
    evidence = M10Evidence(
        measure="M10", track="first_sale", year=2025, recognition_id=entry.id, received_within_year_fen=received
    )
    evaluation = run(evidence, make_facts(referenced=referenced(entry)))
    if expected == 0:
        assert_ineligible(evaluation, "nothing_to_support")
        return
    assert_eligible(evaluation, expected)
    assert evaluation.result.components == {"first_sale": expected}
    assert {"M10.first_sale_ratio", "M10.annual_cap_fen"} <= parameters_read(evaluation)


def test_m10_first_sale_needs_the_applicants_catalogue_entry() -> None:
    entry = catalogue_entry(owner=OTHER, active=False)
    evidence = M10Evidence(
        measure="M10", track="first_sale", year=2025, recognition_id=entry.id, received_within_year_fen=1
    )
    assert_ineligible(
        run(evidence, make_facts(referenced=referenced(entry))), "recognition_inactive", "recognition_not_applicants"
    )


@pytest.mark.parametrize(
    ("earlier", "expected"),
    [
        ({}, yuan(1_500_000)),
        ({"city_matching": yuan(2_000_000)}, yuan(1_000_000)),  # same track, same year
        ({"first_sale": yuan(3_000_000)}, yuan(1_500_000)),  # the other track has its own cap
    ],
)
def test_m10_city_matching_and_its_own_cap(earlier: dict[str, int], expected: int) -> None:
    awards = [prior(2024, sum(earlier.values()), earlier)] if earlier else []
    evaluation = run(CITY_MATCHING, make_facts(prior_awards=awards, referenced=referenced(CITY_SUPPORT)))
    assert_eligible(evaluation, expected)
    assert evaluation.result.components == {"city_matching": expected}
    assert "M10.city_matching_ratio" in parameters_read(evaluation)


def test_m10_cap_reached() -> None:
    awards = [prior(2024, yuan(3_000_000), {"city_matching": yuan(3_000_000)})]
    facts = make_facts(prior_awards=awards, referenced=referenced(CITY_SUPPORT))
    assert_ineligible(run(CITY_MATCHING, facts), "annual_cap_reached")


def test_m10_city_matching_reads_the_registry_not_the_declaration() -> None:
    declared = CITY_MATCHING.model_copy(update={"city_support_fen": yuan(9_000_000)})
    evaluation = run(declared, make_facts(referenced=referenced(CITY_SUPPORT)))
    assert_eligible(evaluation, yuan(1_500_000))  # 30% of the recorded 5,000,000, not of 9,000,000
    undeclared = M10Evidence(measure="M10", track="city_matching", year=2024, city_support_fen=yuan(5_000_000))
    assert_ineligible(run(undeclared, make_facts()), "city_support_not_recorded")
    other_year = CITY_SUPPORT.model_copy(update={"details": {**CITY_SUPPORT.details, "year": 2023}})
    assert_ineligible(run(CITY_MATCHING, make_facts(referenced=referenced(other_year))), "city_support_year_mismatch")


# --- M12 public platforms -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        pytest.param("national", yuan(500_000), id="M12-1-national"),
        pytest.param("provincial", yuan(200_000), id="M12-1-provincial"),
    ],
)
def test_m12_reward_by_level(level: str, expected: int) -> None:
    platform = recognition("public_platform", platform="模数空间", level=level, year=2024)
    evaluation = run(
        M12Evidence(measure="M12", recognition_id=platform.id), make_facts(referenced=referenced(platform))
    )
    assert_eligible(evaluation, expected)
    assert evaluation.result.components == {str(platform.id): expected}
    assert "M12.level_awards_fen" in parameters_read(evaluation)


def test_m12_last_year_only_and_once() -> None:
    platform = recognition("public_platform", platform="模数空间", level="national", year=2023)
    facts = make_facts(referenced=referenced(platform), claimed=awarded(key("M12.platform", platform.id)))
    assert_ineligible(
        run(M12Evidence(measure="M12", recognition_id=platform.id), facts),
        "not_recognised_last_year",
        "already_awarded",
    )


# --- M13 major events -------------------------------------------------------------------------------


def event(held_in_longgang: bool = True, influence: str = "national") -> RecognitionFacts:
    """The registry's record of the event, the applicant its lead organiser (a stable id per kind of event)."""
    return recognition(
        "major_event",
        rid=uuid.uuid5(uuid.NAMESPACE_URL, f"event:{held_in_longgang}:{influence}"),
        recognised_on=date(2025, 4, 20),
        name="龙岗人工智能大会",
        event_type="conference",
        held_on="2025-04-20",
        venue="龙岗国际会展中心",
        district="440307" if held_in_longgang else "440304",
        organisers=[APPLICANT, OTHER],
        influence=influence,
    )


def m13(cost: int, held_in_longgang: bool = True, influence: str = "national") -> M13Evidence:
    return M13Evidence(measure="M13", event_id=event(held_in_longgang, influence).id, audited_cost_fen=cost)


@pytest.mark.parametrize(
    ("cost", "expected"),
    [
        pytest.param(yuan(800_000), yuan(400_000), id="M13-1-800k"),
        pytest.param(yuan(1_200_000), yuan(500_000), id="M13-1-1.2M"),
        (yuan(1_000_000), yuan(500_000)),
        (yuan("1000000.02"), yuan(500_000)),
    ],
)
def test_m13_half_the_audited_cost_capped(cost: int, expected: int) -> None:
    evaluation = run(m13(cost, influence="international"), make_facts())
    assert_eligible(evaluation, expected)
    assert {"M13.ratio", "M13.cap_fen"} <= parameters_read(evaluation)


def test_m13_collects_both_conditions() -> None:
    assert_ineligible(
        run(m13(yuan(800_000), held_in_longgang=False, influence="regional"), make_facts()),
        "not_held_in_longgang",
        "influence_not_major",
    )


def test_m13_the_event_is_a_registry_record_its_organisers_share() -> None:
    first = run(m13(yuan(800_000)), make_facts())
    assert first.result.claims == (key("M13.event_record", event().id),)
    co_organiser = make_facts(org=organisation(credit_code=OTHER), claimed=awarded(*first.result.claims))
    assert_ineligible(run(m13(yuan(800_000)), co_organiser), "already_awarded")
    stranger = make_facts(org=organisation(credit_code=VENDOR))
    assert_ineligible(run(m13(yuan(800_000)), stranger), "not_an_organiser")
    unrecorded = M13Evidence(
        measure="M13", event_name="大会", held_on=date(2025, 4, 20), audited_cost_fen=yuan(800_000)
    )
    assert_ineligible(run(unrecorded, make_facts()), "event_not_recorded")


def test_m13_organiser_need_not_be_registered_in_the_district() -> None:
    facts = make_facts(org=organisation(registered_district="440304"))
    assert_eligible(run(m13(yuan(800_000)), facts), yuan(400_000))
    # other measures do require it
    assert "not_in_district" in codes(run(m6(yuan(800_000)), facts))


def test_m6_and_m13_support_a_project_or_event_once() -> None:
    m6 = M6Evidence(
        measure="M6",
        diagnosis_reference="深工信诊断〔2024〕12号",
        diagnosis_id=DIAGNOSIS.id,
        audited_investment_fen=yuan(100_000),
    )
    first = run(m6, make_facts())
    assert_eligible(first, yuan(50_000))
    assert first.result.claims == (key("M6.project", APPLICANT, str(DIAGNOSIS.id)),)
    again = run(m6, make_facts(claimed=awarded(*first.result.claims)))
    assert_ineligible(again, "already_awarded")
    other_diagnosis = recognition(
        "digital_diagnosis", project="诊断", reference="深工信诊断〔2024〕13号", authority="市工信局"
    )
    other = m6.model_copy(update={"diagnosis_id": other_diagnosis.id, "diagnosis_reference": "深工信诊断〔2024〕13号"})
    facts = make_facts(claimed=awarded(*first.result.claims), referenced=referenced(other_diagnosis))
    assert_eligible(run(other, facts), yuan(50_000))
    # the diagnosis record is the project, whatever the reference text says
    renamed = m6.model_copy(update={"diagnosis_reference": "另一个编号"})
    assert_ineligible(run(renamed, make_facts(claimed=awarded(*first.result.claims))), "already_awarded")
    # a key another application is waiting on sends this one to review, with the amount
    pending = {first.result.claims[0]: ClaimHolder(application_id="waiting", status="pending")}
    review = run(m6, make_facts(claimed=pending))
    assert (review.result.outcome, review.result.amount_fen) == ("needs_review", yuan(50_000))
    assert review_codes(review) == ["claimed_by_pending_application"]
