"""The machine-readable description of jetexec on the wire: an AsyncAPI 3.0 document generated from
``schemas/`` (every message) and ``bus/topology.py`` (every subject), plus JSON Schemas for the
intent (input) and the result (output).

    python -m jetexec.asyncapi          # rewrite docs/asyncapi.json and docs/schema/*.json
    python -m jetexec.asyncapi --check  # exit 1 when the checked-in files differ from the code

``tests/unit/test_asyncapi.py`` runs the check in CI, so the documents cannot drift from the code:
a new message, field or subject changes the generated text and the test fails until it is rewritten.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from bus.topology import CONSUMERS, CTL_LIVE, CTL_RECORD, INTAKE_SUBJECT, LOAD_SUBJECT, STREAMS, VENUE_API, result_subject
from core.admission import LoadReport
from core.audit import AuditEntry
from core.intake import INTENT_FIELDS, MAX_HORIZON_S
from core.symbols import SymbolSpec
from schemas.enums import OrderType, Side, SplitStrategy, Urgency
from schemas.messages import (
    SCHEMA_VERSION,
    AdjustCommand,
    EscapeRequest,
    ExecutionRecord,
    ExecutionResult,
    Fact,
    IntakeReceipt,
    PrecheckCommand,
    SendCommand,
    SplitCommand,
)
from schemas.venue import CancelAck, CancelOrder, ExecutionReport, ModifyAck, ModifyOrder, NewOrder, OrderAck, OrderStatus, QueryOrder, SymbolInfo

DOCS = Path(__file__).resolve().parents[1] / "docs"
REF = "#/components/schemas/{name}"

HEADERS = {
    "Nats-Msg-Id": "deterministic message id: JetStream drops a duplicate within the 10-minute window (publish, then ack)",
    "traceparent": "W3C trace context of the execution's trace (when tracing is on)",
}
DLQ_HEADERS = {
    "Jetexec-Reason": "why the message was dead-lettered (a ReasonCode, e.g. POISON_MESSAGE, MAX_DELIVERIES)",
    "Jetexec-Detail": "the worker's explanation (at most 500 characters, one line)",
    "Jetexec-Subject": "the subject the message was consumed from",
    "Jetexec-Stream-Seq": "its stream sequence",
    "Jetexec-Deliveries": "how many times it was delivered",
    "Jetexec-Worker": "the worker that gave up on it",
}

# venue.api.<op>: request -> reply (None: a JSON object described in docs/architecture.md)
VENUE_OPS: dict[str, tuple[type | None, Any]] = {
    "new": (NewOrder, OrderAck),
    "modify": (ModifyOrder, ModifyAck),
    "cancel": (CancelOrder, CancelAck),
    "query": (QueryOrder, OrderStatus),
    "specs": (None, list[SymbolSpec]),
    "symbols": (None, list[SymbolInfo]),
    "quote": (None, SymbolInfo),
    "profile": (None, list[Any]),
    "fills": (None, dict[str, Any]),
    "tape": (None, dict[str, Any]),
    "orders": (None, dict[str, Any]),
    "stats": (None, dict[str, Any]),
    "faults": (None, dict[str, Any]),
}
STAGE_COMMANDS = {"precheck": PrecheckCommand, "split": SplitCommand, "send": SendCommand, "adjust": AdjustCommand}


def _name(t: Any) -> str:
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


def intent_schema() -> dict[str, Any]:
    """The intent a strategy sends (README "Intent"): the edge contract ``core.intake.parse_intent``
    enforces, as JSON Schema (draft 2020-12)."""
    plain = {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*$", "description": "plain decimal notation (no exponent, sign, '_' or bare '.5')"}
    number = {"type": "number", "exclusiveMinimum": 0, "$comment": "a JSON number written with an exponent (1e3) is refused too; JSON Schema cannot see how a number was written"}
    decimal = {"oneOf": [number, plain]}
    ident = {"type": "string", "pattern": r"^[A-Za-z0-9\-_./:]+$"}
    props = {
        "symbol": {**ident, "maxLength": 32, "description": "a symbol the venue trades (`jetexec symbols`)"},
        "side": {"enum": [m.value for m in Side]},
        "qty": {**decimal, "description": "> 0, at most 1e12"},
        "order_type": {"enum": [m.value for m in OrderType], "default": "MARKET"},
        "price": {**decimal, "description": "LIMIT only, > 0"},
        "strategy_id": {**ident, "maxLength": 64, "default": "default"},
        "urgency": {"enum": [m.value for m in Urgency], "default": "NORMAL"},
        "split": {"enum": [m.value for m in SplitStrategy], "default": "AUTO"},
        "horizon_s": {"type": "integer", "minimum": 1, "maximum": MAX_HORIZON_S, "description": "TWAP/VWAP horizon (default 60)"},
        "client_key": {"type": "string", "maxLength": 128, "description": "your idempotency key"},
        "venue": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]{0,31}$", "description": "a configured venue id (docs/venues.md); default: the configured default venue"},
    }
    assert tuple(props) == INTENT_FIELDS
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "jetexec:intent",
        "title": "Intent",
        "description": "One order intent (a line of `jetexec submit`). Invalid input is never dropped: it becomes a FAILED result with a reason code.",
        "type": "object",
        "properties": props,
        "required": ["symbol", "side", "qty"],
        "additionalProperties": False,
        "if": {"properties": {"order_type": {"const": "LIMIT"}}, "required": ["order_type"]},
        "then": {"required": ["price"]},
        "else": {"not": {"required": ["price"]}},
    }


def result_schema() -> dict[str, Any]:
    """The result object (README "Result"): ``jetexec submit --json``, ``status --json``, ``executions --json``."""
    doc = msgspec.json.schema(ExecutionResult)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "jetexec:result", **doc}


def document() -> dict[str, Any]:
    facts = list(Fact.__args__)  # type: ignore[attr-defined]
    payloads = [*facts, *STAGE_COMMANDS.values(), EscapeRequest, IntakeReceipt, ExecutionReport, AuditEntry, ExecutionRecord, ExecutionResult, SymbolInfo, SymbolSpec, LoadReport]
    payloads += [t for pair in VENUE_OPS.values() for t in pair if isinstance(t, type) and issubclass(t, msgspec.Struct)]
    _, components = msgspec.json.schema_components(list(dict.fromkeys(payloads)), ref_template=REF)
    components["Intent_input"] = {k: v for k, v in intent_schema().items() if not k.startswith("$")}
    messages: dict[str, Any] = {}

    def message(name: str, payload: Any, summary: str, headers: dict[str, str] | None = None) -> dict[str, str]:
        if isinstance(payload, str):
            schema = {"$ref": REF.format(name=payload)}
        elif isinstance(payload, type) and issubclass(payload, msgspec.Struct):
            schema = {"$ref": REF.format(name=payload.__name__)}
        elif payload is None:
            schema = {"type": "object"}
        else:  # a list or dict of structs: its structs join the components
            (schema,), more = msgspec.json.schema_components([payload], ref_template=REF)
            components.update(more)
        msg: dict[str, Any] = {"name": name, "summary": summary, "contentType": "application/json", "payload": schema}
        if headers:
            msg["headers"] = {"type": "object", "properties": {h: {"type": "string", "description": d} for h, d in headers.items()}}
        messages[name] = msg
        return {"$ref": f"#/components/messages/{name}"}

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def channel(key: str, address: str, description: str, msgs: dict[str, dict[str, str]], params: dict[str, str] | None = None, bindings: dict | None = None) -> None:
        ch: dict[str, Any] = {"address": address, "description": description, "messages": msgs}
        if params:
            ch["parameters"] = {p: {"description": d} for p, d in params.items()}
        if bindings:
            ch["bindings"] = {"nats": bindings}
        channels[key] = ch

    def op(key: str, action: str, chan: str, msg_names: list[str], summary: str, reply: tuple[str, list[str]] | None = None) -> None:
        o: dict[str, Any] = {"action": action, "channel": {"$ref": f"#/channels/{chan}"}, "summary": summary, "messages": [{"$ref": f"#/channels/{chan}/messages/{m}"} for m in msg_names]}
        if reply:
            o["reply"] = {"channel": {"$ref": f"#/channels/{reply[0]}"}, "messages": [{"$ref": f"#/channels/{reply[0]}/messages/{m}"} for m in reply[1]]}
        operations[key] = o

    streams = {s.name: s for s in STREAMS}
    consumers_of = lambda stream: sorted(c.durable for c in CONSUMERS.values() if c.stream == stream)  # noqa: E731

    # intake: request/reply
    channel("intake", INTAKE_SUBJECT, "Intent intake: core-NATS request/reply, queue group `gateway`. Accepted means the ExecutionCreated fact is stored in JetStream.", {"Intent": message("Intent", "Intent_input", "an order intent (JSON Schema: docs/schema/intent.schema.json)", {"traceparent": HEADERS["traceparent"]})}, bindings={"queue": "gateway"})
    channel("intakeReply", "_INBOX.{inbox}", "The requester's inbox: the gateway's receipt.", {"IntakeReceipt": message("IntakeReceipt", IntakeReceipt, "accepted (state INIT) or FAILED with a reason code")}, {"inbox": "the request's reply inbox"})
    op("submitIntent", "send", "intake", ["Intent"], "a strategy or `jetexec submit` sends an intent", reply=("intakeReply", ["IntakeReceipt"]))

    # the fact log
    evt = streams["EXEC_EVT"]
    stored = f" The stream stores each fact as `{evt.transform[1]}` (a subject transform: one partition per coordinator consumer)." if evt.transform else ""
    channel("facts", "exec.evt.{cid}", f"The fact log (stream {evt.name}, limits retention, deny delete): every stage result and venue event of one execution, in order, published on `exec.evt.<cid>`.{stored} Consumers: {', '.join(consumers_of(evt.name))}. The `type` field names the fact.", {f.__name__: message(f.__name__, f, (f.__doc__ or f.__name__).strip().splitlines()[0], HEADERS) for f in facts}, {"cid": "correlation id"}, {"stream": evt.name})
    op("publishFacts", "send", "facts", [f.__name__ for f in facts], "the gateway, stage workers, monitor, escape worker and ledger (back-filled fills) publish facts")
    op("consumeFacts", "receive", "facts", [f.__name__ for f in facts], "the coordinator and the ledger consume every fact (durable consumers)")

    # terminal results
    channel("results", result_subject("{cid}"), "The terminal result of one execution (core NATS, not persisted), published by the coordinator after it stored the final snapshot (KV EXECUTIONS). `JetexecClient.wait` subscribes before reading the snapshot.", {"ExecutionResult": message("ExecutionResult", ExecutionResult, "COMPLETE, FAILED or ESCAPED (README \"Result\")")}, {"cid": "correlation id"})
    op("publishResult", "send", "results", ["ExecutionResult"], "the coordinator announces a terminal result")
    op("receiveResult", "receive", "results", ["ExecutionResult"], "the client (`submit --wait`, `wait`) receives it")

    # stage commands
    for stage, cmd in STAGE_COMMANDS.items():
        channel(f"cmd_{stage}", f"exec.cmd.{stage}.{{cid}}", f"Work for the {stage} worker (stream EXEC_CMD, work queue, durable consumer `{stage}`), published by the coordinator.", {cmd.__name__: message(cmd.__name__, cmd, f"one {stage} command", HEADERS)}, {"cid": "correlation id"}, {"stream": "EXEC_CMD", "consumer": stage})
        op(f"send_{stage}", "send", f"cmd_{stage}", [cmd.__name__], f"the coordinator asks {stage}")
        op(f"receive_{stage}", "receive", f"cmd_{stage}", [cmd.__name__], f"the {stage} worker takes its work")

    # the escape lane
    escape_msg = {"EscapeRequest": message("EscapeRequest", EscapeRequest, "cancel every live child (cid) or of every execution (all)", HEADERS)}
    channel("escape", "exec.escape.{target}", "The escape lane (stream EXEC_ESCAPE, own consumer `escape`, own worker). `target` is a correlation id, or `all` for a halt.", escape_msg, {"target": "correlation id, or all"}, {"stream": "EXEC_ESCAPE", "consumer": "escape"})
    op("requestEscape", "send", "escape", ["EscapeRequest"], "`jetexec escape`/`halt`, the client and the coordinator request escapes")
    op("receiveEscape", "receive", "escape", ["EscapeRequest"], "the escape worker fences, then cancels at the venue")

    # the coordinator's side channels: daily counters, load, control look-ups
    channel("dailyCounters", "exec.count.{kind}.{bucket}", "Daily trade (`trades`) and notional (`notional`, units of 1e-8) counters per strategy and UTC day (stream EXEC_COUNTERS, a counter stream): precheck adds with `Nats-Incr` and reads the new total from the publish ack.", {"CounterIncrement": message("CounterIncrement", None, "an empty body; the increment is the Nats-Incr header", {"Nats-Incr": {"type": "string", "description": "the signed integer to add"}, "Nats-Msg-Id": HEADERS["Nats-Msg-Id"]})}, {"kind": "trades or notional", "bucket": "<strategy>.<YYYYMMDD>"}, {"stream": "EXEC_COUNTERS"})
    op("countTrade", "send", "dailyCounters", ["CounterIncrement"], "precheck counts an intent that passed (and takes it back when over the limit)")
    channel("load", LOAD_SUBJECT, "Each coordinator's load (core NATS, every 100 ms): the gateways refuse new intents with OVERLOADED while any is under pressure (core/admission.py).", {"LoadReport": message("LoadReport", LoadReport, "pressure = the worst share of a stage deadline the queues used")})
    op("reportLoad", "send", "load", ["LoadReport"], "coordinators report their load; gateways admit or refuse")
    channel("ctlRecord", CTL_RECORD + ".{cid}", "Core request/reply: the owning coordinator answers with its in-memory ExecutionRecord (the escape worker asks before a snapshot).", {"ExecutionRecord": message("ExecutionRecord", ExecutionRecord, "the owner's record")}, {"cid": "correlation id"})
    channel("ctlLive", CTL_LIVE, "Core scatter/gather: every coordinator answers with the partitions it owns and their live correlation ids (escape of all).", {"LiveExecutions": message("LiveExecutions", None, '{"partitions": [...], "live": [...], "instance": "...", "pid": N}')})

    # venue reports, audit, dead letters
    channel("venueReports", "venue.report.{cid}", "Venue execution reports (stream VENUE_RPT, work queue, consumer `monitor`).", {"ExecutionReport": message("ExecutionReport", ExecutionReport, "a fill or a close of one child order", HEADERS)}, {"cid": "correlation id"}, {"stream": "VENUE_RPT", "consumer": "monitor"})
    op("reportExecution", "send", "venueReports", ["ExecutionReport"], "the venue reports fills and closes (before it answers the request)")
    channel("namedVenueReports", "venue.{venue}.report.{cid}", "Execution reports of a named venue (docs/venues.md), same stream and consumer; the default venue also reports on `venue.report.<cid>`.", {"ExecutionReport": message("ExecutionReport", ExecutionReport, "a fill or a close of one child order", HEADERS)}, {"venue": "the venue id", "cid": "correlation id"}, {"stream": "VENUE_RPT", "consumer": "monitor"})
    op("reportNamedVenueExecution", "send", "namedVenueReports", ["ExecutionReport"], "a named venue's adapter reports fills and closes")
    op("receiveExecutionReports", "receive", "venueReports", ["ExecutionReport"], "the monitor turns reports into ChildFill / ChildClosed facts")
    channel("audit", "exec.audit.{cid}", "The append-only audit log (stream AUDIT, deny delete and purge): the coordinator writes each execution's transitions and alerts, the ledger the order events, one entry id per source fact.", {"AuditEntry": message("AuditEntry", AuditEntry, "one audit entry", {"Nats-Msg-Id": HEADERS["Nats-Msg-Id"]})}, {"cid": "correlation id"}, {"stream": "AUDIT"})
    op("writeAudit", "send", "audit", ["AuditEntry"], "the ledger appends audit entries (`jetexec audit` reads them)")
    channel("deadLetters", "exec.dlq.{consumer}", "Dead letters (stream EXEC_DLQ): the original message, unchanged, with the reason in headers. Each also becomes a StageFailed fact.", {"DeadLetter": message("DeadLetter", None, "the dead-lettered message's original bytes", DLQ_HEADERS)}, {"consumer": "the durable consumer that gave up"}, {"stream": "EXEC_DLQ"})
    op("deadLetter", "send", "deadLetters", ["DeadLetter"], "the worker runtime dead-letters poison or out-of-deliveries messages")

    # the venue protocol
    for name, (request, reply) in VENUE_OPS.items():
        req_name, rep_name = f"venue_{name}_request", f"venue_{name}_reply"
        channel(f"venue_{name}", f"{VENUE_API}.{name}", f"Venue protocol `{name}`: core-NATS request/reply (the paper exchange takes the whole API on one subscription, in arrival order).", {req_name: message(req_name, request, f"{name} request")})
        channel(f"venue_{name}_reply", "_INBOX.{inbox}", f"The reply to `{name}`.", {rep_name: message(rep_name, reply, f"{name} reply")}, {"inbox": "the request's reply inbox"})
        op(f"venue_{name}", "send", f"venue_{name}", [req_name], f"a worker (or the ledger, or the CLI) calls the venue: {name}", reply=(f"venue_{name}_reply", [rep_name]))
    channel("marketData", "venue.md.{symbol}", "Quotes (core NATS, latest wins; not persisted).", {"Quote": message("Quote", SymbolInfo, "the latest quote of one symbol")}, {"symbol": "the symbol"})
    op("publishQuotes", "send", "marketData", ["Quote"], "the venue publishes quotes; gateway, precheck and ledger keep the latest")

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "jetexec",
            "version": f"schema {SCHEMA_VERSION}",
            "description": "Order-execution pipeline on NATS JetStream. Generated by `python -m jetexec.asyncapi` from schemas/ and bus/topology.py; do not edit by hand. Every message carries `v` (the schema version). Decimals are strings. The subjects and the message fields are a public contract: fields are added, never renamed.",
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:4222", "protocol": "nats", "description": "`jetexec up`"}},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": components, "messages": messages},
        "x-kv-buckets": {
            "EXECUTIONS": {"key": "{cid}", "value": {"$ref": REF.format(name="ExecutionRecord")}, "description": "the coordinator's record of each execution (CAS-written); `jetexec status`/`watch` read it"},
            "SAFETY": {"keys": ["state", "mode", "halt.{cid}", "halt.ALL", "risk_hook"], "description": "safety state, execution mode, HALT fences, the operator's risk hook"},
        },
    }


def rendered() -> dict[Path, str]:
    def dump(doc: Any) -> str:
        return json.dumps(doc, indent=1, sort_keys=False, ensure_ascii=False) + "\n"

    return {
        DOCS / "asyncapi.json": dump(document()),
        DOCS / "schema" / "intent.schema.json": dump(intent_schema()),
        DOCS / "schema" / "result.schema.json": dump(result_schema()),
    }


def main(argv: list[str]) -> int:
    files = rendered()
    if "--check" in argv:
        stale = [str(p.relative_to(DOCS.parent)) for p, text in files.items() if not p.exists() or p.read_text() != text]
        if stale:
            print(f"out of date (run python -m jetexec.asyncapi): {', '.join(stale)}", file=sys.stderr)
            return 1
        return 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
