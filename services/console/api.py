"""The console's HTTP surface: the page people open, and the JSON and live stream behind it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel

from shared.http import problem_responses
from shared.service import Runtime

from . import handlers
from .domain import EventFeed

router = APIRouter()
STATIC = Path(__file__).parent / "static"


class FeedItemOut(BaseModel):
    id: str
    type: str
    source: str
    subject: str
    time: str
    topic: str
    data: dict[str, Any]


def _feed(runtime: Any) -> EventFeed:
    return runtime.state.setdefault("feed", EventFeed())


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))


@router.get(
    "/v1/events/recent",
    response_model=list[FeedItemOut],
    tags=["live"],
    summary="The most recent platform events, newest first",
    responses=problem_responses(422),
)
async def recent_events(runtime: Runtime, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[dict[str, Any]]:
    return [item.as_json() for item in _feed(runtime).recent(limit)]


@router.get(
    "/v1/events/stream",
    tags=["live"],
    summary="Server-sent events: every platform event as it happens",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **problem_responses()},
)
async def stream_events(request: Request, runtime: Runtime) -> StreamingResponse:
    feed = _feed(runtime)
    queue = feed.listen()

    async def stream() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            while not await request.is_disconnected():
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"id: {item.id}\ndata: {json.dumps(item.as_json())}\n\n"
        finally:
            feed.forget(queue)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get(
    "/v1/services",
    tags=["operations"],
    summary="Readiness of the orders, capacity and quality services",
    responses=problem_responses(),
)
async def services(runtime: Runtime) -> dict[str, dict[str, object]]:
    async with httpx.AsyncClient() as client:
        return await handlers.service_health(runtime.settings, client)
