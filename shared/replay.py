"""Rebuilding a service's projections of other services' events from the beginning of the topics.

Run with the service's consumer stopped. In one transaction: the projection tables and their inbox rows
are cleared, every event now in the topics is applied again by the projection handlers, and the inbox
rows are written back, so the consumer group resumes where it was and skips what replay covered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from .db import create_engine, migrate, session_factory
from .events import MalformedEvent, event_type_of, from_kafka
from .inbox import Subscription
from .service import ServiceSpec
from .settings import Settings
from .topics import read_to_end


@dataclass
class ReplayReport:
    service: str
    read: int = 0
    applied: int = 0
    malformed: int = 0
    failed: int = 0
    tables: tuple[str, ...] = ()


async def replay_projections(
    spec: ServiceSpec, settings: Settings, progress: Callable[[int], None] | None = None
) -> ReplayReport:
    assert spec.subscriptions is not None and spec.backbone is not None
    subscriptions: dict[str, Subscription] = {s.event_type.name: s for s in spec.subscriptions.projections()}
    tables: list[sa.Table] = []
    for subscription in subscriptions.values():
        for table in subscription.projection_of:
            if table not in tables:
                tables.append(table)
    report = ReplayReport(spec.name, tables=tuple(t.name for t in tables))
    if not subscriptions:
        return report
    inbox = spec.backbone.inbox
    topics = sorted({settings.topic(s.event_type.topic) for s in subscriptions.values()})
    engine = create_engine(settings.database_url(spec.name))
    try:
        if spec.migrations_dir is not None and settings.should_migrate_on_start():
            await migrate(engine, spec.migrations_dir)
        sessions = session_factory(engine)
        async with sessions.begin() as session:
            for table in reversed(tables):
                await session.execute(sa.delete(table))
            await session.execute(
                sa.delete(inbox).where(inbox.c.consumer == spec.name, inbox.c.event_type.in_(list(subscriptions)))
            )
            seen: set[str] = set()
            async for records in read_to_end(settings, *topics):
                rows: list[dict[str, Any]] = []
                for record in records:
                    report.read += 1
                    type_name = event_type_of(record.headers)
                    found = subscriptions.get(type_name or "")
                    if found is None:
                        continue
                    try:
                        envelope = from_kafka(record.key, record.value, record.headers)
                    except MalformedEvent:
                        report.malformed += 1  # the live consumer dead-lettered it too
                        continue
                    if envelope.id in seen:
                        continue
                    seen.add(envelope.id)
                    try:
                        async with session.begin_nested():
                            await found.handler(session, envelope)
                    except Exception:  # still failing: it stays in (or goes to) the DLQ, replay goes on
                        report.failed += 1
                        continue
                    rows.append(
                        {
                            "consumer": spec.name,
                            "event_id": envelope.id,
                            "event_type": envelope.type.name,
                            "received_at": datetime.now(UTC),
                        }
                    )
                    report.applied += 1
                if rows:
                    await session.execute(sa.insert(inbox), rows)
                if progress is not None:
                    progress(report.read)
    finally:
        await engine.dispose()
    return report
