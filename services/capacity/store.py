"""Capacity's tables and queries."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import UtcDateTime, backbone_tables
from shared.events import EventData
from shared.outbox import stage

from .domain import Foundry, ProductFamily

metadata = sa.MetaData()
backbone = backbone_tables(metadata)

foundries = sa.Table(
    "foundries",
    metadata,
    sa.Column("code", sa.String(20), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("village", sa.String(100), nullable=False),
    sa.Column("product_families", sa.JSON, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("registered_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# Projection of orders' purchase orders: the demand capacity will be asked to reserve for.
order_demand = sa.Table(
    "order_demand",
    metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("buyer_code", sa.String(20), nullable=False),
    sa.Column("po_number", sa.String(100), nullable=False),
    sa.Column("total_quantity", sa.Integer, nullable=False),
    sa.Column("lines", sa.JSON, nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
)


async def publish(session: AsyncSession, *events: EventData) -> None:
    await stage(session, backbone.outbox, *events)


def _to_foundry(row: Any) -> Foundry:
    return Foundry(
        code=row.code,
        name=row.name,
        village=row.village,
        product_families=tuple(ProductFamily(f) for f in row.product_families),
        revision=row.revision,
        registered_at=row.registered_at,
        updated_at=row.updated_at,
    )


def _values(foundry: Foundry) -> dict[str, Any]:
    return {
        "code": foundry.code,
        "name": foundry.name,
        "village": foundry.village,
        "product_families": [f.value for f in foundry.product_families],
        "revision": foundry.revision,
        "registered_at": foundry.registered_at,
        "updated_at": foundry.updated_at,
    }


async def get_foundry(session: AsyncSession, code: str) -> Foundry | None:
    row = (await session.execute(sa.select(foundries).where(foundries.c.code == code))).first()
    return _to_foundry(row) if row else None


async def add_foundry(session: AsyncSession, foundry: Foundry) -> None:
    await session.execute(sa.insert(foundries).values(**_values(foundry)))


async def save_foundry(session: AsyncSession, foundry: Foundry) -> None:
    await session.execute(sa.update(foundries).where(foundries.c.code == foundry.code).values(**_values(foundry)))


async def list_foundries(
    session: AsyncSession, *, village: str | None, product_family: str | None, limit: int, offset: int
) -> tuple[list[Foundry], int]:
    query = sa.select(foundries)
    if village:
        query = query.where(foundries.c.village == village)
    rows = [_to_foundry(r) for r in (await session.execute(query.order_by(foundries.c.code))).all()]
    # Families live in a JSON list; filtered here so the query stays portable across SQLite and PostgreSQL.
    if product_family:
        rows = [f for f in rows if product_family in f.product_families]
    return rows[offset : offset + limit], len(rows)


async def upsert_order_demand(session: AsyncSession, values: dict[str, Any]) -> None:
    exists = (await session.execute(sa.select(order_demand.c.order_id).where(order_demand.c.order_id == values["order_id"]))).first()
    if exists:
        await session.execute(sa.update(order_demand).where(order_demand.c.order_id == values["order_id"]).values(**values))
    else:
        await session.execute(sa.insert(order_demand).values(**values))


async def list_order_demand(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (await session.execute(sa.select(order_demand).order_by(order_demand.c.received_at, order_demand.c.order_id))).mappings()
    return [dict(r) for r in rows]
