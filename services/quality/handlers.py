"""Quality's use cases (commands from the API) and reactions (events from other services)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.events import Envelope
from shared.projections import project_foundry

from . import store


async def on_foundry_changed(session: AsyncSession, envelope: Envelope[Any]) -> None:
    await project_foundry(session, store.foundry_projection, envelope)
