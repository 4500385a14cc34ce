"""Wires the orders service: `uvicorn --factory services.orders.app:create_app`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.clock import Clock
from shared.service import PeriodicJob, ServiceRuntime, ServiceSpec, create_service_app
from shared.settings import Settings

from . import api, handlers, store
from .subscriptions import SUBSCRIPTIONS
from .webhooks import Dispatcher


async def start_webhooks(runtime: ServiceRuntime) -> None:
    assert runtime.sessions is not None
    settings = runtime.settings
    runtime.state["webhooks"] = Dispatcher(
        runtime.sessions, rules=handlers.destination_rules(settings), poll_interval_s=settings.orders_webhook_poll_interval_s
    )
    await runtime.state["webhooks"].start()


async def stop_webhooks(runtime: ServiceRuntime) -> None:
    dispatcher = runtime.state.pop("webhooks", None)
    if dispatcher is not None:
        await dispatcher.stop()


async def refresh_metrics(runtime: ServiceRuntime) -> None:
    assert runtime.sessions is not None
    await handlers.refresh_metrics(runtime.sessions)


SPEC = ServiceSpec(
    name="orders",
    title="Ceper Supply — orders",
    description="Buyers' purchase orders (KAI, INKA), the allocation plan across member foundries, fulfilment.",
    routers=[api.router, api.audit_trail],
    metadata=store.metadata,
    backbone=store.backbone,
    subscriptions=SUBSCRIPTIONS,
    migrations_dir=Path(__file__).parent / "migrations",
    on_start=[start_webhooks],
    on_stop=[stop_webhooks],
    jobs=[PeriodicJob("business-metrics", refresh_metrics, lambda settings: settings.orders_jobs_interval_s)],
)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    return create_service_app(SPEC, settings, clock)
