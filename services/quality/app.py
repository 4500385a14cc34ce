"""Wires the quality service: `uvicorn --factory services.quality.app:create_app`."""

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


async def start_expiry_job(runtime: ServiceRuntime) -> None:
    """Puts the default specifications in place, then runs the certificate-expiry job now and periodically."""
    assert runtime.sessions is not None
    await handlers.ensure_default_specifications(runtime.sessions)
    runtime.state["expiry_job"] = asyncio.create_task(_run_expiry_job(runtime), name="quality-certificate-expiry")


async def _run_expiry_job(runtime: ServiceRuntime) -> None:
    assert runtime.sessions is not None
    while True:
        try:
            await handlers.check_certificate_expiry(runtime.sessions, runtime.settings)
            await handlers.refresh_metrics(runtime.sessions, runtime.settings)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away: nothing was given, the next run tries again
            log.warning("certificate expiry job failed, will run again", error=str(exc))
        await asyncio.sleep(runtime.settings.quality_expiry_check_interval_s)


async def stop_expiry_job(runtime: ServiceRuntime) -> None:
    task: asyncio.Task[None] | None = runtime.state.pop("expiry_job", None)
    if task is not None:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass


SPEC = ServiceSpec(
    name="quality",
    title="Ceper Supply — quality",
    description="Product specifications, certificates, lot testing and each foundry's quality status.",
    routers=[api.router, api.internal],
    metadata=store.metadata,
    backbone=store.backbone,
    subscriptions=SUBSCRIPTIONS,
    migrations_dir=Path(__file__).parent / "migrations",
    on_start=[start_expiry_job],
    on_stop=[stop_expiry_job],
)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    return create_service_app(SPEC, settings, clock)
