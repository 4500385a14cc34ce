"""A service whose broker is away still starts and takes commands; readiness says what is missing."""

from __future__ import annotations

import asyncio

import httpx
import sqlalchemy as sa

from ceper.broker import free_port
from services.capacity import store
from services.capacity.app import create_app
from shared.service import ServiceRuntime
from tests.fixtures.tokens import as_


async def test_service_without_broker_serves_and_keeps_events_in_the_outbox(make_settings):
    # Nothing listens on a port just found free: every connection is refused.
    settings = make_settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    app = create_app(settings)
    runtime: ServiceRuntime = app.state.runtime
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://capacity", auth=as_("planner")) as http:
            health = await http.get("/healthz")
            assert health.status_code == 200 and health.json()["status"] == "ok"

            ready = await http.get("/readyz")
            assert ready.status_code == 503, ready.text
            body = ready.json()
            assert body["status"] == "unavailable"
            assert body["checks"]["database"] == "ok"
            assert body["checks"]["broker"] != "ok" and body["checks"]["broker"].startswith("unavailable")
            assert body["checks"]["consumer"] != "ok"

            created = await http.post(
                "/v1/foundries",
                json={"code": "IKM-077", "name": "CV Tanpa Kafka", "village": "Kuncen", "product_families": ["PUMP_PARTS"]},
            )
            assert created.status_code == 201, created.text
            assert (await http.get("/v1/foundries/IKM-077")).json()["name"] == "CV Tanpa Kafka"

            await asyncio.sleep(0.5)  # give a (wrongly) running relay the chance to send it
            assert runtime.sessions is not None
            outbox = store.backbone.outbox
            async with runtime.sessions() as session:
                rows = (await session.execute(sa.select(outbox.c.event_type, outbox.c.key))).all()
            assert [tuple(r) for r in rows] == [("ceper.capacity.foundry_registered.v1", "IKM-077")]  # still to send
            assert not runtime.broker_connected.is_set()
            assert "capacity-broker-connect" in {task.get_name() for task in asyncio.all_tasks()}
    # Leaving the lifespan stopped the connect loop instead of waiting for a broker that never comes.
    assert "capacity-broker-connect" not in {task.get_name() for task in asyncio.all_tasks()}
