"""Capacity's HTTP API: requests become commands for `handlers`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from shared.http import NotFound, problem_responses
from shared.service import Sessions

from . import handlers, store
from .domain import Foundry, ProductFamily

router = APIRouter(prefix="/v1", tags=["foundries"])


class FoundryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^IKM-\d{3,4}$", examples=["IKM-001"])
    name: str = Field(min_length=1, max_length=200, examples=["CV Logam Jaya"])
    village: str = Field(min_length=1, max_length=100, examples=["Batur"])
    product_families: list[ProductFamily] = Field(min_length=1, examples=[["BRAKE_BLOCK_COMPOSITE"]])


class FoundryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    village: str | None = Field(default=None, min_length=1, max_length=100)
    product_families: list[ProductFamily] | None = Field(default=None, min_length=1)


class FoundryOut(BaseModel):
    code: str
    name: str
    village: str
    product_families: list[ProductFamily]
    revision: int
    registered_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, foundry: Foundry) -> "FoundryOut":
        return cls(
            code=foundry.code,
            name=foundry.name,
            village=foundry.village,
            product_families=list(foundry.product_families),
            revision=foundry.revision,
            registered_at=foundry.registered_at,
            updated_at=foundry.updated_at,
        )


class FoundryPage(BaseModel):
    items: list[FoundryOut]
    total: int
    limit: int
    offset: int


class OrderDemandOut(BaseModel):
    order_id: str
    buyer_code: str
    po_number: str
    total_quantity: int
    lines: list[dict[str, Any]]
    received_at: datetime


@router.post(
    "/foundries",
    status_code=201,
    response_model=FoundryOut,
    summary="Register a member foundry",
    responses=problem_responses(409, 422),
)
async def register_foundry(body: FoundryIn, sessions: Sessions, response: Response) -> FoundryOut:
    foundry = await handlers.register(
        sessions, code=body.code, name=body.name, village=body.village, product_families=body.product_families
    )
    response.headers["Location"] = f"/v1/foundries/{foundry.code}"
    return FoundryOut.of(foundry)


@router.get("/foundries", response_model=FoundryPage, summary="List member foundries", responses=problem_responses(422))
async def list_foundries(
    sessions: Sessions,
    village: str | None = None,
    product_family: ProductFamily | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> FoundryPage:
    async with sessions() as session:
        items, total = await store.list_foundries(
            session, village=village, product_family=product_family, limit=limit, offset=offset
        )
    return FoundryPage(items=[FoundryOut.of(f) for f in items], total=total, limit=limit, offset=offset)


@router.get("/foundries/{code}", response_model=FoundryOut, summary="One member foundry", responses=problem_responses(404))
async def get_foundry(code: str, sessions: Sessions) -> FoundryOut:
    async with sessions() as session:
        foundry = await store.get_foundry(session, code)
    if foundry is None:
        raise NotFound(f"no foundry {code}")
    return FoundryOut.of(foundry)


@router.patch(
    "/foundries/{code}",
    response_model=FoundryOut,
    summary="Change a member foundry's register entry",
    responses=problem_responses(404, 422),
)
async def patch_foundry(code: str, body: FoundryPatch, sessions: Sessions) -> FoundryOut:
    foundry = await handlers.change(sessions, code, **body.model_dump(exclude_unset=True, exclude_none=True))
    return FoundryOut.of(foundry)


@router.get(
    "/order-demand",
    response_model=list[OrderDemandOut],
    tags=["demand"],
    summary="Purchase orders received by orders, as capacity sees them",
    responses=problem_responses(),
)
async def list_order_demand(sessions: Sessions) -> list[OrderDemandOut]:
    async with sessions() as session:
        return [OrderDemandOut(**row) for row in await store.list_order_demand(session)]
