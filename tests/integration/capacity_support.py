"""Helpers for the capacity service's integration tests: running it on a fixed clock, publishing orders' and
quality's events onto the real broker, and reading what capacity published."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any

import httpx
import sqlalchemy as sa

from services.capacity import store
from services.capacity.app import create_app
from shared import kafka
from shared.clock import FixedClock
from shared.events import Envelope, EventData, from_kafka, to_kafka, topic_of
from shared.events.orders import AllocationPlanned, PlannedAllocation
from shared.settings import Settings
from shared.topics import read_to_end
from tests.support import RunningService, eventually, run_service, staged

# A Tuesday in ISO week 2026-W48: reservations for 2027 are in the future.
NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
COMPOSITE = "BRAKE_BLOCK_COMPOSITE"
CAST_IRON = "BRAKE_BLOCK_CAST_IRON"


@asynccontextmanager
async def run_capacity(settings: Settings, clock: FixedClock | None = None) -> AsyncIterator[RunningService]:
    async with run_service(functools.partial(create_app, clock=clock or FixedClock(NOW)), settings) as running:
        yield running


def foundry(code: str, *families: str, **details: Any) -> dict[str, Any]:
    return {
        "code": code,
        "name": f"CV Cor {code[-3:]}",
        "village": "Batur",
        "product_families": list(families or [COMPOSITE]),
        **details,
    }


async def register(capacity: RunningService, *foundries: dict[str, Any]) -> None:
    for body in foundries:
        created = await capacity.http.post("/v1/foundries", json=body)
        assert created.status_code == 201, created.text


async def set_standard(
    capacity: RunningService, code: str, units: int, family: str = COMPOSITE, from_week: str = "2027-W01"
) -> dict[str, Any]:
    body = {"kind": "standard", "product_family": family, "weekly_units": units, "from_week": from_week, "reason": "declared"}
    recorded = await capacity.http.post(f"/v1/foundries/{code}/capacity-changes", json=body)
    assert recorded.status_code == 201, recorded.text
    return recorded.json()


def allocation(
    allocation_id: str,
    foundry_code: str,
    week: str,
    quantity: int,
    due: date = date(2027, 4, 30),
    family: str = COMPOSITE,
    line_no: int = 1,
) -> PlannedAllocation:
    item = "BB-COMP-K" if family == COMPOSITE else "BB-CI"
    return PlannedAllocation(
        allocation_id=allocation_id, line_no=line_no, item_code=item, product_family=family, foundry_code=foundry_code,
        week=week, quantity=quantity, due_date=due,
    )  # fmt: skip


def plan(order_id: str, version: int, *allocations: PlannedAllocation) -> AllocationPlanned:
    return AllocationPlanned(
        order_id=order_id, buyer_code="KAI", plan_version=version, allocations=list(allocations), planned_at=NOW
    )


async def publish(settings: Settings, *events: EventData | Envelope[Any]) -> list[Envelope[Any]]:
    """Publishes events as their owning service would (CloudEvents on its topic, keyed by aggregate)."""
    envelopes = [e if isinstance(e, Envelope) else Envelope.of(e) for e in events]
    producer = kafka.producer(settings, client_id="capacity-tests")
    await producer.start()
    try:
        for envelope in envelopes:
            message = to_kafka(envelope)
            await producer.send_and_wait(
                settings.topic(envelope.type.topic),
                value=message.value,
                key=envelope.key.encode(),
                headers=list(message.headers.items()),
            )
    finally:
        await producer.stop()
    return envelopes


async def capacity_events(settings: Settings, name: str | None = None) -> list[Envelope[Any]]:
    out = []
    async for records in read_to_end(settings, settings.topic(topic_of("capacity"))):
        for record in records:
            envelope = from_kafka(record.key, record.value, record.headers)
            if name is None or envelope.type.event == name:
                out.append(envelope)
    return sorted(out, key=lambda e: (e.time, e.id))


async def events_named(settings: Settings, name: str, count: int, timeout: float = 30) -> list[Any]:
    """Waits until capacity has published `count` events of the type (never more) and returns their data."""

    async def arrived() -> list[Any] | None:
        found = await capacity_events(settings, name)
        assert len(found) <= count, f"{len(found)} {name} events, expected {count}: {[e.data for e in found]}"
        return [e.data for e in found] if len(found) == count else None

    return await eventually(arrived, timeout=timeout, interval=0.2)  # type: ignore[no-any-return]


async def applied(capacity: RunningService, count: int) -> None:
    """Waits until the consumer has applied `count` events (duplicates and skipped ones excluded)."""
    consumer = capacity.runtime.consumer
    assert consumer is not None

    async def done() -> bool:
        return consumer.stats.applied + consumer.stats.duplicates >= count

    await eventually(done)


async def staged_types(capacity: RunningService) -> list[str]:
    """The types of the events capacity has staged so far, oldest first."""
    return [envelope.type.name for envelope in await staged(capacity)]


async def count_rows(capacity: RunningService, *tables: sa.Table) -> tuple[int, ...]:
    assert capacity.runtime.sessions is not None
    async with capacity.runtime.sessions() as session:
        return tuple([(await session.execute(sa.select(sa.func.count()).select_from(t))).scalar_one() for t in tables])


async def ledger_matches_reservations(capacity: RunningService) -> dict[tuple[str, str, str], int]:
    """The ledger's reserved units per week equal the sum of the reservations holding capacity there."""
    assert capacity.runtime.sessions is not None
    r = store.reservations
    async with capacity.runtime.sessions() as session:
        ledger = {
            (row.foundry_code, row.product_family, row.week): row.reserved
            for row in (await session.execute(sa.select(store.capacity_ledger))).all()
            if row.reserved
        }
        held = {
            (row.foundry_code, row.product_family, row.week): int(row.total)
            for row in (
                await session.execute(
                    sa.select(r.c.foundry_code, r.c.product_family, r.c.week, sa.func.sum(r.c.quantity).label("total"))
                    .where(r.c.state.in_(["hold", "confirmed", "consumed"]))
                    .group_by(r.c.foundry_code, r.c.product_family, r.c.week)
                )
            ).all()
            if row.total
        }
    assert ledger == held
    return ledger


class LoopTransport(httpx.BaseTransport):
    """A synchronous httpx transport for code running in a worker thread (the demo seeding): each request goes to
    the in-process service's async client on the test's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, service: RunningService) -> None:
        self.loop = loop
        self.service = service

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            return await self.service.http.request(
                request.method, request.url.raw_path.decode(), content=request.read(), headers=dict(request.headers)
            )

        answer = asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=60)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content, request=request)
