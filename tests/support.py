"""Helpers for tests that run services in-process against the real broker and databases."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import httpx
from fastapi import FastAPI

from shared.service import ServiceRuntime
from shared.settings import Settings


@dataclass
class RunningService:
    app: FastAPI
    runtime: ServiceRuntime
    http: httpx.AsyncClient


@asynccontextmanager
async def run_service(create_app: Callable[[Settings], FastAPI], settings: Settings) -> AsyncIterator[RunningService]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime: ServiceRuntime = app.state.runtime
        await runtime.wait_connected(60)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{runtime.name}") as client:
            yield RunningService(app, runtime, client)


@asynccontextmanager
async def run_services(settings: Settings, *names: str) -> AsyncIterator[dict[str, RunningService]]:
    from services.capacity.app import create_app as capacity
    from services.orders.app import create_app as orders
    from services.quality.app import create_app as quality

    factories = {"orders": orders, "capacity": capacity, "quality": quality}
    async with AsyncExitStack() as stack:
        running = {}
        for name in names:
            running[name] = await stack.enter_async_context(run_service(factories[name], settings))
        yield running


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Awaits `check` until it returns a truthy value (returned) or raises no AssertionError."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = await check()
            if result:
                return result
            last_error = None
        except AssertionError as exc:
            last_error = exc
        if time.monotonic() > deadline:
            if last_error is not None:
                raise last_error
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
