"""Wires the capacity service: `uvicorn --factory services.capacity.app:create_app`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.clock import Clock
from shared.logging import get_logger
from shared.service import PeriodicJob, ServiceRuntime, ServiceSpec, create_service_app
from shared.settings import Settings

from . import api, handlers, store
from .subscriptions import SUBSCRIPTIONS

log = get_logger(__name__)


async def hold_expiry(runtime: ServiceRuntime) -> None:
    """Expires holds not confirmed in time and refreshes the business metrics."""
    assert runtime.sessions is not None
    expired = await handlers.expire_holds(runtime.sessions)
    if expired:
        log.info("holds expired", count=len(expired))
    await handlers.refresh_metrics(runtime.sessions)


SPEC = ServiceSpec(
    name="capacity",
    title="Ceper Supply — capacity",
    description="Member foundries of Koperasi Batur Jaya, their weekly capacity and reservations.",
    routers=[api.router, api.internal, api.audit_trail],
    metadata=store.metadata,
    backbone=store.backbone,
    subscriptions=SUBSCRIPTIONS,
    migrations_dir=Path(__file__).parent / "migrations",
    jobs=[PeriodicJob("hold-expiry", hold_expiry, lambda settings: settings.capacity_jobs_interval_s)],
)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    return create_service_app(SPEC, settings, clock)
