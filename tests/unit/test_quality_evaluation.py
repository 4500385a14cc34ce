"""Specifications, lots and the evaluation of lab results: the pure quality domain."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pytest

from services.quality.domain import (
    DEFAULT_SPECIFICATIONS,
    LabReport,
    Lot,
    LotStatus,
    Parameter,
    Rejected,
    RuleKind,
    SamplingRule,
    StateConflict,
    decide_lot,
    default_specification,
    evaluate,
    read_samples,
    register_lot,
    revise_specification,
)
from shared.events.quality import LotFailed, LotPassed, LotRegistered
from tests.fixtures.catalogue import QUALITY_CATALOGUE as CATALOGUE

NOW = datetime(2027, 3, 1, 3, 0, tzinfo=UTC)  # 10:00 in Ceper
TODAY = date(2027, 3, 1)
K = default_specification("BB-COMP-K", NOW)
COMPOSITE = ["BRAKE_BLOCK_COMPOSITE", "BRAKE_BLOCK_CAST_IRON"]


def good_sample(**changes: object) -> dict[str, object]:
    sample: dict[str, object] = {
        "friction_coefficient": 0.25,
        "density": 2.0,
        "hardness": 80,
        "compressive_strength": 40,
        "impact_strength": 2.5,
        "back_plate_bond": "pass",
    }
    sample.update(changes)
    return sample


def registered(quantity: int = 200, spec=K) -> Lot:
    lot, _ = register_lot("IKM-001-K-0001", "IKM-001", COMPOSITE, spec.item_code, quantity, "po_1", "al_1", spec, NOW, CATALOGUE)
    return lot


def violations(exc: pytest.ExceptionInfo[Rejected]) -> dict[str, str]:
    return {v.field: v.message for v in exc.value.violations}


# --- specifications --------------------------------------------------------------------------------------------


def test_default_specifications_follow_the_domain_reference():
    rules = {p.code: p.describe() for p in K.parameters}
    assert rules == {
        "friction_coefficient": "0.25 ± 0.04",
        "density": "1.7–2.4 g/cm³",
        "hardness": "55–100 HRR",
        "compressive_strength": "≥ 25 MPa",
        "impact_strength": "≥ 1.8 kJ/m²",
        "back_plate_bond": "pass",
    }
    cast_iron = {p.code: p.describe() for p in default_specification("BB-CI", NOW).parameters}
    assert cast_iron == {"hardness": "197–255 HB", "phosphorus": "0.5–1.5 %", "weight": "11–12 kg"}
    assert set(DEFAULT_SPECIFICATIONS) <= set(CATALOGUE)
    assert {"BB-COMP-K", "BB-COMP-LL", "BB-CI", "TMMIN-PRT", "PMP-IMP-FC200"} <= set(DEFAULT_SPECIFICATIONS)
    assert K.version == 1 and K.sampling == SamplingRule("II", 2.5)


@pytest.mark.parametrize(
    "parameter, inside, outside",
    [
        (Parameter("mu", "μ", "", RuleKind.TARGET, target=0.25, tolerance=0.04), [0.21, 0.25, 0.29], [0.2099, 0.2901]),
        (Parameter("rho", "ρ", "g/cm³", RuleKind.RANGE, minimum=1.7, maximum=2.4), [1.7, 2.0, 2.4], [1.69, 2.41]),
        (Parameter("mpa", "σ", "MPa", RuleKind.MINIMUM, minimum=25), [25, 25.01, 900], [24.99, 0]),
        (Parameter("p", "P", "%", RuleKind.MAXIMUM, maximum=1.5), [0, 1.5], [1.51]),
        (Parameter("bond", "bond", "", RuleKind.PASS_FAIL), [True], [False]),
    ],
)
def test_acceptance_rules_include_their_limits(parameter: Parameter, inside: list, outside: list):
    assert all(parameter.conforms(v) for v in inside)
    assert not any(parameter.conforms(v) for v in outside)


def test_a_revision_is_the_next_version_and_leaves_the_old_one_as_it_was():
    tighter = [
        Parameter(
            "friction_coefficient", "μ", "", RuleKind.TARGET, target=0.25, tolerance=0.03, possible_min=0, possible_max=1.5
        ),
        *K.parameters[1:],
    ]
    later = NOW + timedelta(days=3)
    v2 = revise_specification(K, "BB-COMP-K", tighter, SamplingRule("II", 1.0), " KAI asked for less spread ", later)
    assert (v2.version, v2.parameters[0].describe(), v2.sampling.aql, v2.note, v2.effective_from) == (
        2,
        "0.25 ± 0.03",
        1.0,
        "KAI asked for less spread",
        later,
    )
    assert K.parameters[0].describe() == "0.25 ± 0.04"
    assert revise_specification(None, "BB-CI", K.parameters[:1], SamplingRule(), "", NOW).version == 1


def test_a_revision_breaking_the_rules_is_refused_naming_each_field():
    bad = [
        Parameter("density", "Density", "g/cm³", RuleKind.RANGE, minimum=2.4, maximum=1.7),
        Parameter("density", "Again", "", RuleKind.MINIMUM, minimum=1, maximum=3),
        Parameter("Friction", "", "", RuleKind.TARGET, target=0.25),
        Parameter("bond", "Bond", "", RuleKind.PASS_FAIL, possible_min=0),
        Parameter("mu", "μ", "", RuleKind.TARGET, target=5, tolerance=0.1, possible_min=0, possible_max=1.5),
        Parameter("nan", "NaN", "", RuleKind.MINIMUM, minimum=math.nan),
    ]
    with pytest.raises(Rejected) as refused:
        revise_specification(K, "BB-COMP-K", bad, SamplingRule("IV", 3.0), "", NOW)
    found = violations(refused)
    assert found["parameters.0.maximum"] == "must be greater than minimum"
    assert "appears twice" in found["parameters.1.code"]
    assert "has no maximum" in found["parameters.1.maximum"]
    assert "lower_snake_case" in found["parameters.2.code"]
    assert found["parameters.2.name"] == "must not be empty"
    assert "needs tolerance" in found["parameters.2.tolerance"]
    assert "possible" in found["parameters.3.possible_min"]
    assert "no possible value" in found["parameters.4.rule"]
    assert found["parameters.5.minimum"] == "must be a finite number"
    assert "IV" in found["sampling.inspection_level"]
    with pytest.raises(Rejected) as unknown:
        revise_specification(None, "BB-RUBBER", [], SamplingRule(), "", NOW)
    assert set(violations(unknown)) == {"parameters"}  # which items exist is the catalogue's, asked before
    with pytest.raises(Rejected) as aql:
        revise_specification(K, "BB-COMP-K", K.parameters, SamplingRule("II", 3.0), "", NOW)
    assert "AQL 3" in violations(aql)["sampling.aql"]


# --- lots -------------------------------------------------------------------------------------------------------


def test_registering_a_lot_fixes_its_spec_version_and_sampling_plan():
    lot, event = register_lot("IKM-001-K-0001", "IKM-001", COMPOSITE, "BB-COMP-K", 200, "po_1", "al_1", K, NOW, CATALOGUE)
    assert (lot.status, lot.spec_version, lot.plan.sample_size, lot.plan.acceptance_number) == (LotStatus.REGISTERED, 1, 32, 2)
    assert event == LotRegistered(
        lot_code="IKM-001-K-0001",
        foundry_code="IKM-001",
        item_code="BB-COMP-K",
        quantity=200,
        order_id="po_1",
        allocation_id="al_1",
        spec_version=1,
        registered_at=NOW,
    )


def test_a_lot_breaking_the_rules_is_refused():
    with pytest.raises(Rejected) as refused:
        register_lot("lot 1", "IKM-002", ["PUMP_PARTS"], "BB-COMP-K", 0, None, "al_1", K, NOW, CATALOGUE)
    found = violations(refused)
    assert set(found) == {"lot_code", "item_code", "quantity", "order_id"}
    assert found["item_code"] == "IKM-002 does not make BRAKE_BLOCK_COMPOSITE (capacity's register)"
    with pytest.raises(Rejected) as unknown:
        register_lot("IKM-002-X-1", "IKM-002", COMPOSITE, "BB-RUBBER", 10, None, None, None, NOW, CATALOGUE)
    assert "unknown item" in violations(unknown)["item_code"]


# --- reading a lab report -----------------------------------------------------------------------------------------


def test_a_report_must_have_one_row_per_sample_of_the_plan():
    lot = registered(200)  # 32 samples
    with pytest.raises(Rejected) as refused:
        read_samples(K, lot.plan, [good_sample()] * 31)
    assert "calls for 32 samples" in violations(refused)["samples"] and "has 31" in violations(refused)["samples"]


def test_unknown_missing_impossible_and_mistyped_values_are_refused_by_field():
    rows = [good_sample() for _ in range(32)]
    rows[0]["colour"] = "grey"
    del rows[1]["density"]
    rows[2]["density"] = -1.0
    rows[3]["friction_coefficient"] = 3.0
    rows[4]["hardness"] = "80"
    rows[5]["back_plate_bond"] = "maybe"
    rows[6]["impact_strength"] = math.inf
    rows[7]["compressive_strength"] = True
    rows[8]["hardness"] = None
    with pytest.raises(Rejected) as refused:
        read_samples(K, registered(200).plan, rows)
    found = violations(refused)
    assert "unknown parameter" in found["samples.0.colour"] and "friction_coefficient" in found["samples.0.colour"]
    assert found["samples.1.density"].startswith("missing")
    assert "impossible" in found["samples.2.density"] and "below 0.1" in found["samples.2.density"]
    assert "cannot exceed 1.5" in found["samples.3.friction_coefficient"]
    assert "must be a number" in found["samples.4.hardness"]
    assert found["samples.5.back_plate_bond"] == 'must be "pass" or "fail"'
    assert found["samples.6.impact_strength"] == "must be a finite number"
    assert "must be a number" in found["samples.7.compressive_strength"]
    assert found["samples.8.hardness"].startswith("missing")
    assert len(found) == 9


def test_pass_fail_reads_words_and_booleans():
    rows = [good_sample(back_plate_bond=v) for v in ("pass", "PASS", " Passed ", True, "fail", False)] + [good_sample()] * 26
    samples = read_samples(K, registered(200).plan, rows)
    assert [s["back_plate_bond"] for s in samples[:6]] == [True, True, True, True, False, False]
    assert samples[0]["hardness"] == 80.0


# --- evaluation and decision ----------------------------------------------------------------------------------------


def report(rows: list[dict[str, object]], lot: Lot, tested_on: date = TODAY) -> LabReport:
    return LabReport("B4T/LHU/2027/0042", "B4T Bandung", tested_on, read_samples(K, lot.plan, rows))


def test_a_lot_within_its_acceptance_number_passes():
    lot = registered(200)  # n=32, Ac 2, Re 3
    rows = [good_sample() for _ in range(32)]
    rows[4]["density"] = 2.6
    rows[9]["density"] = 2.5
    rows[9]["hardness"] = 120  # the same sample twice: still one nonconforming sample
    decided, evaluation, event = decide_lot(lot, K, report(rows, lot), NOW)
    assert evaluation.nonconforming == 2 and evaluation.accepted
    assert [(f.parameter, f.samples) for f in evaluation.findings] == [("density", (5, 10)), ("hardness", (10,))]
    assert decided.status is LotStatus.PASSED and decided.decided_at == NOW
    assert isinstance(event, LotPassed)
    assert (event.lot_code, event.quantity, event.order_id, event.allocation_id, event.report_number, event.laboratory) == (
        "IKM-001-K-0001",
        200,
        "po_1",
        "al_1",
        "B4T/LHU/2027/0042",
        "B4T Bandung",
    )


def test_a_lot_reaching_its_rejection_number_fails_with_the_reason_per_parameter():
    lot = registered(200)
    rows = [good_sample() for _ in range(32)]
    rows[0]["friction_coefficient"] = 0.19
    rows[7]["friction_coefficient"] = 0.31
    rows[20]["back_plate_bond"] = "fail"
    decided, evaluation, event = decide_lot(lot, K, report(rows, lot), NOW)
    assert evaluation.nonconforming == 3 and not evaluation.accepted
    assert decided.status is LotStatus.FAILED
    assert isinstance(event, LotFailed)
    reasons = {r.parameter: r for r in event.reasons}
    assert set(reasons) == {"friction_coefficient", "back_plate_bond"}
    friction = reasons["friction_coefficient"]
    assert (friction.rule, friction.observed) == ("0.25 ± 0.04", "0.19, 0.31")
    assert friction.message.startswith("2 of 32 samples outside 0.25 ± 0.04 (samples 1, 8)")
    assert "3 nonconforming samples reach the plan's rejection number (n=32, Ac 2, Re 3)" in friction.message
    assert (reasons["back_plate_bond"].rule, reasons["back_plate_bond"].observed) == ("pass", "fail")


def test_evaluate_counts_samples_not_findings():
    lot = registered(200)
    rows = read_samples(K, lot.plan, [good_sample(density=3.0, hardness=20, impact_strength=1.0)] + [good_sample()] * 31)
    evaluation = evaluate(K, lot.plan, rows)
    assert evaluation.nonconforming == 1 and len(evaluation.findings) == 3


def test_a_lot_is_decided_once_and_only_with_a_plausible_report():
    lot = registered(200)
    rows = [good_sample() for _ in range(32)]
    decided, _, _ = decide_lot(lot, K, report(rows, lot), NOW)
    with pytest.raises(StateConflict, match="already decided"):
        decide_lot(decided, K, report(rows, lot), NOW)
    with pytest.raises(Rejected) as future:
        decide_lot(lot, K, report(rows, lot, TODAY + timedelta(days=1)), NOW)
    assert violations(future) == {"tested_on": "must not be in the future"}
    with pytest.raises(Rejected) as early:
        decide_lot(lot, K, report(rows, lot, TODAY - timedelta(days=1)), NOW)
    assert violations(early) == {"tested_on": "must not be before the lot was registered"}
    blank = LabReport(" ", "", TODAY, read_samples(K, lot.plan, rows))
    with pytest.raises(Rejected) as empty:
        decide_lot(lot, K, blank, NOW)
    assert set(violations(empty)) == {"report_number", "laboratory"}


def test_a_lot_is_judged_against_the_version_it_was_registered_under():
    lot = registered(200)
    v2 = revise_specification(K, "BB-COMP-K", K.parameters, SamplingRule("II", 1.0), "", NOW)
    rows = [good_sample() for _ in range(32)]
    with pytest.raises(ValueError, match="version it was registered under"):
        decide_lot(lot, v2, report(rows, lot), NOW)
