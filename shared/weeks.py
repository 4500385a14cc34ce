"""The cooperative's calendar: ISO weeks and their labels (`2027-W10`), the day as it is in Ceper (WIB), and
Lebaran as Indonesia's public-holiday calendar has it. Pure: no clock and no network (the holiday calendar ships
inside its package).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

WEEK_LABEL = re.compile(r"^(\d{4})-W(\d{2})$")
# Western Indonesian Time, the cooperative's: a day in Ceper starts at 17:00 UTC the evening before.
WIB = ZoneInfo("Asia/Jakarta")


# --- ISO weeks ------------------------------------------------------------------------------------------------


def iso_week(day: date) -> str:
    """The label of the ISO week `day` falls in: 1 January 2027 is a Friday of `2026-W53`."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def week_start(label: str) -> date:
    """The Monday of an ISO week; a ValueError saying why when `label` names none (`2027-W53` does not exist)."""
    matched = WEEK_LABEL.fullmatch(label)
    if not matched:
        raise ValueError(f"{label!r} is not an ISO week like 2027-W05")
    try:
        return date.fromisocalendar(int(matched[1]), int(matched[2]), 1)
    except ValueError:
        raise ValueError(f"{label} does not exist: year {matched[1]} has no week {matched[2]}") from None


def week_end(label: str) -> date:
    """The Sunday of an ISO week: the last day production of that week can be finished."""
    return week_start(label) + timedelta(days=6)


def add_weeks(label: str, weeks: int) -> str:
    return iso_week(week_start(label) + timedelta(weeks=weeks))


def weeks_between(first: date | str, last: date | str) -> list[str]:
    """Every ISO week from the week of `first` to the week of `last`, both included; each end is a day or a label.

    One function for both: two of the same name taking different arguments were a trap."""
    start, end = _monday(first), _monday(last)
    return [iso_week(start + timedelta(weeks=i)) for i in range((end - start).days // 7 + 1)]


def _monday(day_or_week: date | str) -> date:
    if isinstance(day_or_week, str):
        return week_start(day_or_week)
    return day_or_week - timedelta(days=day_or_week.weekday())


# --- the day in Ceper -------------------------------------------------------------------------------------------


def local_date(at: datetime) -> date:
    """The date in Ceper at the instant `at`."""
    return at.astimezone(WIB).date()


def local_midnight(day: date) -> datetime:
    """The instant `day` begins in Ceper, in UTC."""
    return datetime.combine(day, time(), tzinfo=WIB).astimezone(UTC)


# --- holidays ---------------------------------------------------------------------------------------------------


@cache
def lebaran(year: int) -> date:
    """Idul Fitri (1 Syawal) of a Gregorian year, as Indonesia's public-holiday calendar has it (estimated for years
    the government has not fixed yet); the first when it falls twice in a year (2033). Foundries close around it.
    A LookupError for a year the calendar does not cover."""
    # Imported here: the package takes about a third of a second to load, and only seeding and benches ask.
    import holidays

    indonesia = holidays.country_holidays("ID", years=year, language="en_US")
    days = indonesia.get_named("Eid al-Fitr", lookup="startswith")  # also matches "… Second Day" and "(estimated)"
    if not days:
        raise LookupError(f"Indonesia's holiday calendar has no Idul Fitri in {year}")
    return min(days)
