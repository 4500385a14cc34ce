"""Orders' tables and queries."""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import UtcDateTime, backbone_tables
from shared.events import EventData
from shared.outbox import stage
from shared.projections import foundry_projection_table

from .domain import Delivery, OrderLine, OrderStatus, PurchaseOrder, Requirements

metadata = sa.MetaData()
backbone = backbone_tables(metadata)
foundry_projection = foundry_projection_table(metadata)

# --- projections of capacity's and quality's events: what the planner plans from ------------------------

capacity_projection = sa.Table(
    "capacity_projection",
    metadata,
    sa.Column("foundry_code", sa.String(20), primary_key=True),
    sa.Column("product_family", sa.String(40), primary_key=True),
    sa.Column("week", sa.String(8), primary_key=True),
    sa.Column("capacity", sa.Integer, nullable=False),
    sa.Column("changed_at", UtcDateTime, nullable=False),
)

# Every reservation capacity made, whoever it is for: what is left free is capacity minus these.
reservation_projection = sa.Table(
    "reservation_projection",
    metadata,
    sa.Column("reservation_id", sa.String(64), primary_key=True),
    sa.Column("foundry_code", sa.String(20), nullable=False),
    sa.Column("product_family", sa.String(40), nullable=False),
    sa.Column("week", sa.String(8), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("order_id", sa.String(64), nullable=True),
    sa.Column("allocation_id", sa.String(64), nullable=True),
    sa.Column("plan_version", sa.Integer, nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_reservation_projection_week", "product_family", "week"),
    sa.Index("ix_reservation_projection_order", "order_id"),
)

certificate_projection = sa.Table(
    "certificate_projection",
    metadata,
    sa.Column("certificate_id", sa.String(64), primary_key=True),
    sa.Column("foundry_code", sa.String(20), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("valid_from", sa.Date, nullable=False),
    sa.Column("valid_until", sa.Date, nullable=False),
    sa.Column("tkdn_percent", sa.Float, nullable=True),
    sa.Column("items", sa.JSON, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # valid, revoked or expired
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

quality_status_projection = sa.Table(
    "quality_status_projection",
    metadata,
    sa.Column("foundry_code", sa.String(20), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("pass_rate", sa.Float, nullable=False),
    sa.Column("changed_at", UtcDateTime, nullable=False),
)

lot_projection = sa.Table(
    "lot_projection",
    metadata,
    sa.Column("lot_code", sa.String(64), primary_key=True),
    sa.Column("foundry_code", sa.String(20), nullable=False),
    sa.Column("item_code", sa.String(20), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("order_id", sa.String(64), nullable=True, index=True),
    sa.Column("allocation_id", sa.String(64), nullable=True),
    sa.Column("outcome", sa.String(20), nullable=False),  # registered, passed or failed
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

purchase_orders = sa.Table(
    "purchase_orders",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("buyer_code", sa.String(20), nullable=False),
    sa.Column("po_number", sa.String(100), nullable=False),
    sa.Column("issued_on", sa.Date, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("lines", sa.JSON, nullable=False),
    sa.Column("total_amount", sa.BigInteger, nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("buyer_code", "po_number", name="uq_purchase_orders_buyer_po"),
)

# Versions of each order's allocation plan; the newest is the one in force.
plans = sa.Table(
    "plans",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("solver", sa.String(30), nullable=False),
    sa.Column("shortfall", sa.JSON, nullable=False),  # [{line_no, due_date, week, quantity}]
    sa.Column("reason", sa.String(200), nullable=False),
)

allocations = sa.Table(
    "allocations",
    metadata,
    # An allocation kept by a replan appears again, unchanged, in the next version.
    sa.Column("allocation_id", sa.String(120), primary_key=True),
    sa.Column("plan_version", sa.Integer, primary_key=True),
    sa.Column("order_id", sa.String(64), nullable=False, index=True),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("item_code", sa.String(20), nullable=False),
    sa.Column("product_family", sa.String(40), nullable=False),
    sa.Column("foundry_code", sa.String(20), nullable=False),
    sa.Column("week", sa.String(8), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # planned, reserved, rejected
)

# A buyer's Idempotency-Key and the request it was first used with: a retry gets the same answer.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("buyer_code", sa.String(20), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("order_id", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)


# Where each buyer's procurement system wants to hear about its orders (Standard Webhooks).
buyer_webhooks = sa.Table(
    "buyer_webhooks",
    metadata,
    sa.Column("buyer_code", sa.String(20), primary_key=True),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("secret", sa.String(200), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# The persistent queue and delivery log of webhook messages: written in the transaction that caused them.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("buyer_code", sa.String(20), nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("next_attempt_at", UtcDateTime, nullable=True),
    sa.Column("last_attempt_at", UtcDateTime, nullable=True),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.String(500), nullable=True),
    sa.Column("delivered_at", UtcDateTime, nullable=True),
    sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_buyer", "buyer_code", "created_at"),
)


async def publish(session: AsyncSession, *events: EventData) -> None:
    await stage(session, backbone.outbox, *events)


def _lines_json(lines: tuple[OrderLine, ...]) -> list[dict[str, Any]]:
    return [
        {
            "line_no": l.line_no,
            "item_code": l.item_code,
            "description": l.description,
            "quantity": l.quantity,
            "unit_price": l.unit_price,
            "deliveries": [
                {"due_date": d.due_date.isoformat(), "quantity": d.quantity, "site_code": d.site_code} for d in l.deliveries
            ],
            "requirements": {
                "certificates": list(l.requirements.certificates),
                "min_tkdn_percent": l.requirements.min_tkdn_percent,
            },
        }
        for l in lines
    ]


def _to_order(row: Any) -> PurchaseOrder:
    lines = tuple(
        OrderLine(
            line_no=l["line_no"],
            item_code=l["item_code"],
            description=l["description"],
            quantity=l["quantity"],
            unit_price=l["unit_price"],
            deliveries=tuple(
                Delivery(date.fromisoformat(d["due_date"]), d["quantity"], d["site_code"]) for d in l["deliveries"]
            ),
            requirements=Requirements(
                tuple(l.get("requirements", {}).get("certificates", ())), l.get("requirements", {}).get("min_tkdn_percent")
            ),
        )
        for l in row.lines
    )
    return PurchaseOrder(
        id=row.id,
        buyer_code=row.buyer_code,
        po_number=row.po_number,
        issued_on=row.issued_on,
        currency=row.currency,
        lines=lines,
        status=OrderStatus(row.status),
        received_at=row.received_at,
    )


async def add_order(session: AsyncSession, order: PurchaseOrder) -> None:
    await session.execute(
        sa.insert(purchase_orders).values(
            id=order.id,
            buyer_code=order.buyer_code,
            po_number=order.po_number,
            issued_on=order.issued_on,
            currency=order.currency,
            status=order.status.value,
            lines=_lines_json(order.lines),
            total_amount=order.total_amount,
            received_at=order.received_at,
        )
    )


async def get_order(session: AsyncSession, order_id: str) -> PurchaseOrder | None:
    row = (await session.execute(sa.select(purchase_orders).where(purchase_orders.c.id == order_id))).first()
    return _to_order(row) if row else None


async def find_order_by_po(session: AsyncSession, buyer_code: str, po_number: str) -> PurchaseOrder | None:
    row = (
        await session.execute(
            sa.select(purchase_orders).where(
                purchase_orders.c.buyer_code == buyer_code, purchase_orders.c.po_number == po_number
            )
        )
    ).first()
    return _to_order(row) if row else None


async def list_orders(
    session: AsyncSession, *, buyer_code: str | None, status: str | None, limit: int, offset: int
) -> tuple[list[PurchaseOrder], int]:
    conditions = []
    if buyer_code:
        conditions.append(purchase_orders.c.buyer_code == buyer_code)
    if status:
        conditions.append(purchase_orders.c.status == status)
    total = (await session.execute(sa.select(sa.func.count()).select_from(purchase_orders).where(*conditions))).scalar_one()
    rows = (
        await session.execute(
            sa.select(purchase_orders)
            .where(*conditions)
            .order_by(purchase_orders.c.received_at.desc(), purchase_orders.c.id)
            .limit(limit)
            .offset(offset)
        )
    ).all()
    return [_to_order(r) for r in rows], total


async def find_idempotency_key(session: AsyncSession, buyer_code: str, key: str) -> Any:
    return (
        await session.execute(
            sa.select(idempotency_keys).where(idempotency_keys.c.buyer_code == buyer_code, idempotency_keys.c.key == key)
        )
    ).first()


async def add_idempotency_key(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(sa.insert(idempotency_keys).values(**values))


async def set_status(session: AsyncSession, order_id: str, status: OrderStatus) -> None:
    await session.execute(sa.update(purchase_orders).where(purchase_orders.c.id == order_id).values(status=status.value))


async def current_plan(session: AsyncSession, order_id: str) -> tuple[Any, list[Any]]:
    plan = (
        await session.execute(sa.select(plans).where(plans.c.order_id == order_id).order_by(plans.c.version.desc()).limit(1))
    ).first()
    if plan is None:
        return None, []
    rows = (
        await session.execute(
            sa.select(allocations)
            .where(allocations.c.order_id == order_id, allocations.c.plan_version == plan.version)
            .order_by(allocations.c.line_no, allocations.c.week, allocations.c.foundry_code)
        )
    ).all()
    return plan, list(rows)
