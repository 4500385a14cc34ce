"""Buyer webhooks: signed, queued persistently, retried, delivered to a real HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.orders import store
from services.orders.app import create_app as orders_app
from services.orders.domain import WebhookEndpoint
from shared import clock
from shared.clock import FixedClock
from tests.fixtures.tokens import ANONYMOUS, as_
from tests.support import RECEIVER_ON_LOOPBACK, Receiver, eventually, run_service


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


async def test_ping_is_signed_and_verifiable_with_the_buyers_secret(make_settings, receiver):
    settings = make_settings(orders_webhook_poll_interval_s=0.05, **RECEIVER_ON_LOOPBACK)
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
    settings = make_settings(orders_webhook_poll_interval_s=0.05, **RECEIVER_ON_LOOPBACK)
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
    settings = make_settings(orders_webhook_poll_interval_s=0.02, **RECEIVER_ON_LOOPBACK)
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


async def test_the_secret_is_shown_once_and_never_read_back(make_settings, receiver, capfd):
    settings = make_settings(orders_webhook_poll_interval_s=0.05, **RECEIVER_ON_LOOPBACK)
    async with run_service(orders_app, settings) as orders:
        created = (await orders.http.put("/v1/buyers/KAI/webhook", json={"url": receiver.url})).json()
        secret = created["secret"]
        assert secret.startswith("whsec_")

        read = await orders.http.get("/v1/buyers/KAI/webhook")
        assert read.status_code == 200 and read.json()["secret"] is None and read.json()["url"] == receiver.url
        changed = await orders.http.put("/v1/buyers/KAI/webhook", json={"url": receiver.url, "enabled": True})
        assert changed.json()["secret"] is None  # the secret stays, unseen
        chosen = "whsec_" + "B" * 40
        own = await orders.http.put("/v1/buyers/KAI/webhook", json={"url": receiver.url, "secret": chosen})
        assert own.status_code == 200 and own.json()["secret"] is None  # the buyer's own secret is not echoed

        await orders.http.post("/v1/buyers/KAI/webhook/ping")
        await eventually(lambda: _async(receiver.received))
        log = (await orders.http.get("/v1/buyers/KAI/webhook-deliveries")).text
        trail = await _audit_rows(orders)
        for seen in (log, json.dumps(trail, default=str), read.text, changed.text, own.text):
            assert secret not in seen and chosen not in seen
        assert [row["action"] for row in trail] == ["webhook_endpoint.set"] * 3
    logged = capfd.readouterr()
    assert "webhook endpoint set" in logged.err + logged.out  # the service's log lines were captured
    assert secret not in logged.err + logged.out and chosen not in logged.err + logged.out


async def test_urls_to_internal_addresses_are_refused_when_set(make_settings):
    settings = make_settings()
    async with run_service(orders_app, settings) as orders:
        for url in (
            "http://127.0.0.1:8002/internal/jobs/expire-holds",
            "http://localhost:8001/v1/purchase-orders",
            "http://[::ffff:127.0.0.1]:8003/internal",
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "http://[fd00:ec2::254]/latest/meta-data/",
            "http://10.0.0.8/hooks",
            "http://2130706433/hooks",
            "http://0x7f.1/hooks",
        ):
            refused = await orders.http.put("/v1/buyers/KAI/webhook", json={"url": url})
            assert refused.status_code == 422, (url, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["errors"][0]["field"] == "body.url"
        assert (await orders.http.get("/v1/buyers/KAI/webhook")).status_code == 404  # nothing was stored
        assert await _audit_rows(orders) == []

    production = make_settings(orders_webhook_require_https=True, **RECEIVER_ON_LOOPBACK)
    async with run_service(orders_app, production) as orders:
        plain = await orders.http.put("/v1/buyers/KAI/webhook", json={"url": "http://127.0.0.1:9/hooks"})
        assert plain.status_code == 422 and "https" in plain.json()["detail"]


async def test_a_host_that_resolves_to_loopback_at_send_time_is_refused_and_logged(make_settings, receiver):
    """The URL was accepted (here: trusted then, or stored before its name pointed inward); the sender checks again."""
    trusting = make_settings(orders_webhook_poll_interval_s=0.05, **RECEIVER_ON_LOOPBACK)
    async with run_service(orders_app, trusting) as orders:
        assert (await orders.http.put("/v1/buyers/KAI/webhook", json={"url": receiver.url})).status_code == 200
        async with orders.runtime.sessions.begin() as session:  # INKA's name now resolves to loopback
            url = f"http://localhost:{receiver.port}/hooks/ceper"
            await store.save_webhook_endpoint(session, WebhookEndpoint("INKA", url, "whsec_" + "C" * 40, True, clock.now()))

    strict = make_settings(orders_webhook_poll_interval_s=0.05, kafka_topic_prefix=trusting.kafka_topic_prefix)
    strict = strict.model_copy(update={"orders_database_url": trusting.orders_database_url, "var_dir": trusting.var_dir})
    async with run_service(orders_app, strict) as orders:
        pings = [(await orders.http.post(f"/v1/buyers/{buyer}/webhook/ping")).json()["id"] for buyer in ("KAI", "INKA")]

        async def refused(buyer):
            log = (await orders.http.get(f"/v1/buyers/{buyer}/webhook-deliveries")).json()
            return log if log and log[0]["attempts"] == 1 else None

        kai, inka = await eventually(lambda: refused("KAI")), await eventually(lambda: refused("INKA"))
        assert {kai[0]["id"], inka[0]["id"]} == set(pings)
        assert kai[0]["last_error"] == "refused: 127.0.0.1 is a loopback address"
        assert inka[0]["last_error"] == "refused: localhost resolves to a loopback address"
        for entry in (kai[0], inka[0]):
            assert entry["status"] == "pending" and entry["last_status_code"] is None  # retried later: DNS may change back
    assert receiver.received == []


async def test_the_delivery_log_keeps_status_and_timing_not_the_receivers_answer(make_settings, receiver):
    settings = make_settings(orders_webhook_poll_interval_s=0.05, **RECEIVER_ON_LOOPBACK)
    receiver.statuses = [500]
    receiver.answer = b"Traceback: db password=hunter2 at 10.1.2.3"
    async with run_service(orders_app, settings) as orders:
        await orders.http.put("/v1/buyers/KAI/webhook", json={"url": receiver.url})
        await orders.http.post("/v1/buyers/KAI/webhook/ping")

        async def attempted():
            log = (await orders.http.get("/v1/buyers/KAI/webhook-deliveries")).json()
            return log if log and log[0]["attempts"] == 1 else None

        entry = (await eventually(attempted))[0]
        assert entry["last_status_code"] == 500 and entry["last_error"] == "HTTP 500"
        assert isinstance(entry["last_duration_ms"], int) and entry["last_duration_ms"] >= 0
        assert entry["last_attempt_at"] is not None


async def test_a_rotated_secret_keeps_verifying_during_its_grace_and_not_after(make_settings, receiver):
    clock = FixedClock(datetime.now(UTC))  # real time, so receivers' timestamp tolerance holds; moved by hand
    factory = lambda s: orders_app(s, clock)  # noqa: E731
    settings = make_settings(orders_webhook_poll_interval_s=0.05, orders_webhook_secret_grace_s=60, **RECEIVER_ON_LOOPBACK)
    async with run_service(factory, settings) as orders:
        old = (await orders.http.put("/v1/buyers/KAI/webhook", json={"url": receiver.url})).json()["secret"]

        rotate = "/v1/buyers/KAI/webhook/rotate-secret"
        assert (await orders.http.post(rotate, auth=ANONYMOUS)).status_code == 401
        assert (await orders.http.post(rotate, auth=as_("buyer", "INKA"))).status_code == 404  # another buyer's
        assert (await orders.http.post(rotate, auth=as_("planner"))).status_code == 403
        rotated = await orders.http.post(rotate, auth=as_("buyer", "KAI", subject="kai-eproc"))
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new.startswith("whsec_") and new != old
        assert rotated.json()["previous_secret_expires_at"] == (clock.now() + timedelta(seconds=60)).isoformat().replace(
            "+00:00", "Z"
        )
        assert (await orders.http.get("/v1/buyers/KAI/webhook")).json()["secret"] is None

        await orders.http.post("/v1/buyers/KAI/webhook/ping")
        await eventually(lambda: _async(len(receiver.received) == 1))
        during = receiver.received[0]
        assert len(during["headers"]["webhook-signature"].split(" ")) == 2
        assert Webhook(old).verify(during["body"], during["headers"])["type"] == "ping"  # a receiver not switched yet
        assert Webhook(new).verify(during["body"], during["headers"])["type"] == "ping"

        clock.advance(timedelta(seconds=61))
        await orders.http.post("/v1/buyers/KAI/webhook/ping")
        await eventually(lambda: _async(len(receiver.received) == 2))
        after = receiver.received[1]
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(after["body"], after["headers"])
        assert Webhook(new).verify(after["body"], after["headers"])["type"] == "ping"

        trail = await _audit_rows(orders)
        rotation = next(row for row in trail if row["action"] == "webhook_endpoint.secret_rotated")
        assert (rotation["actor_subject"], rotation["actor_role"]) == ("kai-eproc", "buyer")
        assert rotation["before"]["previous_secret_expires_at"] is None
        assert rotation["after"]["previous_secret_expires_at"] is not None
        assert old not in json.dumps(trail, default=str) and new not in json.dumps(trail, default=str)


async def _audit_rows(orders):
    async with orders.runtime.sessions() as session:
        return [dict(row._mapping) for row in await session.execute(sa.select(store.audit_log).order_by(store.audit_log.c.id))]


async def _async(value):
    return value
