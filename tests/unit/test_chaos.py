"""`ceper chaos`: what the seed decides, and the rules its checks apply, on plain data."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from ceper.chaos import checks
from ceper.chaos.plan import FULL, QUICK, dead_letters_expected, fault_plan, poison_messages
from ceper.chaos.receiver import Receipt
from ceper.chaos.scenario import draw_orders, draw_timeline, lots_not_known_yet
from services.capacity.subscriptions import SUBSCRIPTIONS as CAPACITY
from services.orders.subscriptions import SUBSCRIPTIONS as ORDERS
from services.quality.subscriptions import SUBSCRIPTIONS as QUALITY
from shared.dlq import DeadLetter
from shared.events import MalformedEvent, from_kafka

REPLICAS = [f"{service}-{i}" for service in ("orders", "capacity", "quality") for i in (1, 2)]


# --- the plan -----------------------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_faults_and_another_seed_other_ones():
    assert fault_plan(7, QUICK, REPLICAS) == fault_plan(7, QUICK, REPLICAS)
    assert fault_plan(7, QUICK, REPLICAS) != fault_plan(8, QUICK, REPLICAS)


@pytest.mark.parametrize("scale", [QUICK, FULL], ids=["quick", "full"])
def test_every_replica_is_killed_and_the_broker_database_and_receiver_go_away(scale):
    steps = fault_plan(1, scale, REPLICAS)
    kinds = Counter(step.action for step in steps)
    assert Counter(step.target for step in steps if step.action == "kill") == dict.fromkeys(REPLICAS, scale.kills_per_replica)
    assert kinds["stop"] == scale.graceful_restarts >= 1  # a graceful leave: a rebalance without a session timeout
    assert kinds["broker"] == scale.broker_restarts >= 1
    assert kinds["postgres"] == scale.postgres_restarts
    assert kinds["receiver"] == 1 and kinds["poison"] == scale.poison
    assert all(0 < step.at_s < scale.window_s for step in steps)
    assert [step.at_s for step in steps] == sorted(step.at_s for step in steps)


def test_the_long_run_kills_at_least_twenty_times_and_restarts_the_broker_twice_once_by_crash():
    steps = fault_plan(1, FULL, REPLICAS)
    assert sum(step.action == "kill" for step in steps) >= 20
    broker = [step for step in steps if step.action == "broker"]
    assert len(broker) >= 2 and any(step.crash for step in broker) and not all(step.crash for step in broker)


def test_a_replica_is_back_before_it_is_killed_again():
    steps = fault_plan(3, FULL, REPLICAS)
    for name in REPLICAS:
        kills = [step for step in steps if step.action == "kill" and step.target == name]
        for earlier, later in itertools.pairwise(kills):
            assert later.at_s > earlier.at_s + earlier.down_s


def test_infrastructure_outages_do_not_overlap_in_the_plan():
    for seed in range(20):
        outages = sorted(
            (s.at_s, s.at_s + s.down_s) for s in fault_plan(seed, FULL, REPLICAS) if s.action in ("broker", "postgres")
        )
        for (_, ends), (starts, _) in itertools.pairwise(outages):
            assert ends < starts


def test_every_poison_message_is_refused_by_the_real_decoder():
    for message in poison_messages(5, 8, ["IKM-001", "IKM-002"]):
        with pytest.raises(MalformedEvent):
            from_kafka(message.key, message.value, list(message.headers))


def test_the_poison_is_expected_in_the_dead_letters_of_exactly_the_services_that_read_it():
    poison = poison_messages(5, 4, ["IKM-001"])
    expected = dead_letters_expected(poison, {"orders": ORDERS, "capacity": CAPACITY, "quality": QUALITY})
    by_kind = {message.what: message.index for message in poison}
    assert expected == {
        # capacity_changed: only orders subscribes; lot_registered: orders and capacity; no headers at all on
        # orders' topic: every reader of that topic; foundry_registered: orders and quality.
        "orders": {by_kind["value is not JSON"], by_kind["data lacks required fields"], by_kind["no CloudEvents headers"],
                   by_kind["data of the wrong types"]},
        "capacity": {by_kind["data lacks required fields"], by_kind["no CloudEvents headers"]},
        "quality": {by_kind["data of the wrong types"]},
    }  # fmt: skip


def test_orders_are_drawn_so_the_small_ones_can_be_planned_and_one_big_one_is_cancelled():
    orders = draw_orders(1, QUICK)
    assert len(orders) == QUICK.small_orders + QUICK.big_orders
    for order in orders:
        assert sum(units for _, units in order.deliveries) == order.units
        assert order.units * 0.35 >= 200  # the planner's share cap leaves room for its minimum foundry-week
    assert sum(order.cancelled_later for order in orders) == 1
    assert not any(order.small and order.cancelled_later for order in orders)
    timeline = draw_timeline(1, QUICK, orders)
    kinds = Counter(action.kind for action in timeline)
    assert kinds["capacity"] == QUICK.capacity_changes and kinds["order"] == len(orders) and kinds["cancel"] == 1
    assert timeline == draw_timeline(1, QUICK, draw_orders(1, QUICK))


# --- the verdicts -------------------------------------------------------------------------------------------------


def record(
    offset: int,
    event_id: str | None,
    event_type: str | None = "ceper.capacity.capacity_changed.v1",
    topic: str = "ceper.capacity.v1",
):
    return checks.TopicRecord(topic, 0, offset, event_id, event_type)


def test_an_event_a_group_handles_without_an_inbox_row_is_lost_and_poison_is_not_counted():
    records = [
        record(0, "a"),
        record(1, "b"),
        record(2, "b"),
        record(3, None),
        record(4, "x", "ceper.capacity.foundry_updated.v1"),
    ]
    handled = {"orders": lambda r: r.event_type == "ceper.capacity.capacity_changed.v1", "quality": lambda r: False}
    lost = checks.lost_events(records, {("ceper.capacity.v1", 0, 3)}, handled, {"orders": {"a"}, "quality": set()})
    assert [(r.event_id, r.offset) for r in lost["orders"]] == [("b", 1)]  # one id, however often it was published
    assert "quality" not in lost
    assert checks.published_twice(records) == 1


def test_two_open_reservations_for_one_allocation_and_a_lot_counted_past_its_size_are_applied_twice():
    reservations = [
        {"allocation_id": "a1", "state": "confirmed"},
        {"allocation_id": "a1", "state": "confirmed"},
        {"allocation_id": "a2", "state": "consumed"},
        {"allocation_id": "a2", "state": "confirmed"},  # made units stay history; the rest is reserved anew
        {"allocation_id": "a3", "state": "released"},
        {"allocation_id": "a3", "state": "confirmed"},
    ]
    assert checks.reserved_twice(reservations) == ["a1"]
    consumptions = [{"lot_code": "L1", "quantity": 150}, {"lot_code": "L1", "quantity": 100}, {"lot_code": "L2", "quantity": 200}]
    assert checks.lots_counted_twice(consumptions, {"L1": 200, "L2": 200}) == ["L1: 250 units counted of 200"]


def reservation(
    week: str, quantity: int, state: str = "confirmed", consumed: int = 0, foundry: str = "IKM-001"
) -> dict[str, Any]:
    return {"foundry_code": foundry, "week": week, "quantity": quantity, "state": state, "consumed_quantity": consumed}


def test_reservations_over_capacity_are_overbooked_unless_made_units_hold_the_week():
    reservations = [
        reservation("2027-W05", 300),
        reservation("2027-W05", 250),  # 550 in a week of 500
        reservation("2027-W06", 400, "consumed", 400),
        reservation("2027-W06", 0, "revoked"),  # the week fell to 300 after its units were made: nothing to take back
        reservation("2027-W07", 200, "released"),
    ]
    capacity = {("IKM-001", "2027-W05"): 500, ("IKM-001", "2027-W06"): 300, ("IKM-001", "2027-W07"): 100}
    ledger = [
        {"foundry_code": "IKM-001", "week": "2027-W05", "reserved": 550},
        {"foundry_code": "IKM-001", "week": "2027-W06", "reserved": 300},
        {"foundry_code": "IKM-001", "week": "2027-W07", "reserved": 0},
    ]
    over, off = checks.overbooked(reservations, ledger, capacity)
    assert over == ["IKM-001 2027-W05: 550 reserved, capacity 500"]
    assert off == ["IKM-001 2027-W06: ledger 300, reservations 400"]


def line(**quantities: int) -> dict[str, Any]:
    stages = dict.fromkeys(
        ("planned", "reserved", "produced", "passed", "failed", "shipped", "delivered", "rejected", "shippable"), 0
    )
    stages.update(quantities)
    return {"line_no": 1, "quantity": 1000, "quantities": stages, "risk": {"at_risk": False, "late_units": 0}}


def order(status: str, allocations: list[dict[str, Any]] | None, **quantities: int) -> dict[str, Any]:
    plan = None if allocations is None else {"allocations": allocations}
    return {"id": "po_1", "po_number": "KAI/1", "status": status, "plan": plan, "lines": [line(**quantities)]}


def allocation(name: str, state: str = "reserved", quantity: int = 500) -> dict[str, Any]:
    return {"allocation_id": name, "state": state, "quantity": quantity}


def held(name: str, quantity: int = 500, state: str = "confirmed") -> dict[str, Any]:
    return {"allocation_id": name, "quantity": quantity, "state": state}


def test_an_order_left_planned_with_every_allocation_reserved_is_stuck():
    stuck, off, diverged = checks.order_problems(
        order("planned", [allocation("a"), allocation("b")], planned=1000, reserved=1000), [held("a"), held("b")]
    )
    assert stuck == ["KAI/1 (po_1, planned): left planned with all 2 allocations reserved"] and not off and not diverged
    assert checks.order_problems(
        order("accepted", [allocation("a"), allocation("b")], planned=1000, reserved=1000), [held("a"), held("b")]
    ) == ([], [], [])


def test_an_allocation_capacity_confirmed_but_orders_still_holds_as_planned_is_stuck():
    stuck, _, _ = checks.order_problems(
        order("planned", [allocation("a"), allocation("b", "planned")], planned=1000, reserved=500), [held("a"), held("b")]
    )
    assert stuck == ["KAI/1 (po_1, planned): 1 of 2 allocations never confirmed (e.g. b)"]
    never, _, _ = checks.order_problems(order("received", None), [])
    assert never == ["KAI/1 (po_1, received): never planned"]


def test_the_plan_covers_the_order_plus_what_is_made_again_less_the_units_at_risk():
    failed_lot = order("accepted", [allocation("a", quantity=600), allocation("b", quantity=600)], planned=1200, reserved=1200,
                       produced=200, failed=200)  # fmt: skip
    assert checks.order_problems(failed_lot, [held("a", 600), held("b", 600)])[1] == []
    over = order("accepted", [allocation("a", quantity=700), allocation("b", quantity=600)], planned=1300, reserved=1300)
    assert checks.order_problems(over, [held("a", 700), held("b", 600)])[1] == [
        "KAI/1 (po_1, accepted) line 1: planned 1300, expected 1000 (ordered 1000 + failed 0 + refused 0 - at risk 0)"
    ]
    short = order("accepted", [allocation("a", quantity=700)], planned=700, reserved=700)
    short["lines"][0]["risk"] = {"at_risk": True, "late_units": 300}
    assert checks.order_problems(short, [held("a", 700)])[1] == []
    staged = order(
        "accepted", [allocation("a", quantity=1000)], planned=1000, reserved=1000, produced=300, passed=300, shipped=400
    )
    assert checks.order_problems(staged, [held("a", 1000)])[1] == ["KAI/1 (po_1, accepted) line 1: shipped 400 > passed 300"]


def test_orders_and_capacity_disagreeing_on_what_is_reserved_have_diverged():
    _, _, diverged = checks.order_problems(
        order("accepted", [allocation("a"), allocation("b")], planned=1000, reserved=1000),
        [held("a"), held("b", 450), held("c", 200)],
    )
    assert diverged == [
        "KAI/1 (po_1, accepted): b reserved for 500 in orders, capacity holds 450 confirmed",
        "KAI/1 (po_1, accepted): capacity still holds 200 for c, not in the plan in force",
    ]
    _, _, released = checks.order_problems(order("cancelled", [allocation("a")]), [held("a")])
    assert released == ["KAI/1 (po_1, cancelled): capacity still holds 500 units in 1 reservations"]


def test_made_units_count_once_towards_their_allocation():
    # 103 of 207 were made; the member then lost its certificate and kept only what it made.
    kept = order("accepted", [allocation("a", quantity=103)], planned=103, reserved=103)
    assert checks.order_problems(kept, [held("a", 103, "consumed"), held("a", 0, "released")])[2] == []
    assert checks.order_problems(kept, [held("a", 103, "consumed"), held("a", 103)])[2] == [
        "KAI/1 (po_1, accepted): a reserved for 103 in orders, capacity holds 103 consumed + 103 confirmed"
    ]
    produced_in_part = order("accepted", [allocation("a", quantity=207)], planned=207, reserved=207)
    assert checks.order_problems(produced_in_part, [held("a", 207)])[2] == []
    dropped = order("accepted", [allocation("b", quantity=207)], planned=207, reserved=207)
    assert checks.order_problems(dropped, [held("a", 103, "consumed"), held("b", 207)])[2] == []


def test_an_order_delivered_in_full_is_fulfilled():
    delivered = order("accepted", [allocation("a", quantity=1000)], planned=1000, reserved=1000, produced=1000, passed=1000,
                      shipped=1000, delivered=1000)  # fmt: skip
    assert checks.order_problems(delivered, [held("a", 1000, "consumed")])[0] == [
        "KAI/1 (po_1, accepted): every unit delivered, not fulfilled"
    ]


def receipt(webhook_id: str, status: int = 200, signed: bool = True) -> Receipt:
    return Receipt(webhook_id, "order.accepted", 0.0, signed, status)


def test_a_webhook_received_twice_is_doubled_and_one_never_received_is_lost():
    deliveries = [
        checks.Delivery("m1", "order.accepted", "delivered", 1),
        checks.Delivery("m2", "order.accepted", "delivered", 1),
        checks.Delivery("m3", "order.accepted", "delivered", 3),
        checks.Delivery("m4", "order.accepted", "pending", 2),
    ]
    receipts = [receipt("m1"), receipt("m1"), receipt("m3", 401, signed=False), receipt("m3")]
    problems = checks.webhook_problems(receipts, deliveries)
    assert problems["webhooks doubled"] == ["m1 (order.accepted) received 2 times"]  # m3's failed attempt is no double
    assert problems["webhooks lost"] == [
        "m2 (order.accepted) logged delivered, never received",
        "m4 (order.accepted) pending after 2 attempts",
    ]
    assert problems["webhooks unsigned"] == ["m3 (order.accepted)"]


@dataclass
class Letter:
    origin_topic: str
    origin_partition: int
    origin_offset: int
    event_type: str | None = None
    event_id: str | None = None
    error_type: str = "MalformedEvent"
    error: str = "bad"


def test_only_the_poison_may_sit_in_the_dead_letters_and_all_of_it_must():
    origin = ("ceper.capacity.v1", 2, 40)
    letters: dict[str, list[Any]] = {
        "orders": [
            Letter(*origin),
            Letter(*origin),
            Letter("ceper.capacity.v1", 1, 7, "ceper.capacity.capacity_changed.v1", "e1"),
        ],
        "quality": [],
    }
    expected = {"orders": {origin: "value is not JSON"}, "quality": {origin: "value is not JSON"}}
    unexpected, missing, repeated = checks.dead_letter_problems(letters, expected)  # type: ignore[arg-type]
    assert unexpected == ["orders: ceper.capacity.capacity_changed.v1 e1 from ceper.capacity.v1/1/7: MalformedEvent: bad"]
    assert missing == ["quality: poison 'value is not JSON' at ceper.capacity.v1/2/40"]
    assert repeated == 1


def test_dead_letter_records_have_the_fields_the_check_reads():
    fields = DeadLetter.__dataclass_fields__
    assert {"origin_topic", "origin_partition", "origin_offset", "event_type", "event_id", "error_type", "error"} <= set(fields)


def test_a_shipment_refused_only_for_lots_orders_does_not_know_yet_is_sent_again_without_them():
    not_yet = {
        "errors": [
            {"field": "body.items.2.lot_code", "message": "lot IKM-015-CH7-0062 was not made for purchase order po_1"},
            {
                "field": "body.items.0.lot_code",
                "message": "lot IKM-001-CH7-0001 has not been tested yet; only passed lots are shipped",
            },
        ]
    }
    assert lots_not_known_yet(not_yet) == {0, 2}
    failed = {
        "errors": [
            {"field": "body.items.0.lot_code", "message": "lot IKM-001-CH7-0001 failed testing; only passed lots are shipped"}
        ]
    }
    too_many = {
        "errors": [{"field": "body.items.1.quantity", "message": "lot IKM-001-CH7-0001 has 10 passed units not yet shipped"}]
    }
    assert lots_not_known_yet(failed) is None and lots_not_known_yet(too_many) is None and lots_not_known_yet({}) is None
