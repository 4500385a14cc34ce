"""One page model and one paging dependency: bounds as the route declares them, the answer's shape, the schema's name."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from shared.paging import MAX_OFFSET, Page, Paging, paging_query


class LotOut(BaseModel):
    lot_code: str


class LotPage(Page[LotOut]):
    pass


LOTS = [LotOut(lot_code=f"LOT-{n}") for n in range(5)]
app = FastAPI()


@app.get("/lots", response_model=LotPage)
async def list_lots(paging: Annotated[Paging, paging_query(default_limit=2, max_limit=3)]) -> LotPage:
    return LotPage.of(LOTS[paging.offset : paging.offset + paging.limit], len(LOTS), paging)


async def get(params: dict[str, int] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await client.get("/lots", params=params)


async def test_a_page_echoes_the_slice_asked_for_and_counts_every_match() -> None:
    assert (await get()).json() == {
        "items": [{"lot_code": "LOT-0"}, {"lot_code": "LOT-1"}],
        "total": 5,
        "limit": 2,
        "offset": 0,
    }
    assert (await get({"limit": 3, "offset": 4})).json() == {
        "items": [{"lot_code": "LOT-4"}], "total": 5, "limit": 3, "offset": 4,
    }  # fmt: skip


async def test_limits_and_offsets_out_of_bounds_are_refused() -> None:
    for params in ({"limit": 0}, {"limit": 4}, {"offset": -1}, {"offset": MAX_OFFSET + 1}):
        assert (await get(params)).status_code == 422, params


def test_the_document_names_the_page_and_its_query_parameters() -> None:
    document = app.openapi()
    parameters = {p["name"]: p["schema"] for p in document["paths"]["/lots"]["get"]["parameters"]}
    assert parameters["limit"] == {"type": "integer", "maximum": 3, "minimum": 1, "default": 2, "title": "Limit"}
    assert parameters["offset"]["maximum"] == MAX_OFFSET
    assert "LotPage" in document["components"]["schemas"]
