"""One foundry's weekly capacity of one product family: the standard figure, exceptions over date ranges and
withdrawals, folded from the change history; and the rules a change must keep."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from shared.events.capacity import CapacityChanged, WeekCapacity
from shared.weeks import add_weeks, iso_week, week_start, weeks_between

from .errors import ConflictError, DomainError
from .register import Foundry, ProductFamily

# Foundries work Monday to Saturday: a closure of some working days takes that share of the week's figure.
WORKING_DAYS = 6


def parse_week(label: str, field: str = "week") -> str:
    """The label itself when it names a real ISO week (`2027-W53` does not exist), else a DomainError."""
    try:
        week_start(label)
    except ValueError as exc:
        raise DomainError(field, str(exc)) from None
    return label


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
            return weeks_between(change.from_date, change.to_date)
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
