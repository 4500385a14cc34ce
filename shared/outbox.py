"""Transactional outbox: events are written with the state change that caused them, then relayed to Kafka.

`stage()` adds events to the caller's transaction. The `Relay` publishes unsent rows in order, marks them
sent only after Kafka acknowledged them (`acks=all`, idempotent producer), retries with backoff while the
broker is away, and deletes sent rows after the retention period. It wakes as soon as a transaction that
staged events commits, and also polls now and then for rows written by other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from . import metrics, tracing
from .db import READ_ONLY
from .events import Envelope, EventData, to_kafka
from .logging import get_logger
from .settings import Settings
from .tasks import BackgroundTask, Backoff

log = get_logger(__name__)

# The id of the request or event being handled; staged events carry it so a chain can be followed in logs.
current_trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_trace_id", default=None)

WAKE_KEY = "outbox_wake"
_WRITTEN_KEY = "outbox_written"


async def stage(session: AsyncSession, outbox: sa.Table, *events: EventData | Envelope[Any]) -> list[Envelope[Any]]:
    """Writes events into the session's transaction; they reach Kafka only if it commits."""
    trace_id = tracing.trace_id() or current_trace_id.get()
    envelopes = [e if isinstance(e, Envelope) else Envelope.of(e, trace_id=trace_id) for e in events]
    if not envelopes:
        return []
    trace_headers = tracing.event_headers()  # the span staging the events is their parent, whenever they are sent
    now = datetime.now(UTC)
    rows = []
    for envelope in envelopes:
        message = to_kafka(envelope)
        rows.append(
            {
                "event_id": envelope.id,
                "event_type": envelope.type.name,
                "topic": envelope.type.topic,
                "key": envelope.key,
                "headers": {name: value.decode("utf-8") for name, value in message.headers.items()} | trace_headers,
                "payload": message.value,
                "created_at": now,
            }
        )
    await session.execute(sa.insert(outbox), rows)
    session.info[_WRITTEN_KEY] = True
    return envelopes


@event.listens_for(Session, "after_commit")
def _wake_relay(session: Session) -> None:
    # A spurious wake costs one empty query; a missed one costs a poll interval of latency.
    if session.info.pop(_WRITTEN_KEY, False):
        wake = session.info.get(WAKE_KEY)
        if wake is not None:
            wake()


@dataclass
class RelayStats:
    published: int = 0
    failures: int = 0


class Relay:
    """Publishes the outbox of one service's database to Kafka."""

    def __init__(self, service: str, engine: AsyncEngine, outbox: sa.Table, settings: Settings) -> None:
        self.service = service
        self.engine = engine
        self.outbox = outbox
        self.settings = settings
        self.stats = RelayStats()
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        # Shared with the task's supervisor: a pass that published resets it, so the next outage starts short.
        self._backoff = Backoff(first=0.1, most=settings.outbox_max_backoff_s)
        self._task = BackgroundTask(
            f"{service}-outbox-relay",
            self._run,
            backoff=self._backoff,
            expected=(TimeoutError, KafkaError, OSError, sa.exc.DBAPIError),
            on_crash=self._count_failure,
        )
        self._backlog_gauge = metrics.OUTBOX_BACKLOG.labels(service)
        self._age_gauge = metrics.OUTBOX_OLDEST_AGE.labels(service)
        self._last_gauges = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._leader_connection: AsyncConnection | None = None
        self._election = asyncio.Lock()
        # One lock per service database: the relays of one service's replicas compete for it.
        self._lock_key = zlib.crc32(f"ceper-outbox-relay:{service}".encode())

    def wake(self) -> None:
        """Safe to call from any thread: the after-commit hook may run in a driver thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def start(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._loop = asyncio.get_running_loop()
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
        await self._resign()

    async def is_leader(self) -> bool:
        """Whether this process may publish: with several replicas on PostgreSQL, only one relays at a time.

        Two relays reading the same rows would interleave their sends and break per-key order. A session
        advisory lock elects one; if its process dies, its connection and lock go with it and another takes over.
        """
        if self.engine.dialect.name != "postgresql":
            return True  # SQLite is one process's file
        async with self._election:  # the relay loop and a caller may ask at once: one connection competes
            return await self._elect()

    async def _elect(self) -> bool:
        if self._leader_connection is not None:
            try:
                await self._leader_connection.execute(sa.text("SELECT 1"))
                return True
            except sa.exc.DBAPIError:
                await self._resign()  # the session is gone, and the lock with it: compete again
        connection = await self.engine.connect()
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        won = (await connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self._lock_key})).scalar()
        if won:
            self._leader_connection = connection
            log.info("outbox relay leads", service=self.service)
            return True
        await connection.close()
        return False

    async def _resign(self) -> None:
        connection, self._leader_connection = self._leader_connection, None
        if connection is None:
            return
        try:
            # The connection goes back to the pool, where the session and its lock would live on.
            await connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self._lock_key})
            await connection.close()
        except Exception:
            await connection.invalidate()  # a broken session: discarding it drops the lock with it

    async def _run(self) -> None:
        """Publishes whenever woken (or polled); the broker or the database away ends it, and its task restarts it."""
        while True:
            if not await self.is_leader():
                await asyncio.sleep(self.settings.outbox_poll_interval_s)
                continue
            while await self.publish_pending():
                pass
            self._backoff.reset()
            self._task.working()
            await self._housekeeping()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.outbox_poll_interval_s)
            self._wake.clear()

    def _count_failure(self, _error: BaseException) -> None:
        self.stats.failures += 1

    async def publish_pending(self) -> bool:
        """Publishes one batch of unsent rows; returns True when there may be more."""
        assert self._producer is not None, "relay not started"
        limit = self.settings.outbox_batch_size
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(**READ_ONLY)
            rows = (
                await conn.execute(
                    sa.select(
                        self.outbox.c.seq,
                        self.outbox.c.topic,
                        self.outbox.c.key,
                        self.outbox.c.headers,
                        self.outbox.c.payload,
                        self.outbox.c.event_type,
                    )
                    .order_by(self.outbox.c.seq)
                    .limit(limit)
                )
            ).all()
            await conn.rollback()
        if not rows:
            return False
        # Send all, then await every ack: the producer pipelines the batch and keeps per-partition order.
        futures = []
        for row in rows:
            headers = [(name, value.encode("utf-8")) for name, value in row.headers.items()]
            futures.append(
                await self._producer.send(
                    self.settings.topic(row.topic), value=row.payload, key=row.key.encode("utf-8"), headers=headers
                )
            )
        results = await asyncio.gather(*futures, return_exceptions=True)
        # Only the prefix acked without a gap is marked sent: a failed event is re-sent with everything after
        # it, so no consumer sees a later event of a key without the earlier one having been sent first.
        sent: list[int] = []
        failure: BaseException | None = None
        for row, result in zip(rows, results, strict=False):
            if isinstance(result, BaseException):
                failure = result
                break
            sent.append(row.seq)
        if sent:
            async with self.engine.begin() as conn:
                # Kafka keeps the event; deleting writes a fraction of the log an update of the whole row would.
                await conn.execute(sa.delete(self.outbox).where(self.outbox.c.seq.in_(sent)))
            for event_type, count in Counter(row.event_type for row in rows[: len(sent)]).items():
                metrics.EVENTS_PRODUCED.labels(self.service, event_type).inc(count)
            self.stats.published += len(sent)
        if failure is not None:
            raise failure if isinstance(failure, Exception) else KafkaError(str(failure))
        return len(rows) == limit

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_gauges >= 5:
            self._last_gauges = now
            await self.refresh_gauges()

    async def refresh_gauges(self) -> tuple[int, float]:
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(**READ_ONLY)
            count, oldest = (await conn.execute(sa.select(sa.func.count(), sa.func.min(self.outbox.c.created_at)))).one()
            await conn.rollback()
        age = 0.0
        if oldest is not None:
            if isinstance(oldest, str):  # SQLite returns aggregates of stored datetimes as text
                oldest = datetime.fromisoformat(oldest)
            if oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=UTC)
            age = max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        self._backlog_gauge.set(count)
        self._age_gauge.set(age)
        return count, age
