"""OpenTelemetry across NATS: W3C trace context in message headers, messaging semantic conventions.

Off (no-op) unless the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
variables are set; then spans go over OTLP/HTTP (Jaeger v2 ingests OTLP natively).

One trace per execution (docs/observability.md): the gateway's ``process exec.intake`` span is the
root (or the client's span, when the intent carries a ``traceparent``); every publish is a PRODUCER
span whose context rides in the message headers; every processed message is a CONSUMER span parented
on it. Work that starts without an incoming message (the coordinator's timers, the venue's
asynchronous reports, an escape requested by an operator) is put back into the execution's trace
through a stored ``traceparent`` (``ExecutionRecord.trace_parent``, the venue's per-order context):
an :class:`~bus.runtime.Out` whose headers carry ``traceparent`` is published under that context.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from bus.topology import subject_template

_tracer = trace.get_tracer("jetexec")
_configured = False

TRACEPARENT = "traceparent"


def setup_tracing(service_name: str) -> None:
    """Install an OTLP exporter when the OTEL_* environment asks for one. Idempotent.

    The exporter honours the standard variables (``OTEL_EXPORTER_OTLP_ENDPOINT`` → ``<url>/v1/traces``,
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, headers, timeout, compression); only OTLP over HTTP with
    protobuf is shipped, which is what ``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`` asks for.
    """
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
    # Resource.create also merges OTEL_RESOURCE_ATTRIBUTES (e.g. deployment.environment, k8s.pod.name).
    provider = TracerProvider(resource=Resource.create({"service.name": name, "service.namespace": "jetexec"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=200))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("jetexec")


def shutdown_tracing() -> None:
    """Flush and stop the exporter (workers call it on shutdown, after draining)."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if shutdown:
        shutdown()


def template_of(subject: str) -> str:
    """The subject template for span names. Dead-letter subjects end in the consumer name, not an id."""
    if subject.startswith("exec.dlq."):
        return subject
    return subject_template(subject)


def cid_of(subject: str) -> str | None:
    """The correlation id a subject names, if any (``exec.evt.<cid>``, ``venue.report.<cid>`` …)."""
    parts = subject.split(".")
    if len(parts) < 3 or parts[:2] in (["exec", "dlq"], ["venue", "api"], ["venue", "md"]) or parts[-1] == "all":
        return None
    return parts[-1]


def _attrs(subject: str, msg_id: str | None, cid: str | None, operation: str) -> dict:
    attrs = {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.destination.template": template_of(subject),
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
    }
    if msg_id:
        attrs["messaging.message.id"] = msg_id
    if cid:
        attrs["messaging.message.conversation_id"] = cid
        attrs["jetexec.correlation_id"] = cid
    return attrs


def context_of(traceparent: str | None):
    """An OTel context holding the remote span named by a W3C ``traceparent`` (None if invalid)."""
    if not traceparent:
        return None
    ctx = propagate.extract({TRACEPARENT: traceparent})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def current_traceparent(fallback: dict | None = None) -> str:
    """The current span's ``traceparent``; else the one in ``fallback`` headers; else ''."""
    if trace.get_current_span().get_span_context().is_valid:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if carrier.get(TRACEPARENT):
            return carrier[TRACEPARENT]
    return (fallback or {}).get(TRACEPARENT, "") or ""


@contextmanager
def consumer_span(subject: str, headers: dict | None, *, durable: str, msg_id: str | None, cid: str | None, delivery: int = 1, stream_seq: int = 0) -> Iterator[trace.Span]:
    """A CONSUMER span parented on the publisher's context carried in the headers."""
    parent = propagate.extract(headers or {})
    token = otel_context.attach(parent)
    try:
        attrs = _attrs(subject, msg_id, cid, "process")
        attrs["messaging.consumer.group.name"] = durable
        attrs["messaging.nats.delivery_attempt"] = delivery
        if stream_seq:
            attrs["messaging.nats.stream_sequence"] = stream_seq
        with _tracer.start_as_current_span(f"process {template_of(subject)}", kind=SpanKind.CONSUMER, attributes=attrs) as span:
            try:
                yield span
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
    finally:
        otel_context.detach(token)


@contextmanager
def producer_span(subject: str, headers: dict, *, msg_id: str | None, cid: str | None) -> Iterator[trace.Span]:
    """A PRODUCER span; injects its context into ``headers`` so the consumer continues the trace.

    When ``headers`` already carry a ``traceparent`` (a stored execution context: a timer, a venue
    report, an escape), the span is that context's child instead of the current span's.
    """
    parent = context_of(headers.get(TRACEPARENT))
    with _tracer.start_as_current_span(f"send {template_of(subject)}", context=parent, kind=SpanKind.PRODUCER, attributes=_attrs(subject, msg_id, cid, "send")) as span:
        propagate.inject(headers)
        yield span


@contextmanager
def client_span(subject: str, headers: dict, *, cid: str | None = None, **attrs: object) -> Iterator[trace.Span]:
    """A CLIENT span for a core-NATS request (``venue.api.<op>``); injects its context into ``headers``."""
    a = _attrs(subject, None, cid, "send")
    a.update(_extra(attrs))
    with _tracer.start_as_current_span(subject, kind=SpanKind.CLIENT, attributes=a) as span:
        propagate.inject(headers)
        yield span


@contextmanager
def server_span(subject: str, headers: dict | None, *, group: str, **attrs: object) -> Iterator[trace.Span]:
    """A SERVER span for a core-NATS request served here, parented on the requester's context."""
    token = otel_context.attach(propagate.extract(headers or {}))
    try:
        a = _attrs(subject, None, None, "process")
        a["messaging.consumer.group.name"] = group
        a.update(_extra(attrs))
        with _tracer.start_as_current_span(subject, kind=SpanKind.SERVER, attributes=a) as span:
            yield span
    finally:
        otel_context.detach(token)


@contextmanager
def execution_span(name: str, traceparent: str | None, **attrs: object) -> Iterator[trace.Span]:
    """An INTERNAL span inside the execution's trace (named by its stored ``traceparent``).

    Used where the work was requested from outside that trace (an operator's escape): the span is the
    execution context's child and carries a *link* to the request's own span. When the current span
    already belongs to the execution's trace (the coordinator asked), it is simply its child.
    """
    current = trace.get_current_span().get_span_context()
    target = context_of(traceparent)
    links = []
    context = None
    if target is not None:
        target_trace = trace.get_current_span(target).get_span_context().trace_id
        if not current.is_valid:
            context = target
        elif current.trace_id != target_trace:
            context = target
            links = [Link(current, {"jetexec.link": "request"})]
    with _tracer.start_as_current_span(name, context=context, links=links, attributes=_extra(attrs)) as span:
        yield span


@contextmanager
def internal_span(name: str, **attrs: object) -> Iterator[trace.Span]:
    with _tracer.start_as_current_span(name, attributes=_extra(attrs)) as span:
        yield span


_KEYS = {
    "cid": ("jetexec.correlation_id", "messaging.message.conversation_id"),
    "symbol": ("jetexec.symbol",),
    "side": ("jetexec.side",),
    "state": ("jetexec.state",),
    "alerts": ("jetexec.alert_codes",),
    "reason_code": ("jetexec.reason_code",),
    "client_order_id": ("jetexec.client_order_id",),
    "outcome": ("jetexec.outcome",),
}


def _extra(attrs: dict) -> dict:
    out: dict = {}
    for k, v in attrs.items():
        if v is None or v == "" or v == () or v == []:
            continue
        if hasattr(v, "value"):  # enums
            v = v.value
        elif isinstance(v, (list, tuple)):
            v = [str(getattr(x, "value", x)) for x in v]
        elif not isinstance(v, (str, bool, int, float)):
            v = str(v)
        for key in _KEYS.get(k, (k if "." in k else f"jetexec.{k}",)):
            out[key] = v
    return out


def annotate(span: trace.Span | None = None, **attrs: object) -> None:
    """Set jetexec attributes (cid, symbol, side, state, alerts, reason_code …) on ``span`` or the
    current span; free when nothing records."""
    span = span or trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attributes(_extra(attrs))


def set_outcome(span: trace.Span, outcome: str, detail: str = "") -> None:
    """The runtime's outcome of one message (ok / retried / dead_lettered / error) on its span."""
    span.set_attribute("jetexec.outcome", outcome)
    if outcome in ("dead_lettered", "error"):
        span.set_status(Status(StatusCode.ERROR, detail[:200] or outcome))


def inject(headers: dict) -> dict:
    propagate.inject(headers)
    return headers
