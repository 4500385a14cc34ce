"""What the console's pages are made of, without a browser or a service: money, dates and numbers per language,
events as sentences, the plan as a member × week table, what a replan moved, pass rates, utilisation, charts,
form errors in the person's language, and actions sent once."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest

from services.console import handlers
from services.console.charts import capacity_calendar, heat_map, pass_rate_bars
from services.console.domain import (
    ActionLedger,
    FeedItem,
    UntilNextEvent,
    heat_rows,
    open_value,
    pass_rate_by_week,
    plan_matrix,
    plan_moves,
    units_by_stage,
    week_spans,
)
from services.console.i18n import Translator
from services.console.sentences import describe, plan_reason, quality_reason, week_range
from services.console.store import UpstreamProblem
from shared.weeks import iso_week

ID, EN = Translator("id"), Translator("en")


def test_rupiah_is_written_as_people_write_it():
    assert ID.rupiah(203_700) == "Rp203.700"
    assert EN.rupiah(203_700) == "Rp203,700"
    assert ID.rupiah_short(24_444_000_000) == "Rp24,4 miliar"
    assert EN.rupiah_short(24_444_000_000) == "Rp24.4 billion"
    assert ID.rupiah_short(950_000) == "Rp950 ribu"
    assert ID.rupiah_short(3_200_000) == "Rp3,2 juta"
    assert ID.rupiah_short(900) == "Rp900"


def test_numbers_dates_and_times_follow_the_language_and_wib():
    assert ID.number(120_000) == "120.000" and EN.number(120_000) == "120,000"
    assert ID.percent(0.934) == "93,4%" and EN.percent(0.934) == "93.4%"
    assert ID.date(date(2027, 3, 8)) == "8 Mar 2027" and EN.date("2027-03-08") == "Mar 8, 2027"
    # 03:05 UTC is 10:05 in Western Indonesia, which keeps no summer time.
    assert ID.datetime(datetime(2027, 3, 8, 3, 5, tzinfo=UTC)) == "8 Mar 2027 10.05 WIB"
    assert EN.datetime("2027-12-31T20:30:00+00:00") == "Jan 1, 2028 03:30 WIB"


@pytest.mark.parametrize("locale", ["id", "en"])
@pytest.mark.parametrize(("value", "digits"), [(120_000, 0), (0.26, 2), (1_234_567.891, 1), (0, 0), (-5_000, 0), (999.5, 0)])
def test_figures_are_written_as_babel_writes_them(locale: str, value: float, digits: int):
    from babel.numbers import format_decimal

    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    assert Translator(locale).number(value, digits) == format_decimal(value, format=pattern, locale=locale)


def test_indonesian_is_the_default_and_codes_read_as_words():
    assert ID.label("order_status", "needs_review") == "Perlu ditinjau"
    assert EN.label("order_status", "needs_review") == "Needs review"
    assert ID.label("order_status", "something_new") == "something_new"  # a new code is still shown
    assert ID.plural("%(num)s order", "%(num)s orders", 1200) == "1.200 pesanan"
    assert EN.plural("%(num)s order", "%(num)s orders", 1) == "1 order"


def test_template_messages_escape_their_parameters_but_not_themselves():
    assert str(ID.gettext("Lot %(lot)s", lot="<b>")) == "Lot &lt;b&gt;"


def capacity_changed(weeks: list[tuple[str, int]], standard: int | None = None) -> FeedItem:
    return FeedItem(
        "e",
        "ceper.capacity.capacity_changed.v1",
        "/ceper/capacity",
        "IKM-071",
        datetime(2027, 3, 1, tzinfo=UTC),
        "ceper.capacity.v1",
        {
            "foundry_code": "IKM-071",
            "product_family": "BRAKE_BLOCK_COMPOSITE",
            "change_id": "chg_1",
            "reason": "press_breakdown",
            "standard_weekly_units": standard,
            "weeks": [{"week": w, "capacity": c} for w, c in weeks],
            "changed_at": "2027-03-01T00:00:00Z",
        },
    )


def test_a_capacity_drop_reads_as_a_sentence_in_either_language():
    dropped = capacity_changed([("2027-W14", 0), ("2027-W15", 0), ("2027-W16", 0), ("2027-W17", 0)], standard=576)
    assert describe(dropped, ID) == "IKM-071 melaporkan kapasitas 0 unit minggu 2027-W14–W17: press rusak"
    assert describe(dropped, EN) == "IKM-071 reported a capacity of 0 units in week 2027-W14–W17: press broken"
    year = capacity_changed([(f"2027-W{n:02d}", 576) for n in range(1, 53)], standard=576)
    assert describe(year, ID).startswith("IKM-071 menetapkan kapasitas standar 576 unit per minggu mulai minggu 2027-W01")


def test_every_known_event_type_has_a_sentence_and_an_unknown_one_its_type():
    unknown = FeedItem("e", "ceper.orders.something_new.v1", "/ceper/orders", "po_1", datetime(2027, 1, 1, tzinfo=UTC), "t", {})
    assert "ceper.orders.something_new.v1" in describe(unknown, EN)
    broken = FeedItem("e", "ceper.quality.lot_passed.v1", "/ceper/quality", "L", datetime(2027, 1, 1, tzinfo=UTC), "t", {"x": 1})
    assert "ceper.quality.lot_passed.v1" in describe(broken, EN)  # an unexpected shape does not break the feed


def test_weeks_with_the_same_figure_are_one_span():
    assert week_spans([("2027-W15", 0), ("2027-W14", 0), ("2027-W16", 0), ("2027-W18", 0)]) == [
        ("2027-W14", "2027-W16", 0),
        ("2027-W18", "2027-W18", 0),
    ]
    assert week_spans([("2026-W52", 5), ("2026-W53", 5), ("2027-W01", 5)]) == [("2026-W52", "2027-W01", 5)]
    assert week_range("2026-W52", "2027-W01") == "2026-W52–2027-W01"


def test_plan_reasons_and_quality_reasons_are_translated():
    assert (
        plan_reason("lot IKM-002-K-01 failed testing: 313 units to make again", ID)
        == "lot IKM-002-K-01 gagal uji: 313 unit dibuat ulang"
    )
    assert plan_reason("reservation revoked: press_breakdown", ID) == "reservasi kapasitas dicabut: press rusak"
    assert plan_reason("received", ID) == "pesanan pembelian masuk"
    assert plan_reason("a reason worded anew", ID) == "a reason worded anew"
    # One replan for several causes: orders joins their reasons, each is translated on its own.
    assert (
        plan_reason("SNI certificate granted to IKM-003; capacity of IKM-007 changed; IKM-009 no longer suspended", ID)
        == "sertifikat SNI diberikan kepada IKM-003; kapasitas IKM-007 berubah; IKM-009 tidak lagi ditangguhkan"
    )
    assert (
        plan_reason("IKM-004 changed: membership or product families; and 12 more", ID)
        == "keanggotaan atau kelompok produk IKM-004 berubah; dan 12 lainnya"
    )
    # Quality's reason for a suspension, quoted by orders, is translated too.
    assert (
        plan_reason(
            "IKM-005 suspended: 2 of the last 5 lots passed; pass rate 41% with the prior (good at 90%, suspended below 70%)", ID
        )
        == "IKM-005 ditangguhkan: 2 dari 5 lot terakhir lulus; tingkat lulus 41% (baik mulai 90%, ditangguhkan di bawah 70%)"
    )
    assert (
        plan_reason("IKM-005 suspended: QA officer: retort retak", ID)
        == "IKM-005 ditangguhkan: ditetapkan petugas QA: retort retak"
    )
    computed = {
        "overridden": False,
        "reason": "2 of the last 5 lots passed; pass rate 73%",
        "lots_passed": 2,
        "lots_considered": 5,
    }
    assert quality_reason(computed, ID) == "2 dari 5 lot terakhir lulus"
    pinned = {"overridden": True, "reason": "QA officer: furnace relined", "lots_passed": 2, "lots_considered": 5}
    assert quality_reason(pinned, ID) == "ditetapkan petugas QA: furnace relined"


ALLOCATIONS = [
    {"foundry_code": "IKM-002", "week": "2027-W02", "quantity": 300, "state": "reserved"},
    {"foundry_code": "IKM-001", "week": "2027-W01", "quantity": 200, "state": "reserved"},
    {"foundry_code": "IKM-001", "week": "2027-W02", "quantity": 100, "state": "planned"},
    {"foundry_code": "IKM-001", "week": "2027-W02", "quantity": 50, "state": "reserved"},
]


def test_the_plan_is_a_member_by_week_table_with_totals():
    matrix = plan_matrix(ALLOCATIONS)
    assert matrix.weeks == ["2027-W01", "2027-W02"]
    assert [(f, total) for f, _, total in matrix.rows] == [("IKM-001", 350), ("IKM-002", 300)]
    first = matrix.rows[0][1]
    assert first[0] is not None and (first[0].quantity, first[0].state) == (200, "reserved")
    assert first[1] is not None and (first[1].quantity, first[1].state) == (150, "mixed")
    assert matrix.rows[1][1][0] is None
    assert matrix.week_totals == [200, 450] and matrix.total == 650
    assert plan_matrix([]).rows == []


def test_a_replan_shows_what_moved_biggest_first():
    moves = plan_moves({"IKM-001": 500, "IKM-002": 300, "IKM-003": 100}, {"IKM-001": 200, "IKM-002": 300, "IKM-004": 400})
    assert [(m.foundry_code, m.before, m.after) for m in moves] == [
        ("IKM-004", 0, 400),
        ("IKM-001", 500, 200),
        ("IKM-003", 100, 0),
    ]


def line(quantity: int, price: int, **stages: int) -> dict:
    quantities = dict.fromkeys(("planned", "reserved", "produced", "passed", "shipped", "delivered"), 0) | stages
    return {"quantity": quantity, "unit_price": price, "quantities": quantities}


def test_open_value_counts_undelivered_units_at_their_price():
    order = {"lines": [line(120_000, 203_700, delivered=20_000), line(10, 1_000, delivered=10)]}
    assert open_value(order) == 100_000 * 203_700
    assert units_by_stage(order["lines"])["delivered"] == 20_010


def test_pass_rate_is_counted_per_week_for_thirteen_weeks():
    today = date(2027, 3, 10)
    lots = [
        {"status": "passed", "decided_at": "2027-03-09T02:00:00+00:00"},
        {"status": "failed", "decided_at": "2027-03-08T02:00:00+00:00"},
        {"status": "passed", "decided_at": "2026-11-01T02:00:00+00:00"},  # older than 13 weeks
        {"status": "registered", "decided_at": None},
    ]
    rates = pass_rate_by_week(lots, today)
    assert len(rates) == 13 and rates[-1].week == iso_week(today)
    assert (rates[-1].passed, rates[-1].failed, rates[-1].rate) == (1, 1, 0.5)
    assert rates[0].rate is None


def test_utilisation_rows_leave_out_members_without_capacity_and_put_the_busiest_first():
    availability = {
        "weeks": ["2027-W01", "2027-W02"],
        "foundries": [
            {"foundry_code": "IKM-001", "name": "A", "capacity": [100, 100], "reserved": [50, 120]},
            {"foundry_code": "IKM-002", "name": "B", "capacity": [0, 0], "reserved": [0, 0]},
            {"foundry_code": "IKM-003", "name": "C", "capacity": [100, 0], "reserved": [100, 0]},
        ],
    }
    rows = heat_rows(availability)
    assert [r.foundry_code for r in rows] == ["IKM-001", "IKM-003"]
    assert rows[0].utilisation == [0.5, 1.2] and rows[1].utilisation == [1.0, None]
    svg = str(heat_map(rows, availability["weeks"], ID, "Pemakaian"))
    assert svg.startswith("<svg") and 'role="img"' in svg and "<title" in svg
    assert "#b2182b" in svg  # over capacity in red
    assert "IKM-001, minggu 2027-W02: 120 dari 100 unit direservasi" in svg
    assert "<svg" in str(capacity_calendar(["2027-W01"], [100], [50], EN, "Calendar"))
    assert "<svg" in str(pass_rate_bars(pass_rate_by_week([], date(2027, 3, 10)), EN, "Rate"))


def test_service_errors_are_shown_by_field_in_the_persons_language():
    problem = UpstreamProblem(
        "orders",
        422,
        "Request is invalid",
        "…",
        [
            {"field": "body.vehicle_plate", "message": "String should have at least 3 characters", "type": "string_too_short"},
            {"field": "body.items.0.quantity", "message": "Input should be greater than 0", "type": "greater_than"},
            {"field": "body.items.1.lot_code", "message": "lot X failed testing; only passed lots are shipped", "type": None},
        ],
    )
    errors = handlers.field_errors(problem, ID)
    assert errors["vehicle_plate"] == "Terlalu pendek."
    assert errors["items.0.quantity"] == "Harus lebih dari 0."
    assert errors["items.1.lot_code"].startswith("Ditolak oleh layanan:")
    assert "tidak tersedia" in handlers.problem_summary(UpstreamProblem("capacity", 503, "Unavailable"), ID)


def test_numbers_are_read_as_the_person_types_them():
    assert handlers.parse_number("0,26", ID) == 0.26
    assert handlers.parse_number("1.250", ID) == 1250
    assert handlers.parse_number("0.26", EN) == 0.26
    assert handlers.parse_number("abc", ID) is None and handlers.parse_number("", ID) is None


async def test_an_action_sent_twice_with_one_key_is_done_once():
    ledger = ActionLedger()
    calls = []

    async def act() -> dict:
        calls.append(1)
        await asyncio.sleep(0.01)
        return {"id": "shp_1"}

    first, second = await asyncio.gather(handlers.perform(ledger, "k1", act), handlers.perform(ledger, "k1", act))
    assert first == second == {"id": "shp_1"} and len(calls) == 1
    await handlers.perform(ledger, "k2", act)
    assert len(calls) == 2


async def test_a_refused_action_is_not_remembered():
    ledger = ActionLedger()

    async def refused() -> None:
        raise UpstreamProblem("orders", 422, "invalid")

    with pytest.raises(UpstreamProblem):
        await handlers.perform(ledger, "k", refused)
    assert ledger.outcome("k") is None


def test_remembered_outcomes_expire():
    ledger = ActionLedger(ttl_s=10)
    ledger.record("k", "done", now=100.0)
    assert ledger.outcome("k", now=105.0) == "done"
    assert ledger.outcome("k", now=111.0) is None


def test_sampling_specification_parameters_are_named_in_the_persons_language():
    assert ID.parameter("friction_coefficient") == "Koefisien gesek μ (rata-rata)"
    assert EN.parameter("friction_coefficient", "Friction coefficient μ (mean)") == "Friction coefficient μ (mean)"
    assert ID.parameter("compressive_strength") == "Kuat tekan (ASTM D695)"
    # A parameter a QA officer added later keeps the name they gave it until the catalogue knows it.
    assert ID.parameter("thermal_fade", "Thermal fade at 400 °C") == "Thermal fade at 400 °C"
    assert ID.parameter("thermal_fade") == "thermal_fade"
    assert ID.label("test_rule", "pass_fail") == "lulus atau gagal"
    assert ID.parameter("tensile_strength", "Tensile strength (FCD450)") == "Kuat tarik"


def test_every_parameter_of_qualitys_default_specifications_has_an_indonesian_name():
    from services.quality.domain.specifications import DEFAULT_SPECIFICATIONS, GENERAL_INSPECTION

    defaults = [p for parameters, _, _ in DEFAULT_SPECIFICATIONS.values() for p in parameters] + list(GENERAL_INSPECTION)
    unnamed = sorted({p.code for p in defaults if ID.parameter(p.code) in (p.code, p.name)})
    assert not unnamed, f"name these in LABELS['test_parameter'] (services/console/i18n.py) and the catalogues: {unnamed}"


async def test_dashboard_figures_are_kept_until_the_next_event():
    figures, reads = UntilNextEvent(ttl_s=30), []

    async def read() -> int:
        reads.append(1)
        return len(reads)

    assert await figures.get("k", read) == 1 and await figures.get("k", read) == 1  # kept
    figures.changed()  # an event arrived
    assert await figures.get("k", read) == 2
    assert await figures.get("k", read, following=False) == 3  # not following the events: nothing is kept
    assert await figures.get("k", read) == 2

    async def overtaken() -> int:
        figures.changed()  # an event arrives while the services are being read
        return 99

    assert await figures.get("other", overtaken) == 99
    assert await figures.get("other", read) == 4  # the overtaken read was not kept
    expired = UntilNextEvent(ttl_s=0)
    assert await expired.get("k", read) == 5 and await expired.get("k", read) == 6
