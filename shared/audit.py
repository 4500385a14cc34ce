"""The audit trail every service keeps in its own database: who changed what, when, from what to what.

`audit_table(metadata)` adds the table to a service's metadata (its migrations create it); `record()` writes
one row in the caller's transaction, so a change and its audit row commit or roll back together. Callers
pass public views of the entity: secrets and their hashes never enter the trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .db import BigId, UtcDateTime
from .outbox import current_trace_id


@dataclass(frozen=True)
class Actor:
    """Who made a change: a token's subject and role, or an operator at the command line."""

    subject: str
    role: str | None = None


def audit_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "audit_log",
        metadata,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("actor_subject", sa.String(200), nullable=False),
        sa.Column("actor_role", sa.String(40), nullable=True),
        sa.Column("action", sa.String(80), nullable=False),
        sa.Column("entity_type", sa.String(80), nullable=False),
        sa.Column("entity_id", sa.String(200), nullable=False),
        sa.Column("before", sa.JSON, nullable=True),
        sa.Column("after", sa.JSON, nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Index("ix_audit_log_entity", "entity_type", "entity_id", "id"),
    )


async def record(
    session: AsyncSession,
    table: sa.Table,
    *,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    at: datetime,
) -> None:
    await session.execute(
        sa.insert(table).values(
            at=at,
            actor_subject=actor.subject,
            actor_role=actor.role,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            before=before,
            after=after,
            request_id=current_trace_id.get(),
        )
    )


async def entries(
    session: AsyncSession, table: sa.Table, *, entity_type: str | None = None, entity_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest entries first, optionally for one entity type or one entity."""
    query = sa.select(table).order_by(table.c.id.desc()).limit(limit)
    if entity_type is not None:
        query = query.where(table.c.entity_type == entity_type)
    if entity_id is not None:
        query = query.where(table.c.entity_id == entity_id)
    return [dict(row._mapping) for row in await session.execute(query)]
