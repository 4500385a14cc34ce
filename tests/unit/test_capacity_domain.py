"""Capacity's register of member foundries: pure rules, and the events each change causes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.capacity.domain import DomainError, Foundry, ProductFamily, register_foundry, update_foundry
from shared.events.capacity import FoundryRegistered, FoundryUpdated

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
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
    [{}, {"name": "CV Logam Batur"}, {"name": " CV Logam Batur  "}, {"village": "Batur"}, {"product_families": [COMPOSITE, COMPOSITE]}],
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
