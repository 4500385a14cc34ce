"""The cooperative's calendar in shared/weeks.py: ISO weeks, the day in Ceper, Lebaran."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.weeks import WIB, add_weeks, iso_week, lebaran, local_date, local_midnight, week_end, week_start, weeks_between

DAYS = st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31))
# Pure and quick, but a loaded machine can take longer than hypothesis's default 200 ms for a long range of weeks.
LOADED = settings(deadline=None)


# --- ISO weeks ------------------------------------------------------------------------------------------------


def test_iso_weeks_follow_the_iso_calendar_across_year_ends():
    assert iso_week(date(2027, 1, 1)) == "2026-W53"  # a Friday still in 2026's last week
    assert iso_week(date(2026, 12, 31)) == "2026-W53"
    assert iso_week(date(2027, 1, 4)) == "2027-W01"
    assert add_weeks("2026-W53", 1) == "2027-W01" and add_weeks("2027-W01", -1) == "2026-W53"


def test_a_week_runs_from_its_monday_to_its_sunday():
    assert week_start("2027-W05") == date(2027, 2, 1)
    assert week_end("2027-W05") == date(2027, 2, 7)
    assert week_start("2026-W53") == date(2026, 12, 28)


@pytest.mark.parametrize(
    ("label", "says"),
    [
        ("2027-W53", "2027-W53 does not exist: year 2027 has no week 53"),
        ("2027-W00", "2027-W00 does not exist"),
        ("2027-W5", "'2027-W5' is not an ISO week like 2027-W05"),
        ("2027W05", "is not an ISO week"),
        ("2027-W05\n", "is not an ISO week"),
    ],
)
def test_a_label_that_names_no_week_is_refused_saying_why(label: str, says: str):
    with pytest.raises(ValueError, match=says):
        week_start(label)


def test_weeks_between_takes_days_or_labels_and_includes_both_ends():
    assert weeks_between(date(2027, 2, 3), date(2027, 2, 15)) == ["2027-W05", "2027-W06", "2027-W07"]
    assert weeks_between("2026-W52", "2027-W02") == ["2026-W52", "2026-W53", "2027-W01", "2027-W02"]
    assert weeks_between("2027-W05", date(2027, 2, 14)) == ["2027-W05", "2027-W06"]  # a Sunday ends its week
    assert weeks_between("2027-W05", "2027-W05") == ["2027-W05"]
    assert weeks_between("2027-W06", "2027-W05") == []


@LOADED
@given(DAYS, DAYS)
def test_weeks_between_days_is_weeks_between_their_labels(a: date, b: date):
    first, last = min(a, b), max(a, b)
    weeks = weeks_between(first, last)
    assert weeks == weeks_between(iso_week(first), iso_week(last))
    assert weeks[0] == iso_week(first) and weeks[-1] == iso_week(last)
    assert all(add_weeks(earlier, 1) == later for earlier, later in pairwise(weeks))
    assert len(weeks) == (week_start(weeks[-1]) - week_start(weeks[0])).days // 7 + 1


# --- the day in Ceper -------------------------------------------------------------------------------------------


def test_the_day_in_ceper_starts_at_17_utc_the_evening_before():
    assert local_date(datetime(2027, 3, 1, 16, 59, 59, tzinfo=UTC)) == date(2027, 3, 1)
    assert local_date(datetime(2027, 3, 1, 17, 0, tzinfo=UTC)) == date(2027, 3, 2)
    assert local_date(datetime(2027, 3, 2, 0, 30, tzinfo=timezone(timedelta(hours=8)))) == date(2027, 3, 1)  # 23:30 WIB
    assert local_midnight(date(2027, 3, 2)) == datetime(2027, 3, 1, 17, 0, tzinfo=UTC)
    assert local_midnight(date(2027, 3, 2)).tzinfo is UTC


@LOADED
@given(DAYS)
def test_local_midnight_is_the_first_instant_of_the_local_day(day: date):
    start = local_midnight(day)
    assert local_date(start) == day
    assert local_date(start - timedelta(microseconds=1)) == day - timedelta(days=1)
    assert start.astimezone(WIB).utcoffset() == timedelta(hours=7)  # Jakarta keeps no summer time


# --- Lebaran ----------------------------------------------------------------------------------------------------


def test_lebaran_comes_from_indonesias_holiday_calendar():
    assert lebaran(2027) == date(2027, 3, 10)
    assert lebaran(2028) == date(2028, 2, 27)
    # What seeding needs is the closure week; a day's shift in a later edition of the calendar keeps it.
    assert iso_week(lebaran(2026)) == "2026-W12"
    assert iso_week(lebaran(2029)) == "2029-W07"
    assert lebaran(2033) == date(2033, 1, 3)  # 1 Syawal falls twice in 2033: the first


def test_a_year_beyond_the_holiday_calendar_is_refused():
    with pytest.raises(LookupError, match="no Idul Fitri in 2150"):
        lebaran(2150)
