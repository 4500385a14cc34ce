"""The figures a manager asks for, recomputed from orders' database on both backends: the open order value in
rupiah per buyer, units of open orders by stage, and the on-time delivery rate per buyer."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from prometheus_client import REGISTRY

from services.orders import metrics, store
from services.orders.app import SPEC
from services.orders.domain import Delivery, OrderLine, OrderStatus, PurchaseOrder
from shared.db import create_engine, migrate, session_factory

TODAY = date(2027, 3, 1)
NOW = datetime(2027, 3, 1, 3, 0, tzinfo=UTC)
DUE = date(2027, 2, 20)


def order(order_id: str, buyer: str, status: OrderStatus, *lines: tuple[int, int, int]) -> PurchaseOrder:
    """lines: (line number, quantity, unit price)"""
    return PurchaseOrder(
        order_id, buyer, f"{buyer}/PO/{order_id}", TODAY - timedelta(days=60), "IDR",
        tuple(OrderLine(no, "BB-COMP-K", "", quantity, price, (Delivery(DUE, quantity, "BY-YK"),)) for no, quantity, price in lines),
        status, NOW - timedelta(days=60),
    )  # fmt: skip


def allocation(order_id: str, version: int, foundry: str, quantity: int, state: str) -> dict[str, object]:
    return {
        "allocation_id": f"{order_id}:{foundry}", "plan_version": version, "order_id": order_id, "line_no": 1,
        "item_code": "BB-COMP-K", "product_family": "BRAKE_BLOCK_COMPOSITE", "foundry_code": foundry, "week": "2027-W07",
        "quantity": quantity, "due_date": DUE, "state": state,
    }  # fmt: skip


def lot(code: str, order_id: str, quantity: int, outcome: str) -> dict[str, object]:
    return {
        "lot_code": code, "foundry_code": "IKM-001", "item_code": "BB-COMP-K", "quantity": quantity, "order_id": order_id,
        "allocation_id": None, "outcome": outcome, "updated_at": NOW,
    }  # fmt: skip


def shipment(shipment_id: str, order_id: str, buyer: str, status: str, signed_on: date | None) -> dict[str, object]:
    return {
        "id": shipment_id, "order_id": order_id, "buyer_code": buyer, "surat_jalan_number": f"SJ/{shipment_id}",
        "site_code": "BY-YK", "vehicle_plate": "AD 1234 XY", "driver_name": None, "status": status, "created_at": NOW,
        "dispatched_at": NOW if status != "prepared" else None, "bast_number": f"BAST/{shipment_id}" if signed_on else None,
        "signed_by": "Pak Budi" if signed_on else None, "signed_on": signed_on, "delivered_at": NOW if signed_on else None,
    }  # fmt: skip


def item(
    shipment_id: str, order_id: str, line_no: int, quantity: int, received: int | None = None, rejected: int | None = None
) -> dict[str, object]:
    return {
        "shipment_id": shipment_id, "lot_code": f"LOT-{shipment_id}", "due_date": DUE, "order_id": order_id,
        "line_no": line_no, "foundry_code": "IKM-001", "quantity": quantity, "received": received, "rejected": rejected,
        "tkdn_percent": 40.0,
    }  # fmt: skip


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_open_value_units_by_stage_and_on_time_delivery_come_from_the_database(make_settings) -> None:
    engine = create_engine(make_settings().database_url("orders"))
    try:
        await migrate(engine, SPEC.migrations_dir)
        sessions = session_factory(engine)
        async with sessions.begin() as session:
            # KAI: one order in progress (two lines), one fulfilled; INKA: only a cancelled order.
            await store.add_order(session, order("po_open", "KAI", OrderStatus.ACCEPTED, (1, 1000, 203_700), (2, 100, 50_000)))
            await store.add_order(session, order("po_done", "KAI", OrderStatus.FULFILLED, (1, 500, 203_700)))
            await store.add_order(session, order("po_gone", "INKA", OrderStatus.CANCELLED, (1, 300, 150_000)))
            for version in (1, 2):
                await session.execute(
                    sa.insert(store.plans).values(
                        order_id="po_open", version=version, created_at=NOW, solver="level", shortfall=[], reason="t", risk=[]
                    )
                )
            await session.execute(
                sa.insert(store.allocations),
                [allocation("po_open", 1, "IKM-009", 1000, "planned"),  # superseded by version 2
                 allocation("po_open", 2, "IKM-001", 600, "reserved"), allocation("po_open", 2, "IKM-002", 300, "planned"),
                 allocation("po_open", 2, "IKM-003", 100, "rejected"), allocation("po_done", 1, "IKM-001", 500, "reserved")],
            )  # fmt: skip
            await session.execute(
                sa.insert(store.lot_projection),
                [lot("L1", "po_open", 40, "registered"), lot("L2", "po_open", 200, "passed"), lot("L3", "po_open", 30, "failed"),
                 lot("L4", "po_done", 500, "passed")],
            )  # fmt: skip
            await session.execute(
                sa.insert(store.shipments),
                [shipment("S1", "po_open", "KAI", "prepared", None), shipment("S2", "po_open", "KAI", "dispatched", None),
                 shipment("S3", "po_open", "KAI", "delivered", DUE - timedelta(days=1)),  # on time
                 shipment("S4", "po_done", "KAI", "delivered", DUE + timedelta(days=5)),  # late
                 shipment("S5", "po_done", "KAI", "delivered", TODAY - timedelta(days=120))],  # before the window
            )  # fmt: skip
            await session.execute(
                sa.insert(store.shipment_items),
                [item("S1", "po_open", 1, 20), item("S2", "po_open", 1, 50), item("S3", "po_open", 1, 100, 90, 10),
                 item("S4", "po_done", 1, 410, 410, 0), item("S5", "po_done", 1, 90, 90, 0)],
            )  # fmt: skip

        async with sessions() as session:
            await metrics.refresh_business(session, TODAY)

        # Still to receive: line 1 has 910 of 1000 units outstanding, line 2 all 100; closed orders count nothing.
        assert sample("ceper_orders_open_value_rupiah", buyer="KAI") == 910 * 203_700 + 100 * 50_000
        assert sample("ceper_orders_open_value_rupiah", buyer="INKA") == 0
        units = {stage: sample("ceper_orders_units", stage=stage) for stage in metrics.STAGES}
        assert units == {
            "ordered": 1100, "planned": 900, "reserved": 600, "produced": 270, "passed": 200, "failed": 30,
            "loading": 20, "shipped": 150, "delivered": 90, "rejected": 10,
        }  # fmt: skip
        # Of the 500 units KAI received in the last 90 days, 90 came by their due date.
        assert sample("ceper_orders_on_time_delivery_ratio", buyer="KAI") == 90 / 500
        assert sample("ceper_orders_on_time_delivery_ratio", buyer="INKA") is None  # nothing received: no rate

        async with sessions.begin() as session:
            await store.set_status(session, "po_open", OrderStatus.CANCELLED)
        async with sessions() as session:
            await metrics.refresh_business(session, TODAY)
        assert sample("ceper_orders_open_value_rupiah", buyer="KAI") == 0
        assert sample("ceper_orders_units", stage="ordered") == 0
    finally:
        await engine.dispose()
