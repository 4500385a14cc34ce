"""Orders' reactions called directly on both databases: a received order is planned, capacity's answers and
quality's findings move the plan, and the buyer is told. Each reaction gets only the event it handles."""

from __future__ import annotations

import zlib

import pytest

from services.orders import handlers, projections, store
from services.orders.domain import Delivery, OrderLine, OrderStatus, PurchaseOrder
from shared import clock
from shared.clock import FixedClock
from shared.events import Envelope
from shared.events.capacity import CapacityChanged, FoundryRegistered, ReservationConfirmed, ReservationRejected
from shared.events.quality import FoundryQualityStatusChanged, LotFailed, LotFailureReason
from tests.integration.orders_support import (
    FIRST_DUE,
    MEMBERS,
    NOW,
    SECOND_DUE,
    by_due,
    certify,
    kai_order,
    know_members,
    orders_database,
    plan_of,
    published,
    receive,
    set_capacity,
    status_of,
    webhooks_queued,
)


@pytest.fixture(autouse=True)
def fixed_clock() -> FixedClock:
    at = FixedClock(NOW)
    clock.use(at)  # this test's task only
    return at


async def test_a_received_order_gets_its_first_plan_and_capacity_hears_of_it(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS)
        await receive(sessions, kai_order())
        plan = await plan_of(sessions)
        assert plan.version == 1 and by_due(plan) == {FIRST_DUE: 1000, SECOND_DUE: 1000}
        assert {a.state for a in plan.allocations} == {"planned"}
        assert await status_of(sessions) == "planned"
        assert await published(sessions) == ["allocation_planned"]
        # Received again (a redelivery past the inbox, or a replay): the plan in force covers everything.
        async with sessions.begin() as session:
            assert await handlers.plan_order(session, "po_1", "received") is None
        assert (await plan_of(sessions)).version == 1


def lot_failed(allocation_id: str, foundry: str, quantity: int, lot_code: str = "IKM-001-K-0001") -> Envelope[LotFailed]:
    return Envelope.of(
        LotFailed(
            lot_code=lot_code,
            foundry_code=foundry,
            item_code="BB-COMP-K",
            quantity=quantity,
            order_id="po_1",
            allocation_id=allocation_id,
            report_number=f"LHU/{lot_code}",
            laboratory="B4T Bandung",
            decided_at=NOW,
            reasons=[LotFailureReason(parameter="friction_coefficient", rule="0.25 ± 0.04", observed="0.15", message="too low")],
        )
    )


@pytest.mark.parametrize("projected_first", [False, True], ids=["reaction-alone", "after-the-projection"])
async def test_a_failed_lot_is_made_again_as_its_event_says_whether_or_not_the_lot_projection_ran(
    request, backend, tmp_path, projected_first
):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS)
        await receive(sessions, kai_order())
        first = next(a.allocation for a in (await plan_of(sessions)).allocations if a.allocation.due_date == FIRST_DUE)
        failed = lot_failed(first.allocation_id, first.foundry_code, first.quantity)
        async with sessions.begin() as session:
            if projected_first:
                await projections.on_lot_event(session, failed)
            await handlers.on_lot_failed(session, failed)
        plan = await plan_of(sessions)
        assert plan.version == 2
        # The failed lot's allocation stays (its capacity was used) and its units are planned once more.
        assert by_due(plan) == {FIRST_DUE: 1000 + first.quantity, SECOND_DUE: 1000}
        assert first in [a.allocation for a in plan.allocations]
        # The projection catching up, and the same event again, change nothing more.
        async with sessions.begin() as session:
            await projections.on_lot_event(session, failed)
            await handlers.on_lot_failed(session, failed)
        assert (await plan_of(sessions)).version == 2


def rejected(allocation_id: str, foundry: str, week: str, quantity: int, version: int = 1) -> Envelope[ReservationRejected]:
    return Envelope.of(
        ReservationRejected(
            foundry_code=foundry,
            product_family="BRAKE_BLOCK_COMPOSITE",
            week=week,
            requested_quantity=quantity,
            free_quantity=0,
            reason="insufficient_capacity",
            order_id="po_1",
            allocation_id=allocation_id,
            plan_version=version,
            rejected_at=NOW,
        )
    )


async def test_a_rejected_reservation_is_planned_elsewhere_and_that_foundry_week_is_never_used_again(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS)
        await receive(sessions, kai_order())
        refused = (await plan_of(sessions)).allocations[0].allocation
        cell = (refused.foundry_code, refused.week)
        async with sessions.begin() as session:
            await handlers.on_reservation_rejected(
                session, rejected(refused.allocation_id, refused.foundry_code, refused.week, refused.quantity)
            )
        plan = await plan_of(sessions)
        assert plan.version == 2 and by_due(plan) == {FIRST_DUE: 1000, SECOND_DUE: 1000}
        assert cell not in {(a.allocation.foundry_code, a.allocation.week) for a in plan.allocations}
        # A replan for another reason, after that member gained capacity, keeps away from the refused week too.
        async with sessions.begin() as session:
            await set_capacity(session, refused.foundry_code, 5000)
            assert (
                await handlers.plan_order(session, "po_1", "test", lost={plan.allocations[0].allocation.allocation_id: 100}) == 3
            )
        assert cell not in {(a.allocation.foundry_code, a.allocation.week) for a in (await plan_of(sessions)).allocations}
        # A rejection of an allocation no longer in force changes nothing.
        async with sessions.begin() as session:
            await handlers.on_reservation_rejected(
                session, rejected(refused.allocation_id, refused.foundry_code, refused.week, refused.quantity)
            )
        assert (await plan_of(sessions)).version == 3


def confirmation(allocation, version: int) -> Envelope[ReservationConfirmed]:  # type: ignore[no-untyped-def]
    return Envelope.of(
        ReservationConfirmed(
            reservation_id=f"res-{zlib.crc32(allocation.allocation_id.encode()):08x}",  # as short as capacity's ids
            foundry_code=allocation.foundry_code,
            product_family=allocation.product_family,
            week=allocation.week,
            quantity=allocation.quantity,
            order_id="po_1",
            allocation_id=allocation.allocation_id,
            plan_version=version,
            due_date=allocation.due_date,
            confirmed_at=NOW,
        )
    )


async def test_the_last_confirmation_accepts_the_order_and_the_buyer_hears_it_once(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS)
        await receive(sessions, kai_order())
        allocations = [a.allocation for a in (await plan_of(sessions)).allocations]
        for n, allocation in enumerate(allocations):
            async with sessions.begin() as session:
                await handlers.on_reservation_confirmed(session, confirmation(allocation, 1))
            assert await status_of(sessions) == ("accepted" if n == len(allocations) - 1 else "planned")
        async with sessions.begin() as session:  # the last one again
            await handlers.on_reservation_confirmed(session, confirmation(allocations[-1], 1))
        assert {a.state for a in (await plan_of(sessions)).allocations} == {"reserved"}
        assert await webhooks_queued(sessions) == ["order.accepted"]


async def test_a_suspended_member_loses_what_it_has_not_made_and_the_units_go_to_others(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS)
        await receive(sessions, kai_order())
        suspended = (await plan_of(sessions)).allocations[0].allocation.foundry_code
        change = FoundryQualityStatusChanged(
            foundry_code=suspended,
            status="suspended",
            previous_status="good",
            pass_rate=0.4,
            overridden=False,
            reason="three failed lots",
            changed_at=NOW,
        )
        async with sessions.begin() as session:
            await projections.on_quality_status_changed(session, Envelope.of(change))
            await handlers.on_quality_status_changed(session, Envelope.of(change))
        plan = await plan_of(sessions)
        assert plan.version == 2 and by_due(plan) == {FIRST_DUE: 1000, SECOND_DUE: 1000}
        assert suspended not in {a.allocation.foundry_code for a in plan.allocations}


async def test_capacity_that_comes_back_cures_an_order_in_review(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS[:2], weekly_units=250)
        await receive(sessions, kai_order(quantity=6000))
        short = await plan_of(sessions)
        assert short.shortfall and await status_of(sessions) == "needs_review"
        assert await webhooks_queued(sessions) == ["order.needs_review"]
        await know_members(sessions, MEMBERS[2:], weekly_units=2000)
        async with sessions.begin() as session:
            await handlers.on_capacity_changed(session, await set_capacity(session, MEMBERS[5], 2000))
        cured = await plan_of(sessions)
        assert cured.version == 2 and not cured.shortfall and not cured.risk
        assert by_due(cured) == {FIRST_DUE: 3000, SECOND_DUE: 3000}
        assert await status_of(sessions) == "planned"
        assert await webhooks_queued(sessions) == ["line.back_on_track", "order.needs_review"]


async def test_a_closed_order_is_left_alone(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS)
        await receive(sessions, kai_order())
        await handlers.cancel(sessions, "po_1", "SPK withdrawn")
        allocation = (await plan_of(sessions)).allocations[0].allocation
        async with sessions.begin() as session:
            await handlers.on_reservation_rejected(
                session, rejected(allocation.allocation_id, allocation.foundry_code, allocation.week, allocation.quantity)
            )
            await handlers.on_lot_failed(session, lot_failed(allocation.allocation_id, allocation.foundry_code, 100))
        assert (await plan_of(sessions)).version == 1 and await status_of(sessions) == "cancelled"
        async with sessions() as session:
            assert await store.refused_cells_of(session, "po_1") == {(allocation.foundry_code, allocation.week)}


async def test_a_line_without_stated_requirements_excludes_members_without_the_items_certificates(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS[:4])
        await know_members(sessions, ["IKM-101"], weekly_units=3000, certified=False)
        await know_members(sessions, ["IKM-102"], weekly_units=3000, certified=False)
        async with sessions.begin() as session:
            await certify(session, "IKM-102", "ISO9001", "TKDN")  # all but the SNI product certificate
        order = kai_order()
        assert order.lines[0].requirements.certificates == ()  # the buyer states nothing
        await receive(sessions, order)
        plan = await plan_of(sessions)
        assert by_due(plan) == {FIRST_DUE: 1000, SECOND_DUE: 1000}
        assert {h.allocation.foundry_code for h in plan.allocations} <= set(MEMBERS[:4])


async def test_a_tmmin_order_for_tooling_is_planned_on_members_that_cast_automotive_parts(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS)  # brake-block presses only
        async with sessions.begin() as session:
            for code, iso in (("IKM-201", True), ("IKM-202", True), ("IKM-203", True), ("IKM-204", False)):
                registered = FoundryRegistered(
                    foundry_code=code,
                    name=f"CV {code}",
                    village="Ceper",
                    product_families=["AUTOMOTIVE_PARTS"],
                    registered_at=NOW,
                )
                await handlers.on_foundry_changed(session, Envelope.of(registered))
                change = CapacityChanged(
                    foundry_code=code, product_family="AUTOMOTIVE_PARTS", change_id=f"std-{code}", reason="declared",
                    standard_weekly_units=40, weeks=[], changed_at=NOW,
                )  # fmt: skip
                await projections.on_capacity_changed(session, Envelope.of(change))
                if iso:
                    await certify(session, code, "ISO9001")
        line = OrderLine(1, "TMMIN-PRT", "Alat bantu ring piston", 120, 2_950_000, (Delivery(FIRST_DUE, 120, "TMMIN-SNT"),))
        await receive(
            sessions, PurchaseOrder("po_1", "TMMIN", "TMMIN/PO/0031", NOW.date(), "IDR", (line,), OrderStatus.RECEIVED, NOW)
        )
        plan = await plan_of(sessions)
        assert not plan.shortfall and by_due(plan) == {FIRST_DUE: 120}
        # At most 35 % of the line each: the three members with ISO 9001, never the one without nor the brake presses.
        assert {h.allocation.foundry_code for h in plan.allocations} == {"IKM-201", "IKM-202", "IKM-203"}
        assert {h.allocation.product_family for h in plan.allocations} == {"AUTOMOTIVE_PARTS"}
        assert await status_of(sessions) == "planned"
