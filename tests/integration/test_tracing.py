"""One trace from a buyer's request to the last reaction: orders and capacity run as real processes exporting
spans over OTLP to a receiver in the test; the trace context travels in the events' headers, which any Kafka
client (kcat) can read."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse

from services.orders import store
from shared.db import create_engine
from shared.events import topic_of
from shared.settings import Settings
from tests.fixtures.tokens import ADMIN
from tests.integration.service_processes import ServiceProcess, service_processes

SERVER, CONSUMER = 2, 5  # OTLP span kinds
FAMILY = "BRAKE_BLOCK_COMPOSITE"
HTTP = httpx.Client(timeout=30, auth=ADMIN)  # a loaded test machine may take seconds to answer


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, object]


class OtlpReceiver:
    """What an OpenTelemetry collector does with OTLP/HTTP protobuf on /v1/traces, minus the forwarding."""

    def __init__(self) -> None:
        self.spans: list[ExportedSpan] = []
        self.requests: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.requests.append(f"{self.path} {self.headers.get('content-type')}")
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                receiver.take(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def take(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    self.spans.append(
                        ExportedSpan(
                            service=resource.get("service.name", ""),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            attributes=attributes,
                        )
                    )

    def trace(self, trace_id: str) -> list[ExportedSpan]:
        return [span for span in list(self.spans) if span.trace_id == trace_id]

    def __enter__(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value: object) -> object:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(value, kind) if kind else None


def wait_for(check, timeout: float = 60.0, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {check.__doc__ or check}")
        time.sleep(interval)


@dataclass
class TracedPlatform:
    settings: Settings
    receiver: OtlpReceiver
    services: dict[str, ServiceProcess]


@pytest.fixture
def traced(make_settings, tmp_path: Path) -> Iterator[TracedPlatform]:
    settings = make_settings()
    with OtlpReceiver() as receiver:
        # Spans leave each process a tenth of a second after they end, instead of after five.
        env = {
            "CEPER_OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "CEPER_LOG_LEVEL": "INFO",
        }
        with service_processes(settings, tmp_path, "capacity", "quality", "orders", env=env) as services:
            yield TracedPlatform(settings, receiver, services)


def register_members(traced: TracedPlatform, *codes: str) -> None:
    """Members with standard capacity and the certificates brake blocks require, known to orders. The planner gives
    one member at most 35 % of a line, so an order needs three. Each rename follows the capacity change on the
    member's partition: once orders shows the new names it has projected the capacity too."""
    capacity, quality, orders = (traced.services[s].url for s in ("capacity", "quality", "orders"))
    for code in codes:
        body = {"code": code, "name": f"CV {code}", "village": "Batur", "product_families": [FAMILY], "presses": 4}
        assert HTTP.post(f"{capacity}/v1/foundries", json=body).status_code == 201
        change = {"kind": "standard", "reason": "declared", "product_family": FAMILY, "weekly_units": 500}
        assert HTTP.post(f"{capacity}/v1/foundries/{code}/capacity-changes", json=change).status_code == 201
        assert HTTP.patch(f"{capacity}/v1/foundries/{code}", json={"name": f"CV {code} Jaya"}).status_code == 200

    def projected() -> bool:
        """orders and quality projected the members and their capacity"""
        renamed = {f["code"] for f in HTTP.get(f"{orders}/v1/foundries").json() if f["name"].endswith("Jaya")}
        return renamed >= set(codes) and {f["code"] for f in HTTP.get(f"{quality}/v1/foundries").json()} >= set(codes)

    wait_for(projected)
    validity = {
        "valid_from": (date.today() - timedelta(days=10)).isoformat(),
        "valid_until": (date.today() + timedelta(days=900)).isoformat(),
    }
    for code in codes:
        for certificate in (
            {"kind": "SNI", "number": f"SNI-{code}", "issuer": "LSPro B4T", "items": ["BB-COMP-K"]},
            {"kind": "ISO9001", "number": f"ISO-{code}", "issuer": "TÜV"},
            {"kind": "TKDN", "number": f"TKDN-{code}", "issuer": "Kementerian Perindustrian", "tkdn_percent": 40.0},
        ):
            response = HTTP.post(f"{quality}/v1/certificates", json={"foundry_code": code, **certificate, **validity})
            assert response.status_code == 201, response.text

    def certified() -> bool:
        """orders projected the members' certificates"""
        return certificates_in_orders(traced.settings) >= {(c, k) for c in codes for k in ("SNI", "ISO9001", "TKDN")}

    wait_for(certified)


def certificates_in_orders(settings: Settings) -> set[tuple[str, str]]:
    async def read() -> set[tuple[str, str]]:
        engine = create_engine(settings.database_url("orders"))
        try:
            async with engine.connect() as conn:
                table = store.certificate_projection
                return {(code, kind) for code, kind in await conn.execute(sa.select(table.c.foundry_code, table.c.kind))}
        finally:
            await engine.dispose()

    return asyncio.run(read())


def purchase_order(po_number: str) -> dict:
    due = (date.today() + timedelta(days=70)).isoformat()
    return {
        "buyer_code": "KAI",
        "po_number": po_number,
        "issued_on": date.today().isoformat(),
        "lines": [
            {
                "line_no": 1,
                "item_code": "BB-COMP-K",
                "quantity": 800,
                "unit_price": 203700,
                "deliveries": [{"due_date": due, "quantity": 800, "site_code": "BY-YK"}],
            }
        ],
    }


def post_order_until_accepted(orders: str, po_number: str) -> str:
    posted = HTTP.post(f"{orders}/v1/purchase-orders", json=purchase_order(po_number), headers={"Idempotency-Key": po_number})
    assert posted.status_code == 201, posted.text
    order_id = posted.json()["id"]

    last: dict = {}

    def accepted() -> bool:
        """the order is accepted"""
        last.update(HTTP.get(f"{orders}/v1/purchase-orders/{order_id}").json())
        return last["status"] == "accepted"

    try:
        wait_for(accepted, timeout=90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the order: {last}") from None
    return order_id


def test_a_purchase_order_its_plan_reservations_and_confirmations_are_one_trace(traced: TracedPlatform) -> None:
    orders = traced.services["orders"]
    register_members(traced, "IKM-101", "IKM-102", "IKM-103")
    post_order_until_accepted(orders.url, "KAI/PO/TRACE/1")
    receiver = traced.receiver

    def request_span() -> ExportedSpan | None:
        """orders exported the span of the POST"""
        return next(
            (
                s
                for s in list(receiver.spans)
                if s.service == "orders" and s.kind == SERVER and "POST" in s.name and "purchase-orders" in s.name
            ),
            None,
        )

    posted = wait_for(request_span)
    assert posted.parent_span_id == "", "the buyer sent no trace context: the request starts the trace"

    def whole_trace() -> list[ExportedSpan] | None:
        """the trace reaches orders' reaction to capacity's confirmations"""
        spans = receiver.trace(posted.trace_id)
        names = {(s.service, s.kind, s.name) for s in spans}
        wanted = {
            ("orders", CONSUMER, "ceper.orders.purchase_order_received.v1 process"),
            ("capacity", CONSUMER, "ceper.orders.allocation_planned.v1 process"),
            ("orders", CONSUMER, "ceper.capacity.reservation_confirmed.v1 process"),
        }
        return spans if wanted <= names else None

    spans = wait_for(whole_trace)
    by_id = {s.span_id: s for s in spans}

    def chain(span: ExportedSpan) -> list[str]:
        """Services from the span up to the trace's root, through parents that are in the trace."""
        path = [f"{span.service}:{span.name}"]
        while span.parent_span_id:
            assert span.parent_span_id in by_id, f"{span.name} has a parent outside the trace"
            span = by_id[span.parent_span_id]
            path.append(f"{span.service}:{span.name}")
        return path

    confirmation = next(s for s in spans if s.name == "ceper.capacity.reservation_confirmed.v1 process")
    path = chain(confirmation)
    assert path[-1] == f"orders:{posted.name}"
    assert [step.split(":", 1)[0] for step in path] == ["orders", "capacity", "orders", "orders"], path
    reservation = next(s for s in spans if s.name == "ceper.orders.allocation_planned.v1 process")
    assert reservation.attributes["messaging.system"] == "kafka"
    assert reservation.attributes["messaging.destination.name"] == traced.settings.topic(topic_of("orders"))
    assert reservation.attributes["cloudevents.event_type"] == "ceper.orders.allocation_planned.v1"
    # The statements a reaction runs are its children: a slow query shows where it belongs.
    assert any(
        s.service == "capacity" and s.parent_span_id == reservation.span_id and "db.system" in str(s.attributes) for s in spans
    )
    assert receiver.requests and all(r == "/v1/traces application/x-protobuf" for r in receiver.requests)

    # The log lines written inside those spans carry their ids.
    logged = [json.loads(line) for line in orders.log().splitlines() if line.startswith("{")]
    assert any(line.get("trace_id") == posted.trace_id and line.get("span_id") for line in logged), "no log line of the trace"


def test_kcat_sees_the_trace_context_on_our_events(traced: TracedPlatform) -> None:
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.fail("kcat not found on PATH: run `bash deploy/install-system-deps.sh` (as root) or `make test`", pytrace=False)
    orders = traced.services["orders"]
    register_members(traced, "IKM-201", "IKM-202", "IKM-203")
    order_id = post_order_until_accepted(orders.url, f"KAI/PO/TRACE/{uuid.uuid4().hex[:6]}")
    topic = traced.settings.topic("ceper.orders.v1")
    read = subprocess.run(
        [kcat, "-b", traced.settings.kafka_bootstrap_servers, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%h\n"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert read.returncode == 0, read.stderr
    headers_of_order = [
        dict(header.split("=", 1) for header in line.split("\t", 1)[1].split(","))
        for line in read.stdout.splitlines()
        if line.startswith(f"{order_id}\t")
    ]
    assert len(headers_of_order) >= 2, read.stdout  # received and planned
    for headers in headers_of_order:
        version, trace_id, span_id, flags = headers["ce_traceparent"].split("-")
        assert version == "00" and int(flags, 16) & 1 and len(trace_id) == 32 and len(span_id) == 16
        # The older extension carries the same trace id, for readers that know only that one.
        assert headers["ce_traceid"] == trace_id
    assert len({headers["ce_traceparent"].split("-")[1] for headers in headers_of_order}) == 1, "one trace per order"
