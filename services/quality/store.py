"""Quality's tables and queries."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import backbone_tables
from shared.events import EventData
from shared.outbox import stage
from shared.projections import foundry_projection_table

metadata = sa.MetaData()
backbone = backbone_tables(metadata)
foundry_projection = foundry_projection_table(metadata)


async def publish(session: AsyncSession, *events: EventData) -> None:
    await stage(session, backbone.outbox, *events)
