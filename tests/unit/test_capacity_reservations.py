"""Reservation rules, pure: what fits, holds and their expiry, release, revocation when capacity falls, plans and lots."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.capacity.domain import (
    ConflictError,
    Foundry,
    MembershipStatus,
    PlannedAllocation,
    ProducedLot,
    ProductFamily,
    RefusalReason,
    Reservation,
    ReservationRefused,
    ReservationRequest,
    ReservationSource,
    ReservationState,
    check_reservation,
    confirm_reservation,
    consume_for_lot,
    expire_hold,
    hold_capacity,
    overbooked,
    reconcile_plan,
    register_foundry,
    release_reservation,
    reserve_allocation,
    revoke_reservations_over_capacity,
)
from shared.events.capacity import ReservationConfirmed, ReservationRejected

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
THIS_WEEK = "2026-W48"
COMPOSITE = ProductFamily.BRAKE_BLOCK_COMPOSITE
HOLD, CONFIRMED, CONSUMED = ReservationState.HOLD, ReservationState.CONFIRMED, ReservationState.CONSUMED


def member(**changes: object) -> Foundry:
    foundry, _ = register_foundry("IKM-001", "CV Logam Batur", "Batur", [COMPOSITE], NOW)
    return replace(foundry, **changes)


def ask(quantity: int = 100, week: str = "2027-W10", **extra: object) -> ReservationRequest:
    return ReservationRequest("IKM-001", "BRAKE_BLOCK_COMPOSITE", week, quantity, **extra)  # type: ignore[arg-type]


def reservation(
    rid: str,
    quantity: int,
    due: date | None = None,
    *,
    minutes: int = 0,
    state: ReservationState = CONFIRMED,
    consumed: int = 0,
    **extra: object,
) -> Reservation:
    at = NOW + timedelta(minutes=minutes)
    values: dict[str, object] = {
        "id": rid, "foundry_code": "IKM-001", "product_family": COMPOSITE, "week": "2027-W10", "quantity": quantity,
        "state": state, "source": ReservationSource.PLAN, "created_at": at, "updated_at": at, "consumed_quantity": consumed,
        "due_date": due, **extra,
    }  # fmt: skip
    return Reservation(**values)  # type: ignore[arg-type]


# --- what fits ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "foundry, request_, reason, field",
    [
        (None, ask(), RefusalReason.UNKNOWN_FOUNDRY, "foundry_code"),
        (member(membership_status=MembershipStatus.SUSPENDED), ask(), RefusalReason.FOUNDRY_NOT_ACTIVE, "foundry_code"),
        (member(), ReservationRequest("IKM-001", "SHIP_PARTS", "2027-W10", 10), RefusalReason.FAMILY_NOT_MADE, "product_family"),
        (
            member(),
            ReservationRequest("IKM-001", "RUBBER_SEALS", "2027-W10", 10),
            RefusalReason.FAMILY_NOT_MADE,
            "product_family",
        ),
        (member(), ask(week="2027-W53"), RefusalReason.INVALID_WEEK, "week"),
        (member(), ask(week="2026-W47"), RefusalReason.WEEK_PAST, "week"),
    ],
)
def test_requests_that_cannot_be_reserved_say_why(foundry, request_, reason, field):
    refusal = check_reservation(request_, foundry, 1000, 0, THIS_WEEK)
    assert refusal is not None and (refusal.reason, refusal.field, refusal.free_quantity) == (reason, field, 0)


def test_a_request_fits_exactly_the_free_capacity_and_a_partial_fit_is_refused_whole():
    assert check_reservation(ask(300), member(), 1000, 700, THIS_WEEK) is None
    assert check_reservation(ask(300, week=THIS_WEEK), member(), 1000, 700, THIS_WEEK) is None
    refusal = check_reservation(ask(301), member(), 1000, 700, THIS_WEEK)
    assert refusal is not None and refusal.reason is RefusalReason.INSUFFICIENT_CAPACITY and refusal.free_quantity == 300
    assert "300 of 1000" in refusal.message and "301 requested" in refusal.message
    over = check_reservation(ask(1), member(), 500, 600, THIS_WEEK)  # made units may exceed a capacity that fell later
    assert over is not None and over.free_quantity == 0


def test_a_planned_allocation_that_fits_is_confirmed_at_once():
    request = ask(250, order_id="po_1", allocation_id="a-1", plan_version=2, due_date=date(2027, 4, 30), item_code="BB-COMP-K")
    made, event = reserve_allocation(request, member(), 1000, 100, THIS_WEEK, "res_1", NOW)
    assert (
        made is not None and made.state is CONFIRMED and made.source is ReservationSource.PLAN and made.item_code == "BB-COMP-K"
    )
    assert event == ReservationConfirmed(
        reservation_id="res_1", foundry_code="IKM-001", product_family="BRAKE_BLOCK_COMPOSITE", week="2027-W10", quantity=250,
        order_id="po_1", allocation_id="a-1", plan_version=2, due_date=date(2027, 4, 30), confirmed_at=NOW,
    )  # fmt: skip


def test_a_planned_allocation_that_does_not_fit_is_rejected_with_the_free_quantity():
    request = ask(800, order_id="po_1", allocation_id="a-1", plan_version=2, due_date=date(2027, 4, 30))
    made, event = reserve_allocation(request, member(), 1000, 300, THIS_WEEK, "res_1", NOW)
    assert made is None
    assert event == ReservationRejected(
        foundry_code="IKM-001", product_family="BRAKE_BLOCK_COMPOSITE", week="2027-W10", requested_quantity=800, free_quantity=700,
        reason="insufficient_capacity", order_id="po_1", allocation_id="a-1", plan_version=2, rejected_at=NOW,
    )  # fmt: skip


# --- holds over the API -------------------------------------------------------------------------------------------


def test_a_hold_expires_unless_confirmed_in_time():
    held = hold_capacity(ask(100), member(), 1000, 0, THIS_WEEK, "res_1", NOW, timedelta(minutes=60))
    assert held.state is HOLD and held.source is ReservationSource.REQUEST and held.hold_expires_at == NOW + timedelta(minutes=60)
    assert expire_hold(held, NOW + timedelta(minutes=59)) == (held, None)
    expired, event = expire_hold(held, NOW + timedelta(minutes=60))
    assert expired.state is ReservationState.EXPIRED and expired.holding == 0
    assert event is not None and (event.quantity, event.reason, event.reservation_id) == (100, "hold_not_confirmed", "res_1")
    with pytest.raises(ConflictError, match="expired at"):
        confirm_reservation(held, NOW + timedelta(minutes=61))


def test_confirming_a_hold_publishes_once():
    held = hold_capacity(ask(100), member(), 1000, 0, THIS_WEEK, "res_1", NOW, timedelta(minutes=60))
    confirmed, event = confirm_reservation(held, NOW + timedelta(minutes=5))
    assert confirmed.state is CONFIRMED and confirmed.hold_expires_at is None and event is not None and event.order_id is None
    assert confirm_reservation(confirmed, NOW + timedelta(minutes=6)) == (confirmed, None)
    assert expire_hold(confirmed, NOW + timedelta(days=1)) == (confirmed, None)


def test_a_hold_that_does_not_fit_is_refused():
    with pytest.raises(ReservationRefused) as refused:
        hold_capacity(ask(100), member(), 1000, 950, THIS_WEEK, "res_1", NOW, timedelta(minutes=60))
    assert refused.value.refusal.free_quantity == 50 and refused.value.field == "quantity"


# --- release -------------------------------------------------------------------------------------------------------


def test_release_frees_what_is_not_made_and_keeps_made_units():
    whole, event = release_reservation(reservation("r1", 500), "plan_changed", NOW)
    assert (whole.state, whole.holding, event.quantity) == (ReservationState.RELEASED, 0, 500)  # type: ignore[union-attr]
    part, event = release_reservation(reservation("r2", 500, consumed=200), "order_cancelled", NOW)
    assert (part.state, part.quantity, part.holding, event.quantity) == (CONSUMED, 200, 200, 300)  # type: ignore[union-attr]
    assert release_reservation(whole, "again", NOW) == (whole, None)
    with pytest.raises(ConflictError):
        release_reservation(reservation("r3", 500, state=ReservationState.REVOKED), "x", NOW)


# --- revocation when capacity falls ------------------------------------------------------------------------------------


def test_revocation_takes_back_exactly_the_excess_latest_due_date_first_partially_if_enough():
    early = reservation("r-early", 400, date(2027, 3, 31), minutes=1)
    late = reservation("r-late", 300, date(2027, 4, 30), minutes=2)
    middle = reservation("r-middle", 200, date(2027, 4, 15), minutes=3)
    revoked = revoke_reservations_over_capacity([early, late, middle], 500, "press_breakdown", NOW)
    # 900 reserved, capacity 500: 400 too many — all of the latest (300), then 100 of the next latest.
    assert [(e.reservation_id, e.revoked_quantity, e.remaining_quantity) for _, e in revoked] == [
        ("r-late", 300, 0),
        ("r-middle", 100, 100),
    ]
    assert [(r.state, r.quantity) for r, _ in revoked] == [(ReservationState.REVOKED, 0), (CONFIRMED, 100)]
    assert {e.reason for _, e in revoked} == {"press_breakdown"}


def test_without_a_due_date_goes_first_then_the_newest_on_equal_dates():
    due = date(2027, 4, 30)
    undated = reservation("r-api", 50, None, minutes=0, state=HOLD)
    older = reservation("r-older", 100, due, minutes=1)
    newer = reservation("r-newer", 100, due, minutes=2)
    revoked = revoke_reservations_over_capacity([older, newer, undated], 100, "power_cut", NOW)
    assert [(e.reservation_id, e.revoked_quantity) for _, e in revoked] == [("r-api", 50), ("r-newer", 100)]


def test_made_units_are_never_revoked_and_nothing_is_revoked_within_capacity():
    made = reservation("r-made", 300, date(2027, 5, 1), consumed=250)
    other = reservation("r-other", 200, date(2027, 3, 1))
    assert revoke_reservations_over_capacity([made, other], 500, "x", NOW) == []
    revoked = revoke_reservations_over_capacity([made, other], 100, "lebaran_closure", NOW)
    assert [(e.reservation_id, e.revoked_quantity, e.remaining_quantity) for _, e in revoked] == [
        ("r-made", 50, 250),
        ("r-other", 200, 0),
    ]
    assert revoked[0][0].state is CONSUMED  # all that is left of it is made


def test_overbooked_counts_units_not_made_beyond_what_the_week_can_still_make():
    assert overbooked(capacity=100, held=120, made=0) == 20
    assert overbooked(capacity=100, held=100, made=30) == 0
    assert overbooked(capacity=50, held=80, made=80) == 0  # made before capacity fell: history, not a promise
    assert overbooked(capacity=50, held=90, made=80) == 10  # no week left to make those 10 in
    assert overbooked(capacity=0, held=30, made=0) == 30


_reservations = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=500),
        st.integers(min_value=0, max_value=500),
        st.one_of(st.none(), st.dates(min_value=date(2027, 1, 1), max_value=date(2027, 12, 31))),
        st.sampled_from([HOLD, CONFIRMED]),
    ),
    max_size=8,
).map(
    lambda rows: [
        reservation(f"r{i}", quantity, due, minutes=i, state=state, consumed=min(consumed, quantity) if state is CONFIRMED else 0)
        for i, (quantity, consumed, due, state) in enumerate(rows)
    ]
)


@settings(max_examples=300, deadline=None)
@given(_reservations, st.integers(min_value=0, max_value=3000))
def test_revocation_never_leaves_more_than_capacity_unless_only_made_units_remain(reservations, capacity):
    revoked = revoke_reservations_over_capacity(reservations, capacity, "x", NOW)
    after = {r.id: r for r in reservations} | {r.id: r for r, _ in revoked}
    before_total = sum(r.holding for r in reservations)
    after_total = sum(r.holding for r in after.values())
    taken = sum(e.revoked_quantity for _, e in revoked)
    made = sum(r.consumed_quantity for r in reservations)
    assert after_total == before_total - taken
    assert taken == max(0, min(before_total - capacity, before_total - made))  # exactly the excess, never made units
    assert after_total <= max(capacity, made)
    assert overbooked(capacity, after_total, made) == 0  # what alert CapacityOverReserved watches
    for r, e in revoked:
        assert r.quantity == e.remaining_quantity >= r.consumed_quantity and e.revoked_quantity > 0

    # Latest due date first (none counts as latest), then the newest: nothing was cut while a reservation
    # further along that order kept revocable units.
    def lateness(r: Reservation) -> tuple[bool, date, datetime]:
        return (r.due_date is None, r.due_date or date.min, r.created_at)

    cut = {e.reservation_id for _, e in revoked}
    kept = [r for r in after.values() if r.id not in cut and r.revocable > 0]
    for r in after.values():
        if r.id in cut:
            assert all(lateness(other) < lateness(r) for other in kept)


# --- plans -------------------------------------------------------------------------------------------------------------


def allocation(
    aid: str, quantity: int = 100, week: str = "2027-W10", foundry: str = "IKM-001", due: date = date(2027, 4, 30)
) -> PlannedAllocation:
    return PlannedAllocation(aid, "BB-COMP-K", "BRAKE_BLOCK_COMPOSITE", foundry, week, quantity, due)


def test_a_new_plan_version_releases_dropped_and_changed_allocations_and_reserves_new_and_changed_ones():
    due = date(2027, 4, 30)
    kept = reservation("r-kept", 100, due, allocation_id="a-kept", order_id="po_1")
    moved = reservation("r-moved", 100, due, allocation_id="a-moved", order_id="po_1")
    dropped = reservation("r-dropped", 100, due, allocation_id="a-dropped", order_id="po_1")
    by_hand = reservation("r-api", 100, due, allocation_id="a-api", order_id="po_1", source=ReservationSource.REQUEST)
    diff = reconcile_plan(
        [kept, moved, dropped, by_hand],
        [allocation("a-kept"), allocation("a-moved", week="2027-W11"), allocation("a-new", 50), allocation("a-new", 60)],
    )
    assert [r.id for r in diff.unchanged] == ["r-kept"]
    assert [r.id for r in diff.release] == ["r-moved", "r-dropped"]
    assert [(a.allocation_id, a.week) for a in diff.reserve] == [("a-moved", "2027-W11"), ("a-new", "2027-W10")]
    assert [(a.allocation_id, a.quantity) for a in diff.duplicates] == [("a-new", 60)]


@pytest.mark.parametrize(
    "changed",
    [allocation("a-1", quantity=120), allocation("a-1", foundry="IKM-002"), allocation("a-1", due=date(2027, 5, 31))],
)
def test_any_change_of_an_allocation_is_released_and_reserved_again(changed: PlannedAllocation):
    current = reservation("r-1", 100, date(2027, 4, 30), allocation_id="a-1", order_id="po_1")
    diff = reconcile_plan([current], [changed])
    assert diff.release == [current] and diff.reserve == [changed] and diff.unchanged == []


def test_a_consumed_reservation_is_history_neither_reserved_again_nor_released():
    due = date(2027, 4, 30)
    made = replace(
        reservation("r-made", 100, due, allocation_id="a-made", order_id="po_1"), state=CONSUMED, consumed_quantity=100
    )
    gone = replace(
        reservation("r-gone", 100, due, allocation_id="a-gone", order_id="po_1"), state=CONSUMED, consumed_quantity=100
    )
    diff = reconcile_plan([made, gone], [allocation("a-made"), allocation("a-replacement", 100, week="2027-W12")])
    assert diff.release == [] and diff.unchanged == []
    assert [a.allocation_id for a in diff.reserve] == ["a-replacement"]


def test_an_allocation_cut_back_to_its_made_units_releases_the_rest_and_reserves_nothing_again():
    # The member lost a certificate after making 103 of 207 units: the plan keeps the 103 it made.
    current = reservation("r-1", 207, date(2027, 4, 30), allocation_id="a-1", order_id="po_1", consumed=103)
    diff = reconcile_plan([current], [allocation("a-1", quantity=103)])
    assert diff.release == [current] and diff.reserve == [] and diff.unchanged == []
    released, event = release_reservation(current, "plan_changed", NOW)
    assert (released.state, released.quantity, event is not None and event.quantity) == (CONSUMED, 103, 104)


def test_a_partly_made_allocation_moved_elsewhere_is_reserved_there_again():
    current = reservation("r-1", 207, date(2027, 4, 30), allocation_id="a-1", order_id="po_1", consumed=103)
    moved = allocation("a-1", quantity=103, foundry="IKM-002")
    diff = reconcile_plan([current], [moved])
    assert diff.release == [current] and diff.reserve == [moved]


# --- lots ---------------------------------------------------------------------------------------------------------------


def test_a_lot_consumes_its_allocation_reservations_earliest_week_first_up_to_its_quantity():
    first = reservation("r-w10", 300, allocation_id="a-1", order_id="po_1", item_code="BB-COMP-K")
    second = replace(reservation("r-w11", 300, allocation_id="a-1", order_id="po_1", item_code="BB-COMP-K"), week="2027-W11")
    other = reservation("r-other", 300, allocation_id="a-2", order_id="po_1", item_code="BB-COMP-K")
    lot = ProducedLot("IKM-001-K-0001", "IKM-001", "BB-COMP-K", 450, "po_1", "a-1")
    consumed = consume_for_lot([second, other, first], lot, NOW)
    assert [(e.reservation_id, e.quantity, e.remaining_quantity, e.lot_code) for _, e in consumed] == [
        ("r-w10", 300, 0, "IKM-001-K-0001"),
        ("r-w11", 150, 150, "IKM-001-K-0001"),
    ]
    assert [(r.state, r.consumed_quantity, r.holding) for r, _ in consumed] == [(CONSUMED, 300, 300), (CONFIRMED, 150, 300)]


def test_a_lot_without_an_allocation_matches_its_order_and_item_and_nothing_else():
    composite = reservation("r-k", 100, order_id="po_1", item_code="BB-COMP-K")
    other_item = reservation("r-ll", 100, order_id="po_1", item_code="BB-COMP-LL")
    elsewhere = replace(reservation("r-x", 100, order_id="po_1", item_code="BB-COMP-K"), foundry_code="IKM-002")
    hold = reservation("r-hold", 100, order_id="po_1", item_code="BB-COMP-K", state=HOLD)
    consumed = consume_for_lot(
        [composite, other_item, elsewhere, hold], ProducedLot("L-1", "IKM-001", "BB-COMP-K", 1000, "po_1"), NOW
    )
    assert [(e.reservation_id, e.quantity) for _, e in consumed] == [("r-k", 100)]
    assert consume_for_lot([composite], ProducedLot("L-2", "IKM-001", "BB-COMP-K", 100), NOW) == []


def test_a_lot_without_an_allocation_counts_only_against_reservations_of_its_items_family():
    # Reservations that name no item (an API hold turned plan) count a lot of the order only if they are of the
    # family that makes the lot's item, as quality's catalogue says.
    blocks = reservation("r-blocks", 100, order_id="po_1")
    impellers = replace(reservation("r-pumps", 100, order_id="po_1"), product_family=ProductFamily.PUMP_PARTS)
    lot = ProducedLot("L-3", "IKM-001", "PMP-IMP-FC200", 150, "po_1", product_family="PUMP_PARTS")
    assert [(e.reservation_id, e.quantity) for _, e in consume_for_lot([blocks, impellers], lot, NOW)] == [("r-pumps", 100)]
    unknown_item = replace(lot, product_family=None)  # not in capacity's catalogue yet: the order and item decide
    assert {e.reservation_id for _, e in consume_for_lot([blocks, impellers], unknown_item, NOW)} == {"r-blocks", "r-pumps"}
