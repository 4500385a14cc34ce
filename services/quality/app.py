"""Wires the quality service: `uvicorn --factory services.quality.app:create_app`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.clock import Clock
from shared.service import PeriodicJob, ServiceRuntime, ServiceSpec, create_service_app
from shared.settings import Settings

from . import api, handlers, store
from .subscriptions import SUBSCRIPTIONS


async def announce_items(runtime: ServiceRuntime) -> None:
    assert runtime.sessions is not None
    await handlers.announce_items(runtime.sessions)


async def put_default_specifications(runtime: ServiceRuntime) -> None:
    assert runtime.sessions is not None
    await handlers.ensure_default_specifications(runtime.sessions)


async def certificate_expiry(runtime: ServiceRuntime) -> None:
    """Publishes each certificate's expiring and expired notices once, and refreshes the business metrics."""
    assert runtime.sessions is not None
    await handlers.check_certificate_expiry(runtime.sessions, runtime.settings)
    await handlers.refresh_metrics(runtime.sessions, runtime.settings)


SPEC = ServiceSpec(
    name="quality",
    title="Ceper Supply — quality",
    description="Product specifications, certificates, lot testing and each foundry's quality status.",
    routers=[api.router, api.internal, api.audit_trail],
    metadata=store.metadata,
    backbone=store.backbone,
    subscriptions=SUBSCRIPTIONS,
    migrations_dir=Path(__file__).parent / "migrations",
    on_start=[announce_items, put_default_specifications],
    jobs=[PeriodicJob("certificate-expiry", certificate_expiry, lambda settings: settings.quality_expiry_check_interval_s)],
)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    return create_service_app(SPEC, settings, clock)
