"""Capacity's register of member foundries: pure rules, and the events each change causes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.capacity.domain import (
    DomainError,
    Foundry,
    Furnace,
    FurnaceKind,
    MembershipStatus,
    ProductFamily,
    check_npwp,
    families_withdrawn,
    register_foundry,
    update_foundry,
)
from shared.events.capacity import FoundryRegistered, FoundryUpdated, FurnaceData

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=3)
COMPOSITE = ProductFamily.BRAKE_BLOCK_COMPOSITE
CAST_IRON = ProductFamily.BRAKE_BLOCK_CAST_IRON


def registered(**changes: object) -> Foundry:
    values: dict[str, object] = {"code": "IKM-001", "name": "CV Logam Batur", "village": "Batur", "product_families": [COMPOSITE]}
    values.update(changes)
    foundry, _ = register_foundry(now=NOW, **values)  # type: ignore[arg-type]
    return foundry


# --- registering ------------------------------------------------------------------------------------------


def test_register_makes_revision_zero_and_the_event_carrying_the_entry():
    foundry, event = register_foundry("IKM-0042", "  CV Logam Batur ", " Tegalrejo ", [COMPOSITE, CAST_IRON], NOW)
    assert foundry == Foundry("IKM-0042", "CV Logam Batur", "Tegalrejo", (COMPOSITE, CAST_IRON), 0, NOW, NOW)
    assert event == FoundryRegistered(
        foundry_code="IKM-0042",
        name="CV Logam Batur",
        village="Tegalrejo",
        product_families=["BRAKE_BLOCK_COMPOSITE", "BRAKE_BLOCK_CAST_IRON"],
        registered_at=NOW,
        membership_status="active",
    )
    assert event.event_type().key_of(event) == "IKM-0042"


def test_register_drops_repeated_families_keeping_their_order():
    foundry, event = register_foundry("IKM-001", "CV A", "Batur", [CAST_IRON, COMPOSITE, CAST_IRON], NOW)
    assert foundry.product_families == (CAST_IRON, COMPOSITE)
    assert event.product_families == ["BRAKE_BLOCK_CAST_IRON", "BRAKE_BLOCK_COMPOSITE"]


@pytest.mark.parametrize("code", ["IKM-01", "IKM-12345", "ikm-001", "IKM001", "KOP-001", " IKM-001", "IKM-001\n", ""])
def test_register_refuses_a_code_not_shaped_like_ikm_nnn(code: str):
    with pytest.raises(DomainError) as refused:
        register_foundry(code, "CV A", "Batur", [COMPOSITE], NOW)
    assert refused.value.field == "code"


@pytest.mark.parametrize(
    "field, changes",
    [
        ("name", {"name": ""}),
        ("name", {"name": "   "}),
        ("village", {"village": " \t"}),
        ("product_families", {"product_families": []}),
    ],
)
def test_register_refuses_empty_fields_naming_them(field: str, changes: dict):
    values = {"code": "IKM-001", "name": "CV A", "village": "Batur", "product_families": [COMPOSITE], **changes}
    with pytest.raises(DomainError) as refused:
        register_foundry(now=NOW, **values)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ")


# --- updating ---------------------------------------------------------------------------------------------


def test_update_bumps_revision_and_the_event_carries_the_whole_new_entry():
    foundry = registered()
    changed, event = update_foundry(foundry, LATER, name="CV Logam Batur Jaya")
    assert changed == Foundry("IKM-001", "CV Logam Batur Jaya", "Batur", (COMPOSITE,), 1, NOW, LATER)
    assert event == FoundryUpdated(
        foundry_code="IKM-001",
        name="CV Logam Batur Jaya",
        village="Batur",
        product_families=["BRAKE_BLOCK_COMPOSITE"],
        revision=1,
        updated_at=LATER,
        membership_status="active",
    )


def test_each_update_adds_one_revision():
    foundry = registered()
    foundry, _ = update_foundry(foundry, LATER, village="Ngawonggo")
    foundry, event = update_foundry(foundry, LATER, product_families=[CAST_IRON, COMPOSITE, CAST_IRON])
    assert foundry.revision == 2 and event is not None and event.revision == 2
    assert foundry.product_families == (CAST_IRON, COMPOSITE)
    assert foundry.registered_at == NOW


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"name": "CV Logam Batur"},
        {"name": " CV Logam Batur  "},
        {"village": "Batur"},
        {"product_families": [COMPOSITE, COMPOSITE]},
    ],
)
def test_an_update_that_changes_nothing_makes_no_event_and_no_revision(changes: dict):
    foundry = registered()
    same, event = update_foundry(foundry, LATER, **changes)
    assert event is None
    assert same == foundry and same.updated_at == NOW


@pytest.mark.parametrize(
    "field, changes",
    [("name", {"name": "  "}), ("village", {"village": ""}), ("product_families", {"product_families": []})],
)
def test_update_refuses_emptying_a_field_naming_it(field: str, changes: dict):
    foundry = registered()
    with pytest.raises(DomainError) as refused:
        update_foundry(foundry, LATER, **changes)
    assert refused.value.field == field


# --- the member's details: owner, NPWP, equipment, membership ----------------------------------------------


def test_register_carries_owner_npwp_equipment_and_membership_in_the_event():
    furnaces = [Furnace(FurnaceKind.CUPOLA, 4.0), Furnace(FurnaceKind.INDUCTION, 1.5)]
    foundry, event = register_foundry(
        "IKM-007", "CV Cor Ngawonggo", "Ngawonggo", [COMPOSITE, CAST_IRON], NOW,
        owner=" Agus Purwanto ", npwp="3310012345678901", furnaces=furnaces, presses=2,
    )  # fmt: skip
    assert foundry.owner == "Agus Purwanto" and foundry.presses == 2 and foundry.melt_tonnes_per_day == 5.5
    assert foundry.membership_status is MembershipStatus.ACTIVE and foundry.active
    assert event.owner == "Agus Purwanto" and event.npwp == "3310012345678901" and event.presses == 2
    assert event.furnaces == [FurnaceData(kind="cupola", tonnes_per_day=4.0), FurnaceData(kind="induction", tonnes_per_day=1.5)]
    assert event.membership_status == "active"


@pytest.mark.parametrize("npwp", ["3310012345678901", "01.234.567.8-525.000"])
def test_npwp_is_sixteen_digits_or_the_old_fifteen_digit_form(npwp: str):
    assert check_npwp(npwp) == npwp


@pytest.mark.parametrize(
    "npwp",
    [
        "331001234567890",
        "33100123456789012",
        "01.234.567.8-525.00",
        "012345678525000",
        "01-234-567-8.525.000",
        "3310O12345678901",
        "",
    ],
)
def test_an_npwp_of_any_other_shape_is_refused(npwp: str):
    with pytest.raises(DomainError) as refused:
        register_foundry("IKM-001", "CV A", "Batur", [COMPOSITE], NOW, npwp=npwp)
    assert refused.value.field == "npwp"
    assert "16 digits" in refused.value.message


@pytest.mark.parametrize(
    "field, changes",
    [
        ("furnaces.1.tonnes_per_day", {"furnaces": [Furnace(FurnaceKind.CUPOLA, 3.0), Furnace(FurnaceKind.TUKIK, 0.0)]}),
        ("furnaces.0.tonnes_per_day", {"furnaces": [Furnace(FurnaceKind.CUPOLA, 500.0)]}),
        ("presses", {"presses": -1}),
        ("presses", {"presses": 51}),
        ("owner", {"owner": "  "}),
    ],
)
def test_implausible_equipment_and_empty_owner_are_refused_naming_the_field(field: str, changes: dict):
    with pytest.raises(DomainError) as refused:
        register_foundry("IKM-001", "CV A", "Batur", [COMPOSITE], NOW, **changes)
    assert refused.value.field == field


def test_update_changes_details_and_membership_with_a_new_revision():
    foundry = registered()
    changed, event = update_foundry(foundry, LATER, owner="Sri Rahayu", presses=3, membership_status=MembershipStatus.SUSPENDED)
    assert (changed.owner, changed.presses, changed.membership_status, changed.revision) == (
        "Sri Rahayu",
        3,
        MembershipStatus.SUSPENDED,
        1,
    )
    assert event is not None and event.membership_status == "suspended" and event.presses == 3
    assert not changed.active


def test_families_withdrawn_are_the_dropped_ones_or_all_when_membership_ends():
    foundry = registered(product_families=[COMPOSITE, CAST_IRON, ProductFamily.PUMP_PARTS])
    dropped, _ = update_foundry(foundry, LATER, product_families=[CAST_IRON])
    assert families_withdrawn(foundry, dropped) == [COMPOSITE, ProductFamily.PUMP_PARTS]
    resigned, _ = update_foundry(foundry, LATER, membership_status=MembershipStatus.RESIGNED)
    assert families_withdrawn(foundry, resigned) == [COMPOSITE, CAST_IRON, ProductFamily.PUMP_PARTS]
    renamed, _ = update_foundry(foundry, LATER, name="CV Baru")
    assert families_withdrawn(foundry, renamed) == []
    back, _ = update_foundry(resigned, LATER, membership_status=MembershipStatus.ACTIVE)
    assert families_withdrawn(resigned, back) == []
