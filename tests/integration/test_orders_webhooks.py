"""Buyer webhooks: signed, queued persistently, retried, delivered to a real HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.orders.app import create_app as orders_app
from shared.clock import FixedClock
from tests.support import Receiver, eventually, run_service


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


async def test_ping_is_signed_and_verifiable_with_the_buyers_secret(make_settings, receiver):
    settings = make_settings(orders_webhook_poll_interval_s=0.05)
    async with run_service(orders_app, settings) as orders:
        put = await orders.http.put("/v1/buyers/KAI/webhook", json={"url": receiver.url})
        assert put.status_code == 200, put.text
        secret = put.json()["secret"]
        assert secret.startswith("whsec_")
        ping = await orders.http.post("/v1/buyers/KAI/webhook/ping")
        assert ping.status_code == 202 and ping.json()["status"] == "pending"

        await eventually(lambda: _async(receiver.received))
        message = receiver.received[0]
        payload = Webhook(secret).verify(message["body"], message["headers"])  # raises if the signature is wrong
        assert payload["type"] == "ping" and payload["data"] == {"buyer_code": "KAI"}
        assert message["headers"]["webhook-id"] == ping.json()["id"]
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + "A" * 32).verify(message["body"], message["headers"])

        async def logged_delivered():
            log = (await orders.http.get("/v1/buyers/KAI/webhook-deliveries")).json()
            return log and log[0]["status"] == "delivered" and log[0]["last_status_code"] == 200

        await eventually(logged_delivered)


async def test_failed_delivery_is_retried_with_backoff_and_survives_a_restart(make_settings, receiver):
    settings = make_settings(orders_webhook_poll_interval_s=0.05)
    clock = FixedClock(datetime(2027, 1, 4, 2, 0, tzinfo=UTC))
    receiver.statuses = [503, 500]
    factory = lambda s: orders_app(s, clock)  # noqa: E731
    async with run_service(factory, settings) as orders:
        await orders.http.put("/v1/buyers/INKA/webhook", json={"url": receiver.url})
        message_id = (await orders.http.post("/v1/buyers/INKA/webhook/ping")).json()["id"]
        await eventually(lambda: _async(len(receiver.received) == 1))

        async def first_attempt_logged():
            log = (await orders.http.get("/v1/buyers/INKA/webhook-deliveries")).json()
            return log if log[0]["attempts"] == 1 else None

        log = await eventually(first_attempt_logged)
        assert log[0]["status"] == "pending" and log[0]["last_status_code"] == 503
        assert log[0]["next_attempt_at"] == (clock.now() + timedelta(seconds=5)).isoformat().replace("+00:00", "Z")

    # Down for a while: the message waits in the database, not in memory.
    clock.advance(timedelta(seconds=6))
    async with run_service(factory, settings) as orders:
        await eventually(lambda: _async(len(receiver.received) == 2))
        clock.advance(timedelta(seconds=31))
        await eventually(lambda: _async(len(receiver.received) == 3))

        async def delivered():
            log = (await orders.http.get("/v1/buyers/INKA/webhook-deliveries")).json()
            return log[0]["status"] == "delivered" and log[0]["attempts"] == 3

        await eventually(delivered)
    assert {m["headers"]["webhook-id"] for m in receiver.received} == {message_id}


async def test_two_replicas_deliver_each_message_once(make_settings, receiver):
    """Two orders processes share the database, and both dispatchers poll the same queue every 20 ms."""
    settings = make_settings(orders_webhook_poll_interval_s=0.02)
    async with run_service(orders_app, settings) as first, run_service(orders_app, settings) as second:
        assert (await first.http.put("/v1/buyers/KAI/webhook", json={"url": receiver.url})).status_code == 200
        ids = []
        for n in range(80):
            replica = first if n % 2 else second
            ping = await replica.http.post("/v1/buyers/KAI/webhook/ping")
            assert ping.status_code == 202, ping.text
            ids.append(ping.json()["id"])

        async def all_received():
            return {m["headers"]["webhook-id"] for m in receiver.received} == set(ids)

        await eventually(all_received, timeout=60)
        await asyncio.sleep(1.0)  # a second sender of any message would have delivered its copy by now
        deliveries = Counter(m["headers"]["webhook-id"] for m in receiver.received)
        assert sorted(deliveries) == sorted(ids) and set(deliveries.values()) == {1}

        async def all_logged_once():
            # A sender records its attempt after the receiver has answered: the log may trail the receiver.
            log = (await second.http.get("/v1/buyers/KAI/webhook-deliveries", params={"limit": 200})).json()
            return len(log) == 80 and all(entry["status"] == "delivered" and entry["attempts"] == 1 for entry in log)

        await eventually(all_logged_once, timeout=30)


async def test_webhook_endpoint_errors_are_problems(make_settings):
    settings = make_settings()
    async with run_service(orders_app, settings) as orders:
        unknown = await orders.http.put("/v1/buyers/NOPE/webhook", json={"url": "http://127.0.0.1:9/x"})
        assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
        bad_url = await orders.http.put("/v1/buyers/KAI/webhook", json={"url": "not a url"})
        assert bad_url.status_code == 422 and bad_url.json()["errors"][0]["field"] == "body.url"
        weak = await orders.http.put("/v1/buyers/KAI/webhook", json={"url": "http://127.0.0.1:9/x", "secret": "hunter2"})
        assert weak.status_code == 422
        no_endpoint = await orders.http.post("/v1/buyers/TMMIN/webhook/ping")
        assert no_endpoint.status_code == 404
        assert (await orders.http.get("/v1/buyers/TMMIN/webhook")).status_code == 404


async def _async(value):
    return value
