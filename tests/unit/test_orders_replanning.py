"""Replanning an order, decided without a database: what is outstanding, the next plan version, the order's
status and what the buyer hears; capacity's confirmations; members losing or regaining eligibility."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from services.orders.api import LineRisk
from services.orders.domain import (
    Allocated,
    CertificateHeld,
    Delivery,
    FoundryStanding,
    Item,
    Lot,
    OrderLine,
    OrderStatus,
    PlanInForce,
    PurchaseOrder,
    Requirements,
    lot_counts_for,
    take_confirmation,
    why_not_eligible,
)
from services.orders.planner import Demand, PlanRules
from services.orders.replanning import (
    REASON_LENGTH,
    MadeAgain,
    NewPlan,
    NothingToDo,
    Outstanding,
    Replans,
    capacity_may_cure,
    horizon,
    joined_reasons,
    may_cure_shortfall,
    replan,
    units_lost_at,
)
from shared.events.capacity import ReservationConfirmed
from shared.events.orders import PlannedAllocation
from shared.weeks import iso_week, week_end, weeks_between
from tests.fixtures.catalogue import ORDERS_CATALOGUE as CATALOGUE

TODAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
FIRST_DUE = date(2027, 2, 26)
SECOND_DUE = date(2027, 3, 31)
FAMILY = "BRAKE_BLOCK_COMPOSITE"
RULES = PlanRules(time_limit_s=0.5)


def kai_order(
    status: OrderStatus = OrderStatus.RECEIVED, quantity: int = 2000, item: Item = CATALOGUE["BB-COMP-K"], **requirements: object
) -> PurchaseOrder:
    half = quantity // 2
    line = OrderLine(
        1,
        "BB-COMP-K",
        "Blok rem komposit tipe K",
        quantity,
        203_700,
        (Delivery(FIRST_DUE, half, "BY-YK"), Delivery(SECOND_DUE, quantity - half, "BY-MRI")),
        Requirements(**requirements),  # type: ignore[arg-type]
        item=item,
    )
    return PurchaseOrder("po_1", "KAI", "KAI/PO/1", TODAY, "IDR", (line,), status, NOW)


# What the cooperative requires of makers of composite blocks (the item's requirements), valid for years.
CERTIFIED = (
    CertificateHeld("SNI", date(2025, 1, 1), date(2030, 12, 31), ("BB-COMP-K", "BB-COMP-LL", "BB-CI")),
    CertificateHeld("ISO9001", date(2025, 1, 1), date(2030, 12, 31)),
    CertificateHeld("TKDN", date(2025, 1, 1), date(2030, 12, 31), tkdn_percent=40.0),
)


def member(code: str, *, status: str = "good", certificates: tuple[CertificateHeld, ...] = CERTIFIED) -> FoundryStanding:
    return FoundryStanding(code, "active", (FAMILY,), certificates, quality_status=status, pass_rate=0.95)


def free_of(codes: Iterable[str], units: int = 400) -> dict[int, dict[str, dict[str, int]]]:
    """Free capacity for line 1: `units` a week at each member, from this week to the line's horizon."""
    weeks = weeks_between(TODAY, horizon(kai_order().lines[0], TODAY))
    return {1: {code: dict.fromkeys(weeks, units) for code in codes}}


def allocation(aid: str, foundry: str, quantity: int, due: date = FIRST_DUE, week: str = "2027-W05") -> PlannedAllocation:
    return PlannedAllocation(
        allocation_id=aid,
        line_no=1,
        item_code="BB-COMP-K",
        product_family=FAMILY,
        foundry_code=foundry,
        week=week,
        quantity=quantity,
        due_date=due,
    )


def covering_plan(state: str = "planned", **changes: object) -> PlanInForce:
    """Version 1: IKM-001 and IKM-002 make the first delivery, IKM-003 the second."""
    held = (
        Allocated(allocation("A", "IKM-001", 500), state),
        Allocated(allocation("B", "IKM-002", 500), state),
        Allocated(allocation("C", "IKM-003", 1000, SECOND_DUE, "2027-W10"), state),
    )
    return PlanInForce(version=1, allocations=held, **changes)  # type: ignore[arg-type]


def decide(
    order: PurchaseOrder,
    previous: PlanInForce | None = None,
    *,
    lost: dict[str, int] | None = None,
    made_again: MadeAgain | None = None,
    members: list[FoundryStanding] | None = None,
    free: dict[int, dict[str, dict[str, int]]] | None = None,
    refused: set[tuple[str, str]] | None = None,
) -> NewPlan | NothingToDo:
    members = members if members is not None else [member(f"IKM-00{n}") for n in range(1, 6)]
    todo = Outstanding.of(order, previous, lost or {}, made_again or MadeAgain())
    return replan(
        todo,
        standings=members,
        free=free if free is not None else free_of(m.code for m in members),
        refused=refused or set(),
        today=TODAY,
        now=NOW,
        reason="because",
        rules=RULES,
    )


def units_by_due(plan: NewPlan) -> dict[date, int]:
    out: dict[date, int] = {}
    for a in plan.allocations:
        if a.state != "rejected":
            out[a.allocation.due_date] = out.get(a.allocation.due_date, 0) + a.allocation.quantity
    return out


# --- the first plan and "nothing to do" --------------------------------------------------------------------


def test_the_first_plan_covers_every_delivery_and_says_so_in_its_event():
    plan = decide(kai_order())
    assert isinstance(plan, NewPlan)
    assert plan.version == 1 and plan.status == OrderStatus.PLANNED and plan.reason == "because"
    assert units_by_due(plan) == {FIRST_DUE: 1000, SECOND_DUE: 1000}
    assert plan.shortfall == [] and plan.risk == [] and plan.webhooks == ()
    assert all(a.state == "planned" and a.allocation.allocation_id.endswith(":v1") for a in plan.allocations)
    assert plan.event.order_id == "po_1" and plan.event.plan_version == 1 and plan.event.planned_at == NOW
    assert plan.event.allocations == [a.allocation for a in plan.allocations]
    assert plan.solver and plan.solver != "kept" and len(plan.line_plans) == 1


def test_a_plan_in_force_that_still_covers_everything_needs_no_new_version():
    assert decide(kai_order(OrderStatus.PLANNED), covering_plan()) == NothingToDo("the plan in force still covers everything")
    # Rejected allocations cover nothing: their units are outstanding.
    held = covering_plan().allocations
    refused = PlanInForce(1, (*held[:2], Allocated(held[2].allocation, "rejected")))
    todo = Outstanding.of(kai_order(OrderStatus.PLANNED), refused, {}, MadeAgain())
    assert todo.needs == {1: (Demand(SECOND_DUE, 1000),)} and todo.kept == held[:2] and not todo.nothing_to_do


def test_a_first_plan_that_cannot_cover_everything_puts_the_order_in_review():
    members = [member("IKM-001")]
    plan = decide(kai_order(), members=members, free=free_of(["IKM-001"], units=300))
    assert isinstance(plan, NewPlan)
    assert plan.status == OrderStatus.NEEDS_REVIEW
    late = sum(entry["quantity"] for entry in plan.shortfall)
    assert late > 0 and all(entry["eligible_members"] == 1 for entry in plan.shortfall)
    assert [m.event_type for m in plan.webhooks] == ["order.needs_review"]
    data = plan.webhooks[0].data
    assert data["plan_version"] == 1 and data["shortfall"] == plan.shortfall and data["risk"] == plan.risk
    assert plan.risk[0]["line_no"] == 1 and plan.risk[0]["shortfall"] == late


# --- replans: what is kept, what is planned again, where not -------------------------------------------------


def test_lost_units_are_planned_again_elsewhere_never_in_a_refused_foundry_week_and_the_rest_is_kept():
    previous = covering_plan("reserved")
    plan = decide(kai_order(OrderStatus.ACCEPTED), previous, lost={"A": 500}, refused={("IKM-001", "2027-W05")})
    assert isinstance(plan, NewPlan) and plan.version == 2
    kept = {a.allocation.allocation_id: a for a in plan.allocations if not a.allocation.allocation_id.endswith(":v2")}
    assert kept == {"B": previous.allocations[1], "C": previous.allocations[2]}  # as they were, still reserved
    new = [a for a in plan.allocations if a.allocation.allocation_id.endswith(":v2")]
    assert sum(a.allocation.quantity for a in new) == 500 and all(a.state == "planned" for a in new)
    assert all((a.allocation.foundry_code, a.allocation.week) != ("IKM-001", "2027-W05") for a in new)
    assert units_by_due(plan) == {FIRST_DUE: 1000, SECOND_DUE: 1000}
    assert plan.status == OrderStatus.PLANNED and plan.webhooks == ()  # capacity has not reserved the new units yet


def test_units_to_make_again_are_planned_on_top_and_do_not_count_towards_the_makers_share():
    made_again = MadeAgain(by_delivery={(1, FIRST_DUE): 300}, by_maker={(1, "IKM-001"): 300})
    todo = Outstanding.of(kai_order(OrderStatus.PLANNED), covering_plan(), {}, made_again)
    assert [(d.due_date, d.quantity) for d in todo.needs[1]] == [(FIRST_DUE, 300)]
    assert not todo.nothing_to_do and todo.version == 2 and [line.line_no for line in todo.lines_to_plan] == [1]
    plan = decide(kai_order(OrderStatus.PLANNED), covering_plan(), made_again=made_again)
    assert isinstance(plan, NewPlan)
    assert units_by_due(plan) == {FIRST_DUE: 1300, SECOND_DUE: 1000}  # the failed lot's allocation stays: its capacity was used


def test_a_replan_that_only_drops_units_of_a_reserved_plan_accepts_the_order_and_marks_the_line_at_risk():
    # Nobody has room left: the lost units become shortfall, what is kept is all reserved.
    plan = decide(kai_order(OrderStatus.PLANNED), covering_plan("reserved"), lost={"B": 200}, free={1: {}})
    assert isinstance(plan, NewPlan)
    assert plan.status == OrderStatus.ACCEPTED  # under way: it keeps going, its late line at risk
    assert [m.event_type for m in plan.webhooks] == ["order.accepted", "line.at_risk"]
    at_risk = plan.webhooks[1].data
    assert at_risk["line_no"] == 1 and at_risk["shortfall"] == 200 and at_risk["due_dates"] == [FIRST_DUE.isoformat()]
    assert at_risk["expected_completion"] is None and at_risk["reason"] == "because"
    # The plan's risk keeps the late units per due date as the planner left them.
    assert plan.risk[0]["late"] == [{"due_date": FIRST_DUE.isoformat(), "units": 200}]
    # The order's GET answers them from the plan's risk.
    answered = LineRisk.of(json.loads(json.dumps(plan.risk[0]))).model_dump(mode="json")
    assert answered["at_risk"] and answered["late_units"] == 200 and answered["late_due_dates"] == [FIRST_DUE.isoformat()]
    assert answered["late"] == [{"due_date": FIRST_DUE.isoformat(), "units": 200}]


def test_a_line_at_risk_in_a_plan_kept_before_late_units_per_due_date_answers_none_per_due_date():
    kept = {"line_no": 1, "shortfall": 200, "due_dates": [FIRST_DUE.isoformat()], "expected_completion": None}
    answered = LineRisk.of(kept)
    assert answered.at_risk and answered.late_units == 200 and answered.late == []
    assert LineRisk.of(None) == LineRisk(at_risk=False, late_units=0, late_due_dates=[], late=[])


def test_a_line_at_risk_that_is_covered_again_is_back_on_track():
    risk = ({"line_no": 1, "shortfall": 200, "due_dates": [FIRST_DUE.isoformat()], "expected_completion": None},)
    previous = PlanInForce(1, covering_plan().allocations[1:], risk=risk, shortfall=({"line_no": 1, "quantity": 200},))
    plan = decide(kai_order(OrderStatus.PLANNED), previous)
    assert isinstance(plan, NewPlan)
    assert units_by_due(plan) == {FIRST_DUE: 1000, SECOND_DUE: 1000} and plan.risk == []
    assert [(m.event_type, m.data["line_no"]) for m in plan.webhooks] == [("line.back_on_track", 1)]


def test_late_units_get_an_expected_completion_from_what_members_have_left_after_the_due_date():
    # Room only after the first due date: the first delivery is late, and made in the weeks after it.
    late_weeks = weeks_between(FIRST_DUE, horizon(kai_order().lines[0], TODAY))
    free = {1: {"IKM-001": dict.fromkeys(late_weeks, 600), "IKM-002": dict.fromkeys(late_weeks, 600)}}
    plan = decide(kai_order(OrderStatus.PLANNED), None, members=[member("IKM-001"), member("IKM-002")], free=free)
    assert isinstance(plan, NewPlan) and plan.status == OrderStatus.NEEDS_REVIEW
    (risk,) = plan.risk
    assert risk["due_dates"] == [FIRST_DUE.isoformat()]
    assert date.fromisoformat(risk["expected_completion"]) > FIRST_DUE


def test_members_not_eligible_get_nothing():
    members = [member("IKM-001", status="suspended"), member("IKM-002"), member("IKM-003"), member("IKM-004")]
    plan = decide(kai_order(), members=members)
    assert isinstance(plan, NewPlan)
    assert "IKM-001" not in {a.allocation.foundry_code for a in plan.allocations}


# --- capacity's confirmations -------------------------------------------------------------------------------


def confirmed(aid: str, foundry: str, quantity: int, version: int, week: str = "2027-W05") -> ReservationConfirmed:
    return ReservationConfirmed(
        reservation_id=f"res-{aid}",
        foundry_code=foundry,
        product_family=FAMILY,
        week=week,
        quantity=quantity,
        order_id="po_1",
        allocation_id=aid,
        plan_version=version,
        due_date=FIRST_DUE,
        confirmed_at=NOW,
    )


def test_a_confirmation_counts_while_the_plan_in_force_holds_the_allocation_as_confirmed():
    order, plan = kai_order(OrderStatus.PLANNED), covering_plan()
    taken = take_confirmation(order, plan, confirmed("A", "IKM-001", 500, 1))
    assert taken is not None and (taken.allocation_id, taken.plan_version, taken.accepted) == ("A", 1, False)
    assert take_confirmation(order, plan, confirmed("A", "IKM-001", 400, 1)) is None  # the plan changed it since
    assert take_confirmation(order, plan, confirmed("A", "IKM-001", 500, 2)) is None  # a version orders never made
    assert take_confirmation(order, None, confirmed("A", "IKM-001", 500, 1)) is None


def test_the_last_confirmation_accepts_a_planned_order_once():
    held = covering_plan("reserved").allocations
    plan = PlanInForce(2, (*held[:2], Allocated(held[2].allocation, "planned")))
    taken = take_confirmation(kai_order(OrderStatus.PLANNED), plan, confirmed("C", "IKM-003", 1000, 1, "2027-W10"))
    assert taken is not None and taken.accepted and taken.plan_version == 2
    assert [(m.event_type, m.data) for m in taken.webhooks] == [
        ("order.accepted", {"order_id": "po_1", "po_number": "KAI/PO/1", "plan_version": 2})
    ]
    # Already accepted (the same confirmation again, or an order in review): reserved, but no second acceptance.
    for status in (OrderStatus.ACCEPTED, OrderStatus.NEEDS_REVIEW):
        again = take_confirmation(kai_order(status), plan, confirmed("C", "IKM-003", 1000, 1, "2027-W10"))
        assert again is not None and not again.accepted and again.webhooks == ()


# --- lots, eligibility --------------------------------------------------------------------------------------


def test_a_lot_counts_for_its_allocations_delivery_else_the_first_delivery_of_a_line_of_its_item():
    order = kai_order()
    known = {"C": (1, SECOND_DUE, "IKM-003")}
    lot = Lot("L-1", "IKM-003", "BB-COMP-K", 100, "C", "failed")
    assert lot_counts_for(order, lot, known) == (1, SECOND_DUE)
    assert lot_counts_for(order, Lot("L-2", "IKM-003", "BB-COMP-K", 100, None, "failed"), known) == (1, FIRST_DUE)
    assert lot_counts_for(order, Lot("L-3", "IKM-003", "BB-CI", 100, None, "failed"), known) is None


def test_a_member_whose_certificate_runs_out_loses_the_later_deliveries_less_what_it_made():
    order = kai_order(certificates=("ISO9001",))
    iso = CertificateHeld("ISO9001", TODAY - timedelta(days=100), date(2027, 3, 1))
    standing = member("IKM-003", certificates=(*(c for c in CERTIFIED if c.kind != "ISO9001"), iso))
    rows = [allocation("C1", "IKM-003", 400), allocation("C2", "IKM-003", 600, SECOND_DUE, "2027-W10")]
    assert units_lost_at(order, standing, rows, {"C2": 250}, TODAY) == {"C2": 350}
    assert units_lost_at(order, standing, rows, {"C2": 600}, TODAY) == {}  # all made already
    assert units_lost_at(order, None, rows, {}, TODAY) == {"C1": 400, "C2": 600}  # no longer known at all


def test_a_member_may_cure_a_shortfall_on_lines_it_may_make():
    short = PlanInForce(1, (), shortfall=({"line_no": 1, "week": iso_week(FIRST_DUE), "quantity": 200},))
    order = kai_order(OrderStatus.PLANNED)
    assert may_cure_shortfall(order, short.shortfall, member("IKM-009"), TODAY)
    assert may_cure_shortfall(order, short.shortfall, member("IKM-009"), TODAY, FAMILY)
    assert not may_cure_shortfall(order, short.shortfall, member("IKM-009"), TODAY, "BRAKE_BLOCK_CAST_IRON")
    assert not may_cure_shortfall(order, short.shortfall, member("IKM-009", status="suspended"), TODAY)
    assert not may_cure_shortfall(order, PlanInForce(1, ()).shortfall, member("IKM-009"), TODAY)


def test_a_300_unit_line_is_planned_on_one_member():
    # 35 % of 300 is below the 200-unit minimum lot: the share gives way rather than the line going unplanned.
    decision = decide(kai_order(quantity=300))
    assert isinstance(decision, NewPlan) and decision.shortfall == [] and decision.status == OrderStatus.PLANNED
    assert sum(a.allocation.quantity for a in decision.allocations) == 300
    assert len({a.allocation.foundry_code for a in decision.allocations}) == 1


def test_a_line_is_planned_with_its_items_minimum_lot():
    # An item cast in lots of 60 spreads a small line over more members than the brake blocks' 200 would allow.
    decision = decide(kai_order(quantity=300, item=dataclasses.replace(CATALOGUE["BB-COMP-K"], version=2, min_lot=60)))
    assert isinstance(decision, NewPlan) and decision.shortfall == []
    load: dict[str, int] = {}
    foundry_weeks: dict[tuple[str, str], int] = {}  # a foundry-week may serve both deliveries
    for a in decision.allocations:
        load[a.allocation.foundry_code] = load.get(a.allocation.foundry_code, 0) + a.allocation.quantity
        key = (a.allocation.foundry_code, a.allocation.week)
        foundry_weeks[key] = foundry_weeks.get(key, 0) + a.allocation.quantity
    assert len(load) >= 3 and max(load.values()) <= 105 and min(foundry_weeks.values()) >= 60


def test_a_line_is_planned_with_its_own_safety_lead():
    # A week more than testing and transport need, wherever capacity allows: room to make a failed lot again.
    order = kai_order()
    lead = dataclasses.replace(order, lines=(dataclasses.replace(order.lines[0], safety_lead_days=7),))
    decision = decide(lead)
    assert isinstance(decision, NewPlan) and decision.shortfall == []
    assert all(week_end(a.allocation.week) + timedelta(days=21) <= a.allocation.due_date for a in decision.allocations)
    plain = decide(order)
    assert isinstance(plain, NewPlan)
    assert any(week_end(a.allocation.week) + timedelta(days=21) > a.allocation.due_date for a in plain.allocations)


def test_a_batch_asks_once_per_order_revocations_add_up_and_ineligibility_covers_them():
    replans = Replans()
    lot = Lot("L-1", "IKM-001", "BB-COMP-K", 100, "a1", "failed")
    replans.ask(
        "po_2",
        "reservation revoked: press_breakdown",
        "reservation_revoked",
        revoked={"a1": 100},
        blocked={("IKM-001", "2027-W02")},
    )
    replans.ask(
        "po_2",
        "reservation revoked: press_breakdown",
        "reservation_revoked",
        revoked={"a1": 50, "a2": 30},
        blocked={("IKM-001", "2027-W03")},
    )
    replans.ask("po_2", "IKM-001 suspended", "member_ineligible", ineligible={"a1": 120, "a3": 200})
    replans.ask("po_2", "IKM-001 suspended", "member_ineligible", ineligible={"a3": 180})
    replans.ask("po_1", "lot L-1 failed", "lot_failed", failed=[lot])
    replans.ask("po_1", "lot L-1 failed", "lot_failed", failed=[lot])
    assert sorted(replans.asked) == ["po_1", "po_2"]
    asked = replans.asked["po_2"]
    assert asked.lost == {"a1": 150, "a2": 30, "a3": 200}
    assert asked.blocked == {("IKM-001", "2027-W02"), ("IKM-001", "2027-W03")}
    assert asked.reason == "reservation revoked: press_breakdown; IKM-001 suspended" and asked.trigger == "reservation_revoked"
    assert replans.asked["po_1"].failed == [lot] and replans.asked["po_1"].lost == {}


def test_reasons_of_one_replan_are_kept_whole_and_those_that_do_not_fit_are_counted():
    granted = [f"SNI certificate granted to IKM-{n:03}" for n in range(1, 31)]
    joined = joined_reasons(granted)
    assert len(joined) <= REASON_LENGTH
    kept, rest = joined.rsplit("; ", 1)
    assert kept.split("; ") == granted[: len(kept.split("; "))]  # whole reasons, in order, none cut in the middle
    assert rest == f"and {len(granted) - len(kept.split('; '))} more"
    assert joined_reasons(granted[:3]) == "; ".join(granted[:3])
    assert joined_reasons(["x" * 250]) == "x" * 250  # one reason alone is the plan version's to cut


def test_capacity_may_cure_only_a_short_line_of_its_family_in_a_week_that_is_early_enough_and_free_enough():
    order = kai_order()
    short = [{"line_no": 1, "week": "2027-W05", "quantity": 800, "eligible_members": 3}]
    member_ = member("IKM-009")
    assert capacity_may_cure(order, short, member_, FAMILY, {"2027-W04": 200}, ["2027-W04"], TODAY)
    assert not capacity_may_cure(order, short, member_, FAMILY, {"2027-W06": 900}, ["2027-W06"], TODAY)  # too late
    assert not capacity_may_cure(order, short, member_, FAMILY, {"2027-W04": 199}, ["2027-W04"], TODAY)  # below the lot
    assert not capacity_may_cure(order, short, member_, "BRAKE_BLOCK_CAST_IRON", {"2027-W04": 900}, ["2027-W04"], TODAY)
    assert not capacity_may_cure(
        order, short, member("IKM-009", status="suspended"), FAMILY, {"2027-W04": 900}, ["2027-W04"], TODAY
    )
    assert not capacity_may_cure(order, [], member_, FAMILY, {"2027-W04": 900}, ["2027-W04"], TODAY)


def test_a_line_that_states_no_requirements_still_needs_the_items_and_may_only_add_to_them():
    order = kai_order()
    uncertified = member("IKM-010", certificates=())
    no_sni = member("IKM-011", certificates=tuple(c for c in CERTIFIED if c.kind != "SNI"))
    low_tkdn = member(
        "IKM-012", certificates=(*CERTIFIED[:2], CertificateHeld("TKDN", date(2025, 1, 1), date(2030, 12, 31), tkdn_percent=20.0))
    )
    assert order.lines[0].required == Requirements(("SNI", "ISO9001"), 25.0)
    assert why_not_eligible(member("IKM-001"), order.lines[0], TODAY) == []
    assert len(why_not_eligible(uncertified, order.lines[0], TODAY)) == 3
    assert why_not_eligible(no_sni, order.lines[0], TODAY) == [
        f"no SNI certificate valid through {SECOND_DUE.isoformat()} covering BB-COMP-K"
    ]
    assert why_not_eligible(low_tkdn, order.lines[0], TODAY) == ["TKDN 20.0 below 25%"]
    # A line adds a certificate and a higher TKDN; it cannot take the item's away.
    stricter = kai_order(certificates=("SKKNI",), min_tkdn_percent=45.0).lines[0]
    assert stricter.required == Requirements(("SNI", "ISO9001", "SKKNI"), 45.0)
    laxer = kai_order(min_tkdn_percent=10.0).lines[0]
    assert laxer.required == Requirements(("SNI", "ISO9001"), 25.0)
    decided = replan(
        Outstanding.of(order, None, {}, MadeAgain()),
        standings=[member("IKM-001"), member("IKM-002"), member("IKM-003"), uncertified, no_sni, low_tkdn],
        free=free_of(["IKM-001", "IKM-002", "IKM-003", "IKM-010", "IKM-011", "IKM-012"]),
        refused=set(), today=TODAY, now=NOW, reason="received", rules=RULES,
    )  # fmt: skip
    assert isinstance(decided, NewPlan)
    assert {a.allocation.foundry_code for a in decided.allocations} <= {"IKM-001", "IKM-002", "IKM-003"}
