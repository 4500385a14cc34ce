"""Orders' tables and queries."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared import audit
from shared.db import UtcDateTime, backbone_tables, upsert
from shared.events import EventData
from shared.events.orders import PlannedAllocation
from shared.http import NotFound
from shared.idempotency import IdempotencyKeys
from shared.outbox import stage
from shared.projections import foundry_projection_table

from .domain import (
    Allocated,
    Buyer,
    Catalogue,
    Delivery,
    DeliverySite,
    Item,
    Lot,
    OrderLine,
    OrderStatus,
    PlanInForce,
    PurchaseOrder,
    Requirements,
    ShipmentStatus,
    WebhookEndpoint,
    lot_counts_for,
)
from .replanning import MadeAgain, NewPlan

metadata = sa.MetaData()
backbone = backbone_tables(metadata)
foundry_projection = foundry_projection_table(metadata)
# The advisory lock that makes orders' plans take turns (see `lock_order`).
PLANNING_LOCK = zlib.crc32(b"ceper-orders-planning")

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

# The standard weekly figure in force per foundry and family: weeks no capacity event listed follow it.
standard_capacity_projection = sa.Table(
    "standard_capacity_projection",
    metadata,
    sa.Column("foundry_code", sa.String(20), primary_key=True),
    sa.Column("product_family", sa.String(40), primary_key=True),
    sa.Column("weekly_units", sa.Integer, nullable=False),
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

# Quality's item catalogue: each item's highest version published. A migration seeds the items the platform
# starts with, so orders are received before quality's first announcement arrives.
item_projection = sa.Table(
    "item_projection",
    metadata,
    sa.Column("item_code", sa.String(20), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("product_family", sa.String(40), nullable=False),
    sa.Column("unit", sa.String(10), nullable=False),
    sa.Column("min_lot", sa.Integer, nullable=False),
    sa.Column("certificates", sa.JSON, nullable=False),
    sa.Column("min_tkdn_percent", sa.Float, nullable=True),
    sa.Column("retired", sa.Boolean, nullable=False),
    sa.Column("published_at", UtcDateTime, nullable=False),
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

# The buyers orders takes purchase orders from, and where each takes delivery: data the admins keep.
buyers = sa.Table(
    "buyers",
    metadata,
    sa.Column("code", sa.String(20), primary_key=True),
    sa.Column("legal_name", sa.String(200), nullable=False),
    sa.Column("npwp", sa.String(32), nullable=True),  # tax id: never in events, logs or the audit trail
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

delivery_sites = sa.Table(
    "delivery_sites",
    metadata,
    sa.Column("code", sa.String(20), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("buyer_code", sa.String(20), sa.ForeignKey("buyers.code"), nullable=False, index=True),
    sa.Column("city", sa.String(100), nullable=False),
    sa.Column("address", sa.String(300), nullable=True),
    sa.Column("active", sa.Boolean, nullable=False),
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
    sa.Column("status_reason", sa.String(300), nullable=True),  # why it was cancelled or rejected
    sa.UniqueConstraint("buyer_code", "po_number", name="uq_purchase_orders_buyer_po"),
)

# Versions of each order's allocation plan; the newest is the one in force.
plans = sa.Table(
    "plans",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("solver", sa.String(60), nullable=False),  # the solvers whose line plans were kept, joined by +
    sa.Column("shortfall", sa.JSON, nullable=False),  # [{line_no, due_date, week, quantity}]
    sa.Column("reason", sa.String(200), nullable=False),
    # Lines the plan cannot finish in time: [{line_no, shortfall, due_dates, late, expected_completion}]
    sa.Column("risk", sa.JSON, nullable=True),
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
    # The plan in force is read by order and version, so reads cost the same however many versions came before.
    sa.Index("ix_allocations_order_version", "order_id", "plan_version"),
)

# A surat jalan (delivery note): passed units from named lots, on one vehicle, to one of the buyer's sites.
shipments = sa.Table(
    "shipments",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("order_id", sa.String(64), nullable=False, index=True),
    sa.Column("buyer_code", sa.String(20), nullable=False),
    sa.Column("surat_jalan_number", sa.String(100), nullable=False, unique=True),
    sa.Column("site_code", sa.String(20), nullable=False),
    sa.Column("vehicle_plate", sa.String(20), nullable=False),
    sa.Column("driver_name", sa.String(100), nullable=True),
    sa.Column("status", sa.String(20), nullable=False),  # prepared, dispatched, delivered
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("dispatched_at", UtcDateTime, nullable=True),
    sa.Column("bast_number", sa.String(100), nullable=True),  # the buyer's handover record
    sa.Column("signed_by", sa.String(200), nullable=True),
    sa.Column("signed_on", sa.Date, nullable=True),
    sa.Column("delivered_at", UtcDateTime, nullable=True),
)

# What a shipment carries, per lot and per delivery it counts towards; received and rejected from the BAST.
shipment_items = sa.Table(
    "shipment_items",
    metadata,
    sa.Column("shipment_id", sa.String(64), primary_key=True),
    sa.Column("lot_code", sa.String(64), primary_key=True),
    sa.Column("due_date", sa.Date, primary_key=True),
    sa.Column("order_id", sa.String(64), nullable=False, index=True),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("foundry_code", sa.String(20), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("received", sa.Integer, nullable=True),
    sa.Column("rejected", sa.Integer, nullable=True),
    sa.Column("tkdn_percent", sa.Float, nullable=False),  # the maker's TKDN when the units were shipped
)

# Foundry-weeks capacity refused for an order: its plans never go there again, so a refusal cannot recur.
refused_cells = sa.Table(
    "refused_cells",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("foundry_code", sa.String(20), primary_key=True),
    sa.Column("week", sa.String(8), primary_key=True),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("refused_at", UtcDateTime, nullable=False),
)

# A buyer's Idempotency-Key (scope `purchase-orders:<buyer>`) and the order its first request made.
idempotency_keys = IdempotencyKeys(metadata)


# Who changed what, when, from what to what: written in the transaction of each change.
audit_log = audit.audit_table(metadata)

# Where each buyer's procurement system wants to hear about its orders (Standard Webhooks).
buyer_webhooks = sa.Table(
    "buyer_webhooks",
    metadata,
    sa.Column("buyer_code", sa.String(20), primary_key=True),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("secret", sa.String(200), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # The secret before the last rotation: it signs too until it expires, so the buyer can switch verifiers.
    sa.Column("previous_secret", sa.String(200), nullable=True),
    sa.Column("previous_secret_expires_at", UtcDateTime, nullable=True),
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
    sa.Column("last_duration_ms", sa.Integer, nullable=True),  # how long the last attempt took; its answer is not kept
    sa.Column("delivered_at", UtcDateTime, nullable=True),
    # The sender working on the message and until when: each message has one sender at a time across replicas.
    sa.Column("claimed_by", sa.String(100), nullable=True),
    sa.Column("claimed_until", UtcDateTime, nullable=True),
    sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_buyer", "buyer_code", "created_at"),
)


# --- the reads of one order, built once ---------------------------------------------------------------------
# Every read of an order (each GET, each event about it) binds values into these instead of building and keying
# a fresh expression: that was a tenth of a short read's time.

_ORDER = sa.select(purchase_orders).where(purchase_orders.c.id == sa.bindparam("order_id"))
_PLAN_COLUMNS = ("version", "created_at", "solver", "shortfall", "reason", "risk")
_versions = plans.alias("versions")
_ORDER_WITH_PLAN_IN_FORCE = (
    sa.select(purchase_orders, *(plans.c[name].label(f"plan_{name}") for name in _PLAN_COLUMNS))
    .select_from(
        purchase_orders.outerjoin(
            plans,
            sa.and_(
                plans.c.order_id == purchase_orders.c.id,
                plans.c.version
                == sa.select(sa.func.max(_versions.c.version))
                .where(_versions.c.order_id == purchase_orders.c.id)
                .scalar_subquery(),
            ),
        )
    )
    .where(purchase_orders.c.id == sa.bindparam("order_id"))
)
_EVERY_ITEM = sa.select(item_projection).order_by(item_projection.c.item_code)
_ITEMS_NAMED = _EVERY_ITEM.where(item_projection.c.item_code.in_(sa.bindparam("codes", expanding=True)))
_PLAN_IN_FORCE = sa.select(plans).where(plans.c.order_id == sa.bindparam("order_id")).order_by(plans.c.version.desc()).limit(1)
_PLAN_ALLOCATIONS = (
    sa.select(allocations)
    .where(allocations.c.order_id == sa.bindparam("order_id"), allocations.c.plan_version == sa.bindparam("version"))
    .order_by(allocations.c.line_no, allocations.c.week, allocations.c.foundry_code)
)
_ALLOCATION_LINES = (
    sa.select(allocations.c.allocation_id, allocations.c.line_no, allocations.c.due_date, allocations.c.foundry_code)
    .where(
        allocations.c.order_id == sa.bindparam("order_id"),
        allocations.c.allocation_id.in_(sa.bindparam("ids", expanding=True)),
    )
    .distinct()
)
_LOTS_OF_ORDER = sa.select(lot_projection).where(lot_projection.c.order_id == sa.bindparam("order_id"))
_SHIPPED_ITEMS = (
    sa.select(shipment_items, shipments.c.status)
    .join(shipments, shipments.c.id == shipment_items.c.shipment_id)
    .where(shipment_items.c.order_id == sa.bindparam("order_id"))
)


# --- writing the projections (the rules are in projections.py) ----------------------------------------------


async def _save_audited(session: AsyncSession, table: sa.Table, values: dict[str, Any], *, existing_only: bool = False) -> None:
    """Writes a row (inserted or updated; with `existing_only`, only an update of a row there) and audits the
    change under the table's name, as whoever acts now (for a projection: the event being applied)."""
    key = [column == values[column.name] for column in table.primary_key.columns]
    found = (await session.execute(sa.select(table).where(*key))).first()
    if found is None and existing_only:
        return
    before = dict(found._mapping) if found is not None else None
    if found is None:
        await session.execute(sa.insert(table).values(**values))
    else:
        await session.execute(sa.update(table).where(*key).values(**values))
    entity_id = "/".join(str(values[column.name]) for column in table.primary_key.columns)
    await audit.record_change(session, audit_log, entity_type=table.name, entity_id=entity_id, before=before, after=values)


async def set_standard_capacity(session: AsyncSession, values: dict[str, Any]) -> None:
    await _save_audited(session, standard_capacity_projection, values)


async def set_week_capacity(session: AsyncSession, values: dict[str, Any]) -> None:
    await _save_audited(session, capacity_projection, values)


async def reservation(session: AsyncSession, reservation_id: str) -> Any:
    table = reservation_projection
    return (await session.execute(sa.select(table).where(table.c.reservation_id == reservation_id))).first()


async def add_reservation(session: AsyncSession, values: dict[str, Any]) -> None:
    await _save_audited(session, reservation_projection, values)


async def update_reservation(session: AsyncSession, reservation_id: str, values: dict[str, Any]) -> None:
    await _save_audited(session, reservation_projection, {"reservation_id": reservation_id, **values}, existing_only=True)


async def set_certificate(session: AsyncSession, values: dict[str, Any]) -> None:
    await _save_audited(session, certificate_projection, values)


async def end_certificate(session: AsyncSession, certificate_id: str, state: str) -> None:
    """A certificate revoked or expired; a revoked one stays revoked."""
    table = certificate_projection
    found = (await session.execute(sa.select(table.c.state).where(table.c.certificate_id == certificate_id))).scalar()
    if found != "revoked":
        await _save_audited(session, table, {"certificate_id": certificate_id, "state": state}, existing_only=True)


async def set_quality_status(session: AsyncSession, values: dict[str, Any]) -> None:
    await _save_audited(session, quality_status_projection, values)


async def item_version(session: AsyncSession, item_code: str) -> int | None:
    return (await session.execute(sa.select(item_projection.c.version).where(item_projection.c.item_code == item_code))).scalar()


async def set_item(session: AsyncSession, values: dict[str, Any]) -> None:
    await _save_audited(session, item_projection, values)


async def catalogue(session: AsyncSession, codes: Iterable[str] | None = None) -> dict[str, Item]:
    """Every item orders knows, retired ones too (orders that name them keep them), by code; only `codes` if given."""
    if codes is None:
        rows = await session.execute(_EVERY_ITEM)
    else:
        rows = await session.execute(_ITEMS_NAMED, {"codes": sorted(set(codes))})
    return {
        row.item_code: Item(
            code=row.item_code,
            description=row.name,
            product_family=row.product_family,
            min_lot=row.min_lot,
            requirements=Requirements(tuple(row.certificates), row.min_tkdn_percent),
            unit=row.unit,
            version=row.version,
            retired=row.retired,
        )
        for row in rows
    }


async def lot_outcome(session: AsyncSession, lot_code: str) -> str | None:
    return (await session.execute(sa.select(lot_projection.c.outcome).where(lot_projection.c.lot_code == lot_code))).scalar()


async def set_lot(session: AsyncSession, values: dict[str, Any]) -> None:
    await _save_audited(session, lot_projection, values)


# --- reading the projections: free capacity and the members' standing ----------------------------------------


async def listed_capacity(
    session: AsyncSession, product_family: str, first_week: str, last_week: str
) -> list[tuple[str, str, int]]:
    """(foundry, week, capacity) of the weeks capacity events listed for the family."""
    cap = capacity_projection
    rows = await session.execute(
        sa.select(cap.c.foundry_code, cap.c.week, cap.c.capacity).where(
            cap.c.product_family == product_family, cap.c.week >= first_week, cap.c.week <= last_week
        )
    )
    return [(foundry, week, capacity) for foundry, week, capacity in rows]


async def standard_capacity(session: AsyncSession, product_family: str) -> list[tuple[str, int]]:
    """(foundry, weekly units): the standard weekly figure in force for the family."""
    standard = standard_capacity_projection
    rows = await session.execute(
        sa.select(standard.c.foundry_code, standard.c.weekly_units).where(standard.c.product_family == product_family)
    )
    return [(foundry, units) for foundry, units in rows]


async def held_by_week(session: AsyncSession, product_family: str, first_week: str, last_week: str) -> list[tuple[str, str, int]]:
    """(foundry, week, units) held for anyone: capacity's reservations, and allocations of open orders' plans in
    force that capacity has not confirmed yet (a row for each, per foundry-week)."""
    res = reservation_projection
    reserved = await session.execute(
        sa.select(res.c.foundry_code, res.c.week, sa.func.sum(res.c.quantity))
        .where(res.c.product_family == product_family, res.c.week >= first_week, res.c.week <= last_week)
        .group_by(res.c.foundry_code, res.c.week)
    )
    latest = plans_in_force()
    pending = await session.execute(
        sa.select(allocations.c.foundry_code, allocations.c.week, sa.func.sum(allocations.c.quantity))
        .join(latest, sa.and_(latest.c.order_id == allocations.c.order_id, latest.c.version == allocations.c.plan_version))
        .join(purchase_orders, purchase_orders.c.id == allocations.c.order_id)
        .where(
            allocations.c.product_family == product_family,
            allocations.c.week >= first_week,
            allocations.c.week <= last_week,
            allocations.c.state == "planned",
            order_is_open(),
        )
        .group_by(allocations.c.foundry_code, allocations.c.week)
    )
    return [(foundry, week, int(units or 0)) for foundry, week, units in [*reserved, *pending]]


async def members(session: AsyncSession, foundry_code: str | None = None) -> list[Any]:
    """Members as capacity's events told them (or just one), as mappings."""
    query = sa.select(foundry_projection)
    if foundry_code is not None:
        query = query.where(foundry_projection.c.code == foundry_code)
    return list((await session.execute(query)).mappings())


async def valid_certificates(session: AsyncSession, foundry_code: str | None = None) -> list[Any]:
    """Certificates neither revoked nor expired (of every member, or one), as mappings."""
    query = sa.select(certificate_projection).where(certificate_projection.c.state == "valid")
    if foundry_code is not None:
        query = query.where(certificate_projection.c.foundry_code == foundry_code)
    return list((await session.execute(query)).mappings())


async def quality_statuses(session: AsyncSession) -> list[Any]:
    return list((await session.execute(sa.select(quality_status_projection))).mappings())


async def publish(session: AsyncSession, *events: EventData) -> None:
    await stage(session, backbone.outbox, *events)


def _lines_json(lines: tuple[OrderLine, ...]) -> list[dict[str, Any]]:
    return [
        {
            "line_no": line.line_no,
            "item_code": line.item_code,
            "description": line.description,
            "quantity": line.quantity,
            "unit_price": line.unit_price,
            "deliveries": [
                {"due_date": d.due_date.isoformat(), "quantity": d.quantity, "site_code": d.site_code} for d in line.deliveries
            ],
            "requirements": {
                "certificates": list(line.requirements.certificates),
                "min_tkdn_percent": line.requirements.min_tkdn_percent,
            },
            "safety_lead_days": line.safety_lead_days,
        }
        for line in lines
    ]


async def _items_of(session: AsyncSession, row: Any) -> dict[str, Item]:
    """The items one order's lines name: reading one order costs nothing more as the catalogue grows."""
    return await catalogue(session, (line["item_code"] for line in row.lines))


def _to_order(row: Any, catalogue: Catalogue) -> PurchaseOrder:
    """An order with each line's item as the catalogue knows it now."""
    lines = tuple(
        OrderLine(
            line_no=line["line_no"],
            item_code=line["item_code"],
            description=line["description"],
            quantity=line["quantity"],
            unit_price=line["unit_price"],
            deliveries=tuple(
                Delivery(date.fromisoformat(d["due_date"]), d["quantity"], d["site_code"]) for d in line["deliveries"]
            ),
            requirements=Requirements(
                tuple(line.get("requirements", {}).get("certificates", ())), line.get("requirements", {}).get("min_tkdn_percent")
            ),
            safety_lead_days=line.get("safety_lead_days", 0),  # orders received before the lead existed were planned without
            item=catalogue.get(line["item_code"]),
        )
        for line in row.lines
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
        status_reason=row.status_reason,
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
    added = (await audit.rows_by_key(session, purchase_orders, purchase_orders.c.id, [order.id]))[order.id]
    await audit.record_change(session, audit_log, entity_type="purchase_order", entity_id=order.id, before=None, after=added)


async def get_order(session: AsyncSession, order_id: str) -> PurchaseOrder | None:
    row = (await session.execute(_ORDER, {"order_id": order_id})).first()
    return _to_order(row, await _items_of(session, row)) if row else None


async def order_or_404(session: AsyncSession, order_id: str) -> PurchaseOrder:
    order = await get_order(session, order_id)
    if order is None:
        raise NotFound(f"no purchase order {order_id}")
    return order


async def open_orders(session: AsyncSession) -> list[PurchaseOrder]:
    """Every order still moving, by id."""
    rows = (await session.execute(sa.select(purchase_orders).where(order_is_open()).order_by(purchase_orders.c.id))).all()
    items = await catalogue(session)
    return [_to_order(r, items) for r in rows]


async def lock_order(session: AsyncSession, order_id: str) -> PurchaseOrder | None:
    """The order, its row locked until the transaction ends: every read-decide-write on an order's plan,
    confirmations, fulfilment or status starts here, so concurrent consumers and requests take turns per order.
    (PostgreSQL: `SELECT ... FOR UPDATE`; SQLite has one writer at a time and write transactions begin
    IMMEDIATE, so there the read is already inside the write lock.)

    On PostgreSQL the transaction first takes the orders' planning lock (an advisory lock held until it
    ends): a plan counts the capacity other orders' plans hold, so two orders planned side by side (their
    events on different partitions) would each miss the other's uncommitted allocations and plan on the same
    capacity. Taking it before any order's row lock keeps one order of locks, so it cannot deadlock.
    Transactions that only read, or only keep projections, never take it."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PLANNING_LOCK})
    row = (await session.execute(sa.select(purchase_orders).where(purchase_orders.c.id == order_id).with_for_update())).first()
    return _to_order(row, await _items_of(session, row)) if row else None


async def lock_order_or_404(session: AsyncSession, order_id: str) -> PurchaseOrder:
    order = await lock_order(session, order_id)
    if order is None:
        raise NotFound(f"no purchase order {order_id}")
    return order


async def find_order_by_po(session: AsyncSession, buyer_code: str, po_number: str) -> PurchaseOrder | None:
    row = (
        await session.execute(
            sa.select(purchase_orders).where(purchase_orders.c.buyer_code == buyer_code, purchase_orders.c.po_number == po_number)
        )
    ).first()
    return _to_order(row, await _items_of(session, row)) if row else None


async def list_orders(
    session: AsyncSession, *, buyer_code: str | None, status: str | None, limit: int, offset: int, po_number: str | None = None
) -> tuple[list[PurchaseOrder], int]:
    conditions = []
    if buyer_code:
        conditions.append(purchase_orders.c.buyer_code == buyer_code)
    if po_number:
        conditions.append(purchase_orders.c.po_number == po_number)
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
    items = await catalogue(session)
    return [_to_order(r, items) for r in rows], total


async def set_status(session: AsyncSession, order_id: str, status: OrderStatus, reason: str | None = None) -> None:
    values: dict[str, Any] = {"status": status.value}
    if reason is not None:
        values["status_reason"] = reason
    before = (await audit.rows_by_key(session, purchase_orders, purchase_orders.c.id, [order_id])).get(order_id)
    await session.execute(sa.update(purchase_orders).where(purchase_orders.c.id == order_id).values(**values))
    await audit.record_change(session, audit_log, entity_type="purchase_order", entity_id=order_id, before=before, after=values)


@dataclass(frozen=True)
class PlanRow:
    """A plan version's own columns, as a page of the order shows them."""

    version: int
    created_at: datetime
    solver: str
    shortfall: list[dict[str, Any]]
    reason: str
    risk: list[dict[str, Any]] | None


async def order_with_plan(session: AsyncSession, order_id: str) -> tuple[PurchaseOrder, PlanRow | None, list[Any]]:
    """An order, its plan in force and that plan's allocations: one read fewer than the order, then the plan."""
    row = (await session.execute(_ORDER_WITH_PLAN_IN_FORCE, {"order_id": order_id})).first()
    if row is None:
        raise NotFound(f"no purchase order {order_id}")
    order = _to_order(row, await _items_of(session, row))
    if row.plan_version is None:
        return order, None, []
    plan = PlanRow(**{name: row._mapping[f"plan_{name}"] for name in _PLAN_COLUMNS})
    rows = (await session.execute(_PLAN_ALLOCATIONS, {"order_id": order_id, "version": plan.version})).all()
    return order, plan, list(rows)


async def current_plan(session: AsyncSession, order_id: str) -> tuple[Any, list[Any]]:
    plan = (await session.execute(_PLAN_IN_FORCE, {"order_id": order_id})).first()
    if plan is None:
        return None, []
    rows = (await session.execute(_PLAN_ALLOCATIONS, {"order_id": order_id, "version": plan.version})).all()
    return plan, list(rows)


async def plan_in_force(session: AsyncSession, order_id: str) -> PlanInForce | None:
    plan, rows = await current_plan(session, order_id)
    if plan is None:
        return None
    return PlanInForce(
        version=plan.version,
        allocations=tuple(
            Allocated(PlannedAllocation(**{f: getattr(row, f) for f in PlannedAllocation.model_fields}), row.state)
            for row in rows
        ),
        risk=tuple(plan.risk or ()),
        shortfall=tuple(plan.shortfall or ()),
    )


async def add_plan(session: AsyncSession, order_id: str, plan: NewPlan) -> None:
    values = {
        "order_id": order_id,
        "version": plan.version,
        "created_at": plan.created_at,
        "solver": plan.solver,
        "shortfall": plan.shortfall,
        "reason": plan.reason,
        "risk": plan.risk,
    }
    rows = [
        {**a.allocation.model_dump(), "order_id": order_id, "plan_version": plan.version, "state": a.state}
        for a in plan.allocations
    ]
    await session.execute(sa.insert(plans).values(**values))
    if rows:
        await session.execute(sa.insert(allocations), rows)
    await audit.record_change(
        session,
        audit_log,
        entity_type="plan",
        entity_id=f"{order_id}/v{plan.version}",
        before=None,
        after={**values, "allocations": rows},
    )


async def reserve_allocation(session: AsyncSession, allocation_id: str, plan_version: int) -> None:
    values = {"allocation_id": allocation_id, "plan_version": plan_version, "state": "reserved"}
    await _save_audited(session, allocations, values, existing_only=True)


async def plan_versions(session: AsyncSession, order_id: str) -> list[tuple[Any, dict[str, int]]]:
    """Every plan version of an order, oldest first, with the units each member was given in it."""
    versions = (await session.execute(sa.select(plans).where(plans.c.order_id == order_id).order_by(plans.c.version))).all()
    per_member = await session.execute(
        sa.select(allocations.c.plan_version, allocations.c.foundry_code, sa.func.sum(allocations.c.quantity))
        .where(allocations.c.order_id == order_id)
        .group_by(allocations.c.plan_version, allocations.c.foundry_code)
    )
    members: dict[int, dict[str, int]] = {}
    for version, foundry_code, quantity in per_member:
        members.setdefault(version, {})[foundry_code] = int(quantity)
    return [(v, members.get(v.version, {})) for v in versions]


async def allocation_lines(
    session: AsyncSession, order_id: str, allocation_ids: Sequence[str]
) -> dict[str, tuple[int, date, str]]:
    """allocation id → (line, due date, foundry) of the named allocations, in whichever plan version of the order."""
    if not allocation_ids:
        return {}
    rows = await session.execute(_ALLOCATION_LINES, {"order_id": order_id, "ids": sorted(set(allocation_ids))})
    return {r.allocation_id: (r.line_no, r.due_date, r.foundry_code) for r in rows}


async def lots_of_order(session: AsyncSession, order: PurchaseOrder, decided: Sequence[Lot] = ()) -> list[dict[str, Any]]:
    """The order's lots with the line and delivery each serves (see `lot_counts_for`). `decided`: lots an event
    being handled reports, which count as it says whether or not the lot projection has seen that event yet."""
    rows = (await session.execute(_LOTS_OF_ORDER, {"order_id": order.id})).mappings().all()
    lots = {row["lot_code"]: dict(row) for row in rows}
    for lot in decided:
        lots[lot.lot_code] = {**lots.get(lot.lot_code, {}), **asdict(lot), "order_id": order.id}
    # Only the allocations the lots name: an order's history of plan versions costs its reads nothing.
    by_allocation = await allocation_lines(
        session, order.id, [row["allocation_id"] for row in lots.values() if row.get("allocation_id")]
    )
    out = []
    for row in lots.values():
        lot = Lot(row["lot_code"], row["foundry_code"], row["item_code"], row["quantity"], row["allocation_id"], row["outcome"])
        serves = lot_counts_for(order, lot, by_allocation)
        if serves is not None:
            out.append({**row, "line_no": serves[0], "due_date": serves[1]})
    return out


async def units_to_make_again(session: AsyncSession, order: PurchaseOrder, failed: Sequence[Lot] = ()) -> MadeAgain:
    """Units of failed lots (those of the lot projection and `failed`) and units refused at handover, which must
    be made again: per (line, due date) and per (line, foundry that made them)."""
    by_delivery: dict[tuple[int, date], int] = {}
    by_maker: dict[tuple[int, str], int] = {}

    def count(line_no: int, due: date, foundry: str, units: int) -> None:
        by_delivery[(line_no, due)] = by_delivery.get((line_no, due), 0) + units
        by_maker[(line_no, foundry)] = by_maker.get((line_no, foundry), 0) + units

    for lot in await lots_of_order(session, order, failed):
        if lot["outcome"] == "failed":
            count(lot["line_no"], lot["due_date"], lot["foundry_code"], lot["quantity"])
    refused = await session.execute(
        sa.select(
            shipment_items.c.line_no,
            shipment_items.c.due_date,
            shipment_items.c.foundry_code,
            sa.func.sum(shipment_items.c.rejected),
        )
        .where(shipment_items.c.order_id == order.id, shipment_items.c.rejected > 0)
        .group_by(shipment_items.c.line_no, shipment_items.c.due_date, shipment_items.c.foundry_code)
    )
    for line_no, due, foundry, units in refused:
        count(line_no, due, foundry, int(units))
    return MadeAgain(by_delivery, by_maker)


def plans_in_force() -> Any:
    """A subquery (order_id, version) of each order's newest plan version: the one in force."""
    return sa.select(plans.c.order_id, sa.func.max(plans.c.version).label("version")).group_by(plans.c.order_id).subquery()


def order_is_open() -> Any:
    """The condition on `purchase_orders` for orders still moving: not cancelled, rejected or fulfilled."""
    return purchase_orders.c.status.notin_([status.value for status in OrderStatus if status.closed])


async def orders_with_allocations_at(session: AsyncSession, foundry_code: str) -> list[str]:
    """Open orders whose plan in force has allocations at a foundry, by id (the order their rows are locked in)."""
    latest = plans_in_force()
    rows = await session.execute(
        sa.select(allocations.c.order_id)
        .join(latest, sa.and_(latest.c.order_id == allocations.c.order_id, latest.c.version == allocations.c.plan_version))
        .join(purchase_orders, purchase_orders.c.id == allocations.c.order_id)
        .where(allocations.c.foundry_code == foundry_code, allocations.c.state != "rejected", order_is_open())
        .distinct()
        .order_by(allocations.c.order_id)
    )
    return [order_id for (order_id,) in rows]


async def current_allocations_at(session: AsyncSession, foundry_code: str, order_id: str) -> list[PlannedAllocation]:
    """An order's allocations at a foundry in its plan in force, but those capacity rejected."""
    latest = plans_in_force()
    rows = await session.execute(
        sa.select(*(allocations.c[f] for f in PlannedAllocation.model_fields))
        .join(latest, sa.and_(latest.c.order_id == allocations.c.order_id, latest.c.version == allocations.c.plan_version))
        .where(allocations.c.order_id == order_id, allocations.c.foundry_code == foundry_code, allocations.c.state != "rejected")
        .order_by(allocations.c.week)
    )
    return [PlannedAllocation(**row._mapping) for row in rows]


async def produced_for(session: AsyncSession, allocation_ids: list[str]) -> dict[str, int]:
    """Units of lots made for each allocation, whatever their test result."""
    if not allocation_ids:
        return {}
    rows = await session.execute(
        sa.select(lot_projection.c.allocation_id, sa.func.sum(lot_projection.c.quantity))
        .where(lot_projection.c.allocation_id.in_(allocation_ids))
        .group_by(lot_projection.c.allocation_id)
    )
    return {a: int(q) for a, q in rows}


async def short_orders(session: AsyncSession) -> list[tuple[PurchaseOrder, list[dict[str, Any]]]]:
    """Open orders whose plan in force leaves units unplanned, by id, with that plan's shortfall entries."""
    latest = plans_in_force()
    rows = await session.execute(
        sa.select(purchase_orders, plans.c.shortfall.label("plan_shortfall"))
        .join(latest, latest.c.order_id == purchase_orders.c.id)
        .join(plans, sa.and_(plans.c.order_id == latest.c.order_id, plans.c.version == latest.c.version))
        .where(order_is_open())
        .order_by(purchase_orders.c.id)
    )
    items = await catalogue(session)
    return [(_to_order(row, items), list(row.plan_shortfall)) for row in rows if row.plan_shortfall]


async def has_shipments(session: AsyncSession, order_id: str) -> bool:
    return (await session.execute(sa.select(shipments.c.id).where(shipments.c.order_id == order_id).limit(1))).first() is not None


async def get_shipment(session: AsyncSession, shipment_id: str) -> tuple[Any, list[Any]]:
    """The shipment and its items; 404 when there is none."""
    shipment = (await session.execute(sa.select(shipments).where(shipments.c.id == shipment_id))).first()
    if shipment is None:
        raise NotFound(f"no shipment {shipment_id}")
    items = (
        await session.execute(
            sa.select(shipment_items)
            .where(shipment_items.c.shipment_id == shipment_id)
            .order_by(shipment_items.c.line_no, shipment_items.c.lot_code, shipment_items.c.due_date)
        )
    ).all()
    return shipment, list(items)


async def shipments_of_order(session: AsyncSession, order_id: str) -> list[tuple[Any, list[Any]]]:
    rows = (
        await session.execute(
            sa.select(shipments).where(shipments.c.order_id == order_id).order_by(shipments.c.created_at, shipments.c.id)
        )
    ).all()
    items = (
        await session.execute(
            sa.select(shipment_items)
            .where(shipment_items.c.order_id == order_id)
            .order_by(shipment_items.c.line_no, shipment_items.c.lot_code, shipment_items.c.due_date)
        )
    ).all()
    by_shipment: dict[str, list[Any]] = {}
    for item in items:
        by_shipment.setdefault(item.shipment_id, []).append(item)
    return [(row, by_shipment.get(row.id, [])) for row in rows]


async def order_items_with_status(session: AsyncSession, order_id: str) -> list[Any]:
    """Every shipment item of the order with its shipment's status."""
    return list((await session.execute(_SHIPPED_ITEMS, {"order_id": order_id})).all())


async def count_orders_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(sa.select(purchase_orders.c.status, sa.func.count()).group_by(purchase_orders.c.status))
    return {status: int(n) for status, n in rows}


async def open_order_risks(session: AsyncSession) -> list[dict[str, Any]]:
    """The late lines ({line_no, shortfall, ...}) of the plans in force of open orders."""
    latest = plans_in_force()
    rows = await session.execute(
        sa.select(plans.c.risk)
        .join(latest, sa.and_(latest.c.order_id == plans.c.order_id, latest.c.version == plans.c.version))
        .join(purchase_orders, purchase_orders.c.id == plans.c.order_id)
        .where(order_is_open())
    )
    return [entry for (risk,) in rows for entry in (risk or [])]


async def refuse_cell(session: AsyncSession, order_id: str, foundry_code: str, week: str, reason: str, at: Any) -> None:
    await upsert(
        session,
        refused_cells,
        {"order_id": order_id, "foundry_code": foundry_code, "week": week, "reason": reason[:200], "refused_at": at},
    )


async def refused_cells_of(session: AsyncSession, order_id: str) -> set[tuple[str, str]]:
    rows = await session.execute(
        sa.select(refused_cells.c.foundry_code, refused_cells.c.week).where(refused_cells.c.order_id == order_id)
    )
    return {(foundry, week) for foundry, week in rows}


# --- shipments and handover -----------------------------------------------------------------------------


async def shipment_with_surat_jalan(session: AsyncSession, surat_jalan_number: str) -> str | None:
    """The id of the shipment that used a surat jalan number, if any."""
    return (await session.execute(sa.select(shipments.c.id).where(shipments.c.surat_jalan_number == surat_jalan_number))).scalar()


async def add_shipment(session: AsyncSession, shipment: dict[str, Any], items: list[dict[str, Any]]) -> None:
    await session.execute(sa.insert(shipments).values(**shipment))
    await session.execute(sa.insert(shipment_items), [{"shipment_id": shipment["id"], **item} for item in items])
    await audit.record_change(
        session, audit_log, entity_type="shipment", entity_id=shipment["id"], before=None, after={**shipment, "items": items}
    )


async def order_id_of_shipment(session: AsyncSession, shipment_id: str) -> str:
    """The order a shipment is for; 404 when there is no such shipment."""
    order_id = (await session.execute(sa.select(shipments.c.order_id).where(shipments.c.id == shipment_id))).scalar()
    if order_id is None:
        raise NotFound(f"no shipment {shipment_id}")
    return str(order_id)


async def mark_dispatched(session: AsyncSession, shipment_id: str, at: datetime) -> None:
    await _change_shipment(session, shipment_id, {"status": ShipmentStatus.DISPATCHED.value, "dispatched_at": at})


async def _change_shipment(session: AsyncSession, shipment_id: str, values: dict[str, Any]) -> None:
    before = (await audit.rows_by_key(session, shipments, shipments.c.id, [shipment_id])).get(shipment_id)
    await session.execute(sa.update(shipments).where(shipments.c.id == shipment_id).values(**values))
    await audit.record_change(session, audit_log, entity_type="shipment", entity_id=shipment_id, before=before, after=values)


async def record_received(
    session: AsyncSession, shipment_id: str, lot_code: str, due_date: date, received: int, rejected: int
) -> None:
    """The BAST's figures for the units of a lot on a shipment that count towards one delivery."""
    values = {"shipment_id": shipment_id, "lot_code": lot_code, "due_date": due_date, "received": received, "rejected": rejected}
    await _save_audited(session, shipment_items, values, existing_only=True)


async def mark_delivered(
    session: AsyncSession, shipment_id: str, *, bast_number: str, signed_by: str, signed_on: date, at: datetime
) -> None:
    await _change_shipment(
        session,
        shipment_id,
        {
            "status": ShipmentStatus.DELIVERED.value,
            "bast_number": bast_number,
            "signed_by": signed_by,
            "signed_on": signed_on,
            "delivered_at": at,
        },
    )


# --- buyers and their delivery sites --------------------------------------------------------------------------


def _to_buyer(row: Any) -> Buyer:
    return Buyer(code=row.code, legal_name=row.legal_name, active=row.active, npwp=row.npwp)


def _to_site(row: Any) -> DeliverySite:
    return DeliverySite(
        code=row.code, name=row.name, buyer_code=row.buyer_code, city=row.city, address=row.address, active=row.active
    )


async def known_buyers(session: AsyncSession) -> dict[str, Buyer]:
    """Every buyer, active or not, by code in code order."""
    return {row.code: _to_buyer(row) for row in await session.execute(sa.select(buyers).order_by(buyers.c.code))}


async def known_sites(session: AsyncSession, buyer_code: str | None = None) -> dict[str, DeliverySite]:
    """Every delivery site (of one buyer, when named), active or not, by code in code order."""
    query = sa.select(delivery_sites).order_by(delivery_sites.c.code)
    if buyer_code is not None:
        query = query.where(delivery_sites.c.buyer_code == buyer_code)
    return {row.code: _to_site(row) for row in await session.execute(query)}


async def buyer(session: AsyncSession, code: str, *, for_update: bool = False) -> Buyer | None:
    query = sa.select(buyers).where(buyers.c.code == code)
    row = (await session.execute(query.with_for_update() if for_update else query)).first()
    return _to_buyer(row) if row is not None else None


async def site(session: AsyncSession, code: str, *, for_update: bool = False) -> DeliverySite | None:
    query = sa.select(delivery_sites).where(delivery_sites.c.code == code)
    row = (await session.execute(query.with_for_update() if for_update else query)).first()
    return _to_site(row) if row is not None else None


async def save_buyer(session: AsyncSession, new: Buyer, before: Buyer | None, at: datetime) -> None:
    """Adds (`before` None) or changes a buyer; the audit trail says whether an NPWP is on file, never the number."""
    values = {**asdict(new), "updated_at": at}
    if before is None:
        await session.execute(sa.insert(buyers).values(**values))
    else:
        await session.execute(sa.update(buyers).where(buyers.c.code == new.code).values(**values))
    await audit.record_change(
        session,
        audit_log,
        entity_type="buyer",
        entity_id=new.code,
        before=before.public() if before else None,
        after=new.public(),
    )


async def save_site(session: AsyncSession, new: DeliverySite, before: DeliverySite | None, at: datetime) -> None:
    """Adds (`before` None) or changes a delivery site, audited."""
    values = {**asdict(new), "updated_at": at}
    if before is None:
        await session.execute(sa.insert(delivery_sites).values(**values))
    else:
        await session.execute(sa.update(delivery_sites).where(delivery_sites.c.code == new.code).values(**values))
    await audit.record_change(
        session, audit_log, entity_type="delivery_site", entity_id=new.code, before=asdict(before) if before else None,
        after=asdict(new),
    )  # fmt: skip


# --- buyers' webhook endpoints and delivery log (the dispatcher's queue is further down) --------------------


async def webhook_endpoint(session: AsyncSession, buyer_code: str, *, for_update: bool = False) -> WebhookEndpoint | None:
    query = sa.select(buyer_webhooks).where(buyer_webhooks.c.buyer_code == buyer_code)
    row = (await session.execute(query.with_for_update() if for_update else query)).first()
    return WebhookEndpoint(**row._mapping) if row is not None else None


async def save_webhook_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    await upsert(session, buyer_webhooks, asdict(endpoint))


async def webhook_delivery(session: AsyncSession, message_id: str) -> Any:
    return (await session.execute(sa.select(webhook_deliveries).where(webhook_deliveries.c.id == message_id))).one()


async def webhook_deliveries_of(session: AsyncSession, buyer_code: str, *, status: str | None, limit: int) -> list[Any]:
    """A buyer's delivery log, newest first."""
    query = sa.select(webhook_deliveries).where(webhook_deliveries.c.buyer_code == buyer_code)
    if status:
        query = query.where(webhook_deliveries.c.status == status)
    query = query.order_by(webhook_deliveries.c.created_at.desc(), webhook_deliveries.c.id).limit(limit)
    return list((await session.execute(query)).all())


# --- business figures: what the managers' dashboard shows, recomputed by the periodic job ---------------


async def open_order_lines(session: AsyncSession) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(order id, buyer, lines as stored) of every open order."""
    rows = await session.execute(
        sa.select(purchase_orders.c.id, purchase_orders.c.buyer_code, purchase_orders.c.lines).where(order_is_open())
    )
    return [(order_id, buyer_code, lines) for order_id, buyer_code, lines in rows]


async def received_units_of_open_orders(session: AsyncSession) -> dict[tuple[str, int], int]:
    """(order id, line) → units the buyer received at handover, for open orders."""
    rows = await session.execute(
        sa.select(
            shipment_items.c.order_id, shipment_items.c.line_no, sa.func.sum(sa.func.coalesce(shipment_items.c.received, 0))
        )
        .join(purchase_orders, purchase_orders.c.id == shipment_items.c.order_id)
        .where(order_is_open())
        .group_by(shipment_items.c.order_id, shipment_items.c.line_no)
    )
    return {(order_id, line_no): int(units) for order_id, line_no, units in rows}


async def allocated_units_of_open_orders(session: AsyncSession) -> dict[str, int]:
    """Allocation state (planned, reserved, rejected) → units, in the plans in force of open orders."""
    latest = plans_in_force()
    rows = await session.execute(
        sa.select(allocations.c.state, sa.func.sum(allocations.c.quantity))
        .join(latest, sa.and_(latest.c.order_id == allocations.c.order_id, latest.c.version == allocations.c.plan_version))
        .join(purchase_orders, purchase_orders.c.id == allocations.c.order_id)
        .where(order_is_open())
        .group_by(allocations.c.state)
    )
    return {state: int(units) for state, units in rows}


async def lot_units_of_open_orders(session: AsyncSession) -> dict[str, int]:
    """Lot outcome (registered, passed, failed) → units, of lots made for open orders."""
    rows = await session.execute(
        sa.select(lot_projection.c.outcome, sa.func.sum(lot_projection.c.quantity))
        .join(purchase_orders, purchase_orders.c.id == lot_projection.c.order_id)
        .where(order_is_open())
        .group_by(lot_projection.c.outcome)
    )
    return {outcome: int(units) for outcome, units in rows}


async def shipped_units_of_open_orders(session: AsyncSession) -> dict[str, tuple[int, int, int]]:
    """Shipment status → (units on the shipments, received, refused at handover), for open orders."""
    rows = await session.execute(
        sa.select(
            shipments.c.status,
            sa.func.sum(shipment_items.c.quantity),
            sa.func.sum(sa.func.coalesce(shipment_items.c.received, 0)),
            sa.func.sum(sa.func.coalesce(shipment_items.c.rejected, 0)),
        )
        .join(shipments, shipments.c.id == shipment_items.c.shipment_id)
        .join(purchase_orders, purchase_orders.c.id == shipment_items.c.order_id)
        .where(order_is_open())
        .group_by(shipments.c.status)
    )
    return {status: (int(units), int(received), int(rejected)) for status, units, received, rejected in rows}


async def handovers_since(session: AsyncSession, since: date) -> list[tuple[str, date, date, int]]:
    """(buyer, due date, day of the handover, units received) of the units handed over since a day."""
    rows = await session.execute(
        sa.select(
            shipments.c.buyer_code, shipment_items.c.due_date, shipments.c.signed_on, sa.func.sum(shipment_items.c.received)
        )
        .join(shipments, shipments.c.id == shipment_items.c.shipment_id)
        .where(shipments.c.signed_on >= since, shipment_items.c.received > 0)
        .group_by(shipments.c.buyer_code, shipment_items.c.due_date, shipments.c.signed_on)
    )
    return [(buyer_code, due_date, signed_on, int(units)) for buyer_code, due_date, signed_on, units in rows]


async def buyers_with_orders(session: AsyncSession) -> set[str]:
    return set((await session.execute(sa.select(purchase_orders.c.buyer_code).distinct())).scalars())


# --- the webhook queue: each due message claimed by one sender, whatever the number of replicas -----------


async def webhook_endpoint_enabled(session: AsyncSession, buyer_code: str) -> bool:
    enabled = (
        await session.execute(sa.select(buyer_webhooks.c.enabled).where(buyer_webhooks.c.buyer_code == buyer_code))
    ).scalar()
    return bool(enabled)


async def queue_webhook(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(sa.insert(webhook_deliveries).values(**values))


def _unclaimed(now: Any) -> Any:
    return sa.or_(webhook_deliveries.c.claimed_until.is_(None), webhook_deliveries.c.claimed_until < now)


async def claim_due_webhooks(session: AsyncSession, *, owner: str, now: Any, until: Any, limit: int) -> list[Any]:
    """Claims up to `limit` due messages for `owner` until `until`, oldest first, with their endpoints.

    Messages another sender holds are skipped: rows locked by a concurrent claim (`FOR UPDATE SKIP LOCKED` on
    PostgreSQL; SQLite's write lock serialises claims) and rows whose claim has not expired. A sender that died
    mid-send leaves its claim to expire, and the message is sent again by another.
    """
    deliveries = webhook_deliveries
    due = (
        sa.select(deliveries.c.id)
        .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now, _unclaimed(now))
        .order_by(deliveries.c.created_at, deliveries.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list((await session.execute(due)).scalars())
    if not ids:
        return []
    claimed = (
        await session.execute(
            sa.update(deliveries)
            .where(deliveries.c.id.in_(ids), _unclaimed(now))
            .values(claimed_by=owner, claimed_until=until)
            .returning(deliveries.c.id)
        )
    ).scalars()
    claimed_ids = list(claimed)
    if not claimed_ids:
        return []
    rows = await session.execute(
        sa.select(
            deliveries,
            buyer_webhooks.c.url,
            buyer_webhooks.c.secret,
            buyer_webhooks.c.enabled,
            buyer_webhooks.c.previous_secret,
            buyer_webhooks.c.previous_secret_expires_at,
        )
        .join(buyer_webhooks, buyer_webhooks.c.buyer_code == deliveries.c.buyer_code)
        .where(deliveries.c.id.in_(claimed_ids))
        .order_by(deliveries.c.created_at, deliveries.c.id)
    )
    return list(rows)


async def record_webhook_attempt(session: AsyncSession, message_id: str, owner: str, values: dict[str, Any]) -> bool:
    """Records an attempt's outcome and gives the claim back; False if `owner` no longer held the message."""
    result = await session.execute(
        sa.update(webhook_deliveries)
        .where(webhook_deliveries.c.id == message_id, webhook_deliveries.c.claimed_by == owner)
        .values(**values, claimed_by=None, claimed_until=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]  # an UPDATE's result has a rowcount


async def release_webhook_claims(session: AsyncSession, owner: str) -> None:
    """Gives back what `owner` claimed and did not attempt (a sender stopping), so another sends it now."""
    await session.execute(
        sa.update(webhook_deliveries)
        .where(webhook_deliveries.c.claimed_by == owner, webhook_deliveries.c.status == "pending")
        .values(claimed_by=None, claimed_until=None)
    )
