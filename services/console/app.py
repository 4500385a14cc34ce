"""Wires the console: `uvicorn --factory services.console.app:create_app`."""

from __future__ import annotations

from fastapi import FastAPI

from shared.clock import Clock
from shared.service import ServiceRuntime, ServiceSpec, create_service_app
from shared.settings import Settings

from . import api
from .subscriptions import start_following, stop_following


async def check_live_feed(runtime: ServiceRuntime) -> str | None:
    return None if runtime.state.get("following") else "not following the event topics yet"


SPEC = ServiceSpec(
    name="console",
    title="Ceper Supply — console",
    description="The cooperative staff's operations console: orders, plans, capacity, quality and live events.",
    routers=[api.router],
    on_start=[start_following],
    on_stop=[stop_following],
    readiness=[check_live_feed],
)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    return create_service_app(SPEC, settings, clock)
