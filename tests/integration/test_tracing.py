"""One trace per execution, across worker processes, exported over OTLP — as Jaeger would receive it.

``jetexec up`` runs a real nats-server and every worker as its own process, with the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`` pointing at an OTLP/HTTP
receiver running inside this test (``POST /v1/traces``, decoded with opentelemetry-proto). Three
executions go through:

* a TWAP market order via ``jetexec submit --wait`` — the coordinator's timers release its children
  (TimerFired is published from no incoming message), the venue fills them asynchronously;
* a market order from a strategy process that traces itself (``JetexecClient.submit`` sends its
  ``traceparent``): the strategy's span is the trace's root;
* a resting limit order escaped with ``jetexec escape`` (the operator's request is its own trace).

Then, per execution: exactly one trace id holds every span that names its correlation id, the spans
come from at least five services, every span but the root has its parent in the trace, CONSUMER spans
are ``process <subject template>`` with ``messaging.system=nats``. The span trees are printed (``-s``)
and written to the test's tmp dir.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from tests.conftest import wait_for_sync
from tests.e2e.harness import Up

pytestmark = pytest.mark.timeout(120)

CORE_SERVICES = {f"jetexec-{s}" for s in ("gateway", "coordinator", "precheck", "split", "send", "monitor", "paper-exchange")}
TERMINAL = {"COMPLETE", "FAILED", "ESCAPED", "CANCELLED", "EXPIRED", "REJECTED"}


# ------------------------------------------------------------------------------------------------
# An OTLP/HTTP receiver (what Jaeger v2 / an OTel collector exposes on :4318)
# ------------------------------------------------------------------------------------------------


@dataclass
class SpanRec:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    service: str
    attrs: dict
    start: int
    end: int
    links: list[tuple[str, str]] = field(default_factory=list)
    status: str = ""

    @property
    def cid(self) -> str | None:
        return self.attrs.get("jetexec.correlation_id") or self.attrs.get("messaging.message.conversation_id")


def _value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class OtlpReceiver:
    def __init__(self) -> None:
        self.spans: list[SpanRec] = []
        self.requests = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                receiver.ingest(ExportTraceServiceRequest.FromString(body))
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "OtlpReceiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ingest(self, req: ExportTraceServiceRequest) -> None:
        got = []
        for rs in req.resource_spans:
            service = next((_value(a.value) for a in rs.resource.attributes if a.key == "service.name"), "?")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(SpanRec(
                        trace_id=s.trace_id.hex(), span_id=s.span_id.hex(), parent_id=s.parent_span_id.hex(), name=s.name,
                        kind=PbSpan.SpanKind.Name(s.kind).removeprefix("SPAN_KIND_"), service=service,
                        attrs={a.key: _value(a.value) for a in s.attributes}, start=s.start_time_unix_nano, end=s.end_time_unix_nano,
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links], status=s.status.message,
                    ))
        with self.lock:
            self.spans.extend(got)
            self.requests += 1

    def snapshot(self) -> list[SpanRec]:
        with self.lock:
            return list(self.spans)


# ------------------------------------------------------------------------------------------------
# Trace helpers
# ------------------------------------------------------------------------------------------------


def operator_audit(s: SpanRec) -> bool:
    """The ledger's audit of operator actions, from its watch on KV SAFETY (the escape's fence
    ``halt.<cid>``, modes, states): a KV write carries no trace context, so each is its own trace."""
    return s.service == "jetexec-ledger" and str(s.attrs.get("messaging.message.id", "")).startswith("audit.safety:")


def traces_of(spans: list[SpanRec], cid: str) -> set[str]:
    return {s.trace_id for s in spans if s.cid == cid and not operator_audit(s)}


def trace_spans(spans: list[SpanRec], trace_id: str) -> list[SpanRec]:
    return [s for s in spans if s.trace_id == trace_id]


def dangling(tr: list[SpanRec]) -> list[SpanRec]:
    ids = {s.span_id for s in tr}
    return [s for s in tr if s.parent_id and s.parent_id not in ids]


def roots(tr: list[SpanRec]) -> list[SpanRec]:
    return [s for s in tr if not s.parent_id]


def execution_trace(spans: list[SpanRec], cid: str) -> str | None:
    """The trace of the gateway's intake span for this execution."""
    tids = {s.trace_id for s in spans if s.name == "process exec.intake" and s.cid == cid}
    assert len(tids) <= 1, tids
    return next(iter(tids), None)


def reached(spans: list[SpanRec], cid: str, state: str) -> bool:
    """Every span of the execution's trace has arrived as far as the terminal decision goes."""
    tid = execution_trace(spans, cid)
    if tid is None:
        return False
    tr = trace_spans(spans, tid)
    return any(s.attrs.get("jetexec.state") == state for s in tr) and len(roots(tr)) == 1 and not dangling(tr) and CORE_SERVICES <= {s.service for s in tr}


def render(tr: list[SpanRec]) -> str:
    children = defaultdict(list)
    for s in tr:
        children[s.parent_id].append(s)
    lines: list[str] = []

    def walk(s: SpanRec, depth: int) -> None:
        extra = [f"{k.removeprefix('jetexec.')}={s.attrs[k]}" for k in ("jetexec.state", "jetexec.outcome", "jetexec.alert_codes") if k in s.attrs and not (k == "jetexec.outcome" and s.attrs[k] == "ok")]
        mid = s.attrs.get("messaging.message.id")
        if mid and s.kind == "PRODUCER":
            extra.insert(0, f"id={mid.split('.', 1)[-1]}")
        if s.links:
            extra.append(f"links={len(s.links)}")
        ms = (s.end - s.start) / 1e6
        lines.append(f"{'  ' * depth}{s.service.removeprefix('jetexec-'):<15} {s.kind.lower():<8} {s.name}  ({ms:.1f} ms){'  ' + ' '.join(extra) if extra else ''}")
        for c in sorted(children[s.span_id], key=lambda x: x.start):
            walk(c, depth + 1)

    for r in sorted(roots(tr), key=lambda x: x.start):
        walk(r, 0)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# The run: three executions through `jetexec up`, then a clean shutdown (every worker flushes)
# ------------------------------------------------------------------------------------------------

STRATEGY = r"""
import asyncio, json, sys
from bus import tracing
from jetexec.client import JetexecClient

tracing.setup_tracing("strategy")

async def main():
    async with JetexecClient.connect(sys.argv[1]) as jx:
        with tracing.internal_span("strategy.rebalance"):
            receipt = await jx.submit({"symbol": "MSFT", "side": "SELL", "qty": 2, "order_type": "MARKET", "strategy_id": "trace-client", "client_key": "trace-client-1"})
        result = await jx.wait(receipt.correlation_id, timeout=40)
        print(json.dumps({"cid": receipt.correlation_id, "state": result.state.value}))

asyncio.run(main())
tracing.shutdown_tracing()
"""


@dataclass
class Run:
    spans: list[SpanRec]
    cli_cid: str
    client_cid: str
    escape_cid: str
    tmp: Path
    requests: int


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    tmp = tmp_path_factory.mktemp("tracing")
    receiver = OtlpReceiver().start()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "JETEXEC_RECON_INTERVAL_S": "0",
    }
    try:
        with Up(tmp, env=env) as up:
            # 1. the CLI: a TWAP market order — three children released by the coordinator's timers
            (r1,) = up.submit([{"symbol": "AAPL", "side": "BUY", "qty": 3, "order_type": "MARKET", "split": "TWAP", "horizon_s": 1, "strategy_id": "trace-cli", "client_key": "trace-cli-1"}], timeout=60)
            assert r1["state"] == "COMPLETE", r1
            # 2. a strategy process that traces itself: its span is the root
            res = subprocess.run([sys.executable, "-c", STRATEGY, up.url], capture_output=True, timeout=90, env={**up.env, "OTEL_SERVICE_NAME": "strategy"})
            assert res.returncode == 0, res.stderr.decode()[-3000:]
            r2 = json.loads(res.stdout.decode().strip().splitlines()[-1])
            assert r2["state"] == "COMPLETE", r2
            # 3. a resting limit escaped by an operator
            (r3,) = up.submit_nowait([{"symbol": "AAPL", "side": "BUY", "qty": 4, "order_type": "LIMIT", "price": "182.00", "strategy_id": "trace-esc", "client_key": "trace-esc-1"}])
            cid3 = r3["correlation_id"]
            wait_for_sync(lambda: [c["state"] for c in up.status(cid3)["children"]] == ["ACKNOWLEDGED"], timeout=30, what="the limit child resting at the venue")
            assert up.cli("escape", cid3).returncode == 0
            wait_for_sync(lambda: up.status(cid3)["state"] == "ESCAPED", timeout=30, what="ESCAPED")

            # The spans arrive asynchronously (batch export every 200 ms): poll, with a deadline.
            wanted = {r1["correlation_id"]: "COMPLETE", r2["cid"]: "COMPLETE", cid3: "ESCAPED"}
            wait_for_sync(lambda: all(reached(receiver.snapshot(), c, s) for c, s in wanted.items()), timeout=30, interval=0.1, what="every execution's spans at the OTLP receiver")
        # `up` has stopped: every worker drained and flushed its exporter, so this is all there is.
        return Run(receiver.snapshot(), r1["correlation_id"], r2["cid"], cid3, tmp, receiver.requests)
    finally:
        receiver.stop()


def show(run: Run, cid: str, label: str) -> list[SpanRec]:
    tid = execution_trace(run.spans, cid)
    assert tid is not None
    tr = trace_spans(run.spans, tid)
    text = f"trace {tid} — {label} (cid {cid}), {len(tr)} spans from {len({s.service for s in tr})} services\n{render(tr)}\n"
    print("\n" + text)
    (run.tmp / f"span-tree-{label}.txt").write_text(text)
    return tr


def check_common(spans: list[SpanRec], cid: str, tr: list[SpanRec]) -> None:
    # exactly one trace holds every span that names this execution
    assert traces_of(spans, cid) == {tr[0].trace_id}
    # at least five services (the core seven, in fact) as separate processes
    services = {s.service for s in tr}
    assert len(services) >= 5 and CORE_SERVICES <= services, services
    # one root, and every other span's parent is in the trace
    assert len(roots(tr)) == 1, [s.name for s in roots(tr)]
    assert not dangling(tr), [(s.service, s.name) for s in dangling(tr)]
    # messaging conventions
    for s in tr:
        if s.kind == "CONSUMER":
            assert s.attrs["messaging.system"] == "nats", s
            assert s.name == f"process {s.attrs['messaging.destination.template']}", s.name
            assert "{cid}" in s.name or s.name == "process exec.intake", s.name  # templates, never raw ids
            assert s.attrs["messaging.operation.type"] == "process"
            assert s.attrs.get("messaging.consumer.group.name")
        if s.kind == "PRODUCER":
            assert s.attrs["messaging.system"] == "nats"
            assert s.name == f"send {s.attrs['messaging.destination.template']}", s.name
            assert s.attrs.get("messaging.message.id")
        assert cid not in s.name
    by_id = {s.span_id: s for s in tr}
    # every CONSUMER span of a JetStream message is the child of the PRODUCER span that sent it
    for s in tr:
        if s.kind == "CONSUMER" and s.name != "process exec.intake":
            parent = by_id[s.parent_id]
            assert parent.kind == "PRODUCER" and parent.attrs["messaging.destination.name"] == s.attrs["messaging.destination.name"], (s.name, parent.name)
            assert parent.attrs["messaging.message.id"] == s.attrs["messaging.message.id"]
    # the venue's asynchronous reports continue the trace: monitor ← report ← paper exchange ← send
    reports = [s for s in tr if s.kind == "CONSUMER" and s.service == "jetexec-monitor"]
    assert reports
    for s in reports:
        chain = ancestors(s, by_id)
        assert any(a.service == "jetexec-paper-exchange" and a.kind == "SERVER" for a in chain), [a.name for a in chain]


def ancestors(s: SpanRec, by_id: dict[str, SpanRec]) -> list[SpanRec]:
    out = []
    while s.parent_id in by_id:
        s = by_id[s.parent_id]
        out.append(s)
    return out


def test_cli_order_is_one_trace_across_worker_processes(run: Run):
    tr = show(run, run.cli_cid, "cli-twap")
    check_common(run.spans, run.cli_cid, tr)
    (root,) = roots(tr)
    assert (root.service, root.kind, root.name) == ("jetexec-gateway", "CONSUMER", "process exec.intake")
    assert root.attrs["jetexec.correlation_id"] == run.cli_cid
    assert (root.attrs["jetexec.symbol"], root.attrs["jetexec.side"], root.attrs["jetexec.state"]) == ("AAPL", "BUY", "INIT")
    by_id = {s.span_id: s for s in tr}
    # ExecutionCreated is the intake span's child
    created = [s for s in tr if s.kind == "PRODUCER" and s.attrs["messaging.message.id"] == f"{run.cli_cid}.created"]
    assert len(created) == 1 and created[0].parent_id == root.span_id
    # TimerFired comes from the coordinator's timer (no incoming message) and is still in the trace
    timers = [s for s in tr if s.kind == "PRODUCER" and ".timer." in s.attrs["messaging.message.id"]]
    assert timers and all(s.service == "jetexec-coordinator" for s in timers)
    assert all(by_id[s.parent_id].service == "jetexec-coordinator" for s in timers)
    # three children: three venue CLIENT spans from send, each with the venue's SERVER span under it
    news = [s for s in tr if s.kind == "CLIENT" and s.name == "venue.api.new"]
    assert len(news) == 3 and {s.service for s in news} == {"jetexec-send"}
    assert all(any(c.parent_id == s.span_id and c.kind == "SERVER" and c.service == "jetexec-paper-exchange" for c in tr) for s in news)
    # the terminal decision is in the trace, with its state
    assert any(s.service == "jetexec-coordinator" and s.attrs.get("jetexec.state") == "COMPLETE" for s in tr)


def test_client_traceparent_makes_the_callers_span_the_root(run: Run):
    tr = show(run, run.client_cid, "client")
    check_common(run.spans, run.client_cid, tr)
    (root,) = roots(tr)
    assert (root.service, root.name) == ("strategy", "strategy.rebalance")
    by_id = {s.span_id: s for s in tr}
    (intake,) = [s for s in tr if s.name == "process exec.intake"]
    client = by_id[intake.parent_id]
    assert (client.service, client.kind, client.name) == ("strategy", "CLIENT", "exec.intake")
    assert client.attrs["jetexec.correlation_id"] == run.client_cid


def test_escape_joins_the_execution_trace_and_links_the_request(run: Run):
    tr = show(run, run.escape_cid, "escape")
    # The operator's request is its own trace: the escape lane's CONSUMER span, which names the cid.
    # Everything the escape did is in the execution's trace, linked to that request. (The coordinator's
    # own escape request, once it saw the escape, is in the execution's trace already.)
    requests = [s for s in run.spans if s.name == "process exec.escape.{cid}" and s.cid == run.escape_cid and s.trace_id != tr[0].trace_id]
    assert len(requests) == 1
    request_trace = trace_spans(run.spans, requests[0].trace_id)
    assert [s.name for s in request_trace] == ["process exec.escape.{cid}"]  # the rest is in the execution's trace
    check_common([s for s in run.spans if s.trace_id != requests[0].trace_id], run.escape_cid, tr)
    escapes = [s for s in tr if s.name == "escape"]
    (escape,) = [s for s in escapes if s.links]  # the operator's; one the coordinator asked for is a plain child
    assert {s.service for s in escapes} == {"jetexec-escape"}
    assert escape.links == [(requests[0].trace_id, requests[0].span_id)]
    assert "FS092" in escape.attrs.get("jetexec.alert_codes", [])
    kids = [s for s in tr if s.parent_id == escape.span_id]
    assert {s.name for s in kids} >= {"venue.api.cancel", "send exec.evt.{cid}"}
    ids = sorted(s.attrs["messaging.message.id"].rsplit(".", 1)[-1] for s in kids if s.kind == "PRODUCER")
    assert ids == ["done", "started"]
    assert any(s.service == "jetexec-coordinator" and s.attrs.get("jetexec.state") == "ESCAPED" for s in tr)


def test_no_stray_traces(run: Run):
    """Every trace the run produced belongs to one of the three executions or the escape request."""
    known = {execution_trace(run.spans, c) for c in (run.cli_cid, run.client_cid, run.escape_cid)}
    known |= {s.trace_id for s in run.spans if s.name == "process exec.escape.{cid}" and not s.parent_id}
    stray = [(s.service, s.name, s.attrs.get("messaging.message.id")) for s in run.spans if s.trace_id not in known and not operator_audit(s)]
    assert not stray, stray[:20]
    assert CORE_SERVICES | {"jetexec-escape", "strategy"} <= {s.service for s in run.spans}
