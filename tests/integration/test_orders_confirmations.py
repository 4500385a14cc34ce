"""Capacity's confirmations against orders' plan versions, on the real databases: a confirmation counts while
the plan in force holds the allocation as it was confirmed, whichever version it named."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from services.orders import handlers, store
from services.orders.app import SPEC
from services.orders.domain import Delivery, OrderLine, OrderStatus, PurchaseOrder
from shared.db import create_engine, migrate, session_factory
from shared.events import Envelope
from shared.events.capacity import ReservationConfirmed

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
DUE = date(2027, 2, 26)


def allocation(aid: str, foundry: str, quantity: int, version: int, state: str = "planned") -> dict[str, object]:
    return {
        "allocation_id": aid, "plan_version": version, "order_id": "po_1", "line_no": 1, "item_code": "BB-COMP-K",
        "product_family": "BRAKE_BLOCK_COMPOSITE", "foundry_code": foundry, "week": "2027-W05", "quantity": quantity,
        "due_date": DUE, "state": state,
    }  # fmt: skip


def confirmed(aid: str, foundry: str, quantity: int, version: int) -> Envelope[ReservationConfirmed]:
    return Envelope.of(
        ReservationConfirmed(
            reservation_id=f"res-{aid}",
            foundry_code=foundry,
            product_family="BRAKE_BLOCK_COMPOSITE",
            week="2027-W05",
            quantity=quantity,
            order_id="po_1",
            allocation_id=aid,
            plan_version=version,
            due_date=DUE,
            confirmed_at=NOW,
        )
    )


async def test_a_confirmation_naming_an_earlier_version_counts_for_an_allocation_kept_unchanged(make_settings):
    engine = create_engine(make_settings().database_url("orders"))
    try:
        await migrate(engine, SPEC.migrations_dir)
        sessions = session_factory(engine)
        line = OrderLine(1, "BB-COMP-K", "", 1000, 203_700, (Delivery(DUE, 1000, "BY-YK"),))
        async with sessions.begin() as session:
            await store.add_order(
                session, PurchaseOrder("po_1", "KAI", "KAI/PO/1", NOW.date(), "IDR", (line,), OrderStatus.PLANNED, NOW)
            )
            for version in (1, 2):
                await session.execute(
                    sa.insert(store.plans).values(
                        order_id="po_1",
                        version=version,
                        created_at=NOW + timedelta(minutes=version),
                        solver="level",
                        shortfall=[],
                        reason="test",
                        risk=[],
                    )
                )
            # Version 2 kept A as it was, shrank B from 400 to 300 (a lot failed elsewhere, say) and added C.
            await session.execute(
                sa.insert(store.allocations),
                [allocation("A", "IKM-001", 300, 1), allocation("B", "IKM-002", 400, 1),
                 allocation("A", "IKM-001", 300, 2), allocation("B", "IKM-002", 300, 2), allocation("C", "IKM-003", 400, 2)],
            )  # fmt: skip

        async def states() -> dict[str, str]:
            async with sessions() as session:
                _, rows = await store.current_plan(session, "po_1")
                return {r.allocation_id: r.state for r in rows}

        async def status() -> str:
            async with sessions() as session:
                order = await store.get_order(session, "po_1")
                assert order is not None
                return order.status.value

        async with sessions.begin() as session:
            await handlers.on_reservation_confirmed(session, confirmed("A", "IKM-001", 300, 1))  # kept unchanged: counts
            await handlers.on_reservation_confirmed(
                session, confirmed("B", "IKM-002", 400, 1)
            )  # changed since: capacity reserves it again
            await handlers.on_reservation_confirmed(session, confirmed("C", "IKM-003", 400, 3))  # a version orders never made
        assert await states() == {"A": "reserved", "B": "planned", "C": "planned"}
        assert await status() == "planned"

        async with sessions.begin() as session:
            await handlers.on_reservation_confirmed(session, confirmed("B", "IKM-002", 300, 2))
            await handlers.on_reservation_confirmed(session, confirmed("C", "IKM-003", 400, 2))
        assert await states() == {"A": "reserved", "B": "reserved", "C": "reserved"}
        assert await status() == "accepted"
    finally:
        await engine.dispose()
