"""Upgrading an orders database whose idempotency keys were stored per buyer keeps every key answering as before."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.orders import handlers, store
from services.orders.app import SPEC
from services.orders.domain import Delivery, OrderLine, OrderStatus, PurchaseOrder
from shared.db import alembic_config, create_engine, migrate, session_factory
from shared.idempotency import KeyReused, fingerprint

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
LINE = OrderLine(1, "BB-COMP-K", "", 1000, 203_700, (Delivery(date(2027, 2, 26), 1000, "BY-YK"),))
BODY = {"buyer_code": "KAI", "po_number": "KAI/PO/1", "lines": [{"line_no": 1, "quantity": 1000}]}


async def submit_again(sessions: async_sessionmaker[AsyncSession], body: dict[str, Any]) -> handlers.Intake:
    return await handlers.receive(
        sessions, idempotency_key="kai-po-1", body=body, buyer_code="KAI", po_number="KAI/PO/1",
        issued_on=NOW.date(), currency="IDR", lines=[LINE],
    )  # fmt: skip


async def test_a_buyers_key_from_before_the_upgrade_replays_its_order_and_refuses_another_body(make_settings):
    engine = create_engine(make_settings().database_url("orders"))
    try:
        await migrate(engine, SPEC.migrations_dir, "0008")
        sessions = session_factory(engine)
        async with sessions.begin() as session:
            # As orders stored it then (before the audit trail existed).
            order = PurchaseOrder("po_1", "KAI", "KAI/PO/1", NOW.date(), "IDR", (LINE,), OrderStatus.PLANNED, NOW)
            await session.execute(
                sa.insert(store.purchase_orders).values(
                    id=order.id, buyer_code=order.buyer_code, po_number=order.po_number, issued_on=order.issued_on,
                    currency=order.currency, status=order.status.value, lines=store._lines_json(order.lines),
                    total_amount=order.total_amount, received_at=order.received_at,
                )
            )  # fmt: skip
            await session.execute(
                sa.text(
                    "INSERT INTO idempotency_keys (buyer_code, key, request_hash, order_id, created_at) "
                    "VALUES ('KAI', 'kai-po-1', :hash, 'po_1', :at)"
                ),
                {"hash": fingerprint(BODY), "at": NOW},
            )

        await migrate(engine, SPEC.migrations_dir)
        async with sessions() as session:
            assert await store.idempotency_keys.recall(session, "purchase-orders:KAI", "kai-po-1", fingerprint(BODY)) == "po_1"
        replayed = await submit_again(sessions, BODY)
        assert replayed.replayed and replayed.order.id == "po_1" and replayed.order.status is OrderStatus.RECEIVED
        with pytest.raises(KeyReused):
            await submit_again(sessions, {**BODY, "po_number": "KAI/PO/2"})
        async with sessions() as session:
            assert (await session.execute(sa.select(sa.func.count()).select_from(store.purchase_orders))).scalar() == 1

        # And back: the key is the buyer's again.
        await migrate_down(engine, "0008")
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT buyer_code, key, order_id FROM idempotency_keys"))).all()
        assert [tuple(r) for r in rows] == [("KAI", "kai-po-1", "po_1")]
    finally:
        await engine.dispose()


async def migrate_down(engine: AsyncEngine, revision: str) -> None:
    config = alembic_config(SPEC.migrations_dir, engine.url.render_as_string(hide_password=False))

    def downgrade(connection: sa.Connection) -> None:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(downgrade)
