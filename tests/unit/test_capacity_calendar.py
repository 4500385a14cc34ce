"""The weekly capacity calendar: standard figures, exceptions over dates, withdrawals, and what each change says."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.capacity.domain import (
    CapacityCalendar,
    CapacityChangeKind,
    CapacityChangeReason,
    CapacityChangeRequest,
    ConflictError,
    DomainError,
    Foundry,
    Furnace,
    FurnaceKind,
    ProductFamily,
    parse_week,
    record_capacity_change,
    register_foundry,
)
from shared.events.capacity import WeekCapacity

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
COMPOSITE = ProductFamily.BRAKE_BLOCK_COMPOSITE
CAST_IRON = ProductFamily.BRAKE_BLOCK_CAST_IRON
STANDARD, EXCEPTION, WITHDRAWAL = CapacityChangeKind.STANDARD, CapacityChangeKind.EXCEPTION, CapacityChangeKind.WITHDRAWAL
R = CapacityChangeReason


def foundry(**details: object) -> Foundry:
    member, _ = register_foundry("IKM-001", "CV Logam Batur", "Batur", [COMPOSITE, CAST_IRON], NOW, **details)  # type: ignore[arg-type]
    return member


class Recorder:
    """Records changes one after another on one calendar, as the service does."""

    def __init__(self, member: Foundry | None = None, family: ProductFamily = COMPOSITE) -> None:
        self.member = member or foundry()
        self.calendar = CapacityCalendar(self.member.code, family)
        self.count = 0

    def standard(self, units: int, from_week: str, reason: R = R.DECLARED):
        return self.record(
            CapacityChangeRequest(STANDARD, self.calendar.product_family, reason, weekly_units=units, from_week=from_week)
        )

    def exception(self, units: int, first: date, last: date, reason: R = R.PRESS_BREAKDOWN):
        return self.record(
            CapacityChangeRequest(
                EXCEPTION, self.calendar.product_family, reason, weekly_units=units, from_date=first, to_date=last
            )
        )

    def withdraw(self, change_id: str, reason: R = R.REPAIRED):
        return self.record(CapacityChangeRequest(WITHDRAWAL, None, reason, withdraws=change_id))

    def record(self, request: CapacityChangeRequest):
        self.count += 1
        self.calendar, change, event = record_capacity_change(
            self.member, self.calendar, request, f"chg_{self.count}", NOW + timedelta(minutes=self.count)
        )
        return change, event


# --- ISO weeks --------------------------------------------------------------------------------------------------


def test_a_week_that_exists_is_taken_as_it_is():
    assert parse_week("2026-W53") == "2026-W53"
    assert parse_week("2027-W10") == "2027-W10"


@pytest.mark.parametrize("label", ["2027-W53", "2027-W00", "2027-W5", "2027W05", "27-W05", "2027-W05\n"])
def test_a_week_that_does_not_exist_is_refused(label: str):
    with pytest.raises(DomainError) as refused:
        parse_week(label, "from_week")
    assert refused.value.field == "from_week"
    assert label.strip() in refused.value.message


# --- standard figures ---------------------------------------------------------------------------------------------


def test_a_calendar_without_changes_has_no_capacity():
    assert CapacityCalendar("IKM-001", COMPOSITE).capacity_of("2027-W10") == 0


def test_a_standard_figure_holds_from_its_week_until_a_later_one():
    cal = Recorder()
    cal.standard(576, "2027-W01")
    cal.standard(864, "2027-W20", R.EQUIPMENT_CHANGE)
    assert cal.calendar.capacities(["2026-W53", "2027-W01", "2027-W19", "2027-W20", "2030-W01"]) == [0, 576, 576, 864, 864]


def test_a_standard_recorded_later_for_an_earlier_week_holds_only_until_the_next_start():
    cal = Recorder()
    cal.standard(576, "2027-W01")
    cal.standard(864, "2027-W20")
    cal.standard(288, "2027-W10", R.PRESS_BREAKDOWN)
    assert cal.calendar.capacities(["2027-W09", "2027-W10", "2027-W19", "2027-W20"]) == [576, 288, 288, 864]
    assert cal.calendar.latest_standard == 864


def test_of_two_standards_from_the_same_week_the_later_recorded_wins():
    cal = Recorder()
    cal.standard(576, "2027-W01")
    cal.standard(500, "2027-W01", R.CORRECTION)
    assert cal.calendar.capacity_of("2027-W05") == 500
    assert [c.weekly_units for c in cal.calendar.changes] == [576, 500], "history is kept"


def test_a_standard_change_lists_the_next_52_weeks_and_the_standard_figure():
    cal = Recorder()
    cal.exception(0, date(2027, 3, 8), date(2027, 3, 14), R.LEBARAN_CLOSURE)
    change, event = cal.standard(576, "2027-W01")
    assert change.kind is STANDARD and change.seq == 2
    assert event.foundry_code == "IKM-001" and event.product_family == "BRAKE_BLOCK_COMPOSITE"
    assert event.change_id == "chg_2" and event.reason == "declared" and event.standard_weekly_units == 576
    assert len(event.weeks) == 52 and event.weeks[0].week == "2027-W01" and event.weeks[-1].week == "2027-W52"
    # The resulting capacity, exceptions included.
    assert {w.week: w.capacity for w in event.weeks}["2027-W10"] == 0
    assert {w.capacity for w in event.weeks if w.week != "2027-W10"} == {576}


# --- exceptions ------------------------------------------------------------------------------------------------------


def test_an_exception_over_a_whole_week_replaces_its_figure():
    cal = Recorder()
    cal.standard(600, "2027-W01")
    _, event = cal.exception(0, date(2027, 3, 8), date(2027, 3, 14), R.LEBARAN_CLOSURE)
    assert event.weeks == [WeekCapacity(week="2027-W10", capacity=0)]
    assert event.standard_weekly_units == 600
    assert cal.calendar.capacities(["2027-W09", "2027-W10", "2027-W11"]) == [600, 0, 600]


def test_an_exception_over_some_working_days_takes_that_share_of_the_week():
    cal = Recorder()
    cal.standard(600, "2027-W01")
    cal.exception(0, date(2027, 2, 2), date(2027, 2, 3), R.POWER_CUT)  # Tuesday and Wednesday of W05
    assert cal.calendar.capacity_of("2027-W05") == 400  # four of six working days


def test_a_sunday_is_not_a_working_day():
    cal = Recorder()
    cal.standard(600, "2027-W01")
    _, event = cal.exception(0, date(2027, 2, 7), date(2027, 2, 7), R.POWER_CUT)
    assert event.weeks == [WeekCapacity(week="2027-W05", capacity=600)]


def test_an_exception_across_a_week_boundary_touches_both_weeks():
    cal = Recorder()
    cal.standard(600, "2027-W01")
    # Thursday of W10 to Tuesday of W11: three working days in W10 (Thu, Fri, Sat), two in W11 (Mon, Tue).
    _, event = cal.exception(300, date(2027, 3, 11), date(2027, 3, 16), R.PRESS_BREAKDOWN)
    assert event.weeks == [WeekCapacity(week="2027-W10", capacity=450), WeekCapacity(week="2027-W11", capacity=500)]


def test_a_partial_week_is_rounded_down_never_promising_a_unit_it_cannot_make():
    cal = Recorder()
    cal.standard(100, "2027-W01")
    cal.exception(0, date(2027, 2, 1), date(2027, 2, 1), R.POWER_CUT)
    assert cal.calendar.capacity_of("2027-W05") == 83  # 5 × 100 / 6 = 83.3


def test_an_overlapping_exception_with_another_figure_is_a_conflict_naming_the_one_in_the_way():
    cal = Recorder()
    cal.standard(600, "2027-W01")
    cal.exception(0, date(2027, 3, 8), date(2027, 3, 14), R.LEBARAN_CLOSURE)
    before = cal.calendar
    with pytest.raises(ConflictError) as refused:
        cal.exception(300, date(2027, 3, 12), date(2027, 3, 20), R.PRESS_BREAKDOWN)
    assert refused.value.field == "from_date"
    assert "chg_2" in refused.value.message and "withdraw it first" in refused.value.message
    assert cal.calendar is before


def test_an_overlapping_exception_with_the_same_figure_extends_the_closure():
    cal = Recorder()
    cal.standard(600, "2027-W01")
    cal.exception(0, date(2027, 3, 8), date(2027, 3, 14), R.LEBARAN_CLOSURE)
    cal.exception(0, date(2027, 3, 12), date(2027, 3, 21), R.LEBARAN_CLOSURE)
    assert cal.calendar.capacities(["2027-W10", "2027-W11", "2027-W12"]) == [0, 0, 600]


def test_adjacent_exceptions_with_different_figures_do_not_overlap():
    cal = Recorder()
    cal.standard(600, "2027-W01")
    cal.exception(0, date(2027, 3, 8), date(2027, 3, 14), R.LEBARAN_CLOSURE)
    cal.exception(300, date(2027, 3, 15), date(2027, 3, 21), R.MATERIAL_SHORTAGE)
    assert cal.calendar.capacities(["2027-W10", "2027-W11"]) == [0, 300]


# --- withdrawals ------------------------------------------------------------------------------------------------------


def test_a_withdrawal_brings_back_what_held_before_and_keeps_the_history():
    cal = Recorder()
    cal.standard(600, "2027-W01")
    breakdown, _ = cal.exception(200, date(2027, 3, 1), date(2027, 3, 21), R.PRESS_BREAKDOWN)
    change, event = cal.withdraw(breakdown.change_id)
    assert change.kind is WITHDRAWAL and change.product_family is COMPOSITE and change.withdraws == breakdown.change_id
    assert [w.week for w in event.weeks] == ["2027-W09", "2027-W10", "2027-W11"]
    assert {w.capacity for w in event.weeks} == {600}
    assert event.reason == "repaired"
    assert len(cal.calendar.changes) == 3 and [c.change_id for c in cal.calendar.active_changes] == ["chg_1"]
    # With the breakdown gone, another figure for those dates no longer conflicts.
    cal.exception(0, date(2027, 3, 8), date(2027, 3, 14), R.LEBARAN_CLOSURE)
    assert cal.calendar.capacities(["2027-W09", "2027-W10"]) == [600, 0]


def test_withdrawing_a_standard_brings_back_the_earlier_standard():
    cal = Recorder()
    cal.standard(600, "2027-W01")
    raised, _ = cal.standard(900, "2027-W10", R.EQUIPMENT_CHANGE)
    _, event = cal.withdraw(raised.change_id, R.CORRECTION)
    assert cal.calendar.capacity_of("2027-W30") == 600
    assert event.standard_weekly_units == 600 and len(event.weeks) == 52


@pytest.mark.parametrize(
    "withdraws, error, field",
    [("chg_404", DomainError, "withdraws"), ("chg_2", ConflictError, "withdraws"), ("chg_3", DomainError, "withdraws")],
)
def test_a_withdrawal_needs_a_standing_change_to_take_back(withdraws: str, error: type, field: str):
    cal = Recorder()
    cal.standard(600, "2027-W01")
    cal.exception(0, date(2027, 3, 8), date(2027, 3, 14))
    cal.withdraw("chg_2")  # chg_3
    with pytest.raises(error) as refused:
        cal.withdraw(withdraws)
    assert refused.value.field == field


# --- what a change may say --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_, field, words",
    [
        (
            CapacityChangeRequest(STANDARD, COMPOSITE, R.DECLARED, weekly_units=-5, from_week="2027-W01"),
            "weekly_units",
            "negative",
        ),
        (
            CapacityChangeRequest(STANDARD, COMPOSITE, R.DECLARED, weekly_units=250_000, from_week="2027-W01"),
            "weekly_units",
            "plausible",
        ),
        (
            CapacityChangeRequest(STANDARD, COMPOSITE, R.DECLARED, weekly_units=None, from_week="2027-W01"),
            "weekly_units",
            "required",
        ),
        (
            CapacityChangeRequest(STANDARD, COMPOSITE, R.DECLARED, weekly_units=500, from_week="2027-W53"),
            "from_week",
            "does not exist",
        ),
        (
            CapacityChangeRequest(STANDARD, ProductFamily.SHIP_PARTS, R.DECLARED, weekly_units=50, from_week="2027-W01"),
            "product_family",
            "does not make",
        ),
        (
            CapacityChangeRequest(
                EXCEPTION, COMPOSITE, R.POWER_CUT, weekly_units=0, from_date=date(2027, 3, 9), to_date=date(2027, 3, 8)
            ),
            "to_date",
            "before",
        ),
        (
            CapacityChangeRequest(
                EXCEPTION, COMPOSITE, R.POWER_CUT, weekly_units=0, from_date=date(2027, 1, 1), to_date=date(2028, 6, 1)
            ),
            "to_date",
            "at most",
        ),
        (
            CapacityChangeRequest(EXCEPTION, COMPOSITE, R.POWER_CUT, weekly_units=0, from_date=date(2027, 1, 1)),
            "to_date",
            "both dates",
        ),
        (CapacityChangeRequest(WITHDRAWAL, None, R.REPAIRED, weekly_units=10, withdraws="chg_1"), "weekly_units", "no figure"),
    ],
)
def test_bad_changes_are_refused_naming_the_field(request_: CapacityChangeRequest, field: str, words: str):
    cal = Recorder(family=request_.product_family or COMPOSITE)
    with pytest.raises(DomainError) as refused:
        cal.record(request_)
    assert refused.value.field == field and words in refused.value.message
    assert cal.calendar.changes == ()


def test_a_figure_beyond_the_recorded_equipment_is_refused_saying_why():
    member = foundry(presses=1, furnaces=[Furnace(FurnaceKind.CUPOLA, 2.0)])
    composite = Recorder(member, COMPOSITE)
    composite.standard(1008, "2027-W01")  # 1 press × 48 × 3 shifts × 7 days: the most it could make
    with pytest.raises(DomainError) as refused:
        composite.standard(1009, "2027-W01")
    assert "1 press(es) make at most 1008 blocks a week" in refused.value.message
    cast_iron = Recorder(member, CAST_IRON)
    with pytest.raises(DomainError) as refused:
        cast_iron.standard(1300, "2027-W01")  # 2 t a day → 181 blocks of 11 kg a day → 1272 a week
    assert "at most 1272 blocks" in refused.value.message


def test_the_same_change_again_is_found_as_a_duplicate_unless_withdrawn():
    cal = Recorder()
    standard, _ = cal.standard(600, "2027-W01")
    closure, _ = cal.exception(0, date(2027, 3, 8), date(2027, 3, 14), R.LEBARAN_CLOSURE)
    again = CapacityChangeRequest(STANDARD, COMPOSITE, R.DECLARED, weekly_units=600, from_week="2027-W01")
    assert cal.calendar.duplicate_of(again) == standard
    closure_again = CapacityChangeRequest(
        EXCEPTION, COMPOSITE, R.LEBARAN_CLOSURE, weekly_units=0, from_date=date(2027, 3, 8), to_date=date(2027, 3, 14)
    )
    assert cal.calendar.duplicate_of(closure_again) == closure
    assert (
        cal.calendar.duplicate_of(CapacityChangeRequest(STANDARD, COMPOSITE, R.DECLARED, weekly_units=601, from_week="2027-W01"))
        is None
    )
    withdrawal, _ = cal.withdraw(closure.change_id)
    assert cal.calendar.duplicate_of(closure_again) is None
    assert (
        cal.calendar.duplicate_of(CapacityChangeRequest(WITHDRAWAL, None, R.REPAIRED, withdraws=closure.change_id)) == withdrawal
    )


def test_repeating_a_standard_that_a_correction_replaced_is_a_real_change_back():
    cal = Recorder()
    cal.standard(576, "2027-W01")
    cal.standard(500, "2027-W01", R.CORRECTION)
    back = CapacityChangeRequest(STANDARD, COMPOSITE, R.CORRECTION, weekly_units=576, from_week="2027-W01")
    assert cal.calendar.duplicate_of(back) is None
    cal.record(back)
    assert cal.calendar.capacity_of("2027-W05") == 576
    assert cal.calendar.duplicate_of(back) is not None
