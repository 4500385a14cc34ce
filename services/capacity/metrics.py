"""Capacity's business metrics on `/metrics`: utilisation by family (per week, and over the next 12 weeks),
reservations by state, capacity changes by reason.

Counters move when a change commits; gauges are recomputed from the database by the periodic job (and its
trigger endpoint), so every replica reports the same figures.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from .domain import ReservationState

UTILISATION = Gauge(
    "ceper_capacity_utilisation_ratio",
    "Units reserved over capacity of active members, per product family and ISO week (the next 12 weeks)",
    ["product_family", "week"],
)
CAPACITY_UNITS = Gauge(
    "ceper_capacity_units",
    "Capacity of active members, per product family and ISO week (the next 12 weeks)",
    ["product_family", "week"],
)
RESERVED_UNITS = Gauge(
    "ceper_capacity_reserved_units",
    "Units reserved, per product family and ISO week (the next 12 weeks)",
    ["product_family", "week"],
)
OVERBOOKED_UNITS = Gauge(
    "ceper_capacity_overbooked_units",
    "Units reserved and not made yet beyond what their foundry can still make that week, per product family and ISO"
    " week (the next 12 weeks); revocation keeps it at 0",
    ["product_family", "week"],
)
FAMILY_UTILISATION = Gauge(
    "ceper_capacity_family_utilisation_ratio",
    "Units reserved over capacity of active members, per product family over the next 12 weeks together",
    ["product_family"],
)
RESERVATIONS = Gauge("ceper_capacity_reservations", "Reservations by state", ["state"])
CHANGES = Counter("ceper_capacity_changes", "Capacity changes recorded, by reason", ["reason"])
REFUSALS = Counter("ceper_capacity_reservation_refusals", "Reservations refused, by reason", ["reason"])
REVOCATIONS = Counter("ceper_capacity_revocations", "Reservations (partly) revoked because capacity fell", ["product_family"])


def capacity_changed(reason: str) -> None:
    CHANGES.labels(reason).inc()


def reservation_refused(reason: str) -> None:
    REFUSALS.labels(reason).inc()


def reservation_revoked(product_family: str) -> None:
    REVOCATIONS.labels(product_family).inc()


def set_utilisation(
    capacity: dict[tuple[str, str], int], reserved: dict[tuple[str, str], int], overbooked: dict[tuple[str, str], int]
) -> None:
    """Replaces the per-week series: weeks that rolled out of the window disappear instead of going stale."""
    for gauge in (UTILISATION, CAPACITY_UNITS, RESERVED_UNITS, OVERBOOKED_UNITS, FAMILY_UTILISATION):
        gauge.clear()
    by_family: dict[str, tuple[int, int]] = {}
    for key in sorted(set(capacity) | set(reserved)):
        units, held = capacity.get(key, 0), reserved.get(key, 0)
        CAPACITY_UNITS.labels(*key).set(units)
        RESERVED_UNITS.labels(*key).set(held)
        OVERBOOKED_UNITS.labels(*key).set(overbooked.get(key, 0))
        UTILISATION.labels(*key).set(held / units if units else 0.0)
        family_units, family_held = by_family.get(key[0], (0, 0))
        by_family[key[0]] = (family_units + units, family_held + held)
    for family, (units, held) in by_family.items():
        FAMILY_UTILISATION.labels(family).set(held / units if units else 0.0)


def set_reservations(by_state: dict[str, int]) -> None:
    for state in ReservationState:
        RESERVATIONS.labels(state.value).set(by_state.get(state.value, 0))
