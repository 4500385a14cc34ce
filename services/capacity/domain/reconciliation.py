"""Capacity's reactions in the domain: a new plan version of orders against the order's reservations, and a
produced lot of quality against the reservations it was made for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime

from shared.events.capacity import ReservationConsumed

from .reservations import Reservation, ReservationSource, ReservationState


@dataclass(frozen=True)
class PlannedAllocation:
    allocation_id: str
    item_code: str
    product_family: str
    foundry_code: str
    week: str
    quantity: int
    due_date: date


@dataclass(frozen=True)
class PlanReconciliation:
    """What a new plan version means for the order's reservations: it replaces the previous plan entirely."""

    release: list[Reservation]
    reserve: list[PlannedAllocation]
    unchanged: list[Reservation]
    duplicates: list[PlannedAllocation]


def _matches(reservation: Reservation, allocation: PlannedAllocation) -> bool:
    return (
        reservation.foundry_code == allocation.foundry_code
        and reservation.product_family.value == allocation.product_family
        and reservation.week == allocation.week
        and reservation.quantity == allocation.quantity
        and reservation.due_date == allocation.due_date
    )


def _same_cell(reservation: Reservation, allocation: PlannedAllocation) -> bool:
    return (
        reservation.foundry_code == allocation.foundry_code
        and reservation.product_family.value == allocation.product_family
        and reservation.week == allocation.week
    )


def reconcile_plan(open_reservations: Sequence[Reservation], allocations: Sequence[PlannedAllocation]) -> PlanReconciliation:
    """Allocations no longer planned are released, new or changed ones reserved (a changed one is released and
    reserved again), unchanged ones left as they are.

    A consumed reservation is history: its units were made. An allocation it served that is still in the plan
    is left alone, whatever the plan now says of it, and it is never released. An allocation cut back to no
    more than its made units (its member may no longer make the rest) only releases the rest: the made units
    stay held once, by the reservation that was consumed for them.
    """
    made = {
        r.allocation_id
        for r in open_reservations
        if r.state is ReservationState.CONSUMED and r.source is ReservationSource.PLAN and r.allocation_id
    }
    by_allocation = {
        r.allocation_id: r
        for r in open_reservations
        if r.source is ReservationSource.PLAN and r.allocation_id and r.state is not ReservationState.CONSUMED
    }
    seen: set[str] = set()
    release: list[Reservation] = []
    reserve: list[PlannedAllocation] = []
    unchanged: list[Reservation] = []
    duplicates: list[PlannedAllocation] = []
    for allocation in allocations:
        if allocation.allocation_id in seen:
            duplicates.append(allocation)
            continue
        seen.add(allocation.allocation_id)
        if allocation.allocation_id in made and allocation.allocation_id not in by_allocation:
            continue
        current = by_allocation.get(allocation.allocation_id)
        if current is not None and _matches(current, allocation):
            unchanged.append(current)
            continue
        if current is not None:
            release.append(current)
            if current.consumed_quantity and allocation.quantity <= current.consumed_quantity and _same_cell(current, allocation):
                continue
        reserve.append(allocation)
    release += [r for allocation_id, r in by_allocation.items() if allocation_id not in seen]
    return PlanReconciliation(release, reserve, unchanged, duplicates)


@dataclass(frozen=True)
class ProducedLot:
    lot_code: str
    foundry_code: str
    item_code: str
    quantity: int
    order_id: str | None = None
    allocation_id: str | None = None
    product_family: str | None = None  # the item's, from quality's catalogue; None when capacity does not know it


def lot_serves(reservation: Reservation, lot: ProducedLot) -> bool:
    """The lot was made for this reservation: its allocation when it names one, else its order and item (a
    reservation that names no item must be of the item's product family)."""
    if reservation.foundry_code != lot.foundry_code or reservation.state is not ReservationState.CONFIRMED:
        return False
    if lot.allocation_id is not None:
        return reservation.allocation_id == lot.allocation_id
    if lot.order_id is not None:
        same_family = lot.product_family is None or reservation.product_family == lot.product_family
        return reservation.order_id == lot.order_id and reservation.item_code in (None, lot.item_code) and same_family
    return False


def consume_for_lot(
    reservations: Sequence[Reservation], lot: ProducedLot, now: datetime
) -> list[tuple[Reservation, ReservationConsumed]]:
    """Counts a produced lot against the reservations it serves, earliest week first, up to the lot's quantity."""
    left = lot.quantity
    consumed: list[tuple[Reservation, ReservationConsumed]] = []
    for reservation in sorted((r for r in reservations if lot_serves(r, lot)), key=lambda r: (r.week, r.created_at, r.id)):
        if left <= 0:
            break
        counted = min(left, reservation.revocable)
        if counted <= 0:
            continue
        left -= counted
        made = reservation.consumed_quantity + counted
        after = replace(
            reservation,
            consumed_quantity=made,
            state=ReservationState.CONSUMED if made >= reservation.quantity else reservation.state,
            updated_at=now,
            reason="production_reported",
        )
        consumed.append(
            (
                after,
                ReservationConsumed(
                    reservation_id=reservation.id,
                    foundry_code=reservation.foundry_code,
                    week=reservation.week,
                    quantity=counted,
                    lot_code=lot.lot_code,
                    order_id=reservation.order_id,
                    allocation_id=reservation.allocation_id,
                    product_family=reservation.product_family.value,
                    remaining_quantity=reservation.quantity - made,
                ),
            )
        )
    return consumed
