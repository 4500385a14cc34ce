"""An orders database of either backend, with members and capacity known from capacity's events, for tests that
call orders' handlers and reactions directly (no broker, no HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orders import handlers, projections, store
from services.orders.app import SPEC
from services.orders.domain import Delivery, OrderLine, OrderStatus, PlanInForce, PurchaseOrder, WebhookEndpoint
from shared import clock
from shared.auth import install_verifier
from shared.db import create_engine, dispose_reading_engine, migrate, reading_engine, session_factory
from shared.events import Envelope
from shared.events.capacity import CapacityChanged, FoundryRegistered
from shared.events.orders import PurchaseOrderReceived, ReceivedLine
from shared.events.quality import CertificateGranted
from shared.service import create_service_app
from shared.settings import Settings

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)  # a Tuesday; production starts in 2026-W49
FIRST_DUE = date(2027, 2, 26)
SECOND_DUE = date(2027, 3, 31)
FAMILY = "BRAKE_BLOCK_COMPOSITE"
MEMBERS = [f"IKM-00{n}" for n in range(1, 7)]

Sessions = async_sessionmaker[AsyncSession]


@asynccontextmanager
async def orders_database(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> AsyncIterator[Sessions]:
    """A fresh, migrated orders database on the backend (PostgreSQL: the test session's server)."""
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database()
    else:
        url = f"sqlite+aiosqlite:///{(tmp_path / 'orders.db').as_posix()}"
    engine = create_engine(url)
    try:
        await migrate(engine, SPEC.migrations_dir)
        yield session_factory(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def orders_api(sessions: Sessions, token_mint: Any, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Orders' HTTP API in-process on the test's migrated database, trusting `token_mint`'s tokens; the service
    itself (consumers, relay) is not started."""
    app = create_service_app(SPEC, Settings(env="test", var_dir=tmp_path / "var"), clock.FixedClock(NOW))
    app.state.runtime.sessions = sessions
    engine = sessions.kw["bind"]
    readers = reading_engine(engine)
    app.state.runtime.read_sessions = session_factory(readers)  # GETs read
    install_verifier(app, token_mint.verifier())
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://orders.test") as client:
            yield client
    finally:
        await dispose_reading_engine(readers, engine)
        await app.state.runtime.engine.dispose()


async def know_members(sessions: Sessions, codes: Iterable[str], weekly_units: int = 400, *, certified: bool = True) -> None:
    """Members registered with capacity, each with a standard weekly figure for composite brake blocks and, when
    `certified`, what the cooperative requires of makers of brake blocks (SNI covering them, ISO 9001, TKDN 40 %)."""
    async with sessions.begin() as session:
        for code in codes:
            registered = FoundryRegistered(
                foundry_code=code, name=f"CV {code}", village="Batur", product_families=[FAMILY], registered_at=NOW
            )
            await handlers.on_foundry_changed(session, Envelope.of(registered))
            await set_capacity(session, code, weekly_units)
            if certified:
                await certify(session, code)


async def certify(session: AsyncSession, code: str, *kinds: str) -> None:
    """The member holds certificates of the kinds (default SNI covering the brake blocks, ISO 9001, TKDN 40 %) until 2030."""
    for kind in kinds or ("SNI", "ISO9001", "TKDN"):
        granted = CertificateGranted(
            certificate_id=f"{code}-{kind}", foundry_code=code, kind=kind, number=f"{kind}/{code}", issuer="test",
            valid_from=date(2025, 1, 1), valid_until=date(2030, 12, 31), granted_at=NOW,
            tkdn_percent=40.0 if kind == "TKDN" else None,
            items=["BB-COMP-K", "BB-COMP-LL", "BB-CI"] if kind == "SNI" else [],
        )  # fmt: skip
        await projections.on_certificate_event(session, Envelope.of(granted))


async def set_capacity(session: AsyncSession, code: str, weekly_units: int) -> Envelope[CapacityChanged]:
    changed = Envelope.of(
        CapacityChanged(
            foundry_code=code,
            product_family=FAMILY,
            change_id=f"chg-{code}-{weekly_units}",
            reason="standard",
            standard_weekly_units=weekly_units,
            weeks=[],
            changed_at=NOW,
        )
    )
    await projections.on_capacity_changed(session, changed)
    return changed


def kai_order(order_id: str = "po_1", quantity: int = 2000, status: OrderStatus = OrderStatus.RECEIVED) -> PurchaseOrder:
    half = quantity // 2
    line = OrderLine(
        1,
        "BB-COMP-K",
        "Blok rem komposit tipe K",
        quantity,
        203_700,
        (Delivery(FIRST_DUE, half, "BY-YK"), Delivery(SECOND_DUE, quantity - half, "BY-MRI")),
    )
    return PurchaseOrder(order_id, "KAI", f"KAI/PO/{order_id}", NOW.date(), "IDR", (line,), status, NOW)


async def receive(sessions: Sessions, order: PurchaseOrder, *, webhook: bool = True) -> None:
    """Stores the order (and the buyer's webhook endpoint) and applies orders' reaction to its receipt: the first plan."""
    async with sessions.begin() as session:
        if webhook and await store.webhook_endpoint(session, order.buyer_code) is None:
            endpoint = WebhookEndpoint(order.buyer_code, "https://eproc.kai.example/hooks", "whsec_" + "A" * 32, True, NOW)
            await store.save_webhook_endpoint(session, endpoint)
        await store.add_order(session, order)
        received = PurchaseOrderReceived(
            order_id=order.id,
            buyer_code=order.buyer_code,
            po_number=order.po_number,
            issued_on=order.issued_on,
            lines=[ReceivedLine(line_no=line.line_no, item_code=line.item_code, quantity=line.quantity) for line in order.lines],
            received_at=NOW,
        )
        await handlers.on_purchase_order_received(session, Envelope.of(received))


async def plan_of(sessions: Sessions, order_id: str = "po_1") -> PlanInForce:
    async with sessions() as session:
        plan = await store.plan_in_force(session, order_id)
    assert plan is not None, f"{order_id} has no plan"
    return plan


async def status_of(sessions: Sessions, order_id: str = "po_1") -> str:
    async with sessions() as session:
        order = await store.get_order(session, order_id)
    assert order is not None
    return order.status.value


async def published(sessions: Sessions) -> list[str]:
    """The short names of the events in the outbox, oldest first (e.g. `allocation_planned`)."""
    outbox = store.backbone.outbox
    async with sessions() as session:
        rows = await session.execute(sa.select(outbox.c.event_type).order_by(outbox.c.seq))
    return [name.split(".")[2] for (name,) in rows]


async def webhooks_queued(sessions: Sessions, buyer_code: str = "KAI") -> list[str]:
    """The webhook event types queued for the buyer, sorted."""
    async with sessions() as session:
        rows = await store.webhook_deliveries_of(session, buyer_code, status=None, limit=200)
    return sorted(row.event_type for row in rows)


def by_due(plan: PlanInForce) -> dict[date, int]:
    """Units of the plan per due date, without rejected allocations."""
    out: dict[date, int] = {}
    for held in plan.allocations:
        if held.state != "rejected":
            out[held.allocation.due_date] = out.get(held.allocation.due_date, 0) + held.allocation.quantity
    return out
