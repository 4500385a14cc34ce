"""Reactions that share a cause make at most one plan version per order, on both databases: the events of an inbox
batch ask, and the batch's settler plans once per order at its end. Capacity changes retry only the short orders
they may cure."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.orders import handlers, projections, store
from services.orders.subscriptions import SUBSCRIPTIONS
from shared import clock
from shared.clock import FixedClock
from shared.events import Envelope
from shared.events.capacity import CapacityChanged, ReservationRevoked, WeekCapacity
from shared.inbox import IN_BATCH
from tests.integration.orders_support import (
    FAMILY,
    FIRST_DUE,
    MEMBERS,
    NOW,
    SECOND_DUE,
    Sessions,
    by_due,
    kai_order,
    know_members,
    orders_database,
    plan_of,
    receive,
    set_capacity,
)


@pytest.fixture(autouse=True)
def fixed_clock() -> FixedClock:
    at = FixedClock(NOW)
    clock.use(at)
    return at


def breakdown(foundry: str, weeks: list[str]) -> Envelope[CapacityChanged]:
    return Envelope.of(
        CapacityChanged(
            foundry_code=foundry,
            product_family=FAMILY,
            change_id=f"breakdown-{foundry}",
            reason="press_breakdown",
            weeks=[WeekCapacity(week=w, capacity=0) for w in weeks],
            changed_at=NOW,
        )
    )


def revocations(plan, foundry: str) -> list[Envelope[ReservationRevoked]]:
    """What capacity publishes when the member's capacity drops to nothing: one revocation per reservation."""
    return [
        Envelope.of(
            ReservationRevoked(
                reservation_id=f"res-{foundry}-{n}",
                foundry_code=foundry,
                product_family=FAMILY,
                week=held.allocation.week,
                revoked_quantity=held.allocation.quantity,
                remaining_quantity=0,
                reason="press_breakdown",
                order_id="po_1",
                allocation_id=held.allocation.allocation_id,
                plan_version=plan.version,
                revoked_at=NOW,
            )
        )
        for n, held in enumerate(a for a in plan.allocations if a.allocation.foundry_code == foundry)
    ]


async def apply_as_one_batch(sessions: Sessions, envelopes: list[Envelope]) -> None:
    """As the inbox applies a batch: every event's subscription in one transaction, then the settlers."""
    async with sessions.begin() as session:
        session.info[IN_BATCH] = True
        for envelope in envelopes:
            subscription = SUBSCRIPTIONS.get(envelope.type.name)
            assert subscription is not None
            await subscription.apply(session, envelope)
        await SUBSCRIPTIONS.settled(session)


def busiest(plan) -> tuple[str, list[str]]:
    units: dict[str, int] = {}
    for held in plan.allocations:
        units[held.allocation.foundry_code] = units.get(held.allocation.foundry_code, 0) + held.allocation.quantity
    code = max(sorted(units), key=lambda c: units[c])
    return code, sorted({h.allocation.week for h in plan.allocations if h.allocation.foundry_code == code})


async def test_one_capacity_drop_makes_one_plan_version_however_many_reservations_it_revokes(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS)
        await receive(sessions, kai_order(quantity=4000))
        plan = await plan_of(sessions)
        member, weeks = busiest(plan)
        revoked = revocations(plan, member)
        assert len(revoked) >= 2, "the busiest member should hold several reservations"
        await apply_as_one_batch(sessions, [breakdown(member, weeks), *revoked])
        replanned = await plan_of(sessions)
        assert replanned.version == 2
        assert member not in {h.allocation.foundry_code for h in replanned.allocations if h.allocation.week in weeks}
        assert by_due(replanned) == {FIRST_DUE: 2000, SECOND_DUE: 2000}
        assert replanned.shortfall == ()
        assert "reservation revoked: press_breakdown" in (await plans(sessions))[-1]
        # The same events again (a redelivery past the inbox): nothing left to plan.
        await apply_as_one_batch(sessions, revoked)
        assert (await plan_of(sessions)).version == 2


async def test_outside_a_batch_each_reaction_still_plans_at_once(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS)
        await receive(sessions, kai_order(quantity=4000))
        plan = await plan_of(sessions)
        member, _ = busiest(plan)
        first, *_ = revocations(plan, member)
        async with sessions.begin() as session:
            await handlers.on_reservation_revoked(session, first)
        assert (await plan_of(sessions)).version == 2


async def test_capacity_changes_retry_only_the_short_orders_they_may_cure(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS[:2], weekly_units=250)
        await receive(sessions, kai_order(quantity=6000))
        short = await plan_of(sessions)
        assert short.shortfall
        last_short_week = max(str(s["week"]) for s in short.shortfall)
        late = (NOW.date() + timedelta(weeks=40)).isocalendar()
        after_the_due_dates = f"{late.year}-W{late.week:02d}"
        assert after_the_due_dates > last_short_week
        # More capacity, but only after every short week; and a drop: neither may cure the order.
        later = Envelope.of(
            CapacityChanged(
                foundry_code=MEMBERS[0],
                product_family=FAMILY,
                change_id="later",
                reason="new_press",
                weeks=[WeekCapacity(week=after_the_due_dates, capacity=5000)],
                changed_at=NOW,
            )
        )
        drop = breakdown(MEMBERS[1], [min(str(s["week"]) for s in short.shortfall)])
        await apply_as_one_batch(sessions, [later, drop])
        assert (await plan_of(sessions)).version == 1
        # A new member's capacity in time: one retry, however many changes the batch holds.
        await know_members(sessions, MEMBERS[2:], weekly_units=2000)
        async with sessions.begin() as session:
            changes = [await set_capacity(session, code, 2000) for code in MEMBERS[2:]]
        await apply_as_one_batch(sessions, changes)
        cured = await plan_of(sessions)
        assert cured.version == 2 and not cured.shortfall


async def plans(sessions: Sessions) -> list[str]:
    async with sessions() as session:
        return [plan.reason for plan, _ in await store.plan_versions(session, "po_1")]


async def test_free_capacity_is_read_as_before(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS[:1], weekly_units=300)
        await receive(sessions, kai_order(quantity=400))
        async with sessions() as session:
            week = (await plan_of(sessions)).allocations[0].allocation.week
            free = await projections.free_capacity(session, FAMILY, week, week)
            capacity, held = await projections.capacity_and_held(session, FAMILY, week, week)
        planned = sum(h.allocation.quantity for h in (await plan_of(sessions)).allocations if h.allocation.week == week)
        assert capacity[MEMBERS[0]][week] == 300 and held[MEMBERS[0]][week] == planned
        assert free[MEMBERS[0]][week] == 300 - planned
