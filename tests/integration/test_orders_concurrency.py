"""Decisions on one order are taken one at a time, on both databases: consumers and requests that act on the
same order at once, each in its own transaction, leave it as if they had come one after the other.

The known failure this guards against: confirmations for different foundries arrive on different partitions,
two consumers apply them at once, each reads the other's allocation as unconfirmed, and neither accepts the
order: it stays `planned` for good with every allocation reserved.
"""

from __future__ import annotations

import asyncio
import zlib

import pytest
import sqlalchemy as sa

from services.orders import handlers, store
from shared import clock
from shared.clock import FixedClock
from shared.events import Envelope
from shared.events.capacity import ReservationConfirmed
from shared.http import Conflict, Unprocessable
from shared.idempotency import Command, KeyReused
from tests.integration.orders_support import (
    FIRST_DUE,
    MEMBERS,
    NOW,
    Sessions,
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

ORDERS = 4  # orders confirmed at once; each has an allocation per member or more


@pytest.fixture(autouse=True)
def fixed_clock() -> FixedClock:
    at = FixedClock(NOW)
    clock.use(at)  # this test's task only
    return at


def confirmation(order_id: str, allocation) -> Envelope[ReservationConfirmed]:  # type: ignore[no-untyped-def]
    return Envelope.of(
        ReservationConfirmed(
            reservation_id=f"res-{zlib.crc32(allocation.allocation_id.encode()):08x}",  # as short as capacity's ids
            foundry_code=allocation.foundry_code,
            product_family=allocation.product_family,
            week=allocation.week,
            quantity=allocation.quantity,
            order_id=order_id,
            allocation_id=allocation.allocation_id,
            plan_version=1,
            due_date=allocation.due_date,
            confirmed_at=NOW,
        )
    )


async def apply_alone(sessions: Sessions, envelope: Envelope[ReservationConfirmed]) -> None:
    """As a consumer of the partition the confirmation came on: its own transaction."""
    async with sessions.begin() as session:
        await handlers.on_reservation_confirmed(session, envelope)


async def test_confirmations_applied_at_once_accept_the_order_once(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS)
        order_ids = [f"po_{n}" for n in range(ORDERS)]
        confirmations = []
        for order_id in order_ids:
            await receive(sessions, kai_order(order_id))
            allocations = [a.allocation for a in (await plan_of(sessions, order_id)).allocations]
            assert len(allocations) >= 2
            confirmations += [confirmation(order_id, a) for a in allocations]
        await asyncio.gather(*(apply_alone(sessions, envelope) for envelope in confirmations))
        for order_id in order_ids:
            assert {a.state for a in (await plan_of(sessions, order_id)).allocations} == {"reserved"}
            assert await status_of(sessions, order_id) == "accepted", f"{order_id} stuck with every allocation reserved"
        assert await webhooks_queued(sessions) == ["order.accepted"] * ORDERS


async def planned_with_a_passed_lot(sessions: Sessions) -> str:
    """po_1 planned, and a passed lot of 500 units for an allocation of its first delivery (to BY-YK)."""
    await know_members(sessions, MEMBERS)
    await receive(sessions, kai_order())
    allocation = next(a.allocation for a in (await plan_of(sessions)).allocations if a.allocation.due_date == FIRST_DUE)
    async with sessions.begin() as session:
        await store.set_lot(
            session,
            {
                "lot_code": "IKM-LOT-1",
                "foundry_code": allocation.foundry_code,
                "item_code": "BB-COMP-K",
                "quantity": 500,
                "order_id": "po_1",
                "allocation_id": allocation.allocation_id,
                "outcome": "passed",
                "updated_at": NOW,
            },
        )
    return "IKM-LOT-1"


async def ship(sessions: Sessions, number: str, lot_code: str) -> str:
    return await handlers.create_shipment(
        sessions, "po_1", surat_jalan_number=number, site_code="BY-YK", vehicle_plate="AD 8123 KT", driver_name=None,
        items=[(lot_code, 500)],
    )  # fmt: skip


async def test_two_shipments_of_the_same_units_at_once_ship_them_once(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        lot_code = await planned_with_a_passed_lot(sessions)
        outcomes = await asyncio.gather(*(ship(sessions, f"SJ/{n}", lot_code) for n in (1, 2)), return_exceptions=True)
        assert sorted(type(o).__name__ for o in outcomes) == ["Unprocessable", "str"], outcomes
        refused = next(o for o in outcomes if isinstance(o, Unprocessable))
        assert "has 0 passed units not yet shipped" in str(refused)
        async with sessions() as session:
            assert [len(items) for _, items in await store.shipments_of_order(session, "po_1")] == [1]


async def test_two_handovers_of_one_shipment_at_once_count_once(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        lot_code = await planned_with_a_passed_lot(sessions)
        shipment_id = await ship(sessions, "SJ/1", lot_code)
        await handlers.dispatch_shipment(sessions, shipment_id)

        async def hand_over(bast: str) -> None:
            await handlers.record_handover(
                sessions, shipment_id, bast_number=bast, signed_by="Kepala Balai Yasa", signed_on=NOW.date(),
                items=[(lot_code, 500, 0)],
            )  # fmt: skip

        outcomes = await asyncio.gather(hand_over("BAST/1"), hand_over("BAST/2"), return_exceptions=True)
        assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "NoneType"], outcomes
        assert "was already handed over" in str(next(o for o in outcomes if isinstance(o, Conflict)))
        assert (await published(sessions)).count("shipment_delivered") == 1
        assert await webhooks_queued(sessions) == ["shipment.delivered", "shipment.dispatched"]


async def test_two_replans_requested_at_once_make_one_new_version(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS[:2], weekly_units=250)
        await receive(sessions, kai_order(quantity=6000))
        assert await status_of(sessions) == "needs_review"
        await know_members(sessions, MEMBERS[2:], weekly_units=2000)
        versions = await asyncio.gather(*(handlers.replan(sessions, "po_1", f"members added capacity ({n})") for n in (1, 2)))
        assert sorted(versions, key=str) == [2, None]  # the second found the first's plan covering everything
        assert await status_of(sessions) == "planned"
        async with sessions() as session:
            count = (await session.execute(sa.select(sa.func.count()).select_from(store.plans))).scalar_one()
        assert count == 2


async def test_a_confirmation_and_a_cancellation_at_once_leave_the_order_cancelled(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS)
        await receive(sessions, kai_order())
        allocations = [a.allocation for a in (await plan_of(sessions)).allocations]
        async with sessions.begin() as session:  # all but the last confirmed
            for allocation in allocations[:-1]:
                await handlers.on_reservation_confirmed(session, confirmation("po_1", allocation))
        await asyncio.gather(
            apply_alone(sessions, confirmation("po_1", allocations[-1])), handlers.cancel(sessions, "po_1", "SPK withdrawn")
        )
        # Whichever came first, a cancelled order is never accepted after it, nor told it was.
        assert await status_of(sessions) == "cancelled"
        assert await webhooks_queued(sessions) in ([], ["order.accepted"])


async def test_a_reaction_and_a_request_replanning_the_same_order_at_once_make_one_new_version(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS[:2], weekly_units=250)
        await receive(sessions, kai_order(quantity=6000))
        await know_members(sessions, MEMBERS[2:], weekly_units=2000)

        async def capacity_reaction() -> None:
            async with sessions.begin() as session:
                await handlers.on_capacity_changed(session, await set_capacity(session, MEMBERS[-1], 2000))

        await asyncio.gather(capacity_reaction(), handlers.replan(sessions, "po_1", "members added capacity"))
        assert (await plan_of(sessions)).version == 2 and await status_of(sessions) == "planned"


# --- the staff's commands sent twice with one Idempotency-Key (a double click, a retry) act once ---------------------


async def test_a_replan_sent_twice_at_once_with_one_key_makes_one_version_and_both_get_its_answer(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS[:2], weekly_units=250)
        await receive(sessions, kai_order(quantity=6000))
        await know_members(sessions, MEMBERS[2:], weekly_units=2000)
        commands = [Command.of("replan:po_1", "click-1", {"reason": "members added capacity"}) for _ in range(2)]
        versions = await asyncio.gather(*(handlers.replan(sessions, "po_1", "members added capacity", c) for c in commands))
        assert versions == [2, 2] and sorted(c.replayed for c in commands if c) == [False, True]
        with pytest.raises(KeyReused):  # the key of one replan cannot be used for another reason
            await handlers.replan(sessions, "po_1", "another reason", Command.of("replan:po_1", "click-1", {"reason": "x"}))
        again = Command.of("replan:po_1", "click-2", {"reason": "members added capacity"})
        assert await handlers.replan(sessions, "po_1", "members added capacity", again) is None  # a new key acts anew
        assert again is not None and not again.replayed


async def test_a_rejection_dispatch_and_handover_sent_twice_with_one_key_act_once(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        lot_code = await planned_with_a_passed_lot(sessions)
        shipment = Command.of("shipments:po_1", "sj-1", {"n": 1})
        first = await handlers.create_shipment(
            sessions, "po_1", surat_jalan_number="SJ/1", site_code="BY-YK", vehicle_plate="AD 8123 KT", driver_name=None,
            items=[(lot_code, 500)], command=shipment,
        )  # fmt: skip
        shipment_again = Command.of("shipments:po_1", "sj-1", {"n": 1})
        second = await handlers.create_shipment(
            sessions, "po_1", surat_jalan_number="SJ/1", site_code="BY-YK", vehicle_plate="AD 8123 KT", driver_name=None,
            items=[(lot_code, 500)], command=shipment_again,
        )  # fmt: skip
        assert first == second and shipment_again is not None and shipment_again.replayed
        for _ in range(2):
            await handlers.dispatch_shipment(sessions, first, Command.of(f"dispatch:{first}", "go-1", {}))
        for _ in range(2):
            await handlers.record_handover(
                sessions, first, bast_number="BAST/1", signed_by="Kepala Balai Yasa", signed_on=NOW.date(),
                items=[(lot_code, 500, 0)], command=Command.of(f"handover:{first}", "bast-1", {"bast": 1}),
            )  # fmt: skip
        events = await published(sessions)
        assert events.count("shipment_dispatched") == 1 and events.count("shipment_delivered") == 1
        assert await webhooks_queued(sessions) == ["shipment.delivered", "shipment.dispatched"]


async def test_a_rejection_sent_twice_with_one_key_rejects_once_and_a_refused_one_keeps_no_key(request, backend, tmp_path):
    async with orders_database(request, backend, tmp_path) as sessions:
        await know_members(sessions, MEMBERS)
        await receive(sessions, kai_order())
        for _ in range(2):
            order = await handlers.reject(sessions, "po_1", "prices changed", Command.of("reject:po_1", "no-1", {"reason": "p"}))
            assert order.status.value == "rejected"
        assert (await published(sessions)).count("purchase_order_cancelled") == 1
        assert await webhooks_queued(sessions) == ["order.rejected"]
        with pytest.raises(Conflict):  # a new key on a closed order is refused, and nothing of it is kept
            await handlers.reject(sessions, "po_1", "prices changed", Command.of("reject:po_1", "no-2", {"reason": "p"}))
        async with sessions() as session:
            keys = (await session.execute(sa.select(store.idempotency_keys.table.c.key))).scalars().all()
        assert sorted(keys) == ["no-1"]
