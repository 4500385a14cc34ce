"""What-if's decisions on a cooperative in memory: what each hypothesis takes from the plans in force, that the
cooperative asked about is left as it was, and what a new order or added capacity would get."""

from __future__ import annotations

from datetime import UTC, date, datetime

from services.orders import whatif
from services.orders.domain import (
    Allocated,
    CertificateHeld,
    Delivery,
    FoundryStanding,
    OrderLine,
    OrderStatus,
    PlanInForce,
    PurchaseOrder,
    Requirements,
)
from services.orders.planner import PlanRules
from shared.events.orders import PlannedAllocation
from shared.weeks import iso_week, weeks_between
from tests.fixtures.catalogue import ORDERS_CATALOGUE as CATALOGUE

TODAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 3, tzinfo=UTC)
FAMILY = "BRAKE_BLOCK_COMPOSITE"
DUE = date(2027, 2, 26)
WEEKS = weeks_between(TODAY, date(2027, 12, 31))
RULES = PlanRules(time_limit_s=0.5)


def member(code: str, sni_until: date = date(2029, 1, 1)) -> FoundryStanding:
    certificates = (
        CertificateHeld("SNI", date(2025, 1, 1), sni_until, ("BB-COMP-K",)),
        CertificateHeld("ISO9001", date(2025, 1, 1), date(2030, 1, 1)),
        CertificateHeld("TKDN", date(2025, 1, 1), date(2030, 1, 1), tkdn_percent=40.0),
    )
    return FoundryStanding(code, "active", (FAMILY,), certificates, pass_rate=0.95)


def cooperative(codes: list[str], weekly: int = 400) -> whatif.Cooperative:
    return whatif.Cooperative(
        standings={code: member(code) for code in codes},
        capacity={FAMILY: {code: dict.fromkeys(WEEKS, weekly) for code in codes}},
        held={FAMILY: {}},
    )


def order(quantity: int = 1000, certificates: tuple[str, ...] = ("SNI",)) -> PurchaseOrder:
    line = OrderLine(
        1,
        "BB-COMP-K",
        "Blok rem komposit tipe K",
        quantity,
        203_700,
        (Delivery(DUE, quantity, "BY-YK"),),
        Requirements(certificates),
        item=CATALOGUE["BB-COMP-K"],
    )
    return PurchaseOrder("po_1", "KAI", "KAI/PO/1", TODAY, "IDR", (line,), OrderStatus.ACCEPTED, NOW)


def planned(world: whatif.Cooperative, cells: dict[tuple[str, str], int], reserved: bool = True) -> PlanInForce:
    """A plan in force with these foundry-weeks, held in the world as capacity holds them."""
    allocations = []
    for (code, week), units in cells.items():
        allocations.append(
            Allocated(
                PlannedAllocation(
                    allocation_id=f"po_1:1:{code}:{week}:v1", line_no=1, item_code="BB-COMP-K", product_family=FAMILY,
                    foundry_code=code, week=week, quantity=units, due_date=DUE,
                ),
                "reserved" if reserved else "planned",
            )
        )  # fmt: skip
        world.hold(FAMILY, code, week, units)
    return PlanInForce(1, tuple(allocations))


def test_a_capacity_drop_takes_the_units_over_the_new_figure_and_leaves_the_cooperative_as_it_was() -> None:
    world = cooperative(["IKM-001", "IKM-002", "IKM-003", "IKM-004"])
    week = iso_week(date(2027, 1, 4))
    plan = planned(world, {("IKM-001", week): 400, ("IKM-002", week): 300, ("IKM-003", week): 300})
    drop = whatif.CapacityChange("IKM-001", FAMILY, date(2027, 1, 4), date(2027, 1, 10), 100)
    after, lost, why = whatif.suppose(
        world, [whatif.OpenOrder(order(), plan)], whatif.Hypotheses(capacity_changes=(drop,)), TODAY
    )
    assert lost == {"po_1": {f"po_1:1:IKM-001:{week}:v1": 300}} and "IKM-001" in why["po_1"][0]
    assert after.capacity[FAMILY]["IKM-001"][week] == 100 and after.held[FAMILY]["IKM-001"][week] == 100
    assert world.capacity[FAMILY]["IKM-001"][week] == 400 and world.held[FAMILY]["IKM-001"][week] == 400  # untouched

    answer = whatif.what_if(
        world,
        [whatif.OpenOrder(order(), plan)],
        whatif.Hypotheses(capacity_changes=(drop,)),
        [],
        today=TODAY,
        now=NOW,
        rules=RULES,
    )
    (outcome,) = answer.orders
    (line,) = outcome.lines
    assert outcome.replanned and not line.at_risk and line.moved_units == 300
    assert sum(a["quantity"] for a in line.allocations) == 1000
    assert {a["foundry_code"]: a["state"] for a in line.allocations if a["week"] == week}["IKM-001"] == "reserved"
    assert next(s for s in line.members if s.foundry_code == "IKM-001") == whatif.MemberShift("IKM-001", 400, 100)


def test_a_lapsed_certificate_moves_the_deliveries_due_after_it_and_a_kind_nobody_requires_moves_nothing() -> None:
    world = cooperative(["IKM-001", "IKM-002", "IKM-003", "IKM-004"])
    week = iso_week(date(2027, 1, 4))
    plan = planned(world, {("IKM-001", week): 400, ("IKM-002", week): 300, ("IKM-003", week): 300})
    lapse = whatif.Hypotheses(certificate_lapses=(whatif.CertificateLapse("IKM-001", "SNI", date(2027, 2, 1)),))
    _, lost, _ = whatif.suppose(world, [whatif.OpenOrder(order(), plan)], lapse, TODAY)
    assert lost == {"po_1": {f"po_1:1:IKM-001:{week}:v1": 400}}
    # Already made units stay where they were made.
    _, lost, _ = whatif.suppose(
        world, [whatif.OpenOrder(order(), plan, produced={f"po_1:1:IKM-001:{week}:v1": 150})], lapse, TODAY
    )
    assert lost["po_1"] == {f"po_1:1:IKM-001:{week}:v1": 250}
    # The item requires SNI whatever the line states; a kind neither requires lapses without loss.
    _, lost, _ = whatif.suppose(world, [whatif.OpenOrder(order(certificates=()), plan)], lapse, TODAY)
    assert lost == {"po_1": {f"po_1:1:IKM-001:{week}:v1": 400}}
    skkni = whatif.Hypotheses(certificate_lapses=(whatif.CertificateLapse("IKM-001", "SKKNI", date(2027, 2, 1)),))
    assert whatif.suppose(world, [whatif.OpenOrder(order(), plan)], skkni, TODAY)[1] == {}


def test_added_capacity_retries_a_short_order_and_a_new_order_says_whether_and_when() -> None:
    world = cooperative(["IKM-001", "IKM-002"], weekly=0)
    short = PlanInForce(
        1, (), shortfall=({"line_no": 1, "week": iso_week(date(2027, 2, 8)), "quantity": 1000, "eligible_members": 2},)
    )
    open_order = whatif.OpenOrder(order(), short)
    unrelated = whatif.Hypotheses(
        capacity_changes=(whatif.CapacityChange("IKM-001", FAMILY, date(2027, 6, 1), date(2027, 6, 30), 900),)
    )
    assert not whatif.may_help(open_order, unrelated, whatif.suppose(world, [open_order], unrelated, TODAY)[0], TODAY)
    added = whatif.Hypotheses(
        capacity_changes=(whatif.CapacityChange("IKM-001", FAMILY, date(2026, 12, 1), date(2027, 1, 31), 300),)
    )
    answer = whatif.what_if(world, [open_order], added, [order(500)], today=TODAY, now=NOW, rules=RULES)
    (outcome,) = answer.orders
    # One member may take at most its share of the line: the cure is partial, and says so.
    assert outcome.replanned and 0 < outcome.lines[0].late_units < 1000
    assert sum(a["quantity"] for a in outcome.lines[0].allocations) == 1000 - outcome.lines[0].late_units
    assert {a["foundry_code"] for a in outcome.lines[0].allocations} == {"IKM-001"}
    # The new order comes after: what the replan took is not free for it any more.
    (new,) = answer.new_orders
    assert new.acceptable_in_full == (new.complete_by == DUE)
    taken = sum(a["quantity"] for a in new.lines[0].allocations)
    assert 0 < taken + sum(a["quantity"] for a in outcome.lines[0].allocations) <= 9 * 300


def test_questions_that_cannot_be_asked() -> None:
    bad = whatif.Hypotheses(
        capacity_changes=(whatif.CapacityChange("IKM-404", "SPACESHIPS", date(2027, 2, 1), date(2027, 1, 1), 0),),
        certificate_lapses=(whatif.CertificateLapse("IKM-405", "SNI", date(2027, 1, 1)),),
        suspensions=(whatif.Suspension("IKM-001", date(2027, 1, 1)),),
    )
    assert whatif.problems(bad, {"IKM-001": member("IKM-001")}, [FAMILY], TODAY) == [
        ("capacity_changes.0.foundry_code", "orders knows no member 'IKM-404'"),
        ("capacity_changes.0.product_family", f"unknown product family; known: {FAMILY}"),
        ("capacity_changes.0.to_date", "must not be before from_date"),
        ("certificate_lapses.0.foundry_code", "orders knows no member 'IKM-405'"),
    ]
    # Questions reach two years ahead at most: planning looks no further, and a far date would cost weeks of work.
    # New orders' due dates are bounded alike, by the purchase order's own rules (`domain.check_purchase_order`).
    far = whatif.Hypotheses(suspensions=(whatif.Suspension("IKM-001", date(9999, 12, 31)),))
    assert whatif.problems(far, {"IKM-001": member("IKM-001")}, [FAMILY], TODAY) == [
        ("suspensions.0.from_date", "must not be after 2028-11-21 (104 weeks ahead)"),
    ]


def test_late_units_are_told_per_due_date_as_the_planner_leaves_them() -> None:
    world = cooperative(["IKM-001", "IKM-002"], weekly=0)
    added = whatif.Hypotheses(
        capacity_changes=(whatif.CapacityChange("IKM-001", FAMILY, date(2026, 12, 1), date(2027, 2, 28), 300),)
    )
    early = date(2027, 1, 15)
    line = OrderLine(
        1, "BB-COMP-K", "Blok rem komposit tipe K", 2000, 203_700,
        (Delivery(early, 1000, "BY-YK"), Delivery(DUE, 1000, "BY-YK")), Requirements(("SNI",)), item=CATALOGUE["BB-COMP-K"],
    )  # fmt: skip
    two_dates = PurchaseOrder("po_2", "KAI", "KAI/PO/2", TODAY, "IDR", (line,), OrderStatus.RECEIVED, NOW)
    answer = whatif.what_if(world, [], added, [two_dates], today=TODAY, now=NOW, rules=RULES)
    (outcome,) = answer.new_orders[0].lines
    assert outcome.at_risk
    assert sum(late.units for late in outcome.late) == outcome.late_units
    assert tuple(late.due_date for late in outcome.late) == outcome.late_due_dates == (early.isoformat(), DUE.isoformat())
    assert all(late.units > 0 for late in outcome.late)
    # Every unit is planned or late, per due date.
    for late in outcome.late:
        planned_for = sum(a["quantity"] for a in outcome.allocations if a["due_date"] == late.due_date)
        assert planned_for + late.units == 1000


def test_a_plan_in_force_without_late_units_per_due_date_names_them_when_one_date_is_missed() -> None:
    world = cooperative(["IKM-001"], weekly=0)
    risk = {"line_no": 1, "shortfall": 1000, "due_dates": [DUE.isoformat()], "expected_completion": None}
    untouched = whatif.OpenOrder(order(), PlanInForce(1, (), risk=(risk,)))
    answer = whatif.what_if(world, [untouched], whatif.Hypotheses(), [], today=TODAY, now=NOW, rules=RULES)
    (line,) = answer.orders[0].lines
    assert not answer.orders[0].replanned and line.late == (whatif.LateUnits(DUE.isoformat(), 1000),)
