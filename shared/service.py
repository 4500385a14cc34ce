"""The composition root every service shares: database, outbox relay, inbox consumer, HTTP app.

A service describes itself with a `ServiceSpec` (its tables, routers, subscriptions, migrations);
`create_service_app` wires the real adapters around it.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client import REGISTRY as PROMETHEUS_REGISTRY
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import kafka, tracing
from .auth import public
from .clock import SYSTEM_CLOCK, Clock
from .clock import use as use_clock
from .db import BackboneTables, create_engine, dispose_reading_engine, migrate, reading_engine, session_factory
from .http import RequestContextMiddleware, document_problems, install_problem_handlers, problem_responses
from .inbox import InboxConsumer, Subscriptions
from .logging import configure_logging, get_logger
from .outbox import WAKE_KEY, Relay
from .settings import Settings, get_settings
from .tasks import BackgroundTask, Backoff, every
from .topics import ensure_platform_topics

log = get_logger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    """Work a service does on its clock (expiring holds, certificate notices): now at start, then every interval.

    A failed run changes nothing (each run is its own transaction) and the next run tries again.
    """

    name: str
    run: Callable[[ServiceRuntime], Awaitable[None]]
    interval_s: Callable[[Settings], float]


async def _refresh_outbox_gauges(runtime: ServiceRuntime) -> None:
    assert runtime.relay is not None
    await runtime.relay.refresh_gauges()


# The outbox's backlog and age, measured also while the broker is away, when the relay cannot run: that is when
# they matter (alert OutboxStuck).
OUTBOX_GAUGES = PeriodicJob("outbox-gauges", _refresh_outbox_gauges, lambda settings: 5.0)


@dataclass
class ServiceSpec:
    name: str
    title: str
    description: str
    routers: list[APIRouter] = field(default_factory=list)
    metadata: sa.MetaData | None = None
    backbone: BackboneTables | None = None
    subscriptions: Subscriptions | None = None
    migrations_dir: Path | None = None
    # Extra start/stop work of a service (e.g. the console's live event feed), run inside the lifespan.
    on_start: list[Callable[[ServiceRuntime], Awaitable[None]]] = field(default_factory=list)
    on_stop: list[Callable[[ServiceRuntime], Awaitable[None]]] = field(default_factory=list)
    readiness: list[Callable[[ServiceRuntime], Awaitable[str | None]]] = field(default_factory=list)
    jobs: list[PeriodicJob] = field(default_factory=list)
    # False for a service that neither publishes nor consumes (identity): it starts and is ready without Kafka.
    uses_broker: bool = True


class ServiceRuntime:
    """The running adapters of one service; lives as long as the app."""

    def __init__(self, spec: ServiceSpec, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.spec = spec
        self.clock = clock
        self.name = spec.name
        self.settings = settings
        self.engine = create_engine(settings.database_url(spec.name)) if spec.metadata is not None else None
        self.relay: Relay | None = None
        self.consumer: InboxConsumer | None = None
        self.sessions: async_sessionmaker[AsyncSession] | None = None
        if self.engine is not None and spec.backbone is not None:
            self.relay = Relay(spec.name, self.engine, spec.backbone.outbox, settings)
            self.sessions = session_factory(self.engine, **{WAKE_KEY: self.relay.wake})
            if spec.subscriptions is not None:
                self.consumer = InboxConsumer(spec.name, spec.subscriptions, self.sessions, spec.backbone.inbox, settings)
        elif self.engine is not None:
            self.sessions = session_factory(self.engine)
        # Sessions of requests that only read (see reading_engine).
        self.read_engine = reading_engine(self.engine) if self.engine is not None else None
        self.read_sessions = session_factory(self.read_engine) if self.read_engine is not None else None
        self.producer: AIOKafkaProducer | None = None
        self.broker_connected = asyncio.Event()
        # The broker may be away at start: HTTP and the outbox work meanwhile, events wait in the outbox.
        self._connecting = BackgroundTask(
            f"{self.name}-broker-connect",
            self._connect_broker,
            backoff=Backoff(first=0.2, most=5.0),
            expected=(TimeoutError, KafkaError, OSError, RuntimeError),
        )
        self._jobs = [
            BackgroundTask(
                f"{self.name}-{job.name}",
                every(partial(job.interval_s, settings), partial(job.run, self), name=job.name),
            )
            for job in [*spec.jobs, *([OUTBOX_GAUGES] if self.relay is not None else [])]
        ]
        self.state: dict[str, Any] = {}

    async def start(self) -> None:
        if self.engine is not None and self.spec.migrations_dir is not None and self.settings.should_migrate_on_start():
            await migrate(self.engine, self.spec.migrations_dir)
        if self.spec.uses_broker:
            self._connecting.start()
        else:
            self.broker_connected.set()
        for hook in self.spec.on_start:
            await hook(self)
        for job in self._jobs:
            job.start()

    async def _connect_broker(self) -> None:
        """Connects once: the producer, then the relay and the consumer on it; a failure undoes all three."""
        producer = kafka.producer(self.settings, client_id=f"ceper-{self.name}")
        try:
            await ensure_platform_topics(self.settings)
            await producer.start()
            if self.relay is not None:
                await self.relay.start(producer)
            if self.consumer is not None:
                await self.consumer.start(producer)
        except BaseException:
            if self.consumer is not None:
                await self.consumer.stop()
            if self.relay is not None:
                await self.relay.stop()
            await producer.stop()
            raise
        self.producer = producer
        self.broker_connected.set()
        log.info("connected to the broker", bootstrap=self.settings.kafka_bootstrap_servers)

    async def wait_connected(self, timeout: float = 60) -> None:
        await asyncio.wait_for(self.broker_connected.wait(), timeout)

    async def stop(self) -> None:
        for job in self._jobs:
            await job.stop()
        for hook in reversed(self.spec.on_stop):
            await hook(self)
        await self._connecting.stop()
        if self.consumer is not None:
            await self.consumer.stop()
        if self.relay is not None:
            await self.relay.stop()
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
        self.broker_connected.clear()
        if self.engine is not None and self.read_engine is not None:
            await dispose_reading_engine(self.read_engine, self.engine)
            await self.engine.dispose()

    async def check_ready(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        if self.engine is not None:
            try:
                async with self.engine.connect() as conn:
                    await asyncio.wait_for(conn.execute(sa.text("SELECT 1")), 3)
                checks["database"] = "ok"
            except Exception as exc:  # any failure means not ready; the reason is reported
                checks["database"] = f"unavailable: {exc.__class__.__name__}: {exc}"[:300]
        if self.spec.uses_broker:
            checks["broker"] = await self._check_broker()
        if self.consumer is not None:
            checks["consumer"] = self.consumer.status
        for check in self.spec.readiness:
            problem = await check(self)
            checks[check.__name__.removeprefix("check_")] = problem or "ok"
        return checks

    async def _check_broker(self) -> str:
        if self.producer is None:
            return "unavailable: not connected yet"
        try:
            metadata = await asyncio.wait_for(self.producer.client.fetch_all_metadata(), 3)
            return "ok" if metadata.brokers() else "unavailable: no brokers in metadata"
        except Exception as exc:
            return f"unavailable: {exc.__class__.__name__}"


def runtime_of(request: Request) -> ServiceRuntime:
    return request.app.state.runtime  # type: ignore[no-any-return]


# Dependencies are coroutines: FastAPI runs a plain function in its thread pool, a hop on every request.
async def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    runtime = runtime_of(request)
    # A GET changes nothing: its transaction reads (on SQLite, without waiting for the writer's lock).
    sessions = runtime.read_sessions if request.method in SAFE_METHODS else runtime.sessions
    assert sessions is not None, "this service has no database"
    return sessions


SAFE_METHODS = frozenset({"GET", "HEAD"})


Sessions = Annotated[async_sessionmaker[AsyncSession], Depends(_sessions)]


async def _runtime(request: Request) -> ServiceRuntime:
    return runtime_of(request)


Runtime = Annotated[ServiceRuntime, Depends(_runtime)]


class Health(BaseModel):
    status: str
    service: str
    checks: dict[str, str] = {}


def _operations_router(service: str) -> APIRouter:
    # Probes and scrapers carry no token; these answers hold nothing a caller could misuse.
    router = APIRouter(tags=["operations"], dependencies=[Depends(public())])

    @router.get("/healthz", response_model=Health, summary="Liveness: the process serves requests", responses=problem_responses())
    async def healthz() -> Health:
        return Health(status="ok", service=service)

    @router.get(
        "/readyz",
        response_model=Health,
        summary="Readiness: the database and the broker really answer",
        responses={
            **problem_responses(),
            503: {"model": Health, "description": "A dependency is unavailable; `checks` says which"},
        },
    )
    async def readyz(request: Request) -> JSONResponse:
        checks = await runtime_of(request).check_ready()
        ready = all(v == "ok" for v in checks.values())
        body = Health(status="ok" if ready else "unavailable", service=service, checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response, responses=problem_responses())
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(PROMETHEUS_REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router


def freeze_startup_heap() -> None:
    """Called once a process has started its service. What is alive then (modules, table metadata, settings, the
    planner's tables) lives as long as the process: frozen out of the collector, a full collection walks only what
    the work since made, and holds the event loop for milliseconds rather than a tenth of a second."""
    if gc.get_freeze_count() == 0:  # once per process
        gc.freeze()


def create_service_app(spec: ServiceSpec, settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or get_settings()
    runtime = ServiceRuntime(spec, settings, clock or SYSTEM_CLOCK)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(spec.name, settings.log_level, settings.log_json)
        use_clock(runtime.clock)  # background tasks started below inherit it
        await runtime.start()
        freeze_startup_heap()
        log.info("service started", service=spec.name)
        try:
            yield
        finally:
            await runtime.stop()
            tracing.flush()
            log.info("service stopped", service=spec.name)

    # /docs and /redoc load Swagger UI and ReDoc from files the package ships, never from a CDN.
    app = FastAPIOffline(title=spec.title, description=spec.description, version="1.0.0", lifespan=lifespan)
    app.state.runtime = runtime
    # Errors are documented as the handlers send them: application/problem+json with the Problem schema.
    generate_openapi = app.openapi
    app.openapi = lambda: app.openapi_schema or document_problems(generate_openapi())  # type: ignore[method-assign]
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware, service=spec.name)
    tracing.setup(spec.name, settings, app=app, engine=runtime.engine)
    app.include_router(_operations_router(spec.name))
    for router in spec.routers:
        app.include_router(router)
    return app
