"""Wires the capacity service: `uvicorn --factory services.capacity.app:create_app`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.service import ServiceSpec, create_service_app
from shared.clock import Clock
from shared.settings import Settings

from . import api, store
from .subscriptions import SUBSCRIPTIONS

SPEC = ServiceSpec(
    name="capacity",
    title="Ceper Supply — capacity",
    description="Member foundries of Koperasi Batur Jaya, their weekly capacity and reservations.",
    routers=[api.router],
    metadata=store.metadata,
    backbone=store.backbone,
    subscriptions=SUBSCRIPTIONS,
    migrations_dir=Path(__file__).parent / "migrations",
)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    return create_service_app(SPEC, settings, clock)
