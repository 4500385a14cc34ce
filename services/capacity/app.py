"""Wires the capacity service: `uvicorn --factory services.capacity.app:create_app`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI

from shared.clock import Clock
from shared.logging import get_logger
from shared.service import ServiceRuntime, ServiceSpec, create_service_app
from shared.settings import Settings

from . import api, handlers, store
from .subscriptions import SUBSCRIPTIONS

log = get_logger(__name__)


async def start_jobs(runtime: ServiceRuntime) -> None:
    """Expires unconfirmed holds and refreshes the business metrics now and periodically."""
    runtime.state["capacity_jobs"] = asyncio.create_task(_run_jobs(runtime), name="capacity-hold-expiry")


async def _run_jobs(runtime: ServiceRuntime) -> None:
    assert runtime.sessions is not None
    while True:
        try:
            expired = await handlers.expire_holds(runtime.sessions)
            if expired:
                log.info("holds expired", count=len(expired))
            await handlers.refresh_metrics(runtime.sessions)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away: nothing changed, the next run tries again
            log.warning("capacity job failed, will run again", error=str(exc))
        await asyncio.sleep(runtime.settings.capacity_jobs_interval_s)


async def stop_jobs(runtime: ServiceRuntime) -> None:
    task: asyncio.Task[None] | None = runtime.state.pop("capacity_jobs", None)
    if task is not None:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass


SPEC = ServiceSpec(
    name="capacity",
    title="Ceper Supply — capacity",
    description="Member foundries of Koperasi Batur Jaya, their weekly capacity and reservations.",
    routers=[api.router, api.internal],
    metadata=store.metadata,
    backbone=store.backbone,
    subscriptions=SUBSCRIPTIONS,
    migrations_dir=Path(__file__).parent / "migrations",
    on_start=[start_jobs],
    on_stop=[stop_jobs],
)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    return create_service_app(SPEC, settings, clock)
