"""Capacity's use cases (commands from the API) and reactions (events from other services).

Each runs in one transaction and takes its locks in the order `store` documents: the order's plan row,
then calendars, then ledger rows, each set in key order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import clock
from shared.events import Envelope, EventData
from shared.events.orders import AllocationPlanned, PurchaseOrderCancelled
from shared.events.quality import ItemPublished, LotRegistered
from shared.http import Conflict, FieldError, NotFound, Unprocessable
from shared.logging import get_logger
from shared.settings import Settings

from . import metrics, store
from .domain import (
    HOLDING_STATES,
    CapacityCalendar,
    CapacityChange,
    CapacityChangeKind,
    CapacityChangeRequest,
    ConflictError,
    DomainError,
    Foundry,
    MembershipStatus,
    PlannedAllocation,
    ProducedLot,
    ProductFamily,
    Refusal,
    RefusalReason,
    Reservation,
    ReservationRefused,
    ReservationRequest,
    ReservationState,
    add_weeks,
    confirm_reservation,
    consume_for_lot,
    expire_hold,
    families_withdrawn,
    hold_capacity,
    iso_week,
    overbooked,
    parse_week,
    reconcile_plan,
    record_capacity_change,
    register_foundry,
    rejection_event,
    release_reservation,
    reserve_allocation,
    revoke_reservations_over_capacity,
    update_foundry,
    weeks_between,
)

log = get_logger(__name__)

T = TypeVar("T")
Cell = store.Cell

# PostgreSQL's deadlock and serialization failures: the transaction did nothing and may simply run again.
_RETRYABLE_SQLSTATES = {"40P01", "40001"}
_ATTEMPTS = 4


def _retryable(exc: sa.exc.DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


async def _in_transaction(sessions: async_sessionmaker[AsyncSession], work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            async with sessions.begin() as session:
                return await work(session)
        except sa.exc.DBAPIError as exc:
            if attempt == _ATTEMPTS or not _retryable(exc):
                raise
            log.info("transaction lost a lock race, running it again", attempt=attempt)
    raise AssertionError("unreachable")


def _unprocessable(exc: DomainError) -> Unprocessable:
    return Unprocessable(str(exc), errors=[FieldError(field=f"body.{exc.field}", message=exc.message)])


def _conflict(exc: DomainError) -> Conflict:
    return Conflict(str(exc), errors=[FieldError(field=f"body.{exc.field}", message=exc.message)])


def _problem(exc: DomainError) -> Unprocessable | Conflict:
    return _conflict(exc) if isinstance(exc, ConflictError) else _unprocessable(exc)


def current_week() -> str:
    return iso_week(clock.today())


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _cell(r: Reservation) -> Cell:
    return (r.foundry_code, r.product_family.value, r.week)


# --- foundries ---------------------------------------------------------------------------------------------


async def register(sessions: async_sessionmaker[AsyncSession], **entry: Any) -> Foundry:
    async def work(session: AsyncSession) -> Foundry:
        if await store.get_foundry(session, entry["code"]) is not None:
            raise Conflict(f"foundry {entry['code']} is already registered")
        try:
            foundry, registered = register_foundry(now=clock.now(), **entry)
        except DomainError as exc:
            raise _unprocessable(exc) from exc
        await store.add_foundry(session, foundry)
        await store.publish(session, registered)
        return foundry

    try:
        return await _in_transaction(sessions, work)
    except sa.exc.IntegrityError as exc:
        raise Conflict(f"foundry {entry['code']} is already registered") from exc


async def change(sessions: async_sessionmaker[AsyncSession], code: str, **changes: Any) -> Foundry:
    """Changes a register entry. A foundry that stops being active, or drops a family, offers that capacity no
    more: its open reservations from this week on are revoked."""

    async def work(session: AsyncSession) -> Foundry:
        row = (
            await session.execute(sa.select(store.foundries.c.code).where(store.foundries.c.code == code).with_for_update())
        ).first()
        foundry = await store.get_foundry(session, code) if row else None
        if foundry is None:
            raise NotFound(f"no foundry {code}")
        now = clock.now()
        try:
            changed, updated = update_foundry(foundry, now, **changes)
        except DomainError as exc:
            raise _unprocessable(exc) from exc
        if updated is None:
            return changed
        await store.save_foundry(session, changed)
        await store.publish(session, updated)
        withdrawn = families_withdrawn(foundry, changed)
        if withdrawn:
            reason = "foundry_not_active" if foundry.active and not changed.active else "family_dropped"
            await _revoke_withdrawn_capacity(session, code, [f.value for f in withdrawn], reason, now)
        return changed

    return await _in_transaction(sessions, work)


async def _revoke_withdrawn_capacity(session: AsyncSession, code: str, families: list[str], reason: str, now: datetime) -> None:
    for family in sorted(families):
        await store.lock_calendar_for_change(session, code, family)
    first = current_week()
    candidates = await store.open_reservations_from_week(session, code, families, first)
    locked = await store.lock_cells(session, {_cell(r) for r in candidates})
    current = await store.reservations_in_cells(session, locked, HOLDING_STATES)
    await _revoke_over(session, current, dict.fromkeys(locked, 0), reason, now)


async def _revoke_over(
    session: AsyncSession,
    reservations: Sequence[Reservation],
    capacities: dict[Cell, int],
    reason: str,
    now: datetime,
) -> list[Any]:
    by_cell: dict[Cell, list[Reservation]] = defaultdict(list)
    for r in reservations:
        by_cell[_cell(r)].append(r)
    events = []
    deltas: dict[Cell, int] = {}
    changed: list[Reservation] = []
    for cell in sorted(by_cell):
        for after, revoked in revoke_reservations_over_capacity(by_cell[cell], capacities[cell], reason, now):
            changed.append(after)
            events.append(revoked)
            deltas[cell] = deltas.get(cell, 0) - revoked.revoked_quantity
    await store.save_reservations(session, changed)
    await store.add_reserved(session, deltas)
    await store.publish(session, *events)
    for event in events:
        metrics.reservation_revoked(event.product_family)
    return events


# --- the capacity calendar -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedChange:
    change: CapacityChange
    created: bool  # False when the same change was recorded before: a retry is applied once
    weeks: list[tuple[str, int]]
    revoked: list[Any]


async def record_change(
    sessions: async_sessionmaker[AsyncSession],
    code: str,
    request: CapacityChangeRequest,
    *,
    idempotency_key: str | None = None,
    fingerprint: str = "",
) -> RecordedChange:
    scope = f"capacity-changes:{code}"

    async def work(session: AsyncSession) -> RecordedChange:
        if idempotency_key is not None:
            earlier = await store.idempotency_keys.recall(session, scope, idempotency_key, fingerprint)
            if earlier is not None:
                recorded = await store.find_change(session, earlier)
                assert recorded is not None
                calendar = await store.get_calendar(session, code, recorded.product_family)
                return RecordedChange(recorded, False, _weeks_of(calendar, recorded), [])
        foundry = await store.get_foundry(session, code)
        if foundry is None:
            raise NotFound(f"no foundry {code}")
        family = await _family_of(session, code, request)
        await store.lock_calendar_for_change(session, code, family.value)
        calendar = await store.get_calendar(session, code, family)
        duplicate = calendar.duplicate_of(request)
        if duplicate is not None:
            return RecordedChange(duplicate, False, _weeks_of(calendar, duplicate), [])
        now = clock.now()
        try:
            after, recorded, changed = record_capacity_change(foundry, calendar, request, _new_id("chg"), now)
        except DomainError as exc:
            raise _problem(exc) from exc
        await store.add_change(session, recorded)
        await store.bump_calendar_revision(session, code, family.value)
        await store.publish(session, changed)
        if idempotency_key is not None:
            await store.idempotency_keys.remember(session, scope, idempotency_key, fingerprint, recorded.change_id, now)
        revoked = await _revoke_after_change(session, after, recorded, now)
        return RecordedChange(recorded, True, [(w.week, w.capacity) for w in changed.weeks], revoked)

    try:
        result = await _in_transaction(sessions, work)
    except sa.exc.IntegrityError as exc:
        raise Conflict("a concurrent request with the same Idempotency-Key won; retry to get its answer") from exc
    if result.created:
        metrics.capacity_changed(result.change.reason.value)
    return result


def _weeks_of(calendar: CapacityCalendar, change: CapacityChange) -> list[tuple[str, int]]:
    return [(week, calendar.capacity_of(week)) for week in calendar.weeks_touched_by(change)]


async def _family_of(session: AsyncSession, code: str, request: CapacityChangeRequest) -> ProductFamily:
    if request.kind is not CapacityChangeKind.WITHDRAWAL:
        if request.product_family is None:
            raise Unprocessable("product_family: required", errors=[FieldError(field="body.product_family", message="required")])
        return request.product_family
    target = await store.find_change(session, request.withdraws) if request.withdraws else None
    if target is None or target.foundry_code != code:
        message = f"no change {request.withdraws!r} of {code}"
        raise Unprocessable(f"withdraws: {message}", errors=[FieldError(field="body.withdraws", message=message)])
    if request.product_family is not None and request.product_family != target.product_family:
        message = f"{target.change_id} is a change of {target.product_family.value}"
        raise Unprocessable(f"product_family: {message}", errors=[FieldError(field="body.product_family", message=message)])
    return target.product_family


async def _revoke_after_change(
    session: AsyncSession, after: CapacityCalendar, change: CapacityChange, now: datetime
) -> list[Any]:
    touched = after.weeks_touched_by(change)
    if not touched:
        return []
    # A standard figure holds until the next one: every later week with reservations may be over capacity now.
    last = None if after.affects_all_later_weeks(change) else touched[-1]
    family = after.product_family.value
    locked = await store.lock_calendar_cells_from(session, after.foundry_code, family, touched[0], last)
    capacities = {cell: after.capacity_of(cell[2]) for cell in locked}
    over = [cell for cell, reserved in locked.items() if reserved > capacities[cell]]
    if not over:
        return []
    current = await store.reservations_in_cells(session, over, HOLDING_STATES)
    return await _revoke_over(session, current, capacities, change.reason.value, now)


async def list_changes(sessions: async_sessionmaker[AsyncSession], code: str, **filters: Any) -> tuple[list[CapacityChange], int]:
    async with sessions() as session:
        if await store.get_foundry(session, code) is None:
            raise NotFound(f"no foundry {code}")
        return await store.list_changes(session, code, **filters)


# --- availability ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoundryAvailability:
    foundry: Foundry
    capacity: list[int]
    reserved: list[int]


@dataclass(frozen=True)
class Availability:
    product_family: ProductFamily
    weeks: list[str]
    foundries: list[FoundryAvailability]


class _FamilySnapshot:
    """One family's members and calendars as last read, with the revisions they were read at."""

    def __init__(self, family: ProductFamily) -> None:
        self.family = family
        self.version: tuple[int, ...] | None = None
        self.foundries: dict[str, tuple[int, Foundry | None]] = {}  # code → (revision, the entry if it offers the family)
        self.calendars: dict[str, tuple[int, CapacityCalendar]] = {}
        self.members: list[Foundry] = []
        self._capacities: dict[tuple[str, str], dict[str, list[int]]] = {}
        self.lock = asyncio.Lock()

    async def refresh(self, session: AsyncSession, version: tuple[int, ...]) -> None:
        """Reads again only the foundries and calendars whose revision moved (usually one after a change)."""
        revisions = await store.foundry_revisions(session)
        stale = [code for code, revision in revisions.items() if self.foundries.get(code, (None,))[0] != revision]
        for foundry in (await store.get_foundries(session, stale)).values():
            offers = foundry.active and foundry.makes(self.family)
            self.foundries[foundry.code] = (foundry.revision, foundry if offers else None)
        calendar_revisions = await store.calendar_revisions(session, self.family.value)
        moved = [code for code, revision in calendar_revisions.items() if self.calendars.get(code, (None,))[0] != revision]
        loaded = await store.get_calendars(session, [(code, self.family.value) for code in moved])
        for code in moved:
            self.calendars[code] = (calendar_revisions[code], loaded[(code, self.family.value)])
        for figures in self._capacities.values():
            for code in {*stale, *moved}:
                figures.pop(code, None)
        self.members = sorted((f for _, f in self.foundries.values() if f is not None), key=lambda f: f.code)
        self.version = version

    def capacities_of(self, code: str, weeks: list[str]) -> list[int]:
        figures = self._capacities.setdefault((weeks[0], weeks[-1]), {})
        found = figures.get(code)
        if found is None:
            calendar = self.calendars.get(code, (0, CapacityCalendar(code, self.family)))[1]
            found = figures[code] = calendar.capacities(weeks)
        if len(self._capacities) > 16:  # a few ranges are asked for again and again; the others may go
            self._capacities = {(weeks[0], weeks[-1]): figures}
        return found


class AvailabilitySnapshots:
    """What availability reads that rarely changes — a family's members and calendars, and their weekly figures — kept
    between requests. The register's version is read on every request and anything whose revision moved is read
    again, so no replica answers from an outdated calendar."""

    def __init__(self) -> None:
        self._by_family: dict[str, _FamilySnapshot] = {}

    async def current(self, session: AsyncSession, family: ProductFamily) -> _FamilySnapshot:
        snapshot = self._by_family.setdefault(family.value, _FamilySnapshot(family))
        version = await store.register_version(session, family.value)
        if snapshot.version != version:
            async with snapshot.lock:
                if snapshot.version != version:
                    await snapshot.refresh(session, version)
        return snapshot


async def availability(
    sessions: async_sessionmaker[AsyncSession],
    family: ProductFamily,
    first_week: str,
    last_week: str,
    *,
    foundry_code: str | None = None,
    village: str | None = None,
    snapshots: AvailabilitySnapshots | None = None,
) -> Availability:
    """Each active member making the family, week by week: capacity from its calendar, reserved from the ledger."""
    weeks = weeks_between(first_week, last_week)
    async with sessions() as session:
        snapshot = await (snapshots or AvailabilitySnapshots()).current(session, family)
        reserved_weeks = await store.reserved_in_range(session, family.value, first_week, last_week)
    members = [
        m
        for m in snapshot.members
        if (foundry_code is None or m.code == foundry_code) and (village is None or m.village == village)
    ]
    position = {week: i for i, week in enumerate(weeks)}
    reserved = {member.code: [0] * len(weeks) for member in members}
    for code, week, units in reserved_weeks:
        row = reserved.get(code)
        if row is not None:
            row[position[week]] = units
    rows = [FoundryAvailability(m, snapshot.capacities_of(m.code, weeks), reserved[m.code]) for m in members]
    return Availability(family, weeks, rows)


# --- reservations over the API -----------------------------------------------------------------------------------


def _refusal_problem(refusal: Refusal) -> Unprocessable | Conflict:
    error = [FieldError(field=f"body.{refusal.field}", message=refusal.message, type=refusal.reason.value)]
    if refusal.reason is RefusalReason.INSUFFICIENT_CAPACITY:
        return Conflict(refusal.message, title="Not enough free capacity", errors=error)
    return Unprocessable(refusal.message, errors=error)


@dataclass(frozen=True)
class Held:
    reservation: Reservation
    replayed: bool


async def hold(
    sessions: async_sessionmaker[AsyncSession],
    request: ReservationRequest,
    settings: Settings,
    *,
    idempotency_key: str | None = None,
    fingerprint: str = "",
) -> Held:
    scope = "reservations"

    async def work(session: AsyncSession) -> Held:
        if idempotency_key is not None:
            earlier = await store.idempotency_keys.recall(session, scope, idempotency_key, fingerprint)
            if earlier is not None:
                found = await store.get_reservation(session, earlier)
                assert found is not None
                return Held(found, True)
        family, week = request.product_family, request.week
        try:
            parse_week(week)
        except DomainError as exc:
            raise _unprocessable(exc) from exc
        foundry: Foundry | None = None
        capacity = reserved = 0
        if await store.get_foundry(session, request.foundry_code) is not None:
            cell = (request.foundry_code, family, week)
            await store.share_calendars(session, [(request.foundry_code, family)])
            reserved = (await store.lock_cells(session, [cell]))[cell]
            foundry = await store.get_foundry(session, request.foundry_code)  # read under the lock: it may just have changed
            if foundry is not None and foundry.makes(family):
                capacity = (await store.get_calendar(session, foundry.code, ProductFamily(family))).capacity_of(week)
        now = clock.now()
        try:
            held = hold_capacity(
                request,
                foundry,
                capacity,
                reserved,
                current_week(),
                _new_id("res"),
                now,
                timedelta(minutes=settings.capacity_hold_minutes),
            )
        except ReservationRefused as exc:
            metrics.reservation_refused(exc.refusal.reason.value)
            raise _refusal_problem(exc.refusal) from exc
        except DomainError as exc:
            raise _unprocessable(exc) from exc
        await store.add_reservations(session, [held])
        await store.add_reserved(session, {_cell(held): held.quantity})
        if idempotency_key is not None:
            await store.idempotency_keys.remember(session, scope, idempotency_key, fingerprint, held.id, now)
        return Held(held, False)

    try:
        return await _in_transaction(sessions, work)
    except sa.exc.IntegrityError as exc:
        raise Conflict("a concurrent request with the same Idempotency-Key won; retry to get its answer") from exc


def _is_week(label: str) -> bool:
    try:
        parse_week(label)
    except DomainError:
        return False
    return True


async def _change_reservation(
    sessions: async_sessionmaker[AsyncSession],
    reservation_id: str,
    apply: Callable[[Reservation, datetime], tuple[Reservation, EventData | None]],
) -> Reservation:
    async def work(session: AsyncSession) -> Reservation:
        found = await store.get_reservation(session, reservation_id)
        if found is None:
            raise NotFound(f"no reservation {reservation_id}")
        await store.share_calendars(session, [(found.foundry_code, found.product_family.value)])
        await store.lock_cells(session, [_cell(found)])
        current = await store.get_reservation(session, reservation_id)
        assert current is not None
        try:
            after, event = apply(current, clock.now())
        except DomainError as exc:
            raise _problem(exc) from exc
        if event is not None:
            await store.save_reservations(session, [after])
            await store.add_reserved(session, {_cell(after): after.holding - current.holding})
            await store.publish(session, event)
        return after

    return await _in_transaction(sessions, work)


async def confirm(sessions: async_sessionmaker[AsyncSession], reservation_id: str) -> Reservation:
    return await _change_reservation(sessions, reservation_id, confirm_reservation)


async def release(sessions: async_sessionmaker[AsyncSession], reservation_id: str, reason: str) -> Reservation:
    return await _change_reservation(sessions, reservation_id, lambda r, now: release_reservation(r, reason, now))


async def get_reservation(sessions: async_sessionmaker[AsyncSession], reservation_id: str) -> Reservation:
    async with sessions() as session:
        found = await store.get_reservation(session, reservation_id)
    if found is None:
        raise NotFound(f"no reservation {reservation_id}")
    return found


async def expire_holds(sessions: async_sessionmaker[AsyncSession], limit: int = 500) -> list[Reservation]:
    """Holds not confirmed in time give their units back (the clock-driven job calls this)."""

    async def work(session: AsyncSession) -> list[Reservation]:
        now = clock.now()
        due = await store.holds_expired_by(session, now, limit)
        if not due:
            return []
        cells = {_cell(r) for r in due}
        await store.share_calendars(session, {(f, p) for f, p, _ in cells})
        await store.lock_cells(session, cells)
        wanted = {r.id for r in due}
        current = [r for r in await store.reservations_in_cells(session, cells, [ReservationState.HOLD]) if r.id in wanted]
        expired: list[Reservation] = []
        events = []
        deltas: dict[Cell, int] = {}
        for reservation in sorted(current, key=lambda r: r.id):
            after, event = expire_hold(reservation, now)
            if event is not None:
                expired.append(after)
                events.append(event)
                deltas[_cell(after)] = deltas.get(_cell(after), 0) - reservation.quantity
        await store.save_reservations(session, expired)
        await store.add_reserved(session, deltas)
        await store.publish(session, *events)
        return expired

    return await _in_transaction(sessions, work)


# --- reactions: orders' plans and cancellations ---------------------------------------------------------------------


async def on_allocation_planned(session: AsyncSession, envelope: Envelope[AllocationPlanned]) -> None:
    """Reconciles the order's reservations with its new plan version, which replaces the previous one whole."""
    plan = envelope.data
    now = clock.now()
    order = await store.lock_order_plan(session, plan.order_id, now)
    if order.cancelled_at is not None or plan.plan_version <= order.plan_version:
        log.info(
            "plan version ignored", order_id=plan.order_id, plan_version=plan.plan_version, applied_version=order.plan_version,
            cancelled=order.cancelled_at is not None,
        )  # fmt: skip
        return
    allocations = [
        PlannedAllocation(a.allocation_id, a.item_code, a.product_family, a.foundry_code, a.week, a.quantity, a.due_date)
        for a in plan.allocations
    ]
    # Lock every week the plan or the order's reservations touch; allocations refused anyway need no lock.
    known = await store.get_foundries(session, {a.foundry_code for a in allocations})
    cells: set[Cell] = {
        (a.foundry_code, a.product_family, a.week)
        for a in allocations
        if a.foundry_code in known and known[a.foundry_code].makes(a.product_family) and _is_week(a.week)
    }
    cells |= {_cell(r) for r in await store.open_reservations_of_order(session, plan.order_id)}
    await store.share_calendars(session, {(f, p) for f, p, _ in cells})
    reserved = await store.lock_cells(session, cells)
    reserved_before = dict(reserved)
    members = await store.get_foundries(session, {a.foundry_code for a in allocations})
    calendars = await store.get_calendars(session, {(f, p) for f, p, _ in cells})
    diff = reconcile_plan(await store.plan_reservations_of_order(session, plan.order_id), allocations)

    events: list[EventData] = []
    changed: list[Reservation] = []
    for reservation in diff.release:
        after, released = release_reservation(reservation, "plan_changed", now)
        if released is not None:
            changed.append(after)
            events.append(released)
            reserved[_cell(reservation)] -= released.quantity
    added: list[Reservation] = []
    week_now = current_week()
    for allocation in diff.reserve:
        request = ReservationRequest(
            allocation.foundry_code, allocation.product_family, allocation.week, allocation.quantity,
            order_id=plan.order_id, allocation_id=allocation.allocation_id, plan_version=plan.plan_version,
            due_date=allocation.due_date, item_code=allocation.item_code,
        )  # fmt: skip
        cell = (allocation.foundry_code, allocation.product_family, allocation.week)
        calendar = calendars.get((allocation.foundry_code, allocation.product_family))
        capacity = calendar.capacity_of(allocation.week) if calendar is not None and cell in reserved else 0
        reservation, outcome = reserve_allocation(
            request, members.get(allocation.foundry_code), capacity, reserved.get(cell, 0), week_now, _new_id("res"), now
        )
        if reservation is not None:
            added.append(reservation)
            reserved[cell] += reservation.quantity
        else:
            metrics.reservation_refused(outcome.reason)  # type: ignore[union-attr]
        events.append(outcome)
    for allocation in diff.duplicates:
        request = ReservationRequest(
            allocation.foundry_code, allocation.product_family, allocation.week, allocation.quantity,
            order_id=plan.order_id, allocation_id=allocation.allocation_id, plan_version=plan.plan_version,
        )  # fmt: skip
        refusal = Refusal(RefusalReason.DUPLICATE_ALLOCATION, 0, "allocation_id", "allocation listed twice in one plan")
        events.append(rejection_event(request, refusal, now))
        metrics.reservation_refused(RefusalReason.DUPLICATE_ALLOCATION.value)

    await store.save_reservations(session, changed)
    await store.add_reservations(session, added)
    await store.add_reserved(session, {cell: reserved[cell] - before for cell, before in reserved_before.items()})
    await store.save_order_plan(session, plan.order_id, now, plan_version=plan.plan_version)
    await store.publish(session, *events)


async def on_purchase_order_cancelled(session: AsyncSession, envelope: Envelope[PurchaseOrderCancelled]) -> None:
    """Everything held for a cancelled order is released; a plan for it arriving later is ignored."""
    cancelled = envelope.data
    now = clock.now()
    await store.lock_order_plan(session, cancelled.order_id, now)
    await store.save_order_plan(session, cancelled.order_id, now, cancelled_at=cancelled.cancelled_at)
    cells = {_cell(r) for r in await store.open_reservations_of_order(session, cancelled.order_id)}
    await store.share_calendars(session, {(f, p) for f, p, _ in cells})
    await store.lock_cells(session, cells)
    events: list[EventData] = []
    changed: list[Reservation] = []
    deltas: dict[Cell, int] = {}
    for reservation in await store.open_reservations_of_order(session, cancelled.order_id):
        after, released = release_reservation(reservation, "order_cancelled", now)
        if released is not None:
            changed.append(after)
            events.append(released)
            deltas[_cell(after)] = deltas.get(_cell(after), 0) - released.quantity
    await store.save_reservations(session, changed)
    await store.add_reserved(session, deltas)
    await store.publish(session, *events)


async def on_item_published(session: AsyncSession, envelope: Envelope[ItemPublished]) -> None:
    """Keeps the item's highest version: a redelivery, an older version or the seeded one announced change nothing."""
    data = envelope.data
    known = await store.item_version(session, data.item_code)
    if known is not None and known >= data.version:
        return
    await store.set_item(
        session,
        {
            "item_code": data.item_code,
            "version": data.version,
            "name": data.name_id,
            "product_family": data.product_family,
            "unit": data.unit,
            "min_lot": data.min_lot,
            "retired": data.retired,
            "published_at": data.published_at,
        },
    )


async def on_lot_registered(session: AsyncSession, envelope: Envelope[LotRegistered]) -> None:
    """A produced lot counts against the reservations it was made for (production reported)."""
    data = envelope.data
    if await store.lot_already_counted(session, data.lot_code):
        return
    lot = ProducedLot(
        data.lot_code,
        data.foundry_code,
        data.item_code,
        data.quantity,
        data.order_id,
        data.allocation_id,
        await store.item_family(session, data.item_code),
    )
    candidates = await store.confirmed_reservations_for_lot(session, lot.foundry_code, lot.order_id, lot.allocation_id)
    if not candidates:
        log.info("lot serves no open reservation", lot_code=lot.lot_code, order_id=lot.order_id, allocation_id=lot.allocation_id)
        return
    cells = {_cell(r) for r in candidates}
    await store.share_calendars(session, {(f, p) for f, p, _ in cells})
    await store.lock_cells(session, cells)
    current = await store.confirmed_reservations_for_lot(session, lot.foundry_code, lot.order_id, lot.allocation_id)
    now = clock.now()
    consumed = consume_for_lot(current, lot, now)
    await store.save_reservations(session, [after for after, _ in consumed])
    await store.add_lot_consumptions(
        session,
        [
            {"lot_code": lot.lot_code, "reservation_id": after.id, "quantity": event.quantity, "recorded_at": now}
            for after, event in consumed
        ],
    )
    await store.publish(session, *(event for _, event in consumed))


# --- metrics ----------------------------------------------------------------------------------------------------------


async def refresh_metrics(sessions: async_sessionmaker[AsyncSession], weeks_ahead: int = 12) -> None:
    """Recomputes the business gauges from the database, so every replica reports the same figures."""
    weeks = [add_weeks(current_week(), i) for i in range(weeks_ahead)]
    async with sessions() as session:
        members, _ = await store.list_foundries(session, membership_status=MembershipStatus.ACTIVE.value)
        changes = await store.all_changes(session)
        reserved = await store.reserved_by_family_and_week(session, weeks[0], weeks[-1])
        held_and_made = await store.held_and_made_by_cell(session, weeks[0], weeks[-1])
        by_state = await store.count_reservations_by_state(session)
    by_calendar: dict[tuple[str, str], list[CapacityChange]] = defaultdict(list)
    for change in changes:
        by_calendar[(change.foundry_code, change.product_family.value)].append(change)
    capacity: dict[tuple[str, str], int] = defaultdict(int)
    capacity_by_cell: dict[tuple[str, str, str], int] = {}
    for foundry in members:
        for family in foundry.product_families:
            history = by_calendar.get((foundry.code, family.value))
            if not history:
                continue
            calendar = CapacityCalendar(foundry.code, family, tuple(history))
            for week, units in zip(weeks, calendar.capacities(weeks), strict=False):
                capacity[(family.value, week)] += units
                capacity_by_cell[(foundry.code, family.value, week)] = units
    # Per foundry-week, as revocation works: a member's spare capacity does not cover another's overbooking.
    overbooked_units: dict[tuple[str, str], int] = defaultdict(int)
    for (code, family_name, week), (held, made) in held_and_made.items():
        overbooked_units[(family_name, week)] += overbooked(capacity_by_cell.get((code, family_name, week), 0), held, made)
    metrics.set_utilisation(capacity, reserved, overbooked_units)
    metrics.set_reservations(by_state)
