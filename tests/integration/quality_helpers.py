"""Helpers for the quality service's integration tests: running it on a test clock, reading its topic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import sqlalchemy as sa

from services.quality.app import create_app
from shared.clock import Clock
from shared.events import Envelope, from_kafka, topic_of
from shared.settings import Settings
from shared.topics import read_to_end
from tests.support import RunningService, eventually, run_service

COMPOSITE_FOUNDRY = {
    "code": "IKM-001",
    "name": "CV Logam Batur",
    "village": "Batur",
    "product_families": ["BRAKE_BLOCK_COMPOSITE"],
}


def foundry(code: str, *families: str, name: str | None = None) -> dict[str, Any]:
    return {"code": code, "name": name or f"CV Cor {code}", "village": "Tegalrejo", "product_families": list(families)}


@asynccontextmanager
async def run_quality(settings: Settings, clock: Clock | None = None) -> AsyncIterator[RunningService]:
    async with run_service(lambda s: create_app(s, clock), settings) as running:
        yield running


async def register_foundries(capacity: RunningService, quality: RunningService, *foundries: dict[str, Any]) -> None:
    """Registers foundries in capacity and waits until quality's projection has them (through Kafka)."""
    for body in foundries:
        created = await capacity.http.post("/v1/foundries", json=body)
        assert created.status_code in (201, 409), created.text
    wanted = {body["code"] for body in foundries}

    async def projected() -> bool:
        return wanted <= {f["code"] for f in (await quality.http.get("/v1/foundries")).json()}

    await eventually(projected, timeout=60)


async def quality_events(settings: Settings) -> list[Envelope[Any]]:
    out = []
    async for records in read_to_end(settings, settings.topic(topic_of("quality"))):
        out += [from_kafka(r.key, r.value, r.headers) for r in records]
    return sorted(out, key=lambda e: (e.time, e.id))


async def events_named(settings: Settings, event: str, at_least: int = 1, timeout: float = 30) -> list[Envelope[Any]]:
    """Events of one type on quality's topic, once at least `at_least` of them arrived."""
    name = f"ceper.quality.{event}.v1"

    async def arrived() -> list[Envelope[Any]] | None:
        found = [e for e in await quality_events(settings) if e.type.name == name]
        return found if len(found) >= at_least else None

    return await eventually(arrived, timeout=timeout, interval=0.3)  # type: ignore[no-any-return]


async def outbox_drained(running: RunningService) -> None:
    from services.quality import store

    async def empty() -> bool:
        async with running.runtime.sessions() as session:  # type: ignore[union-attr]
            unsent = await session.execute(sa.select(sa.func.count()).select_from(store.backbone.outbox))
            return unsent.scalar_one() == 0

    await eventually(empty, timeout=30)


def good_composite_sample(**changes: Any) -> dict[str, Any]:
    sample: dict[str, Any] = {
        "friction_coefficient": 0.25,
        "density": 2.05,
        "hardness": 78,
        "compressive_strength": 41.5,
        "impact_strength": 2.4,
        "back_plate_bond": "pass",
    }
    sample.update(changes)
    return sample


class LoopTransport(httpx.BaseTransport):
    """A synchronous httpx transport for code running in a worker thread (like the demo seeding): it hands each
    request to an in-process service's async client on the test's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, services: dict[str, RunningService]) -> None:
        self.loop = loop
        self.services = services

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        service = self.services[request.url.host]

        async def call() -> httpx.Response:
            return await service.http.request(
                request.method, request.url.raw_path.decode(), content=request.read(), headers=dict(request.headers)
            )

        answer = asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=60)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content, request=request)
