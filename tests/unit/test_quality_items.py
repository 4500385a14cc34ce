"""The item catalogue: creating items, their versions and retirement, and the rules an item's terms must meet."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.quality.domain import (
    ItemTerms,
    Rejected,
    SamplingRule,
    StateConflict,
    create_item,
    default_specification,
    publish_version,
    retire_item,
)
from shared.events.quality import CertificateKind, ItemPublished
from tests.fixtures.catalogue import CAPACITY_SEED, ORDERS_SEED, QUALITY_CATALOGUE, QUALITY_SEED

NOW = datetime(2027, 3, 1, 3, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=30)
IMPELLER = ItemTerms(
    " Impeler pompa air bersih FC200 ",
    "Clean-water pump impeller, grey iron FC200",
    "PUMP_PARTS",
    "pcs",
    20,
    (CertificateKind.ISO9001,),
    None,
    SamplingRule("II", 1.0),
)


def violations(exc: pytest.ExceptionInfo[Rejected]) -> dict[str, str]:
    return {v.field: v.message for v in exc.value.violations}


def test_a_new_item_is_version_1_published_whole():
    item, event = create_item(None, "PMP-IMP-150", IMPELLER, NOW)
    assert (item.code, item.version, item.retired, item.published_at) == ("PMP-IMP-150", 1, False, NOW)
    assert item.terms.name_id == "Impeler pompa air bersih FC200"  # trimmed
    assert event == ItemPublished(
        item_code="PMP-IMP-150",
        version=1,
        name_id="Impeler pompa air bersih FC200",
        name_en="Clean-water pump impeller, grey iron FC200",
        product_family="PUMP_PARTS",
        unit="pcs",
        min_lot=20,
        required_certificates=[CertificateKind.ISO9001],
        min_tkdn_percent=None,
        retired=False,
        published_at=NOW,
    )


def test_an_existing_code_is_not_created_again():
    with pytest.raises(StateConflict, match="publish a new version"):
        create_item(QUALITY_CATALOGUE["BB-CI"], "BB-CI", IMPELLER, NOW)


def test_a_new_version_counts_up_and_must_change_something():
    k = QUALITY_CATALOGUE["BB-COMP-K"]
    raised, event = publish_version(k, replace(k.terms, min_tkdn_percent=40.0), LATER)
    assert (raised.version, raised.terms.min_tkdn_percent, event.version, event.min_tkdn_percent) == (2, 40.0, 2, 40.0)
    assert raised.terms.required_certificates == k.terms.required_certificates
    with pytest.raises(StateConflict, match="already says exactly this"):
        publish_version(raised, replace(raised.terms, name_id=" Blok rem komposit tipe K "), LATER)


def test_a_retired_item_is_a_last_version_and_takes_no_other():
    ci = QUALITY_CATALOGUE["BB-CI"]
    retired, event = retire_item(ci, LATER)
    assert (retired.version, retired.retired, retired.terms, event.retired) == (2, True, ci.terms, True)
    with pytest.raises(StateConflict, match="retired already"):
        retire_item(retired, LATER)
    with pytest.raises(StateConflict, match="takes no new version"):
        publish_version(retired, replace(ci.terms, min_lot=100), LATER)


@pytest.mark.parametrize(
    "code, changes, field, message",
    [
        ("pump 1", {}, "code", "capital letters"),
        ("P", {}, "code", "2 to 20"),
        ("PMP-1", {"name_id": "  "}, "name_id", "must not be empty"),
        ("PMP-1", {"product_family": "pump parts"}, "product_family", "capital letters"),
        ("PMP-1", {"product_family": "PU"}, "product_family", "3 to 40"),
        ("PMP-1", {"unit": "dozen"}, "unit", "known: pcs, set, pair, kg"),
        ("PMP-1", {"min_lot": 0}, "min_lot", "from 1"),
        ("PMP-1", {"required_certificates": (CertificateKind.SNI, CertificateKind.SNI)}, "required_certificates.1", "twice"),
        ("PMP-1", {"min_tkdn_percent": 0.0}, "min_tkdn_percent", "more than 0"),
        ("PMP-1", {"min_tkdn_percent": 120.0}, "min_tkdn_percent", "at most 100"),
        ("PMP-1", {"sampling": SamplingRule("II", 3.0)}, "sampling.aql", "AQL 3"),
        ("PMP-1", {"sampling": SamplingRule("IV", 1.0)}, "sampling.inspection_level", "IV"),
    ],
)
def test_an_item_breaking_a_rule_is_refused(code, changes, field, message):
    with pytest.raises(Rejected) as refused:
        create_item(None, code, replace(IMPELLER, **changes), NOW)
    assert message in violations(refused)[field]
    if field != "code":
        with pytest.raises(Rejected):
            publish_version(QUALITY_CATALOGUE["PMP-IMP-FC200"], replace(IMPELLER, **changes), NOW)


def test_an_item_without_defaults_starts_with_a_general_inspection_and_its_sampling_rule():
    spec = default_specification("PMP-IMP-150", NOW, SamplingRule("II", 1.0))
    assert [p.code for p in spec.parameters] == ["visual_dimensional"] and spec.sampling == SamplingRule("II", 1.0)
    impeller = default_specification("PMP-IMP-FC200", NOW)
    assert {p.code for p in impeller.parameters} == {"hardness", "tensile_strength", "balance"}


def test_every_service_seeds_the_same_first_catalogue():
    """Orders and capacity start with what quality's migration announces: the same codes, families, units, lots."""
    quality = {code: (family, unit, min_lot) for code, _, _, family, unit, min_lot, *_ in QUALITY_SEED}
    assert {code: (family, unit, min_lot) for code, _, family, unit, min_lot, *_ in ORDERS_SEED} == quality
    assert {code: (family, unit, min_lot) for code, _, family, unit, min_lot in CAPACITY_SEED} == quality
    requirements = {code: (certificates, tkdn) for code, *_, certificates, tkdn, _ in QUALITY_SEED}
    assert {code: (certificates, tkdn) for code, *_, certificates, tkdn in ORDERS_SEED} == requirements
    assert requirements["BB-COMP-K"] == (["SNI", "ISO9001"], 25.0) and quality["TMMIN-PRT"] == ("AUTOMOTIVE_PARTS", "pcs", 10)
    assert {"PUMP_PARTS", "SHIP_PARTS", "RAILWAY_PARTS", "MACHINE_PARTS"} <= {family for family, _, _ in quality.values()}
