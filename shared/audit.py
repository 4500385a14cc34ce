"""The audit trail every service keeps in its own database: who changed what, when, from what to what.

`audit_table(metadata)` adds the table to a service's metadata (its migrations create it); `record()` writes
one row in the caller's transaction, so a change and its audit row commit or roll back together. Callers
pass public views of the entity: secrets and their hashes never enter the trail.

Who acted is known where the change came in, not where it is made: a route's rule (`shared.auth.require`)
names the caller, and a subscription the event it applies (`acting`), so a use case records without being
told. `trail_router` serves a service's trail at `GET /v1/audit` to admins.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic_core import to_jsonable_python
from sqlalchemy.ext.asyncio import AsyncSession

from . import clock
from .db import BigId, UtcDateTime
from .outbox import current_trace_id


@dataclass(frozen=True)
class Actor:
    """Who made a change: a token's subject and role, an operator at the command line, or an event (its source,
    with its id as the `cause`). Without a cause, the change's request id is recorded."""

    subject: str
    role: str | None = None
    cause: str | None = None

    @classmethod
    def of_event(cls, event_id: str, source: str) -> Actor:
        return cls(subject=source, role="event", cause=event_id)


# The actor of the change in progress; unset, nobody was authenticated (a route without a rule) or a job acts.
current_actor: ContextVar[Actor | None] = ContextVar("audit_actor", default=None)
NOBODY = Actor("anonymous")


@contextlib.contextmanager
def acting(actor: Actor) -> Iterator[Actor]:
    token = current_actor.set(actor)
    try:
        yield actor
    finally:
        current_actor.reset(token)


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
    actor: Actor | None = None,
    action: str,
    entity_type: str,
    entity_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    at: datetime,
) -> None:
    """Records one change in the caller's transaction; `actor` defaults to the one acting now."""
    actor = actor or current_actor.get() or NOBODY
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
            request_id=actor.cause or current_trace_id.get(),
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


async def page(
    session: AsyncSession, table: sa.Table, *, entity_type: str | None, entity_id: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the trail, newest first, and how many entries match in all."""
    where = []
    if entity_type is not None:
        where.append(table.c.entity_type == entity_type)
    if entity_id is not None:
        where.append(table.c.entity_id == entity_id)
    total = (await session.execute(sa.select(sa.func.count()).select_from(table).where(*where))).scalar_one()
    rows = await session.execute(sa.select(table).where(*where).order_by(table.c.id.desc()).limit(limit).offset(offset))
    return [dict(row._mapping) for row in rows], int(total)


def jsonable(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A stored row or a domain view as JSON values (dates as ISO text, enums as their values)."""
    return None if values is None else dict(to_jsonable_python(dict(values)))


async def rows_by_key(
    session: AsyncSession, table: sa.Table, key: sa.Column[Any], ids: Iterable[Any]
) -> dict[Any, dict[str, Any]]:
    """The rows of `table` whose `key` is in `ids`, as they are before a change: the `before` of an update."""
    wanted = list(dict.fromkeys(ids))
    found: dict[Any, dict[str, Any]] = {}
    for i in range(0, len(wanted), 500):
        for row in await session.execute(sa.select(table).where(key.in_(wanted[i : i + 500]))):
            found[row._mapping[key.name]] = dict(row._mapping)
    return found


async def record_change(
    session: AsyncSession,
    table: sa.Table,
    *,
    entity_type: str,
    entity_id: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    action: str | None = None,
) -> None:
    """Records a row's change (`before` None: added; `after` None: removed) unless nothing changed. `after` may
    hold only the columns written: it is read over `before`."""
    old = jsonable(before)
    new = jsonable({**(before or {}), **after}) if after is not None else None
    if old == new:
        return
    verb = "added" if old is None else "removed" if new is None else "changed"
    await record(
        session, table, action=action or f"{entity_type}.{verb}", entity_type=entity_type, entity_id=entity_id,
        before=old, after=new, at=clock.now(),
    )  # fmt: skip
