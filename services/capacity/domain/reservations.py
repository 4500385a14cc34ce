"""Reservations of a foundry-week's capacity: hold → confirm → consume, or release, expire, revoke."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum

from shared.events.capacity import (
    ReservationConfirmed,
    ReservationExpired,
    ReservationRejected,
    ReservationReleased,
    ReservationRevoked,
)

from .calendar import parse_week
from .errors import ConflictError, DomainError
from .register import Foundry, ProductFamily


class ReservationState(StrEnum):
    HOLD = "hold"  # made over the API, counts against capacity until confirmed or expired
    CONFIRMED = "confirmed"
    CONSUMED = "consumed"  # production reported for all of it
    RELEASED = "released"
    EXPIRED = "expired"
    REVOKED = "revoked"


OPEN_STATES = frozenset({ReservationState.HOLD, ReservationState.CONFIRMED})
# States whose quantity occupies the week: made units keep using the capacity they used.
HOLDING_STATES = frozenset({ReservationState.HOLD, ReservationState.CONFIRMED, ReservationState.CONSUMED})


class ReservationSource(StrEnum):
    PLAN = "plan"  # from orders' allocation plan
    REQUEST = "request"  # over the API


class RefusalReason(StrEnum):
    INSUFFICIENT_CAPACITY = "insufficient_capacity"
    UNKNOWN_FOUNDRY = "unknown_foundry"
    FOUNDRY_NOT_ACTIVE = "foundry_not_active"
    FAMILY_NOT_MADE = "family_not_made"
    WEEK_PAST = "week_past"
    INVALID_WEEK = "invalid_week"
    DUPLICATE_ALLOCATION = "duplicate_allocation"


@dataclass(frozen=True)
class Refusal:
    reason: RefusalReason
    free_quantity: int
    field: str
    message: str


class ReservationRefused(ConflictError):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.field, refusal.message)
        self.refusal = refusal


@dataclass(frozen=True)
class Reservation:
    id: str
    foundry_code: str
    product_family: ProductFamily
    week: str
    quantity: int  # units it holds now, consumed ones included
    state: ReservationState
    source: ReservationSource
    created_at: datetime
    updated_at: datetime
    consumed_quantity: int = 0
    order_id: str | None = None
    allocation_id: str | None = None
    plan_version: int | None = None
    due_date: date | None = None
    item_code: str | None = None
    hold_expires_at: datetime | None = None
    reason: str | None = None  # why it last changed state
    note: str | None = None

    @property
    def holding(self) -> int:
        """Units this reservation takes from its week's capacity."""
        return self.quantity if self.state in HOLDING_STATES else 0

    @property
    def revocable(self) -> int:
        """Units that may still be taken back: made units cannot."""
        return self.quantity - self.consumed_quantity if self.state in OPEN_STATES else 0


@dataclass(frozen=True)
class ReservationRequest:
    foundry_code: str
    product_family: str  # as asked; a family nobody makes is refused, not an error
    week: str
    quantity: int
    order_id: str | None = None
    allocation_id: str | None = None
    plan_version: int | None = None
    due_date: date | None = None
    item_code: str | None = None
    note: str | None = None


def check_reservation(
    request: ReservationRequest, foundry: Foundry | None, capacity: int, reserved: int, current_week: str
) -> Refusal | None:
    """Why the request cannot be reserved, or None when it fits. A partial fit is refused whole."""
    free = max(0, capacity - reserved)
    if foundry is None:
        return Refusal(RefusalReason.UNKNOWN_FOUNDRY, 0, "foundry_code", f"no member foundry {request.foundry_code}")
    if not foundry.active:
        return Refusal(
            RefusalReason.FOUNDRY_NOT_ACTIVE,
            0,
            "foundry_code",
            f"{foundry.code} is {foundry.membership_status.value}, not active",
        )
    if not foundry.makes(request.product_family):
        return Refusal(
            RefusalReason.FAMILY_NOT_MADE, 0, "product_family", f"{foundry.code} does not make {request.product_family}"
        )
    try:
        parse_week(request.week)
    except DomainError as exc:
        return Refusal(RefusalReason.INVALID_WEEK, 0, "week", exc.message)
    if request.week < current_week:
        return Refusal(RefusalReason.WEEK_PAST, 0, "week", f"{request.week} is over (this is {current_week})")
    if request.quantity > free:
        return Refusal(
            RefusalReason.INSUFFICIENT_CAPACITY,
            free,
            "quantity",
            f"{foundry.code} has {free} of {capacity} units of {request.product_family} free in {request.week}; "
            f"{request.quantity} requested",
        )
    return None


def _new_reservation(
    request: ReservationRequest,
    reservation_id: str,
    state: ReservationState,
    source: ReservationSource,
    now: datetime,
    hold_expires_at: datetime | None = None,
) -> Reservation:
    return Reservation(
        id=reservation_id,
        foundry_code=request.foundry_code,
        product_family=ProductFamily(request.product_family),
        week=request.week,
        quantity=request.quantity,
        state=state,
        source=source,
        created_at=now,
        updated_at=now,
        order_id=request.order_id,
        allocation_id=request.allocation_id,
        plan_version=request.plan_version,
        due_date=request.due_date,
        item_code=request.item_code,
        hold_expires_at=hold_expires_at,
        note=request.note,
    )


def confirmed_event(reservation: Reservation, now: datetime) -> ReservationConfirmed:
    return ReservationConfirmed(
        reservation_id=reservation.id,
        foundry_code=reservation.foundry_code,
        product_family=reservation.product_family.value,
        week=reservation.week,
        quantity=reservation.quantity,
        order_id=reservation.order_id,
        allocation_id=reservation.allocation_id,
        plan_version=reservation.plan_version,
        due_date=reservation.due_date,
        confirmed_at=now,
    )


def rejection_event(request: ReservationRequest, refusal: Refusal, now: datetime) -> ReservationRejected:
    return ReservationRejected(
        foundry_code=request.foundry_code,
        product_family=str(request.product_family),
        week=request.week,
        requested_quantity=request.quantity,
        free_quantity=refusal.free_quantity,
        reason=refusal.reason.value,
        order_id=request.order_id,
        allocation_id=request.allocation_id,
        plan_version=request.plan_version,
        rejected_at=now,
    )


def reserve_allocation(
    request: ReservationRequest,
    foundry: Foundry | None,
    capacity: int,
    reserved: int,
    current_week: str,
    reservation_id: str,
    now: datetime,
) -> tuple[Reservation | None, ReservationConfirmed | ReservationRejected]:
    """A plan's allocation is confirmed at once when it fits, else rejected whole, saying what is free."""
    refusal = check_reservation(request, foundry, capacity, reserved, current_week)
    if refusal is not None:
        return None, rejection_event(request, refusal, now)
    reservation = _new_reservation(request, reservation_id, ReservationState.CONFIRMED, ReservationSource.PLAN, now)
    return reservation, confirmed_event(reservation, now)


def hold_capacity(
    request: ReservationRequest,
    foundry: Foundry | None,
    capacity: int,
    reserved: int,
    current_week: str,
    reservation_id: str,
    now: datetime,
    hold_for: timedelta,
) -> Reservation:
    """A reservation asked for over the API: held until `now + hold_for`, then it expires unless confirmed.
    Nobody else learns of a hold, so it causes no event."""
    if request.quantity <= 0:
        raise DomainError("quantity", "must be greater than 0")
    refusal = check_reservation(request, foundry, capacity, reserved, current_week)
    if refusal is not None:
        raise ReservationRefused(refusal)
    return _new_reservation(request, reservation_id, ReservationState.HOLD, ReservationSource.REQUEST, now, now + hold_for)


def confirm_reservation(reservation: Reservation, now: datetime) -> tuple[Reservation, ReservationConfirmed | None]:
    """Confirms a hold; confirming a confirmed reservation again changes nothing."""
    if reservation.state is ReservationState.CONFIRMED:
        return reservation, None
    if reservation.state is not ReservationState.HOLD:
        raise ConflictError("state", f"reservation {reservation.id} is {reservation.state.value}; only a hold can be confirmed")
    if reservation.hold_expires_at is not None and now >= reservation.hold_expires_at:
        raise ConflictError("state", f"the hold expired at {reservation.hold_expires_at.isoformat()}; reserve again")
    confirmed = replace(reservation, state=ReservationState.CONFIRMED, updated_at=now, hold_expires_at=None, reason="confirmed")
    return confirmed, confirmed_event(confirmed, now)


def release_reservation(reservation: Reservation, reason: str, now: datetime) -> tuple[Reservation, ReservationReleased | None]:
    """Gives back what is not made yet; made units stay, as a consumed reservation. Releasing twice changes nothing."""
    if reservation.state not in OPEN_STATES:
        if reservation.state is ReservationState.RELEASED:
            return reservation, None
        raise ConflictError("state", f"reservation {reservation.id} is {reservation.state.value}; it holds nothing to release")
    freed = reservation.revocable
    made = reservation.consumed_quantity
    released = replace(
        reservation,
        quantity=made,
        state=ReservationState.CONSUMED if made else ReservationState.RELEASED,
        updated_at=now,
        hold_expires_at=None,
        reason=reason,
    )
    return released, ReservationReleased(
        reservation_id=reservation.id,
        foundry_code=reservation.foundry_code,
        product_family=reservation.product_family.value,
        week=reservation.week,
        quantity=freed,
        order_id=reservation.order_id,
        allocation_id=reservation.allocation_id,
        reason=reason,
        at=now,
    )


def expire_hold(reservation: Reservation, now: datetime) -> tuple[Reservation, ReservationExpired | None]:
    if reservation.state is not ReservationState.HOLD or reservation.hold_expires_at is None or now < reservation.hold_expires_at:
        return reservation, None
    expired = replace(reservation, state=ReservationState.EXPIRED, updated_at=now, reason="hold_not_confirmed")
    return expired, ReservationExpired(
        reservation_id=reservation.id,
        foundry_code=reservation.foundry_code,
        product_family=reservation.product_family.value,
        week=reservation.week,
        quantity=reservation.quantity,
        order_id=reservation.order_id,
        allocation_id=reservation.allocation_id,
        reason="hold_not_confirmed",
        at=now,
    )


def overbooked(capacity: int, held: int, made: int) -> int:
    """Units a foundry-week holds for production it can no longer make: what revocation should have taken back.

    Made units are history, not a promise: a capacity that fell below them after they were made leaves no unit
    overbooked, while units not made yet count beyond what the week can still make."""
    return max(0, held - max(capacity, made))


def _revocation_order(reservation: Reservation) -> tuple[int, int, float, str]:
    # A missing due date counts as the latest: nothing known depends on it. Then the newest goes first.
    due = reservation.due_date
    return (0 if due is None else 1, -(due.toordinal() if due else 0), -reservation.created_at.timestamp(), reservation.id)


def revoke_reservations_over_capacity(
    reservations: Sequence[Reservation], capacity: int, reason: str, now: datetime
) -> list[tuple[Reservation, ReservationRevoked]]:
    """Takes back just the excess of one week's reservations over its capacity, disturbing the fewest deliveries:
    latest due date first (then the newest), partially when part of one is enough. Made units are never taken back."""
    excess = sum(r.holding for r in reservations) - capacity
    revoked: list[tuple[Reservation, ReservationRevoked]] = []
    for reservation in sorted((r for r in reservations if r.revocable > 0), key=_revocation_order):
        if excess <= 0:
            break
        taken = min(reservation.revocable, excess)
        excess -= taken
        remaining = reservation.quantity - taken
        if remaining > reservation.consumed_quantity:
            state = reservation.state
        else:
            state = ReservationState.CONSUMED if reservation.consumed_quantity else ReservationState.REVOKED
        after = replace(reservation, quantity=remaining, state=state, updated_at=now, reason=reason)
        revoked.append(
            (
                after,
                ReservationRevoked(
                    reservation_id=reservation.id,
                    foundry_code=reservation.foundry_code,
                    product_family=reservation.product_family.value,
                    week=reservation.week,
                    revoked_quantity=taken,
                    remaining_quantity=remaining,
                    reason=reason,
                    order_id=reservation.order_id,
                    allocation_id=reservation.allocation_id,
                    plan_version=reservation.plan_version,
                    revoked_at=now,
                ),
            )
        )
    return revoked
