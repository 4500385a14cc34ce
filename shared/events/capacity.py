"""Events owned by the capacity service, on topic `ceper.capacity.v1`, keyed by foundry code."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from .registry import EventData, event

WEEK_PATTERN = r"^\d{4}-W\d{2}$"


class FurnaceData(BaseModel):
    kind: str = Field(examples=["cupola"], description="cupola, induction, tukik or besalen")
    tonnes_per_day: float = Field(gt=0, examples=[4.0], description="Molten iron per working day")


@event("capacity", "foundry_registered", key="foundry_code")
class FoundryRegistered(EventData):
    """A member foundry (IKM) joined the cooperative's register."""

    foundry_code: str = Field(examples=["IKM-001"])
    name: str
    village: str
    product_families: list[str] = Field(description="Product families the foundry can make")
    registered_at: datetime
    owner: str | None = Field(default=None, examples=["Agus Purwanto"])
    npwp: str | None = Field(default=None, description="Tax id: 16 digits, or the old form 99.999.999.9-999.999")
    membership_status: str | None = Field(default=None, examples=["active"], description="active, suspended or resigned")
    furnaces: list[FurnaceData] | None = None
    presses: int | None = Field(default=None, ge=0, description="Hot presses for composite brake blocks")


@event("capacity", "foundry_updated", key="foundry_code")
class FoundryUpdated(EventData):
    """A member foundry's register entry changed; carries the whole new entry."""

    foundry_code: str = Field(examples=["IKM-001"])
    name: str
    village: str
    product_families: list[str]
    revision: int = Field(ge=1, description="Increases by one with every change of this foundry")
    updated_at: datetime
    owner: str | None = None
    npwp: str | None = None
    membership_status: str | None = Field(default=None, examples=["active"], description="active, suspended or resigned")
    furnaces: list[FurnaceData] | None = None
    presses: int | None = Field(default=None, ge=0)


class WeekCapacity(BaseModel):
    week: str = Field(pattern=WEEK_PATTERN, examples=["2027-W10"], description="ISO week")
    capacity: int = Field(ge=0, description="Units the foundry can make of the family in that week")


@event("capacity", "capacity_changed", key="foundry_code")
class CapacityChanged(EventData):
    """A foundry's weekly capacity of one product family changed; carries the resulting figure of every week it touches.

    A standard-figure change lists the 52 weeks from its first week; later weeks follow `standard_weekly_units`
    unless another change lists them.
    """

    foundry_code: str = Field(examples=["IKM-001"])
    product_family: str = Field(examples=["BRAKE_BLOCK_COMPOSITE"])
    change_id: str
    reason: str = Field(examples=["press_breakdown"])
    standard_weekly_units: int | None = Field(
        default=None, ge=0, description="The standard weekly figure in force after the change (latest one recorded)"
    )
    weeks: list[WeekCapacity]
    changed_at: datetime


@event("capacity", "reservation_confirmed", key="foundry_code")
class ReservationConfirmed(EventData):
    """Capacity is reserved for production of `quantity` units in `week` at the foundry."""

    reservation_id: str
    foundry_code: str
    product_family: str
    week: str = Field(pattern=WEEK_PATTERN)
    quantity: int = Field(gt=0)
    order_id: str | None = Field(default=None, description="None for reservations made over the API without an order")
    allocation_id: str | None = None
    plan_version: int | None = None
    due_date: date | None = None
    confirmed_at: datetime


@event("capacity", "reservation_rejected", key="foundry_code")
class ReservationRejected(EventData):
    """An allocation of a plan could not be reserved, whole; `free_quantity` is what the week still had free."""

    foundry_code: str
    product_family: str
    week: str = Field(pattern=WEEK_PATTERN)
    requested_quantity: int = Field(gt=0)
    free_quantity: int = Field(ge=0)
    reason: str = Field(
        examples=["insufficient_capacity"],
        description="insufficient_capacity, unknown_foundry, foundry_not_active, family_not_made, week_past",
    )
    order_id: str | None = None
    allocation_id: str | None = None
    plan_version: int | None = None
    rejected_at: datetime


@event("capacity", "reservation_revoked", key="foundry_code")
class ReservationRevoked(EventData):
    """Capacity fell below what was reserved: this much of a reservation no longer stands.

    Reservations with the latest due date go first (then the newest); `remaining_quantity` is what is still reserved.
    """

    reservation_id: str
    foundry_code: str
    product_family: str
    week: str = Field(pattern=WEEK_PATTERN)
    revoked_quantity: int = Field(gt=0)
    remaining_quantity: int = Field(ge=0)
    reason: str = Field(examples=["press_breakdown"], description="The capacity change's reason, or why the foundry dropped out")
    order_id: str | None = None
    allocation_id: str | None = None
    plan_version: int | None = None
    revoked_at: datetime


@event("capacity", "reservation_released", key="foundry_code")
class ReservationReleased(EventData):
    """A reservation was given back (the plan no longer needs it, the order was cancelled, or on request)."""

    reservation_id: str
    foundry_code: str
    product_family: str
    week: str = Field(pattern=WEEK_PATTERN)
    quantity: int = Field(ge=0, description="Units freed")
    order_id: str | None = None
    allocation_id: str | None = None
    reason: str = Field(examples=["plan_changed"])
    at: datetime


@event("capacity", "reservation_expired", key="foundry_code")
class ReservationExpired(EventData):
    """A hold was not confirmed in time; its units are free again."""

    reservation_id: str
    foundry_code: str
    product_family: str
    week: str = Field(pattern=WEEK_PATTERN)
    quantity: int = Field(ge=0)
    order_id: str | None = None
    allocation_id: str | None = None
    reason: str = Field(examples=["hold_not_confirmed"])
    at: datetime


@event("capacity", "reservation_consumed", key="foundry_code")
class ReservationConsumed(EventData):
    """Production was reported (a registered lot) against a reservation: `quantity` units of it are made."""

    reservation_id: str
    foundry_code: str
    week: str = Field(pattern=WEEK_PATTERN)
    quantity: int = Field(gt=0, description="Units of this lot counted against the reservation")
    lot_code: str
    order_id: str | None = None
    allocation_id: str | None = None
    product_family: str | None = None
    remaining_quantity: int | None = Field(default=None, ge=0, description="Units of the reservation still to be made")
