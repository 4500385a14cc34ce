"""Events owned by the capacity service, on topic `ceper.capacity.v1`, keyed by foundry code."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from .fields import (
    INT32_MAX,
    AllocationId,
    ChangeId,
    Count,
    FoundryCode,
    LotCode,
    OrderId,
    PositiveCount,
    ProductFamily,
    ReservationId,
    Week,
)
from .registry import EventData, event


class FurnaceData(BaseModel):
    kind: str = Field(max_length=20, examples=["cupola"], description="cupola, induction, tukik or besalen")
    tonnes_per_day: float = Field(gt=0, le=100, examples=[4.0], description="Molten iron per working day")


@event("capacity", "foundry_registered", key="foundry_code")
class FoundryRegistered(EventData):
    """A member foundry (IKM) joined the cooperative's register."""

    foundry_code: FoundryCode
    name: str = Field(max_length=200)
    village: str = Field(max_length=100)
    product_families: list[ProductFamily] = Field(description="Product families the foundry can make")
    registered_at: datetime
    owner: str | None = Field(default=None, max_length=200, examples=["Agus Purwanto"])
    npwp: str | None = Field(default=None, max_length=32, description="Tax id: 16 digits, or the old form 99.999.999.9-999.999")
    membership_status: str | None = Field(
        default=None, max_length=20, examples=["active"], description="active, suspended or resigned"
    )
    furnaces: list[FurnaceData] | None = None
    presses: int | None = Field(default=None, ge=0, le=INT32_MAX, description="Hot presses for composite brake blocks")


@event("capacity", "foundry_updated", key="foundry_code")
class FoundryUpdated(EventData):
    """A member foundry's register entry changed; carries the whole new entry."""

    foundry_code: FoundryCode
    name: str = Field(max_length=200)
    village: str = Field(max_length=100)
    product_families: list[ProductFamily]
    revision: int = Field(ge=1, le=INT32_MAX, description="Increases by one with every change of this foundry")
    updated_at: datetime
    owner: str | None = Field(default=None, max_length=200)
    npwp: str | None = Field(default=None, max_length=32)
    membership_status: str | None = Field(
        default=None, max_length=20, examples=["active"], description="active, suspended or resigned"
    )
    furnaces: list[FurnaceData] | None = None
    presses: int | None = Field(default=None, ge=0, le=INT32_MAX)


class WeekCapacity(BaseModel):
    week: Week
    capacity: int = Field(ge=0, le=INT32_MAX, description="Units the foundry can make of the family in that week")


@event("capacity", "capacity_changed", key="foundry_code")
class CapacityChanged(EventData):
    """A foundry's weekly capacity of one product family changed; carries the resulting figure of every week it touches.

    A standard-figure change lists the 52 weeks from its first week; later weeks follow `standard_weekly_units`
    unless another change lists them.
    """

    foundry_code: FoundryCode
    product_family: ProductFamily
    change_id: ChangeId
    reason: str = Field(max_length=40, examples=["press_breakdown"])
    standard_weekly_units: int | None = Field(
        default=None, ge=0, le=INT32_MAX, description="The standard weekly figure in force after the change (latest one recorded)"
    )
    weeks: list[WeekCapacity]
    changed_at: datetime


@event("capacity", "reservation_confirmed", key="foundry_code")
class ReservationConfirmed(EventData):
    """Capacity is reserved for production of `quantity` units in `week` at the foundry."""

    reservation_id: ReservationId
    foundry_code: FoundryCode
    product_family: ProductFamily
    week: Week
    quantity: PositiveCount
    order_id: OrderId | None = Field(default=None, description="None for reservations made over the API without an order")
    allocation_id: AllocationId | None = None
    plan_version: PositiveCount | None = None
    due_date: date | None = None
    confirmed_at: datetime


@event("capacity", "reservation_rejected", key="foundry_code")
class ReservationRejected(EventData):
    """An allocation of a plan could not be reserved, whole; `free_quantity` is what the week still had free."""

    foundry_code: FoundryCode
    product_family: ProductFamily
    week: Week
    requested_quantity: PositiveCount
    free_quantity: Count
    reason: str = Field(
        max_length=200,
        examples=["insufficient_capacity"],
        description="insufficient_capacity, unknown_foundry, foundry_not_active, family_not_made, week_past",
    )
    order_id: OrderId | None = None
    allocation_id: AllocationId | None = None
    plan_version: PositiveCount | None = None
    rejected_at: datetime


@event("capacity", "reservation_revoked", key="foundry_code")
class ReservationRevoked(EventData):
    """Capacity fell below what was reserved: this much of a reservation no longer stands.

    Reservations with the latest due date go first (then the newest); `remaining_quantity` is what is still reserved.
    """

    reservation_id: ReservationId
    foundry_code: FoundryCode
    product_family: ProductFamily
    week: Week
    revoked_quantity: PositiveCount
    remaining_quantity: Count
    reason: str = Field(
        max_length=200, examples=["press_breakdown"], description="The capacity change's reason, or why the foundry dropped out"
    )
    order_id: OrderId | None = None
    allocation_id: AllocationId | None = None
    plan_version: PositiveCount | None = None
    revoked_at: datetime


@event("capacity", "reservation_released", key="foundry_code")
class ReservationReleased(EventData):
    """A reservation was given back (the plan no longer needs it, the order was cancelled, or on request)."""

    reservation_id: ReservationId
    foundry_code: FoundryCode
    product_family: ProductFamily
    week: Week
    quantity: int = Field(ge=0, le=INT32_MAX, description="Units freed")
    order_id: OrderId | None = None
    allocation_id: AllocationId | None = None
    reason: str = Field(max_length=200, examples=["plan_changed"])
    at: datetime


@event("capacity", "reservation_expired", key="foundry_code")
class ReservationExpired(EventData):
    """A hold was not confirmed in time; its units are free again."""

    reservation_id: ReservationId
    foundry_code: FoundryCode
    product_family: ProductFamily
    week: Week
    quantity: Count
    order_id: OrderId | None = None
    allocation_id: AllocationId | None = None
    reason: str = Field(max_length=200, examples=["hold_not_confirmed"])
    at: datetime


@event("capacity", "reservation_consumed", key="foundry_code")
class ReservationConsumed(EventData):
    """Production was reported (a registered lot) against a reservation: `quantity` units of it are made."""

    reservation_id: ReservationId
    foundry_code: FoundryCode
    week: Week
    quantity: int = Field(gt=0, le=INT32_MAX, description="Units of this lot counted against the reservation")
    lot_code: LotCode
    order_id: OrderId | None = None
    allocation_id: AllocationId | None = None
    product_family: ProductFamily | None = None
    remaining_quantity: int | None = Field(
        default=None, ge=0, le=INT32_MAX, description="Units of the reservation still to be made"
    )
