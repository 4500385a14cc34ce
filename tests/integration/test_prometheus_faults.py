"""Alerts of the event backbone, the APIs and the webhooks, each fired by a real Prometheus because its trouble was
made for real under a service process: a database that refuses connections, a consumer held up by a lock while
events keep arriving, a foreign member in a service's consumer group, a buyer's endpoint that refuses every retry,
units reserved beyond capacity by a hand edit no revocation follows (and made units over a later closure, which
must not fire).

Each test starts the services it troubles, on PostgreSQL and a topic prefix of its own, and adds them to the one
Prometheus of the module (prometheus_support.py: the project's rules, 1 s for `for:`).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ceper.postgres import LocalPostgres
from services.orders.webhooks import RETRY_DELAYS_S
from shared import kafka
from shared.events import Envelope, to_kafka
from shared.events.orders import PurchaseOrderCancelled
from shared.events.quality import LotRegistered
from shared.settings import Settings
from shared.topics import ensure_platform_topics
from tests.fixtures.tokens import SUITE_MINT
from tests.integration.capacity_support import publish
from tests.integration.clocked_orders import CLOCK_FILE, move_forward
from tests.integration.prometheus_support import FAST_JOBS, HTTP, Prometheus, api_headers, post, wait_for
from tests.integration.service_processes import ServiceProcess
from tests.support import Receiver


@dataclass
class Platform:
    bootstrap: str
    postgres: LocalPostgres
    prometheus: Prometheus
    root: Path
    jwks_url: str  # the suite issuer's, which every service here trusts

    def settings(self) -> Settings:
        """A topic prefix (and so consumer groups) no other test shares."""
        prefix = f"t{uuid.uuid4().hex[:10]}."
        return Settings(
            env="test",
            var_dir=self.root / prefix / "var",
            kafka_bootstrap_servers=self.bootstrap,
            kafka_topic_prefix=prefix,
            kafka_partitions=3,
            outbox_poll_interval_s=0.5,
            **SUITE_MINT.settings(self.jwks_url),
        )

    @contextmanager
    def service(
        self,
        name: str,
        settings: Settings | None = None,
        *,
        env: dict[str, str] | None = None,
        factory: str | None = None,
        ready: bool = True,
    ) -> Iterator[ServiceProcess]:
        """One service process on a database of its own, scraped by the module's Prometheus while the block runs."""
        settings = settings or self.settings()
        settings = settings.model_copy(update={f"{name}_database_url": self.postgres.create_database()})
        root = self.root / f"{name}-{uuid.uuid4().hex[:6]}"
        root.mkdir(parents=True)
        process = ServiceProcess(name, settings, root, {**FAST_JOBS, **(env or {})}, factory=factory)
        try:
            process.start(ready=ready)
            self.prometheus.scrape(name, address_of(process))
            yield process
        finally:
            process.stop()


def address_of(service: ServiceProcess) -> str:
    return f"127.0.0.1:{service.port}"


def database_of(service: ServiceProcess) -> str:
    return service.env[f"CEPER_{service.name.upper()}_DATABASE_URL"].rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def platform(
    kafka_broker, postgres_server: LocalPostgres, suite_jwks_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("faults")
    prometheus = Prometheus(root, [])
    prometheus.start()
    try:
        yield Platform(kafka_broker.bootstrap, postgres_server, prometheus, root, suite_jwks_url)
    finally:
        prometheus.stop()


def test_high_error_rate_fires_while_a_services_database_refuses_connections(platform: Platform) -> None:
    prometheus, postgres = platform.prometheus, platform.postgres
    with platform.service("quality") as quality:
        assert HTTP.get(f"{quality.url}/v1/foundries", headers=api_headers()).status_code == 200
        assert not prometheus.firing_for("HighErrorRate", service="quality")
        database = database_of(quality)
        # The database goes away under the service: no new connection, and the ones it holds are cut.
        postgres.admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        postgres.admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")
        statuses: list[int] = []
        try:

            def fires() -> list[dict[str, str]]:
                """HighErrorRate fires for quality while its clients keep calling"""
                for _ in range(3):
                    answer = HTTP.get(f"{quality.url}/v1/foundries", headers=api_headers())
                    statuses.append(answer.status_code)
                return prometheus.firing_for("HighErrorRate", service="quality")

            wait_for(fires, timeout=90)
        finally:
            postgres.admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        # The clients were told the truth: the database is unavailable, retry later.
        assert set(statuses) == {503}, statuses


@contextmanager
def table_locked(postgres: LocalPostgres, database: str, table: str) -> Iterator[None]:
    """A long transaction holding a table's ACCESS EXCLUSIVE lock until the block ends, as a migration or a
    `VACUUM FULL` would."""
    locked, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    async def hold() -> None:
        connection = await asyncpg.connect(host=postgres.host, port=postgres.port, user=postgres.user, database=database)
        try:
            async with connection.transaction():
                await connection.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
                locked.set()
                await asyncio.get_running_loop().run_in_executor(None, release.wait)
                raise asyncio.CancelledError  # rolls the transaction back
        except asyncio.CancelledError:
            pass
        finally:
            await connection.close()

    def run() -> None:
        try:
            asyncio.run(hold())
        except BaseException as exc:
            failures.append(exc)
            locked.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert locked.wait(30) and not failures, f"the lock was not taken: {failures}"
        yield
    finally:
        release.set()
        thread.join(30)


async def publish_cancellations(settings: Settings, count: int) -> None:
    """Orders' cancellations of orders capacity never held anything for: events capacity must record, keyed over
    every partition."""
    producer = kafka.producer(settings, client_id="alerts-tests")
    await producer.start()
    try:
        sent = []
        for i in range(count):
            envelope = Envelope.of(
                PurchaseOrderCancelled(
                    order_id=f"po_lag_{i}", buyer_code="KAI", reason="withdrawn by the buyer", cancelled_at=datetime.now(UTC)
                )
            )
            message = to_kafka(envelope)
            sent.append(
                await producer.send(
                    settings.topic(envelope.type.topic),
                    value=message.value,
                    key=envelope.key.encode(),
                    headers=list(message.headers.items()),
                )
            )
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def test_consumer_lag_high_fires_while_a_consumer_is_held_up_and_events_keep_arriving(platform: Platform) -> None:
    prometheus = platform.prometheus
    settings = platform.settings()
    topic = settings.topic("ceper.orders.v1")
    with platform.service("capacity", settings) as capacity:
        instance = address_of(capacity)

        def lag_measured() -> bool:
            """capacity's lag on orders' topic is scraped"""
            return prometheus.value(f'sum(ceper_consumer_lag{{instance="{instance}", topic="{topic}"}})') == 0

        wait_for(lag_measured)
        with table_locked(platform.postgres, database_of(capacity), "inbox"):
            asyncio.run(publish_cancellations(settings, 1200))

            def fires() -> list[dict[str, str]]:
                """ConsumerLagHigh fires for capacity on orders' topic"""
                return prometheus.firing_for("ConsumerLagHigh", service="capacity", topic=topic)

            wait_for(fires, timeout=90)
            # Held up, not down: the loop runs, so this is the alert that tells.
            assert prometheus.value(f'ceper_consumer_running{{instance="{instance}"}}') == 1
            assert not prometheus.firing_for("ConsumerNotRunning", instance=instance)

        def resolved() -> bool:
            """capacity caught up once the lock was released, and the alert resolved"""
            return not prometheus.firing_for("ConsumerLagHigh", service="capacity", topic=topic)

        wait_for(resolved, timeout=120)


async def consumer_group_members(settings: Settings, group: str) -> int:
    admin = kafka.admin(settings.kafka_bootstrap_servers, "alerts-tests")
    await admin.start()
    try:
        (described,) = await admin.describe_consumer_groups([group])
        return sum(len(g[5]) for g in described.groups if g[1] == group)
    finally:
        await admin.close()


@contextmanager
def foreign_member(settings: Settings, group: str, topic: str) -> Iterator[Callable[[], None]]:
    """An operator reading a topic with kcat in a service's consumer group, with an assignment strategy the
    service's consumers do not share, and committing nothing. Yields how to make it leave."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat not found on PATH: run `bash deploy/install-system-deps.sh` (as root)"
    process = subprocess.Popen(
        [kcat, "-q", "-b", settings.kafka_bootstrap_servers, "-G", group, topic,
         "-X", "partition.assignment.strategy=cooperative-sticky", "-X", "enable.auto.commit=false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip

    def leave() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    try:

        def joined() -> bool:
            """kcat joined the group"""
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            return asyncio.run(consumer_group_members(settings, group)) == 1

        wait_for(joined, timeout=60)
        yield leave
    finally:
        leave()


def test_consumer_not_running_and_restarting_fire_while_a_foreign_member_holds_the_group(platform: Platform) -> None:
    prometheus = platform.prometheus
    settings = platform.settings()
    asyncio.run(ensure_platform_topics(settings))
    # quality starts while the group is held: its consumer is refused at every join and its loop restarts.
    with (
        foreign_member(settings, settings.consumer_group("quality"), settings.topic("ceper.orders.v1")) as leave,
        platform.service("quality", settings, ready=False) as quality,
    ):
        instance = address_of(quality)

        def both_fire() -> bool:
            """ConsumerRestarting and ConsumerNotRunning fire for the quality replica"""
            return bool(
                prometheus.firing_for("ConsumerRestarting", instance=instance)
                and prometheus.firing_for("ConsumerNotRunning", instance=instance)
            )

        wait_for(both_fire, timeout=90)
        ready = HTTP.get(f"{quality.url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["consumer"].startswith("restarting after"), ready.json()
        assert (prometheus.value(f'ceper_consumer_restarts_total{{instance="{instance}"}}') or 0) >= 3

        # Once the foreign member leaves, a restart joins the group and ConsumerNotRunning resolves.
        leave()

        def recovered() -> bool:
            """quality's consumer runs again"""
            return not prometheus.firing_for("ConsumerNotRunning", instance=instance)

        wait_for(recovered, timeout=120)
        assert HTTP.get(f"{quality.url}/readyz").status_code == 200


def wait_for_attempts(orders: ServiceProcess, message_id: str, attempts: int) -> dict[str, Any]:
    def attempted() -> dict[str, Any] | None:
        """orders attempted the message again"""
        log = HTTP.get(f"{orders.url}/v1/buyers/KAI/webhook-deliveries", headers=api_headers()).json()
        delivery = next(d for d in log if d["id"] == message_id)
        return delivery if delivery["attempts"] >= attempts else None

    return wait_for(attempted, timeout=60, interval=0.2)  # type: ignore[no-any-return]


def test_webhook_deliveries_failing_fires_when_a_buyers_endpoint_refuses_every_retry(platform: Platform) -> None:
    prometheus = platform.prometheus
    clock_file = platform.root / f"clock-{uuid.uuid4().hex[:6]}"
    clock_file.write_text("0")
    with Receiver() as endpoint:
        endpoint.statuses = [500] * (len(RETRY_DELAYS_S) + 1)
        with platform.service(
            "orders",
            # The buyer's endpoint of this test listens on loopback, which orders trusts only when told to.
            env={CLOCK_FILE: str(clock_file), "CEPER_ORDERS_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.1/32"]'},
            factory="tests.integration.clocked_orders:create_app",
        ) as orders:
            answer = HTTP.put(f"{orders.url}/v1/buyers/KAI/webhook", json={"url": endpoint.url}, headers=api_headers())
            assert answer.status_code == 200, answer.text
            message_id = post(f"{orders.url}/v1/buyers/KAI/webhook/ping", {}, expected=202)["id"]
            # A day of retries: each time the next one is due, the service's clock is moved to it.
            for attempt, delay in enumerate(RETRY_DELAYS_S, start=1):
                delivery = wait_for_attempts(orders, message_id, attempt)
                assert delivery["status"] == "pending" and delivery["last_status_code"] == 500, delivery
                move_forward(clock_file, delay + 1)
            delivery = wait_for_attempts(orders, message_id, len(RETRY_DELAYS_S) + 1)
            assert delivery["status"] == "failed" and delivery["last_status_code"] == 500, delivery
            assert len(endpoint.received) == len(RETRY_DELAYS_S) + 1

            def fires() -> list[dict[str, str]]:
                """WebhookDeliveriesFailing fires for the ping given up"""
                return prometheus.firing_for("WebhookDeliveriesFailing", event_type="ping")

            wait_for(fires, timeout=60)


def week_from_now(weeks: int) -> tuple[str, date]:
    """An ISO week some weeks ahead, and its Monday."""
    monday = date.today() + timedelta(weeks=weeks) - timedelta(days=date.today().weekday())
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}", monday


def test_capacity_over_reserved_fires_on_units_not_made_beyond_capacity_and_not_on_made_ones(platform: Platform) -> None:
    prometheus, settings = platform.prometheus, platform.settings()
    made_week, made_monday = week_from_now(3)
    open_week, _ = week_from_now(4)
    with platform.service("capacity", settings) as capacity:
        post(f"{capacity.url}/v1/foundries",
             {"code": "IKM-401", "name": "CV Pompa Batur", "village": "Batur", "product_families": ["PUMP_PARTS"]})  # fmt: skip
        post(f"{capacity.url}/v1/foundries/IKM-401/capacity-changes",
             {"kind": "standard", "reason": "declared", "product_family": "PUMP_PARTS", "weekly_units": 100})  # fmt: skip

        # 80 units of one week reserved, confirmed and made; then Lebaran closes that week.
        made = post(f"{capacity.url}/v1/reservations",
                    {"foundry_code": "IKM-401", "product_family": "PUMP_PARTS", "week": made_week, "quantity": 80,
                     "order_id": "po_made"})  # fmt: skip
        post(f"{capacity.url}/v1/reservations/{made['id']}/confirm", {}, expected=200)
        lot = LotRegistered(lot_code="IKM-401-P-0001", foundry_code="IKM-401", item_code="PP-IMP-6", quantity=80,
                            order_id="po_made", spec_version=1, registered_at=datetime.now(UTC))  # fmt: skip
        asyncio.run(publish(settings, lot))

        def consumed() -> bool:
            """capacity counted the lot against the reservation"""
            return HTTP.get(f"{capacity.url}/v1/reservations/{made['id']}", headers=api_headers()).json()["state"] == "consumed"

        wait_for(consumed)
        post(f"{capacity.url}/v1/foundries/IKM-401/capacity-changes",
             {"kind": "exception", "reason": "lebaran_closure", "product_family": "PUMP_PARTS", "weekly_units": 0,
              "from_date": made_monday.isoformat(), "to_date": (made_monday + timedelta(days=6)).isoformat()})  # fmt: skip
        labels = f'product_family="PUMP_PARTS", week="{made_week}", instance="{address_of(capacity)}"'

        def closed_week_scraped() -> bool:
            """Prometheus sees the closed week holding 80 made units against no capacity"""
            return (
                prometheus.value(f"ceper_capacity_units{{{labels}}}") == 0
                and prometheus.value(f"ceper_capacity_reserved_units{{{labels}}}") == 80
            )

        wait_for(closed_week_scraped)
        time.sleep(5)  # several evaluations with the week over capacity
        assert prometheus.value(f"ceper_capacity_overbooked_units{{{labels}}}") == 0
        assert prometheus.rule_state("CapacityOverReserved") == "inactive", "made units over a later closure fired it"

        # The next week: 60 units confirmed within capacity, then raised to 150 by a hand edit of capacity's
        # database, which no revocation follows.
        held = post(f"{capacity.url}/v1/reservations",
                    {"foundry_code": "IKM-401", "product_family": "PUMP_PARTS", "week": open_week, "quantity": 60})  # fmt: skip
        post(f"{capacity.url}/v1/reservations/{held['id']}/confirm", {}, expected=200)
        asyncio.run(
            hand_edit(
                platform.postgres, database_of(capacity), "UPDATE reservations SET quantity = 150 WHERE id = $1", held["id"]
            )
        )

        def fires() -> list[dict[str, str]]:
            """CapacityOverReserved fires for the edited week"""
            return prometheus.firing_for("CapacityOverReserved", product_family="PUMP_PARTS", week=open_week)

        wait_for(fires)
        assert prometheus.value(f'max(ceper_capacity_overbooked_units{{product_family="PUMP_PARTS", week="{open_week}"}})') == 50
        assert not prometheus.firing_for("CapacityOverReserved", week=made_week)


async def hand_edit(postgres: LocalPostgres, database: str, statement: str, *args: object) -> None:
    connection = await asyncpg.connect(host=postgres.host, port=postgres.port, user=postgres.user, database=database)
    try:
        assert await connection.execute(statement, *args) == "UPDATE 1"
    finally:
        await connection.close()
