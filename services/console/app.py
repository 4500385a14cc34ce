"""Wires the console: `uvicorn --factory services.console.app:create_app`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from shared.clock import Clock
from shared.service import PeriodicJob, ServiceRuntime, ServiceSpec, create_service_app
from shared.settings import Settings

from . import api, handlers
from .people import current_person, translator_of
from .store import UpstreamProblem, new_client
from .subscriptions import start_following, stop_following


async def check_live_feed(runtime: ServiceRuntime) -> str | None:
    return None if runtime.state.get("following") else "not following the event topics yet"


async def open_client(runtime: ServiceRuntime) -> None:
    runtime.state["http"] = new_client()


async def close_client(runtime: ServiceRuntime) -> None:
    client = runtime.state.pop("http", None)
    if client is not None:
        await client.aclose()


async def count_dead_letters(runtime: ServiceRuntime) -> None:
    """The dashboard's dead-letter figure, read from the dead-letter topics now and then rather than per page."""
    letters = await handlers.dead_letters(runtime.settings)
    runtime.state["dead_letter_count"] = sum(len(found) for found in letters.values())


SPEC = ServiceSpec(
    name="console",
    title="Ceper Supply — console",
    description="The cooperative staff's operations console: orders, plans, capacity, quality and live events.",
    routers=[api.router],
    on_start=[open_client, start_following],
    on_stop=[stop_following, close_client],
    readiness=[check_live_feed],
    jobs=[PeriodicJob("dead-letter-count", count_dead_letters, lambda settings: 30.0)],
)


async def _refused(request: Request, problem: Exception) -> Response:
    assert isinstance(problem, UpstreamProblem)
    tr = translator_of(request)
    person = await current_person(request)
    if problem.status in (401, 403):
        return api.render(request, "forbidden.html", tr, person, status_code=403)
    return api.unavailable(request, tr, person, problem)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    app = create_service_app(SPEC, settings, clock)
    app.mount("/static", StaticFiles(directory=api.STATIC), name="static")
    app.add_exception_handler(UpstreamProblem, _refused)
    return app
