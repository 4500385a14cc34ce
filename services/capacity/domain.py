"""Capacity's domain: the register of member foundries, their weekly capacity calendars and the reservations
held against them. Pure: no I/O; operations return the events they cause.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum

from shared.events.capacity import (
    CapacityChanged,
    FoundryRegistered,
    FoundryUpdated,
    FurnaceData,
    ReservationConfirmed,
    ReservationConsumed,
    ReservationExpired,
    ReservationRejected,
    ReservationReleased,
    ReservationRevoked,
    WeekCapacity,
)

FOUNDRY_CODE = re.compile(r"^IKM-\d{3,4}$")


class ProductFamily(StrEnum):
    BRAKE_BLOCK_COMPOSITE = "BRAKE_BLOCK_COMPOSITE"
    BRAKE_BLOCK_CAST_IRON = "BRAKE_BLOCK_CAST_IRON"
    PUMP_PARTS = "PUMP_PARTS"
    MACHINE_PARTS = "MACHINE_PARTS"
    SHIP_PARTS = "SHIP_PARTS"
    AUTOMOTIVE_PARTS = "AUTOMOTIVE_PARTS"
    RAILWAY_PARTS = "RAILWAY_PARTS"
    HOUSEHOLD_GOODS = "HOUSEHOLD_GOODS"


class MembershipStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"  # still a member, but takes no new work (e.g. unpaid dues, a safety stop)
    RESIGNED = "resigned"


class FurnaceKind(StrEnum):
    CUPOLA = "cupola"  # coke-fired shaft furnace, run in batches when orders justify it
    INDUCTION = "induction"
    TUKIK = "tukik"  # small traditional crucible furnace
    BESALEN = "besalen"  # traditional smithy hearth


class DomainError(ValueError):
    """A rule was broken; `field` names the offending field, the message says which rule."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ConflictError(DomainError):
    """The request is well-formed but contradicts what is recorded (an overlapping exception, an expired hold)."""


# --- ISO weeks ------------------------------------------------------------------------------------------

WEEK_LABEL = re.compile(r"^(\d{4})-W(\d{2})$")
# Foundries work Monday to Saturday: a closure of some working days takes that share of the week's figure.
WORKING_DAYS = 6


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def parse_week(label: str, field: str = "week") -> str:
    """The label itself when it names a real ISO week (`2027-W53` does not exist), else a DomainError."""
    matched = WEEK_LABEL.fullmatch(label)
    if not matched:
        raise DomainError(field, f"{label!r} is not an ISO week like 2027-W05")
    try:
        date.fromisocalendar(int(matched[1]), int(matched[2]), 1)
    except ValueError:
        raise DomainError(field, f"{label} does not exist: year {matched[1]} has no week {matched[2]}") from None
    return label


def week_monday(label: str) -> date:
    matched = WEEK_LABEL.fullmatch(label)
    if not matched:
        raise ValueError(f"{label!r} is not an ISO week")
    return date.fromisocalendar(int(matched[1]), int(matched[2]), 1)


def add_weeks(label: str, weeks: int) -> str:
    return iso_week(week_monday(label) + timedelta(weeks=weeks))


def weeks_between(first: str, last: str) -> list[str]:
    """Every ISO week from `first` to `last`, both included."""
    start, end = week_monday(first), week_monday(last)
    return [iso_week(start + timedelta(weeks=i)) for i in range((end - start).days // 7 + 1)]


# --- the register of member foundries -------------------------------------------------------------------

NPWP_16 = re.compile(r"^\d{16}$")
NPWP_15 = re.compile(r"^\d{2}\.\d{3}\.\d{3}\.\d-\d{3}\.\d{3}$")
MAX_FURNACE_TONNES_PER_DAY = 100.0
MAX_PRESSES = 50


@dataclass(frozen=True)
class Furnace:
    kind: FurnaceKind
    tonnes_per_day: float


@dataclass(frozen=True)
class Foundry:
    code: str
    name: str
    village: str
    product_families: tuple[ProductFamily, ...]
    revision: int
    registered_at: datetime
    updated_at: datetime
    owner: str | None = None
    npwp: str | None = None
    membership_status: MembershipStatus = MembershipStatus.ACTIVE
    furnaces: tuple[Furnace, ...] | None = None  # None: not recorded
    presses: int | None = None

    @property
    def active(self) -> bool:
        return self.membership_status is MembershipStatus.ACTIVE

    def makes(self, family: str) -> bool:
        return family in self.product_families

    @property
    def melt_tonnes_per_day(self) -> float | None:
        return sum(f.tonnes_per_day for f in self.furnaces) if self.furnaces is not None else None


def check_npwp(npwp: str) -> str:
    if NPWP_16.fullmatch(npwp) or NPWP_15.fullmatch(npwp):
        return npwp
    raise DomainError("npwp", f"{npwp!r} is not an NPWP: 16 digits, or the old 15-digit form 99.999.999.9-999.999")


def _check_equipment(furnaces: tuple[Furnace, ...] | None, presses: int | None) -> None:
    for i, furnace in enumerate(furnaces or ()):
        if not 0 < furnace.tonnes_per_day <= MAX_FURNACE_TONNES_PER_DAY:
            raise DomainError(
                f"furnaces.{i}.tonnes_per_day",
                f"must be more than 0 and at most {MAX_FURNACE_TONNES_PER_DAY:g} tonnes a day",
            )
    if presses is not None and not 0 <= presses <= MAX_PRESSES:
        raise DomainError("presses", f"must be between 0 and {MAX_PRESSES}")


def _check_entry(foundry: Foundry) -> None:
    if not foundry.name:
        raise DomainError("name", "must not be empty")
    if not foundry.village:
        raise DomainError("village", "must not be empty")
    if not foundry.product_families:
        raise DomainError("product_families", "a foundry makes at least one product family")
    if foundry.owner is not None and not foundry.owner:
        raise DomainError("owner", "must not be empty")
    if foundry.npwp is not None:
        check_npwp(foundry.npwp)
    _check_equipment(foundry.furnaces, foundry.presses)


def _furnace_data(foundry: Foundry) -> list[FurnaceData] | None:
    if foundry.furnaces is None:
        return None
    return [FurnaceData(kind=f.kind.value, tonnes_per_day=f.tonnes_per_day) for f in foundry.furnaces]


def register_foundry(
    code: str,
    name: str,
    village: str,
    product_families: list[ProductFamily],
    now: datetime,
    *,
    owner: str | None = None,
    npwp: str | None = None,
    membership_status: MembershipStatus = MembershipStatus.ACTIVE,
    furnaces: Sequence[Furnace] | None = None,
    presses: int | None = None,
) -> tuple[Foundry, FoundryRegistered]:
    if not FOUNDRY_CODE.fullmatch(code):  # `match` with `$` would let a trailing newline through
        raise DomainError("code", f"foundry code {code!r} must look like IKM-001")
    foundry = Foundry(
        code,
        name.strip(),
        village.strip(),
        tuple(dict.fromkeys(product_families)),  # keeps order, drops repeats
        0,
        now,
        now,
        owner=owner.strip() if owner is not None else None,
        npwp=npwp.strip() if npwp is not None else None,
        membership_status=MembershipStatus(membership_status),
        furnaces=tuple(furnaces) if furnaces is not None else None,
        presses=presses,
    )
    _check_entry(foundry)
    return foundry, FoundryRegistered(
        foundry_code=code,
        name=foundry.name,
        village=foundry.village,
        product_families=[f.value for f in foundry.product_families],
        registered_at=now,
        owner=foundry.owner,
        npwp=foundry.npwp,
        membership_status=foundry.membership_status.value,
        furnaces=_furnace_data(foundry),
        presses=foundry.presses,
    )


def update_foundry(
    foundry: Foundry,
    now: datetime,
    *,
    name: str | None = None,
    village: str | None = None,
    product_families: list[ProductFamily] | None = None,
    owner: str | None = None,
    npwp: str | None = None,
    membership_status: MembershipStatus | None = None,
    furnaces: Sequence[Furnace] | None = None,
    presses: int | None = None,
) -> tuple[Foundry, FoundryUpdated | None]:
    changed = replace(
        foundry,
        name=name.strip() if name is not None else foundry.name,
        village=village.strip() if village is not None else foundry.village,
        product_families=tuple(dict.fromkeys(product_families)) if product_families is not None else foundry.product_families,
        owner=owner.strip() if owner is not None else foundry.owner,
        npwp=npwp.strip() if npwp is not None else foundry.npwp,
        membership_status=MembershipStatus(membership_status) if membership_status is not None else foundry.membership_status,
        furnaces=tuple(furnaces) if furnaces is not None else foundry.furnaces,
        presses=presses if presses is not None else foundry.presses,
    )
    _check_entry(changed)
    if changed == foundry:
        return foundry, None  # nothing changed: no event, no new revision
    changed = replace(changed, revision=foundry.revision + 1, updated_at=now)
    return changed, FoundryUpdated(
        foundry_code=changed.code,
        name=changed.name,
        village=changed.village,
        product_families=[f.value for f in changed.product_families],
        revision=changed.revision,
        updated_at=now,
        owner=changed.owner,
        npwp=changed.npwp,
        membership_status=changed.membership_status.value,
        furnaces=_furnace_data(changed),
        presses=changed.presses,
    )


def families_withdrawn(before: Foundry, after: Foundry) -> list[ProductFamily]:
    """Families whose capacity is no longer offered after a register change: dropped ones, or all when the
    foundry stops being an active member. Their open reservations must be revoked."""
    if before.active and not after.active:
        return list(before.product_families)
    return [f for f in before.product_families if f not in after.product_families]


# --- the weekly capacity calendar --------------------------------------------------------------------------

MAX_WEEKLY_UNITS = 100_000
MAX_EXCEPTION_DAYS = 366
STANDARD_HORIZON_WEEKS = 52  # weeks a standard-figure change lists in its event
# Equipment ceilings: a figure above them is a typing error, not a capacity (DOMAIN.md assumptions, 3 shifts, 7 days).
BLOCKS_PER_PRESS_SHIFT = 48
MAX_SHIFTS_PER_DAY = 3
CAST_IRON_BLOCK_KG = 11.0


class CapacityChangeKind(StrEnum):
    STANDARD = "standard"  # the usual weekly figure from a week on
    EXCEPTION = "exception"  # a different weekly figure over a date range
    WITHDRAWAL = "withdrawal"  # takes back an earlier change that was wrong or no longer holds


class CapacityChangeReason(StrEnum):
    DECLARED = "declared"  # the foundry's first statement of its capacity
    EQUIPMENT_CHANGE = "equipment_change"
    SHIFT_CHANGE = "shift_change"
    PRESS_BREAKDOWN = "press_breakdown"
    FURNACE_BREAKDOWN = "furnace_breakdown"
    POWER_CUT = "power_cut"
    LEBARAN_CLOSURE = "lebaran_closure"
    PUBLIC_HOLIDAY = "public_holiday"
    MATERIAL_SHORTAGE = "material_shortage"
    REPAIRED = "repaired"
    CORRECTION = "correction"
    OTHER = "other"


@dataclass(frozen=True)
class CapacityChangeRequest:
    kind: CapacityChangeKind
    product_family: ProductFamily | None
    reason: CapacityChangeReason
    weekly_units: int | None = None
    from_week: str | None = None  # standard
    from_date: date | None = None  # exception, inclusive
    to_date: date | None = None  # exception, inclusive
    withdraws: str | None = None  # withdrawal: the change taken back
    note: str | None = None
    reported_by: str | None = None


@dataclass(frozen=True)
class CapacityChange:
    change_id: str
    foundry_code: str
    product_family: ProductFamily
    seq: int  # order of recording within its calendar
    kind: CapacityChangeKind
    reason: CapacityChangeReason
    recorded_at: datetime
    weekly_units: int | None = None
    from_week: str | None = None
    from_date: date | None = None
    to_date: date | None = None
    withdraws: str | None = None
    note: str | None = None
    reported_by: str | None = None

    def same_as(self, request: CapacityChangeRequest) -> bool:
        """True when `request` asks for exactly this change again: a retry, applied once."""
        return (
            self.kind == request.kind
            and self.weekly_units == request.weekly_units
            and self.from_week == request.from_week
            and self.from_date == request.from_date
            and self.to_date == request.to_date
            and self.withdraws == request.withdraws
        )


@dataclass(frozen=True)
class _Exception:
    seq: int
    units: int
    days: dict[str, frozenset[int]]  # week → working weekdays (0 = Monday) it covers


def _covered_days(start: date, end: date) -> dict[str, frozenset[int]]:
    covered: dict[str, set[int]] = {}
    day = start
    while day <= end:
        covered.setdefault(iso_week(day), set())
        if day.weekday() < WORKING_DAYS:
            covered[iso_week(day)].add(day.weekday())
        day += timedelta(days=1)
    return {week: frozenset(days) for week, days in covered.items()}


@dataclass(frozen=True)
class CapacityCalendar:
    """One foundry's capacity of one product family, folded from its change history (nothing is overwritten)."""

    foundry_code: str
    product_family: ProductFamily
    changes: tuple[CapacityChange, ...] = ()
    _standards: list[tuple[str, int, int]] = field(default_factory=list, init=False, compare=False, repr=False)
    _exceptions: dict[str, list[_Exception]] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        withdrawn = {c.withdraws for c in self.changes if c.kind is CapacityChangeKind.WITHDRAWAL}
        for change in sorted(self.changes, key=lambda c: c.seq):
            if change.change_id in withdrawn or change.weekly_units is None:
                continue
            if change.kind is CapacityChangeKind.STANDARD and change.from_week is not None:
                self._standards.append((change.from_week, change.seq, change.weekly_units))
            elif change.kind is CapacityChangeKind.EXCEPTION and change.from_date is not None and change.to_date is not None:
                exception = _Exception(change.seq, change.weekly_units, _covered_days(change.from_date, change.to_date))
                for week in exception.days:
                    self._exceptions.setdefault(week, []).append(exception)
        self._standards.sort()

    @property
    def active_changes(self) -> list[CapacityChange]:
        withdrawn = {c.withdraws for c in self.changes if c.kind is CapacityChangeKind.WITHDRAWAL}
        return [c for c in self.changes if c.kind is not CapacityChangeKind.WITHDRAWAL and c.change_id not in withdrawn]

    def change(self, change_id: str) -> CapacityChange | None:
        return next((c for c in self.changes if c.change_id == change_id), None)

    def withdrawal_of(self, change_id: str) -> CapacityChange | None:
        return next((c for c in self.changes if c.kind is CapacityChangeKind.WITHDRAWAL and c.withdraws == change_id), None)

    def standard_of(self, week: str) -> int:
        """The standard figure in force in `week`: the latest-starting standard, the latest recorded on a tie."""
        i = bisect.bisect_right(self._standards, (week, 1 << 62, 0))
        return self._standards[i - 1][2] if i else 0

    @property
    def latest_standard(self) -> int | None:
        return self._standards[-1][2] if self._standards else None

    def capacity_of(self, week: str) -> int:
        standard = self.standard_of(week)
        exceptions = self._exceptions.get(week)
        if not exceptions:
            return standard
        total = 0
        for weekday in range(WORKING_DAYS):
            covering = [e for e in exceptions if weekday in e.days[week]]
            total += max(covering, key=lambda e: e.seq).units if covering else standard
        return total // WORKING_DAYS  # rounded down: never promise a unit the week cannot make

    def capacities(self, weeks: Iterable[str]) -> list[int]:
        return [self.capacity_of(week) for week in weeks]

    def weeks_touched_by(self, change: CapacityChange) -> list[str]:
        if change.kind is CapacityChangeKind.STANDARD and change.from_week is not None:
            return [add_weeks(change.from_week, i) for i in range(STANDARD_HORIZON_WEEKS)]
        if change.kind is CapacityChangeKind.EXCEPTION and change.from_date is not None and change.to_date is not None:
            return weeks_between(iso_week(change.from_date), iso_week(change.to_date))
        if change.kind is CapacityChangeKind.WITHDRAWAL and change.withdraws is not None:
            withdrawn = self.change(change.withdraws)
            return self.weeks_touched_by(withdrawn) if withdrawn is not None else []
        return []

    def affects_all_later_weeks(self, change: CapacityChange) -> bool:
        """A standard figure (or taking one back) holds until the next one: beyond the 52 weeks its event lists."""
        target = self.change(change.withdraws) if change.kind is CapacityChangeKind.WITHDRAWAL and change.withdraws else change
        return target is not None and target.kind is CapacityChangeKind.STANDARD

    def duplicate_of(self, request: CapacityChangeRequest) -> CapacityChange | None:
        """The recorded change `request` repeats, if it is still what holds: asking again changes nothing."""
        if request.kind is CapacityChangeKind.WITHDRAWAL:
            return self.withdrawal_of(request.withdraws) if request.withdraws else None
        if request.kind is CapacityChangeKind.STANDARD:
            # Only the latest standard from that week holds; repeating an older one is a real change back.
            same_week = [
                c for c in self.active_changes if c.kind is CapacityChangeKind.STANDARD and c.from_week == request.from_week
            ]
            latest = max(same_week, key=lambda c: c.seq, default=None)
            return latest if latest is not None and latest.same_as(request) else None
        return next((c for c in self.active_changes if c.same_as(request)), None)


def weekly_ceiling(foundry: Foundry, family: ProductFamily) -> tuple[int, str] | None:
    """The most a foundry's recorded equipment could make in a week, and why; None when nothing is recorded."""
    if family is ProductFamily.BRAKE_BLOCK_COMPOSITE and foundry.presses is not None:
        most = foundry.presses * BLOCKS_PER_PRESS_SHIFT * MAX_SHIFTS_PER_DAY * 7
        return most, (
            f"{foundry.presses} press(es) make at most {most} blocks a week "
            f"({BLOCKS_PER_PRESS_SHIFT} per press-shift, {MAX_SHIFTS_PER_DAY} shifts, 7 days)"
        )
    melt = foundry.melt_tonnes_per_day
    if family is ProductFamily.BRAKE_BLOCK_CAST_IRON and melt is not None:
        most = int(melt * 1000 / CAST_IRON_BLOCK_KG * 7)
        return most, f"{melt:g} t of iron a day make at most {most} blocks of {CAST_IRON_BLOCK_KG:g} kg a week"
    return None


def _check_units(foundry: Foundry, family: ProductFamily, units: int | None) -> int:
    if units is None:
        raise DomainError("weekly_units", "a weekly figure is required")
    if units < 0:
        raise DomainError("weekly_units", "capacity cannot be negative")
    if units > MAX_WEEKLY_UNITS:
        raise DomainError("weekly_units", f"{units} units a week is not a plausible figure (at most {MAX_WEEKLY_UNITS})")
    ceiling = weekly_ceiling(foundry, family)
    if ceiling is not None and units > ceiling[0]:
        raise DomainError("weekly_units", f"{units} units a week is more than the equipment allows: {ceiling[1]}")
    return units


def record_capacity_change(
    foundry: Foundry,
    calendar: CapacityCalendar,
    request: CapacityChangeRequest,
    change_id: str,
    now: datetime,
) -> tuple[CapacityCalendar, CapacityChange, CapacityChanged]:
    """Adds a change to the calendar's history and says what the touched weeks can make now.

    Refuses a family the foundry does not make, implausible figures, and an exception overlapping another one
    with a different figure (withdraw that one first: two figures for one day would be a silent overwrite).
    """
    family = calendar.product_family
    if request.product_family is not None and request.product_family != family:
        raise DomainError("product_family", f"this is the calendar of {family.value}, not {request.product_family}")
    if not foundry.makes(family):
        raise DomainError("product_family", f"{foundry.code} does not make {family.value}")
    units: int | None = None
    if request.kind is CapacityChangeKind.STANDARD:
        units = _check_units(foundry, family, request.weekly_units)
        if request.from_week is None:
            raise DomainError("from_week", "a standard figure needs the week it starts")
        parse_week(request.from_week, "from_week")
    elif request.kind is CapacityChangeKind.EXCEPTION:
        units = _check_units(foundry, family, request.weekly_units)
        if request.from_date is None or request.to_date is None:
            raise DomainError("from_date" if request.from_date is None else "to_date", "an exception needs both dates")
        if request.to_date < request.from_date:
            raise DomainError("to_date", "must not be before from_date")
        if (request.to_date - request.from_date).days + 1 > MAX_EXCEPTION_DAYS:
            raise DomainError(
                "to_date", f"an exception spans at most {MAX_EXCEPTION_DAYS} days; change the standard figure instead"
            )
        for other in calendar.active_changes:
            if (
                other.kind is CapacityChangeKind.EXCEPTION
                and other.weekly_units != units
                and other.from_date is not None
                and other.to_date is not None
                and other.from_date <= request.to_date
                and request.from_date <= other.to_date
            ):
                raise ConflictError(
                    "from_date",
                    f"overlaps exception {other.change_id} ({other.from_date} to {other.to_date}, "
                    f"{other.weekly_units} units a week, {other.reason.value}); withdraw it first",
                )
    elif request.kind is CapacityChangeKind.WITHDRAWAL:
        if request.weekly_units is not None:
            raise DomainError("weekly_units", "a withdrawal carries no figure")
        target = calendar.change(request.withdraws) if request.withdraws else None
        if target is None:
            raise DomainError("withdraws", f"no change {request.withdraws!r} of {foundry.code} {family.value}")
        if target.kind is CapacityChangeKind.WITHDRAWAL:
            raise DomainError("withdraws", "a withdrawal cannot be withdrawn; record the change again")
        if calendar.withdrawal_of(target.change_id) is not None:
            raise ConflictError("withdraws", f"{target.change_id} is already withdrawn")
    seq = max((c.seq for c in calendar.changes), default=0) + 1
    change = CapacityChange(
        change_id=change_id,
        foundry_code=foundry.code,
        product_family=family,
        seq=seq,
        kind=request.kind,
        reason=request.reason,
        recorded_at=now,
        weekly_units=units,
        from_week=request.from_week if request.kind is CapacityChangeKind.STANDARD else None,
        from_date=request.from_date if request.kind is CapacityChangeKind.EXCEPTION else None,
        to_date=request.to_date if request.kind is CapacityChangeKind.EXCEPTION else None,
        withdraws=request.withdraws if request.kind is CapacityChangeKind.WITHDRAWAL else None,
        note=request.note,
        reported_by=request.reported_by,
    )
    after = CapacityCalendar(calendar.foundry_code, family, (*calendar.changes, change))
    weeks = after.weeks_touched_by(change)
    event = CapacityChanged(
        foundry_code=foundry.code,
        product_family=family.value,
        change_id=change_id,
        reason=request.reason.value,
        standard_weekly_units=after.latest_standard,
        weeks=[WeekCapacity(week=week, capacity=after.capacity_of(week)) for week in weeks],
        changed_at=now,
    )
    return after, change, event


# --- reservations --------------------------------------------------------------------------------------------


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


# --- reacting to orders' plans and quality's lots ---------------------------------------------------------------


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


def reconcile_plan(open_reservations: Sequence[Reservation], allocations: Sequence[PlannedAllocation]) -> PlanReconciliation:
    """Allocations no longer planned are released, new or changed ones reserved (a changed one is released and
    reserved again), unchanged ones left as they are.

    A consumed reservation is history: its units were made. An allocation it served that is still in the plan
    is left alone, whatever the plan now says of it, and it is never released.
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


def lot_serves(reservation: Reservation, lot: ProducedLot) -> bool:
    """The lot was made for this reservation: its allocation when it names one, else its order and item."""
    if reservation.foundry_code != lot.foundry_code or reservation.state is not ReservationState.CONFIRMED:
        return False
    if lot.allocation_id is not None:
        return reservation.allocation_id == lot.allocation_id
    if lot.order_id is not None:
        return reservation.order_id == lot.order_id and reservation.item_code in (None, lot.item_code)
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
