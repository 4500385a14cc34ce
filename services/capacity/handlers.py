"""Capacity's use cases (commands from the API) and reactions (events from other services)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events import Envelope
from shared.events.orders import PurchaseOrderReceived
from shared.http import Conflict, FieldError, NotFound, Unprocessable

from . import store
from .domain import DomainError, Foundry, ProductFamily, register_foundry, update_foundry


async def register(
    sessions: async_sessionmaker[AsyncSession], *, code: str, name: str, village: str, product_families: list[ProductFamily]
) -> Foundry:
    async with sessions.begin() as session:
        if await store.get_foundry(session, code) is not None:
            raise Conflict(f"foundry {code} is already registered")
        try:
            foundry, registered = register_foundry(code, name, village, product_families, datetime.now(timezone.utc))
        except DomainError as exc:
            raise Unprocessable(str(exc), errors=[FieldError(field=f"body.{exc.field}", message=exc.message)]) from exc
        await store.add_foundry(session, foundry)
        await store.publish(session, registered)
    return foundry


async def change(sessions: async_sessionmaker[AsyncSession], code: str, **changes: Any) -> Foundry:
    async with sessions.begin() as session:
        foundry = await store.get_foundry(session, code)
        if foundry is None:
            raise NotFound(f"no foundry {code}")
        try:
            changed, updated = update_foundry(foundry, datetime.now(timezone.utc), **changes)
        except DomainError as exc:
            raise Unprocessable(str(exc), errors=[FieldError(field=f"body.{exc.field}", message=exc.message)]) from exc
        if updated is not None:
            await store.save_foundry(session, changed)
            await store.publish(session, updated)
    return changed


async def on_purchase_order_received(session: AsyncSession, envelope: Envelope[PurchaseOrderReceived]) -> None:
    order = envelope.data
    await store.upsert_order_demand(
        session,
        {
            "order_id": order.order_id,
            "buyer_code": order.buyer_code,
            "po_number": order.po_number,
            "total_quantity": sum(line.quantity for line in order.lines),
            "lines": [line.model_dump(mode="json") for line in order.lines],
            "received_at": order.received_at,
        },
    )
