"""Helpers for tests that run services in-process against the real broker and databases."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from shared.events import Envelope, from_kafka, topic_of
from shared.service import ServiceRuntime
from shared.settings import Settings
from shared.topics import read_to_end
from tests.fixtures.tokens import ADMIN


@dataclass
class RunningService:
    app: FastAPI
    runtime: ServiceRuntime
    http: httpx.AsyncClient


@asynccontextmanager
async def run_service(
    create_app: Callable[[Settings], FastAPI], settings: Settings, auth: httpx.Auth = ADMIN
) -> AsyncIterator[RunningService]:
    """The service in-process; its client calls as `auth` (an admin unless told), `auth=as_(...)` per request otherwise."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime: ServiceRuntime = app.state.runtime
        await runtime.wait_connected(60)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{runtime.name}", auth=auth) as client:
            yield RunningService(app, runtime, client)


@asynccontextmanager
async def run_services(settings: Settings, *names: str) -> AsyncIterator[dict[str, RunningService]]:
    from services.capacity.app import create_app as capacity
    from services.orders.app import create_app as orders
    from services.quality.app import create_app as quality

    factories = {"orders": orders, "capacity": capacity, "quality": quality}
    async with AsyncExitStack() as stack:
        running = {}
        for name in names:
            running[name] = await stack.enter_async_context(run_service(factories[name], settings))
        yield running


async def published(settings: Settings, service: str, subject: str) -> list[Envelope[Any]]:
    """The events `service` has published so far about one aggregate (its key), in the order they were published."""
    found = []
    async for records in read_to_end(settings, settings.topic(topic_of(service))):
        found += [envelope for r in records if (envelope := from_kafka(r.key, r.value, r.headers)).subject == subject]
    return found


async def staged(running: RunningService) -> list[Envelope[Any]]:
    """Every event `running` has staged so far, oldest first: those still in its outbox and those on its topic.

    The relay deletes a row once the broker acked it, so each event is in the outbox, on the topic or both (by id)."""
    runtime = running.runtime
    assert runtime.sessions is not None and runtime.spec.backbone is not None
    outbox = runtime.spec.backbone.outbox
    async with runtime.sessions() as session:
        rows = (await session.execute(sa.select(outbox.c.key, outbox.c.payload, outbox.c.headers).order_by(outbox.c.seq))).all()
    waiting = [from_kafka(row.key.encode(), row.payload, [(k, v.encode()) for k, v in row.headers.items()]) for row in rows]
    # Read after the outbox: a row gone from it by now was acked before this read, so the topic holds its event.
    sent: dict[str, Envelope[Any]] = {}
    async for records in read_to_end(runtime.settings, runtime.settings.topic(topic_of(runtime.name))):
        for r in records:
            envelope = from_kafka(r.key, r.value, r.headers)
            sent.setdefault(envelope.id, envelope)
    events = [*sent.values(), *(e for e in waiting if e.id not in sent)]
    # Across keys only the event time orders them; the stable sort keeps one transaction's events in staging order.
    return sorted(events, key=lambda e: e.time)


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Awaits `check` until it returns a truthy value (returned) or raises no AssertionError."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = await check()
            if result:
                return result
            last_error = None
        except AssertionError as exc:
            last_error = exc
        if time.monotonic() > deadline:
            if last_error is not None:
                raise last_error
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


ROOT = Path(__file__).resolve().parents[1]


def auth_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a service process trust the same issuer as `settings`."""
    return {
        "CEPER_AUTH_ISSUER": settings.auth_issuer_url(),
        "CEPER_AUTH_AUDIENCE": settings.auth_audience,
        "CEPER_AUTH_JWKS_URL": settings.auth_jwks(),
    }


def run_ceper(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs the `ceper` command line as an operator would, configured like `settings`."""
    env = {
        **os.environ,
        "CEPER_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "CEPER_KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "CEPER_VAR_DIR": str(settings.var_dir),
        "CEPER_ENV": settings.env,
    }
    for service in ("orders", "capacity", "quality"):
        url = getattr(settings, f"{service}_database_url")
        if url:
            env[f"CEPER_{service.upper()}_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "ceper", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout
    )


# Webhooks may not reach loopback: tests whose receiver listens there trust its network, as an operator may.
RECEIVER_ON_LOOPBACK: dict[str, Any] = {"orders_webhook_allowed_networks": ["127.0.0.1/32"]}


class Receiver:
    """A buyer's endpoint: records what it receives, answers the status codes it is told to."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.statuses: list[int] = []
        self.answer = b""  # the body of every answer
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode()})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("content-length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/hooks/ceper"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
