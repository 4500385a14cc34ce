"""Distributed tracing: OpenTelemetry spans over HTTP requests, database statements and the events they cause.

Off unless an OTLP endpoint is configured (`CEPER_OTEL_EXPORTER_OTLP_ENDPOINT`, or the standard
`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); then spans are exported over OTLP
(http/protobuf). Off, every hook below is one flag test.

The W3C trace context travels with each event as CloudEvents' distributed-tracing extension: the
`ce_traceparent` (and `ce_tracestate`) headers are taken from the span current when the event is staged in
the outbox, inside the transaction of the request or event that caused it, and stored with the outbox row,
so the relay publishes them later unchanged. Each consumer applies one event inside a span that continues
that context: a purchase order, its plan, the reservations and their confirmations are one trace.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, format_span_id, format_trace_id
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from .settings import Settings

# CloudEvents distributed-tracing extension attributes, as Kafka headers of the binary mode.
TRACEPARENT_HEADER = "ce_traceparent"
TRACESTATE_HEADER = "ce_tracestate"
# Probes and scrapes every few seconds would bury the requests worth reading.
EXCLUDED_URLS = "/healthz,/readyz,/metrics"

_PROPAGATOR = TraceContextTextMapPropagator()
_NOT_TRACED: AbstractContextManager[Any] = nullcontext()

_provider: TracerProvider | None = None
_tracer: trace.Tracer = trace.NoOpTracer()


def otlp_endpoint(settings: Settings) -> str | None:
    """Where spans go, or None when tracing is off: our setting first, then OpenTelemetry's own variables."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if settings.otel_exporter_otlp_endpoint:
        return f"{settings.otel_exporter_otlp_endpoint.rstrip('/')}/v1/traces"
    if endpoint := os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return endpoint
    if endpoint := os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return f"{endpoint.rstrip('/')}/v1/traces"
    return None


def enabled() -> bool:
    return _provider is not None


class _RootsWorthATrace(Sampler):
    """Records every span of a sampled trace, and starts a trace for anything but an outgoing call.

    A database statement or HTTP call with no request or event around it (the relay's polling, the periodic
    jobs) would each make a trace of one span.
    """

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "RootsWorthATrace"


def setup(service: str, settings: Settings, app: Any = None, engine: Any = None) -> bool:
    """Starts exporting spans when an endpoint is configured, and instruments the service's HTTP app, its
    database engine and outgoing httpx calls. Returns whether tracing is on."""
    global _provider, _tracer
    endpoint = otlp_endpoint(settings)
    if endpoint is None:
        return False
    # Imported only when tracing is on: importing the instrumentations costs start-up time.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    if _provider is None:
        # One provider per process; a process that runs several services (tests, the demo) names the first.
        resource = Resource.create({"service.name": service, "service.namespace": "ceper-supply"})
        _provider = TracerProvider(resource=resource, sampler=ParentBased(root=_RootsWorthATrace()))
        _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        trace.set_tracer_provider(_provider)
        _tracer = _provider.get_tracer("ceper")
        HTTPXClientInstrumentor().instrument(tracer_provider=_provider)
    if app is not None:
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=_provider, excluded_urls=EXCLUDED_URLS, exclude_spans=["receive", "send"]
        )
    if engine is not None:
        # The instrumentation names SQLAlchemy < 2.1 as its range; the engine events it listens to are unchanged.
        SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine, tracer_provider=_provider, skip_dep_check=True)
    return True


def flush(timeout_s: float = 5.0) -> None:
    """Exports the spans still buffered, e.g. before the process stops."""
    if _provider is not None:
        _provider.force_flush(int(timeout_s * 1000))


# --- hooks of the event backbone ------------------------------------------------------------------------


def event_headers() -> dict[str, str]:
    """The current trace context as the headers of an event staged now; empty when off or outside a span."""
    if _provider is None:
        return {}
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return {f"ce_{name}": value for name, value in carrier.items()}


def trace_id() -> str | None:
    """The current trace's id (32 hex digits), or None when off or outside a span."""
    if _provider is None:
        return None
    context = trace.get_current_span().get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else None


def consuming(service: str, record: Any, event_type: str, event_id: str) -> AbstractContextManager[Any]:
    """The span of one consumer applying one event (a Kafka record), continuing the trace its headers carry."""
    if _provider is None:
        return _NOT_TRACED
    carrier = {}
    for name, value in record.headers:
        if name in (TRACEPARENT_HEADER, TRACESTATE_HEADER):
            carrier[name[3:]] = value.decode("latin-1")
    return _tracer.start_as_current_span(
        f"{event_type} process",
        context=_PROPAGATOR.extract(carrier),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
            "messaging.consumer.group.name": service,
            "messaging.message.id": event_id,
            "cloudevents.event_id": event_id,
            "cloudevents.event_type": event_type,
        },
    )


# --- logs -----------------------------------------------------------------------------------------------


def add_trace_ids(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the real trace and span ids on every line logged inside a span."""
    if _provider is not None:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            event_dict["trace_id"] = format_trace_id(context.trace_id)
            event_dict["span_id"] = format_span_id(context.span_id)
    return event_dict
