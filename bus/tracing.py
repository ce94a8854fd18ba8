"""OpenTelemetry across NATS: W3C trace context in message headers, messaging semantic conventions.

Off (no-op) unless the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
variables are set; then spans go over OTLP/HTTP (Jaeger v2 ingests OTLP natively).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from bus.topology import subject_template

_tracer = trace.get_tracer("jetexec")
_configured = False


def setup_tracing(service_name: str) -> None:
    """Install an OTLP exporter when the OTEL_* environment asks for one. Idempotent."""
    global _configured, _tracer
    if _configured:
        return
    _configured = True
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or f"jetexec-{service_name}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=200))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("jetexec")


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if shutdown:
        shutdown()


def _attrs(subject: str, msg_id: str | None, cid: str | None, operation: str) -> dict:
    attrs = {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.destination.template": subject_template(subject),
        "messaging.operation.type": operation,
    }
    if msg_id:
        attrs["messaging.message.id"] = msg_id
    if cid:
        attrs["messaging.message.conversation_id"] = cid
        attrs["jetexec.correlation_id"] = cid
    return attrs


@contextmanager
def consumer_span(subject: str, headers: dict | None, *, durable: str, msg_id: str | None, cid: str | None, delivery: int = 1, stream_seq: int = 0) -> Iterator[trace.Span]:
    """A CONSUMER span parented on the publisher's context carried in the headers."""
    parent = propagate.extract(headers or {})
    token = otel_context.attach(parent)
    try:
        attrs = _attrs(subject, msg_id, cid, "process")
        attrs["messaging.consumer.group.name"] = durable
        attrs["messaging.nats.delivery_attempt"] = delivery
        attrs["messaging.nats.stream_sequence"] = stream_seq
        with _tracer.start_as_current_span(f"process {subject_template(subject)}", kind=SpanKind.CONSUMER, attributes=attrs) as span:
            try:
                yield span
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
    finally:
        otel_context.detach(token)


@contextmanager
def producer_span(subject: str, headers: dict, *, msg_id: str | None, cid: str | None) -> Iterator[trace.Span]:
    """A PRODUCER span; injects its context into ``headers`` so the consumer continues the trace."""
    with _tracer.start_as_current_span(f"send {subject_template(subject)}", kind=SpanKind.PRODUCER, attributes=_attrs(subject, msg_id, cid, "send")) as span:
        propagate.inject(headers)
        yield span


@contextmanager
def internal_span(name: str, **attrs: object) -> Iterator[trace.Span]:
    with _tracer.start_as_current_span(name, attributes={k: v for k, v in attrs.items() if v is not None}) as span:
        yield span


def inject(headers: dict) -> dict:
    propagate.inject(headers)
    return headers
