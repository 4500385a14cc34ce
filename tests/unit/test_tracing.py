"""The tracing hooks of the event backbone: off by default, and when on, an event carries the context of the span
that staged it and its consumer's span continues that trace."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from shared import tracing
from shared.settings import Settings


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on, with spans kept in memory instead of sent over OTLP."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_provider", provider)
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


def record(headers: list[tuple[str, bytes]]) -> SimpleNamespace:
    return SimpleNamespace(topic="ceper.orders.v1", partition=2, offset=41, headers=headers)


def test_off_by_default_and_every_hook_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    assert tracing.otlp_endpoint(Settings()) is None
    assert not tracing.setup("orders", Settings())
    assert not tracing.enabled()
    assert tracing.event_headers() == {}
    assert tracing.trace_id() is None
    with tracing.consuming("orders", record([("ce_traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]), "t", "e"):
        assert tracing.trace_id() is None
    assert tracing.add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}


def test_the_endpoint_comes_from_our_setting_then_opentelemetry_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert tracing.otlp_endpoint(Settings()) == "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/custom")
    assert tracing.otlp_endpoint(Settings()) == "http://traces:4318/custom"
    assert tracing.otlp_endpoint(Settings(otel_exporter_otlp_endpoint="http://ours:4318")) == "http://ours:4318/v1/traces"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.otlp_endpoint(Settings(otel_exporter_otlp_endpoint="http://ours:4318")) is None


def test_an_event_staged_in_a_span_is_processed_in_a_child_span_of_the_same_trace(exported: InMemorySpanExporter) -> None:
    with tracing._tracer.start_as_current_span("POST /v1/purchase-orders", kind=SpanKind.SERVER) as request:
        headers = tracing.event_headers()
        trace_id, span_id = (
            format_trace_id(request.get_span_context().trace_id),
            format_span_id(request.get_span_context().span_id),
        )
        assert tracing.trace_id() == trace_id
    assert list(headers) == ["ce_traceparent"]
    version, carried_trace, carried_span, flags = headers["ce_traceparent"].split("-")
    assert (version, carried_trace, carried_span) == ("00", trace_id, span_id)
    assert int(flags, 16) & 1, "sampled"

    kafka_headers = [("ce_type", b"ceper.orders.purchase_order_received.v1"), *((k, v.encode()) for k, v in headers.items())]
    with tracing.consuming("orders", record(kafka_headers), "ceper.orders.purchase_order_received.v1", "evt-1"):
        logged = tracing.add_trace_ids(None, "info", {"event": "planned", "trace_id": "the request id"})

    consumed = next(span for span in exported.get_finished_spans() if span.kind is SpanKind.CONSUMER)
    assert consumed.name == "ceper.orders.purchase_order_received.v1 process"
    assert consumed.parent is not None and consumed.parent.span_id == request.get_span_context().span_id
    assert consumed.context.trace_id == request.get_span_context().trace_id
    assert consumed.attributes is not None
    assert consumed.attributes["messaging.destination.name"] == "ceper.orders.v1"
    assert consumed.attributes["messaging.kafka.offset"] == 41
    assert consumed.attributes["cloudevents.event_id"] == "evt-1"
    assert logged["trace_id"] == format_trace_id(consumed.context.trace_id)
    assert logged["span_id"] == format_span_id(consumed.context.span_id)


def test_an_event_without_trace_context_starts_a_trace_and_a_failure_marks_its_span(exported: InMemorySpanExporter) -> None:
    with (
        pytest.raises(RuntimeError),
        tracing.consuming("capacity", record([]), "ceper.orders.allocation_planned.v1", "evt-2"),
    ):
        raise RuntimeError("cannot reserve")
    (span,) = exported.get_finished_spans()
    assert span.parent is None
    assert not span.status.is_ok
    assert [event.name for event in span.events] == ["exception"]


def test_outgoing_calls_and_statements_start_no_trace_of_their_own() -> None:
    sampler = tracing._RootsWorthATrace()
    assert not sampler.should_sample(None, 1, "SELECT orders", SpanKind.CLIENT).decision.is_sampled()
    assert sampler.should_sample(None, 1, "GET /v1/purchase-orders", SpanKind.SERVER).decision.is_sampled()
    assert sampler.should_sample(None, 1, "ceper.orders.allocation_planned.v1 process", SpanKind.CONSUMER).decision.is_sampled()
