"""Capacity's utilisation gauges: per family and week, and per family over the whole window a manager reads."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.capacity import metrics


def test_family_utilisation_is_reserved_over_capacity_across_the_weeks_and_stale_families_disappear() -> None:
    metrics.set_utilisation(
        {("BRAKE_BLOCK_COMPOSITE", "2027-W05"): 1000, ("BRAKE_BLOCK_COMPOSITE", "2027-W06"): 600, ("PUMP_PARTS", "2027-W05"): 0},
        {("BRAKE_BLOCK_COMPOSITE", "2027-W05"): 900, ("BRAKE_BLOCK_COMPOSITE", "2027-W06"): 300, ("PUMP_PARTS", "2027-W05"): 0},
        {("BRAKE_BLOCK_COMPOSITE", "2027-W06"): 40},
    )
    family = "ceper_capacity_family_utilisation_ratio"
    assert REGISTRY.get_sample_value(family, {"product_family": "BRAKE_BLOCK_COMPOSITE"}) == 1200 / 1600
    assert REGISTRY.get_sample_value(family, {"product_family": "PUMP_PARTS"}) == 0.0  # no capacity: nothing used
    weekly = "ceper_capacity_utilisation_ratio"
    assert REGISTRY.get_sample_value(weekly, {"product_family": "BRAKE_BLOCK_COMPOSITE", "week": "2027-W05"}) == 0.9
    overbooked = "ceper_capacity_overbooked_units"
    assert REGISTRY.get_sample_value(overbooked, {"product_family": "BRAKE_BLOCK_COMPOSITE", "week": "2027-W06"}) == 40
    assert REGISTRY.get_sample_value(overbooked, {"product_family": "BRAKE_BLOCK_COMPOSITE", "week": "2027-W05"}) == 0

    metrics.set_utilisation({("SHIP_PARTS", "2027-W07"): 100}, {("SHIP_PARTS", "2027-W07"): 25}, {})
    assert REGISTRY.get_sample_value(family, {"product_family": "BRAKE_BLOCK_COMPOSITE"}) is None
    assert REGISTRY.get_sample_value(family, {"product_family": "SHIP_PARTS"}) == 0.25
