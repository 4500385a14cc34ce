"""Quality's HTTP API."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from shared.http import problem_responses
from shared.projections import list_foundries
from shared.service import Sessions

from . import store

router = APIRouter(prefix="/v1")


class FoundryView(BaseModel):
    code: str
    name: str
    village: str
    product_families: list[str]
    revision: int
    updated_at: datetime


@router.get(
    "/foundries",
    response_model=list[FoundryView],
    tags=["projections"],
    summary="Member foundries as quality knows them (from capacity's events)",
    responses=problem_responses(),
)
async def list_known_foundries(sessions: Sessions) -> list[FoundryView]:
    async with sessions() as session:
        return [FoundryView(**row) for row in await list_foundries(session, store.foundry_projection)]
