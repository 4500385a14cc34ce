"""Projections of the foundry register that orders and quality keep from capacity's events.

Event-carried state: each consumer keeps its own copy, so it works while capacity is down. Rows are built
from event data only (never the local clock), so a replay rebuilds exactly the same table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit
from .db import UtcDateTime
from .events import Envelope
from .events.capacity import FoundryRegistered, FoundryUpdated


def foundry_projection_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "foundry_projection",
        metadata,
        sa.Column("code", sa.String(20), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("village", sa.String(100), nullable=False),
        sa.Column("product_families", sa.JSON, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        # active, suspended or resigned; only active members are planned.
        sa.Column("membership_status", sa.String(20), nullable=False, server_default="active"),
    )


async def project_foundry(session: AsyncSession, table: sa.Table, envelope: Envelope[Any], audit_log: sa.Table) -> None:
    """Applies a foundry event to the projection, recording the change in the service's audit trail."""
    data = envelope.data
    if isinstance(data, FoundryRegistered):
        values = {
            "code": data.foundry_code,
            "name": data.name,
            "village": data.village,
            "product_families": list(data.product_families),
            "revision": 0,
            "updated_at": data.registered_at,
            "membership_status": data.membership_status or "active",
        }
    elif isinstance(data, FoundryUpdated):
        values = {
            "code": data.foundry_code,
            "name": data.name,
            "village": data.village,
            "product_families": list(data.product_families),
            "revision": data.revision,
            "updated_at": data.updated_at,
            "membership_status": data.membership_status or "active",
        }
    else:  # pragma: no cover - wiring error
        raise TypeError(f"not a foundry event: {type(data).__name__}")
    code = str(data.foundry_code)
    current = (await audit.rows_by_key(session, table, table.c.code, [code])).get(code)
    if current is None:
        await session.execute(sa.insert(table).values(**values))
    elif values["revision"] >= current["revision"]:
        # Revisions make the projection correct even if an older update arrives after a newer one.
        await session.execute(sa.update(table).where(table.c.code == code).values(**values))
    else:
        return
    await audit.record_change(session, audit_log, entity_type="foundry_projection", entity_id=code, before=current, after=values)


# A member foundry as a consuming service knows it (one row of its `foundry_projection`), as its API shows it.
class FoundryView(BaseModel):
    code: str
    name: str
    village: str
    product_families: list[str]
    revision: int
    updated_at: datetime
    membership_status: str


async def list_foundries(session: AsyncSession, table: sa.Table) -> list[FoundryView]:
    rows = (await session.execute(sa.select(table).order_by(table.c.code))).mappings().all()
    return [FoundryView.model_validate(dict(row)) for row in rows]
