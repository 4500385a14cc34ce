"""A real Prometheus (Debian's server) scrapes the services running as processes, with the project's scrape
config and alert rules, and its HTTP API answers with what an on-call person would read: business figures, the
consumer lag, and alerts that fire because their trouble was made for real.

The server and its copy of deploy/prometheus (1 s scrapes, 1 s for `for:`) are in prometheus_support.py; the
faults of the event backbone, the APIs and the webhooks are made in test_prometheus_faults.py.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest

from ceper.broker import free_port
from shared.settings import Settings
from tests.fixtures.tokens import SUITE_MINT, as_
from tests.integration.prometheus_support import FAST_JOBS, HTTP, Prometheus, api_headers, post, wait_for
from tests.integration.service_processes import ServiceProcess, service_processes


@dataclass
class Monitored:
    settings: Settings
    services: dict[str, ServiceProcess]
    stranded: ServiceProcess
    prometheus: Prometheus


@pytest.fixture(scope="module")
def monitored(kafka_broker, suite_jwks_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    root = tmp_path_factory.mktemp("monitored")
    settings = Settings(
        **SUITE_MINT.settings(suite_jwks_url),  # the services trust the suite's issuer, as with make_settings
        env="test",
        var_dir=root / "var",
        kafka_bootstrap_servers=kafka_broker.bootstrap,
        kafka_topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        kafka_partitions=3,
        outbox_poll_interval_s=0.5,
    )
    # A second capacity replica whose broker is out of reach: its outbox only grows and its consumer never runs.
    stranded_root = root / "stranded"
    stranded_root.mkdir()
    stranded_settings = settings.model_copy(
        update={"var_dir": stranded_root / "var", "kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"}
    )
    stranded = ServiceProcess("capacity", stranded_settings, stranded_root, FAST_JOBS)
    with service_processes(settings, root, "capacity", "quality", "orders", env=FAST_JOBS) as services:
        stranded.start(ready=False)
        targets = [(name, f"127.0.0.1:{service.port}") for name, service in services.items()]
        prometheus = Prometheus(root, [*targets, ("capacity", f"127.0.0.1:{stranded.port}")])
        prometheus.start()
        try:
            yield Monitored(settings, services, stranded, prometheus)
        finally:
            prometheus.stop()
            stranded.stop()


def test_prometheus_scrapes_every_service_and_reads_a_business_figure_and_the_consumer_lag(monitored: Monitored) -> None:
    prometheus, orders = monitored.prometheus, monitored.services["orders"]

    def all_up() -> bool:
        """every target is scraped"""
        return {(r["metric"]["service"], r["value"][1]) for r in prometheus.query('up{job="ceper"}')} == {
            ("orders", "1"), ("capacity", "1"), ("quality", "1")
        }  # fmt: skip

    wait_for(all_up)
    stranded = f"127.0.0.1:{monitored.stranded.port}"
    elsewhere = {
        name: labels
        for name, alerts in prometheus.firing().items()
        if (labels := [a for a in alerts if a.get("instance") != stranded])
    }
    assert elsewhere == {}, "an alert fires on a healthy, idle platform"

    order = HTTP.post(
        f"{orders.url}/v1/purchase-orders",
        json={
            "buyer_code": "INKA", "po_number": "INKA/PO/SCRAPE/1", "issued_on": date.today().isoformat(),
            "lines": [{"line_no": 1, "item_code": "BB-COMP-K", "quantity": 120, "unit_price": 203_700,
                       "deliveries": [{"due_date": (date.today() + timedelta(days=60)).isoformat(), "quantity": 120, "site_code": "INKA-MN"}]}],
        },
        headers=api_headers(**{"Idempotency-Key": "scrape-1"}),
    )  # fmt: skip
    assert order.status_code == 201, order.text

    def open_value() -> float | None:
        """Prometheus has INKA's open order value"""
        return prometheus.value('max(ceper_orders_open_value_rupiah{buyer="INKA"})') or None

    assert wait_for(open_value) == 120 * 203_700
    assert prometheus.value('max(ceper_orders_units{stage="ordered"})') >= 120

    def lag_scraped() -> list[dict[str, Any]] | None:
        """orders reported its lag on orders' own topic, having planned the order"""
        return prometheus.query('ceper_consumer_lag{service="orders", topic=~".*ceper.orders.v1"}') or None

    lag = wait_for(lag_scraped)
    assert all(float(series["value"][1]) == 0 for series in lag), lag


def publish_poison(settings: Settings, topic: str) -> None:
    """A message that claims to be a plan but carries none, published with kcat as any Kafka client could."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat not found on PATH: run `bash deploy/install-system-deps.sh` (as root)"
    headers = {"ce_type": "ceper.orders.allocation_planned.v1", "ce_id": str(uuid.uuid4()), "ce_source": "/test",
               "ce_specversion": "1.0", "content-type": "application/json"}  # fmt: skip
    command = [kcat, "-P", "-b", settings.kafka_bootstrap_servers, "-t", settings.topic(topic), "-k", "po_poison"]
    for name, value in headers.items():
        command += ["-H", f"{name}={value}"]
    sent = subprocess.run(command, input='{"order_id": "po_poison"}\n', capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr


def test_alerts_fire_on_trouble_made_for_real(monitored: Monitored) -> None:
    prometheus, settings = monitored.prometheus, monitored.settings
    capacity, quality, orders = (monitored.services[name] for name in ("capacity", "quality", "orders"))
    today = date.today()

    def gauges_at_rest() -> bool:
        """Prometheus has seen the quality and capacity gauges before the trouble"""
        return prometheus.value('max(ceper_quality_foundries{status="suspended"})') == 0

    wait_for(gauges_at_rest)

    # HighUtilisation: a member's whole week of pump parts held.
    post(
        f"{capacity.url}/v1/foundries",
        {"code": "IKM-301", "name": "CV Pompa", "village": "Batur", "product_families": ["PUMP_PARTS"]},
    )
    post(f"{capacity.url}/v1/foundries/IKM-301/capacity-changes",
         {"kind": "standard", "reason": "declared", "product_family": "PUMP_PARTS", "weekly_units": 100})  # fmt: skip
    week = (today + timedelta(days=21)).isocalendar()
    post(f"{capacity.url}/v1/reservations",
         {"foundry_code": "IKM-301", "product_family": "PUMP_PARTS", "week": f"{week.year}-W{week.week:02d}", "quantity": 100})  # fmt: skip

    # CertificatesExpiringSoon, LotPassRateLow, FoundrySuspended: a member's SNI lapses in ten days, its lot fails
    # at the lab, and a QA officer suspends it.
    post(f"{capacity.url}/v1/foundries",
         {"code": "IKM-302", "name": "CV Rem", "village": "Batur", "product_families": ["BRAKE_BLOCK_COMPOSITE"]})  # fmt: skip
    wait_for(lambda: any(f["code"] == "IKM-302" for f in HTTP.get(f"{quality.url}/v1/foundries", headers=api_headers()).json()))
    post(f"{quality.url}/v1/certificates",
         {"foundry_code": "IKM-302", "kind": "SNI", "number": "SPPT-SNI/B4T/302", "issuer": "LSPro B4T", "items": ["BB-COMP-K"],
          "valid_from": (today - timedelta(days=355)).isoformat(), "valid_until": (today + timedelta(days=10)).isoformat()})  # fmt: skip
    post(
        f"{quality.url}/v1/lots",
        {"lot_code": "IKM-302-K-0001", "foundry_code": "IKM-302", "item_code": "BB-COMP-K", "quantity": 200},
    )
    sample = {"friction_coefficient": 0.25, "density": 2.05, "hardness": 78, "compressive_strength": 41.5,
              "impact_strength": 2.4, "back_plate_bond": "pass"}  # fmt: skip
    samples = [dict(sample) for _ in range(32)]
    for bad in (0, 5, 9):
        samples[bad]["back_plate_bond"] = "fail"
    decided = post(f"{quality.url}/v1/lots/IKM-302-K-0001/results",
                   {"report_number": "B4T/LHU/302", "laboratory": "B4T Bandung", "samples": samples})  # fmt: skip
    assert decided["status"] == "failed"
    answer = HTTP.put(f"{quality.url}/v1/foundries/IKM-302/quality-status/override",
                      json={"status": "suspended", "reason": "back plates separating in the field"},
                      headers=api_headers(as_("qa_officer")))  # fmt: skip
    assert answer.status_code == 200, answer.text

    # OrderLinesAtRisk: an order no member has capacity for.
    post(f"{orders.url}/v1/purchase-orders",
         {"buyer_code": "KAI", "po_number": "KAI/PO/ALERT/1", "issued_on": today.isoformat(),
          "lines": [{"line_no": 1, "item_code": "BB-COMP-K", "quantity": 5000, "unit_price": 203_700,
                     "deliveries": [{"due_date": (today + timedelta(days=40)).isoformat(), "quantity": 5000, "site_code": "BY-YK"}]}]})  # fmt: skip

    # EventsDeadLettered: a poison message on orders' topic, which capacity consumes.
    publish_poison(settings, "ceper.orders.v1")

    # OutboxStuck: the stranded replica takes a registration it can never publish. (ConsumerNotRunning: its consumer
    # has not run since it started.)
    post(
        f"{monitored.stranded.url}/v1/foundries",
        {"code": "IKM-399", "name": "CV Terdampar", "village": "Batur", "product_families": ["PUMP_PARTS"]},
    )

    expected = {
        "HighUtilisation", "CertificatesExpiringSoon", "LotPassRateLow", "FoundrySuspended", "OrderLinesAtRisk",
        "EventsDeadLettered", "OutboxStuck", "ConsumerNotRunning",
    }  # fmt: skip
    firing: dict[str, list[dict[str, str]]] = {}

    def all_firing() -> bool:
        """every alert whose trouble was made fires"""
        firing.update(prometheus.firing())
        return expected <= set(firing)

    try:
        wait_for(all_firing, timeout=120)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: firing {sorted(firing)}, missing {sorted(expected - set(firing))}") from None
    assert set(firing) == expected, f"alerts that fire without their trouble: {sorted(set(firing) - expected)}"
    assert [(a["product_family"], a["week"]) for a in firing["HighUtilisation"]] == [
        ("PUMP_PARTS", f"{week.year}-W{week.week:02d}")
    ]
    assert [a["kind"] for a in firing["CertificatesExpiringSoon"]] == ["SNI"]
    assert [a["item"] for a in firing["LotPassRateLow"]] == ["BB-COMP-K"]
    assert [(a["service"], a["event_type"]) for a in firing["EventsDeadLettered"]] == [
        ("capacity", "ceper.orders.allocation_planned.v1")
    ]
    assert [a["service"] for a in firing["OutboxStuck"]] == ["capacity"]
    # The stranded replica never reached its broker, so its consumer never ran.
    assert [(a["service"], a["instance"]) for a in firing["ConsumerNotRunning"]] == [
        ("capacity", f"127.0.0.1:{monitored.stranded.port}")
    ]
    assert prometheus.rule_state("OrderLinesAtRisk") == "firing"
    assert prometheus.value("max(ceper_orders_lines_at_risk)") >= 1

    # ServiceDown: quality stops.
    assert prometheus.rule_state("ServiceDown") == "inactive"
    quality.stop()

    def quality_down() -> list[dict[str, str]] | None:
        """ServiceDown fires for quality"""
        return prometheus.firing().get("ServiceDown")

    assert [a["service"] for a in wait_for(quality_down)] == ["quality"]
