"""Orders' use cases (commands from the API) and reactions (events from other services)."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events import Envelope
from shared.http import Conflict, FieldError, Unprocessable
from shared.projections import project_foundry

from . import store
from .domain import OrderLine, OrderRejected, PurchaseOrder, receive_purchase_order


@dataclass(frozen=True)
class Intake:
    order: PurchaseOrder
    replayed: bool  # True when an earlier request with the same Idempotency-Key created it


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


async def receive(
    sessions: async_sessionmaker[AsyncSession],
    *,
    idempotency_key: str,
    body: dict[str, Any],
    buyer_code: str,
    po_number: str,
    issued_on: date,
    currency: str,
    lines: list[OrderLine],
) -> Intake:
    fingerprint = request_hash(body)
    now = datetime.now(timezone.utc)
    try:
        async with sessions.begin() as session:
            earlier = await store.find_idempotency_key(session, buyer_code, idempotency_key)
            if earlier is not None:
                if earlier.request_hash != fingerprint:
                    raise Conflict("this Idempotency-Key was already used with a different request body")
                order = await store.get_order(session, earlier.order_id)
                assert order is not None
                return Intake(order, replayed=True)
            if await store.find_order_by_po(session, buyer_code, po_number) is not None:
                raise Conflict(f"{buyer_code} already sent purchase order {po_number}")
            try:
                order, received = receive_purchase_order(
                    f"po_{uuid.uuid4().hex[:20]}", buyer_code, po_number, issued_on, currency, lines, now.date(), now
                )
            except OrderRejected as exc:
                raise Unprocessable(
                    str(exc), errors=[FieldError(field=f"body.{v.field}", message=v.message) for v in exc.violations]
                ) from exc
            await store.add_order(session, order)
            await store.add_idempotency_key(
                session,
                {"buyer_code": buyer_code, "key": idempotency_key, "request_hash": fingerprint, "order_id": order.id, "created_at": now},
            )
            await store.publish(session, received)
    except sa.exc.IntegrityError as exc:
        # Two identical requests raced: the loser sees the winner's key or PO number.
        raise Conflict("a concurrent request with the same Idempotency-Key or PO number won; retry to get its answer") from exc
    return Intake(order, replayed=False)


async def on_foundry_changed(session: AsyncSession, envelope: Envelope[Any]) -> None:
    await project_foundry(session, store.foundry_projection, envelope)
