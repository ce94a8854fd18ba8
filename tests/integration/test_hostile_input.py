"""Hostile input: every subject a worker consumes gets malformed payloads generated with hypothesis.

The real workers run as separate ``jetexec worker NAME --metrics-port P`` processes on a real
nats-server (not ``jetexec up``: its supervisor gives every child the same environment, so per-process
metrics ports are not possible there, and it would hide a crash behind a restart). Each payload is
one valid message with ONE mutation: a wrong JSON type, a missing required field, an unknown enum value
or ``type`` tag, a huge number (``1e400``, ``10**100``, ``"1e999999999"``, NaN, Infinity), a negative
quantity, another schema version, an oversized body (> 256 KiB), garbage bytes, valid JSON of another
message type, or an id that is not the subject's / not a legal token.

Accounting — every hostile message ends in exactly one of these, and the test checks each one:

* ``exec.intake`` (request/reply): a receipt, ``accepted=false``, ``state=FAILED``, a ``VALIDATION_*``
  reason code (and an ``IntentRejected`` fact, which makes a FAILED execution: by design).
* ``venue.api.new|modify|cancel|query`` (request/reply): an answer, either ``{"error": <reason code>}``
  or an ack / status that refuses it (``accepted=false`` or ``found=false``) with a reason code.
* ``exec.cmd.<stage>.<cid>``, ``venue.report.<cid>``, ``exec.escape.<cid>|all`` (work queues): a dead
  letter on ``exec.dlq.<consumer>`` whose ``Jetexec-Stream-Seq`` is the message's sequence, whose
  ``Jetexec-Reason`` is the reason :func:`expected_reason` derives from the codec, on the FIRST delivery
  (no retry storm), carrying the original bytes. A dead-lettered command also becomes a ``StageFailed``
  fact, which the coordinator acknowledges as a no-op (no such execution).
* ``exec.evt.<cid>``, coordinator: a dead letter as above when the fact does not decode/validate or
  names another execution than its subject; otherwise (a valid fact about an execution that does not
  exist) an ack that changes nothing — no dead letter and no record.
* ``exec.evt.<cid>``, ledger (run as ``python -m workers.ledger`` until it is in ``workers.WORKERS``):
  its fold must not stop at a bad fact, so it acknowledges it with a ``LEDGER_UNDECODABLE_FACT`` audit
  entry naming the fact's stream sequence — or dead-letters it when the subject token is no legal id
  (no execution can have it; its state key would be illegal). Valid facts of no execution: acked.

Then: no worker process exited (same PIDs) or logged a traceback; ``jetexec_dead_letters_total`` and
``jetexec_messages_total{outcome="dead_lettered"}`` on each worker's /metrics equal its dead letters, and
no message took the ``error`` (unexpected exception) path; the work-queue streams are empty and the
EXEC_EVT consumers have nothing pending or unacknowledged; a normal intent still completes quickly.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import msgspec
import nats
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bus.server import EmbeddedServer, free_port
from bus.topology import CONSUMERS, COORDINATOR_CONSUMERS
from core import paper_venue as venue_model
from core.intake import IntentError, parse_intent
from core.symbols import DEFAULT_SYMBOLS
from schemas.codec import DecodeError, decode, decode_command, decode_escape, decode_fact
from schemas.enums import AdjustAction, TimerKind, ExecutionMode, OrderState, OrderType, ReasonCode, SafetyState, Side, SplitStrategy
from schemas.messages import (
    AdjustCommand,
    ChildAccepted,
    ChildClosed,
    ChildFill,
    ChildOrder,
    ChildReplaced,
    AdjustDone,
    EscapeDone,
    EscapeRequest,
    ExecutionCreated,
    Intent,
    IntentRejected,
    PrecheckCommand,
    PrecheckDone,
    SendCommand,
    SplitCommand,
    SplitDone,
    StageFailed,
    TimerFired,
)
from schemas.venue import CancelOrder, ExecutionReport, ModifyOrder, NewOrder, QueryOrder
from tests.conftest import wait_for
from workers import WORKERS

pytestmark = pytest.mark.timeout(120)

PER_SUBJECT = 24  # hypothesis examples per subject (plus the fixed oversized ones): a few hundred in all
OVERSIZED = 2  # > 256 KiB bodies per subject (they are ~300 KiB each)
KNOWN_SYMBOLS = {s.symbol for s in DEFAULT_SYMBOLS}


# ------------------------------------------------------------------------------------------------
# The workers, as processes
# ------------------------------------------------------------------------------------------------


@dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen
    metrics_port: int
    out: Path
    err: Path


@dataclass
class Stack:
    server: EmbeddedServer
    workers: dict[str, WorkerProc] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def metrics(self, name: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.workers[name].metrics_port}/metrics", timeout=5) as resp:
            return resp.read().decode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    server = EmbeddedServer(tmp / "nats", port=free_port()).start()
    s = Stack(server)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "JETEXEC_LOG_LEVEL": "WARNING", "JETEXEC_NATS_URL": server.url}
    env.pop("JETEXEC_METRICS_PORT", None)
    commands = {name: ["-m", "jetexec.cli", "worker", name] for name in WORKERS}
    commands.setdefault("ledger", ["-m", "workers.ledger"])  # until it is registered in workers.WORKERS
    try:
        for name, argv in commands.items():
            port = free_port()
            out, err = tmp / f"{name}.out", tmp / f"{name}.err"
            proc = subprocess.Popen(
                [sys.executable, *argv], stdout=open(out, "wb"), stderr=open(err, "wb"), stdin=subprocess.DEVNULL,
                env={**env, "JETEXEC_METRICS_PORT": str(port), "JETEXEC_RECON_INTERVAL_S": "0"},
            )
            s.workers[name] = WorkerProc(name, proc, port, out, err)
        deadline = time.monotonic() + 60
        for w in s.workers.values():
            while b"consuming" not in w.out.read_bytes():
                assert w.proc.poll() is None, f"worker {w.name} exited at start: {w.err.read_text()[-2000:]}"
                assert time.monotonic() < deadline, f"worker {w.name} never started consuming"
                time.sleep(0.05)
        yield s
    finally:
        for w in s.workers.values():
            if w.proc.poll() is None:
                w.proc.terminate()
        for w in s.workers.values():
            try:
                w.proc.wait(20)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        server.stop()


# ------------------------------------------------------------------------------------------------
# Valid base messages, and what a leaf of each looks like
# ------------------------------------------------------------------------------------------------

INTENT = Intent(symbol="AAPL", side=Side.BUY, qty=Decimal(5), order_type=OrderType.LIMIT, price=Decimal("190.01"), strategy_id="hostile", split=SplitStrategy.SINGLE, horizon_s=60, client_key="k1")
CHILD = ChildOrder(client_order_id="cdeadbeefdeadbeef-00-0", index=0, symbol="AAPL", side=Side.BUY, qty=Decimal(5), order_type=OrderType.LIMIT, price=Decimal("190.01"))


def commands(cid: str) -> dict[str, msgspec.Struct]:
    return {
        "precheck": PrecheckCommand(cid=cid, step=1, intent=INTENT, mode=ExecutionMode.PAPER, reference_price=Decimal("190"), issued_at=time.time()),
        "split": SplitCommand(cid=cid, step=2, intent=INTENT, qty=Decimal(5), idempotency_key="ik-hostile", issued_at=time.time()),
        "send": SendCommand(cid=cid, step=3, child=CHILD),
        "adjust": AdjustCommand(cid=cid, step=4, symbol="AAPL", side=Side.BUY, arrival_price=Decimal("190"), round=1, children=(CHILD,)),
    }


def facts(cid: str) -> list[msgspec.Struct]:
    return [
        ExecutionCreated(cid=cid, idempotency_key="ik-hostile", intent=INTENT, mode=ExecutionMode.PAPER, arrival_price=Decimal("190"), ts=1.0),
        PrecheckDone(cid=cid, step=1, passed=True, qty=Decimal(5), ts=1.0),
        SplitDone(cid=cid, step=2, strategy=SplitStrategy.SINGLE, children=(CHILD,), ts=1.0),
        ChildAccepted(cid=cid, client_order_id=CHILD.client_order_id, venue_order_id="V1", ts=1.0),
        ChildFill(cid=cid, client_order_id=CHILD.client_order_id, trade_id="T1", qty=Decimal(2), price=Decimal("190.01"), fee=Decimal("0.01"), ts=1.0),
        ChildClosed(cid=cid, client_order_id=CHILD.client_order_id, state=OrderState.CANCELLED, ts=1.0),
        AdjustDone(cid=cid, step=5, round=1, action=AdjustAction.WAIT, replaced=(ChildReplaced(cid=cid, client_order_id="c1", new_client_order_id="c1", new_price=Decimal("190.02"), generation=1),), ts=1.0),
        TimerFired(cid=cid, step=3, kind=TimerKind.WAKE, ts=1.0),
        EscapeDone(cid=cid, reason="test", cancelled=("c1",), ts=1.0),
        StageFailed(cid=cid, stage="send", reason_code=ReasonCode.POISON_MESSAGE, ts=1.0),
    ]


def report(cid: str) -> ExecutionReport:
    return ExecutionReport(kind="FILL", cid=cid, client_order_id=CHILD.client_order_id, venue_order_id="V1", trade_id="T1", qty=Decimal(2), price=Decimal("190.01"), fee=Decimal("0.01"), cum_qty=Decimal(2), leaves_qty=Decimal(3), ts=1.0)


def escape_request(cid: str | None) -> EscapeRequest:
    return EscapeRequest(reason="hostile", cid=cid, flatten=True, requested_at=1.0, safety_state=SafetyState.LOCKDOWN)


def venue_requests() -> dict[str, msgspec.Struct]:
    return {
        "new": NewOrder(client_order_id="hostile-order-1", cid="xhostilevenue", symbol="AAPL", side=Side.BUY, qty=Decimal(5), order_type=OrderType.LIMIT, price=Decimal("150.00")),
        "modify": ModifyOrder(client_order_id="hostile-order-1", new_price=Decimal("150.01"), new_qty=Decimal(6)),
        "cancel": CancelOrder(client_order_id="hostile-order-1"),
        "query": QueryOrder(client_order_id="hostile-order-1"),
    }


INTENT_DOC = {"symbol": "AAPL", "side": "BUY", "qty": 5, "order_type": "LIMIT", "price": "190.01", "strategy_id": "hostile", "urgency": "NORMAL", "split": "TWAP", "horizon_s": 60, "client_key": "k"}
INTENT_REQUIRED = ("symbol", "side", "qty", "price")  # price: required because order_type is LIMIT


@dataclass(frozen=True)
class Leaf:
    path: tuple
    kind: str  # str enum tag decimal int float bool none list struct
    required: bool
    enum: tuple[str, ...] = ()


def _kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, Decimal):
        return "decimal"
    if isinstance(v, enum.Enum):  # before str: the enums are str enums
        return "enum"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if v is None:
        return "none"
    if isinstance(v, msgspec.Struct):
        return "struct"
    return "list"


def leaves(obj: msgspec.Struct, prefix: tuple = ()) -> list[Leaf]:
    out = []
    cfg = obj.__struct_config__
    if cfg.tag_field is not None:
        out.append(Leaf(prefix + (cfg.tag_field,), "tag", True))
    for f in msgspec.structs.fields(obj):
        v = getattr(obj, f.name)
        path = prefix + (f.encode_name,)
        kind = _kind(v)
        out.append(Leaf(path, kind, f.required, tuple(m.value for m in type(v)) if kind == "enum" else ()))
        if kind == "struct":
            out += leaves(v, path)
        elif kind == "list" and v and isinstance(v[0], msgspec.Struct):
            out += leaves(v[0], path + (0,))
    return out


def intent_leaves() -> list[Leaf]:
    kinds = {"symbol": "str", "side": "enum", "qty": "decimal", "order_type": "enum", "price": "decimal", "strategy_id": "str", "urgency": "enum", "split": "enum", "horizon_s": "int", "client_key": "str"}
    enums = {"side": tuple(m.value for m in Side), "order_type": tuple(m.value for m in OrderType), "urgency": ("LOW", "NORMAL", "HIGH", "URGENT"), "split": tuple(m.value for m in SplitStrategy)}
    return [Leaf((k,), kinds[k], k in INTENT_REQUIRED, enums.get(k, ())) for k in INTENT_DOC]


# ------------------------------------------------------------------------------------------------
# Mutations
# ------------------------------------------------------------------------------------------------

RAW = "\u0000raw{}\u0000"  # placeholder for a JSON token json.dumps cannot write (1e400, 10**100)

HUGE_TOKENS = ("1e400", "-1e400", str(10**100), "-" + str(10**100), '"1e999999999"', '"NaN"', '"Infinity"', '"-Infinity"', '"1e400"')
WRONG_TYPE = {
    "str": [12345, [], {"x": 1}, True, 1.5],
    "enum": [7, [], {"x": 1}, False],
    "tag": [7, [], {"x": 1}, None],
    "decimal": [[], {"x": 1}, True, "not-a-number", "12abc"],
    "int": ["7", [], {"x": 1}, 1.5, "seven"],
    "float": ["1.0", [], {"x": 1}, "soon"],
    "bool": ["true", 1, [], {"x": 1}],
    "none": [[1, 2], {"x": {"y": 1}}],
    "list": [{"x": 1}, "abc", 12],
    "struct": [[1, 2], "abc", 12],
}
NEGATABLE = ("qty", "price", "new_price", "new_qty", "reference_price", "arrival_price", "step", "round", "index", "generation", "attempts", "horizon_s", "fee", "cum_qty", "leaves_qty")
BAD_SUBJECT_TOKENS = ("a!b", "x\u00e9", "a#b", "x~y", "p%q", "a,b", "-" * 200 + "!")  # legal subject tokens, not legal ids
BAD_IDS = st.one_of(
    st.sampled_from(["", "a.b", "*", ">", "x y", "tab\there", "x\u00e9", "..", "a*b", "new\nline", "x" * 5000]),
    st.text(min_size=0, max_size=40).filter(lambda s: not re.fullmatch(r"[A-Za-z0-9_-]+", s)),
)


def _set(doc, path, value):
    cur = doc
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value


def _del(doc, path):
    cur = doc
    for p in path[:-1]:
        cur = cur[p]
    del cur[path[-1]]


def _dump(doc, raws: list[str]) -> bytes:
    text = json.dumps(doc)
    for i, tok in enumerate(raws):
        text = text.replace(json.dumps(RAW.format(i)), tok)
    return text.encode()


@dataclass(frozen=True)
class Hostile:
    subject: str
    data: bytes
    mutation: str


@st.composite
def mutated(draw, base_doc: dict, base_leaves: list[Leaf], others: list[bytes], id_fields=("cid", "client_order_id")) -> tuple[str, bytes]:
    """One mutation of ``base_doc``; returns (mutation name, payload)."""
    doc = copy.deepcopy(base_doc)
    raws: list[str] = []
    numeric = [x for x in base_leaves if x.kind in ("decimal", "int", "float") and x.path[-1] != "v"]
    negatable = [x for x in numeric if x.kind in ("decimal", "int") and x.path[-1] in NEGATABLE]
    ids = [x for x in base_leaves if x.path[-1] in id_fields and x.kind == "str"]
    kinds = ["wrong_type", "missing", "unknown_enum", "garbage", "wrong_message"]
    kinds += ["huge"] * bool(numeric) + ["negative"] * bool(negatable) + ["version"] * ("v" in doc) + ["bad_id"] * bool(ids)
    kind = draw(st.sampled_from(kinds))
    if kind == "wrong_type":
        leaf = draw(st.sampled_from(base_leaves))
        _set(doc, leaf.path, draw(st.sampled_from(WRONG_TYPE[leaf.kind])))
    elif kind == "missing":
        leaf = draw(st.sampled_from([x for x in base_leaves if x.required]))
        _del(doc, leaf.path)
    elif kind == "unknown_enum":
        choices = [x for x in base_leaves if x.kind in ("enum", "tag")]
        if not choices:
            kind = "garbage"
        else:
            leaf = draw(st.sampled_from(choices))
            _set(doc, leaf.path, draw(st.text(min_size=0, max_size=24).filter(lambda s: s not in leaf.enum and s.strip().upper() not in leaf.enum)))
    elif kind == "huge":
        leaf = draw(st.sampled_from(numeric))
        tokens = [t for t in HUGE_TOKENS if leaf.kind == "decimal" or not t.startswith('"') or leaf.kind == "float"]
        raws.append(draw(st.sampled_from(tokens)))
        _set(doc, leaf.path, RAW.format(0))
    elif kind == "negative":
        leaf = draw(st.sampled_from(negatable))
        n = draw(st.integers(min_value=1, max_value=10**6))
        _set(doc, leaf.path, -n if leaf.kind == "int" or draw(st.booleans()) else f"-{n}.5")
    elif kind == "version":
        doc["v"] = draw(st.one_of(st.integers(min_value=-(2**63), max_value=2**63).filter(lambda x: x != 1), st.just(2)))
    elif kind == "bad_id":
        leaf = draw(st.sampled_from(ids))
        _set(doc, leaf.path, draw(BAD_IDS))
    if kind == "garbage":
        data = draw(st.one_of(
            st.binary(min_size=0, max_size=300),
            st.sampled_from([b"", b"null", b"[]", b"{}", b'"x"', b"123", b"{", b'{"type": null}', b"\xff\xfe\x00", b"[1,2,3]", b'{"a": NaN}']),
        ))
        return kind, data
    if kind == "wrong_message":
        return kind, draw(st.sampled_from(others))
    return kind, _dump(doc, raws)


def oversized(base_doc: dict, n: int) -> bytes:
    doc = copy.deepcopy(base_doc)
    doc["pad"] = "x" * n
    return json.dumps(doc).encode()


def collect(strategy, n: int) -> list:
    """``n`` examples of ``strategy``, reproducibly (hypothesis generates, nothing to shrink)."""
    out: list = []

    @settings(max_examples=n, database=None, derandomize=True, phases=[Phase.generate], deadline=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(x):
        out.append(x)

    run()
    return out[:n]


# ------------------------------------------------------------------------------------------------
# What must happen to each message (the oracle)
# ------------------------------------------------------------------------------------------------


SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
SEMANTIC = frozenset({ReasonCode.VALIDATION_INVALID_FIELD.value, ReasonCode.VALIDATION_INVALID_QUANTITY.value, ReasonCode.VALIDATION_INVALID_PRICE.value})
INVALID_FIELD = frozenset({ReasonCode.VALIDATION_INVALID_FIELD.value})


def violates_spec(obj) -> bool:
    """The wire contract beyond the JSON schema, written down here independently of the codec: every
    decimal finite and within [0, 1e15]; every int (but ``v``) within [0, 2**53]; every float finite and
    within [0, 1e12]; ids that end up in subjects and KV keys (``cid``, ``client_order_id``,
    ``new_client_order_id``) are 1..128 of ``[A-Za-z0-9_-]``."""
    for f in msgspec.structs.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, bool) or v is None or f.name == "v":
            continue
        if isinstance(v, Decimal) and not (v.is_finite() and 0 <= v <= Decimal("1e15")):
            return True
        if isinstance(v, int) and not hasattr(v, "value") and not 0 <= v <= 2**53:
            return True
        if isinstance(v, float) and not (v == v and 0 <= v <= 1e12):
            return True
        if f.name in ("cid", "client_order_id", "new_client_order_id") and isinstance(v, str) and not SAFE_ID.fullmatch(v):
            return True
        if isinstance(v, msgspec.Struct) and violates_spec(v):
            return True
        if isinstance(v, tuple) and any(isinstance(x, msgspec.Struct) and violates_spec(x) for x in v):
            return True
    return False


def expected_reason(family: str, subject: str, data: bytes) -> frozenset[str] | None:
    """The reasons a worker may dead-letter ``data`` on ``subject`` with (exactly the codec's when the
    codec refuses it), or None when it is acceptable input — for facts: a valid fact about an
    execution that does not exist, which must be acknowledged as a no-op."""
    cid = subject.rsplit(".", 1)[-1]
    try:
        if family.startswith("cmd."):
            msg = decode_command(data)
            want = {"precheck": PrecheckCommand, "split": SplitCommand, "send": SendCommand, "adjust": AdjustCommand}[family[4:]]
            if not isinstance(msg, want) or msg.cid != cid:
                return INVALID_FIELD
        elif family == "evt":
            msg = decode_fact(data)
            if msg.cid != cid:
                return INVALID_FIELD
        elif family == "report":
            msg = decode(data, ExecutionReport)
            if msg.cid != cid or msg.kind not in ("FILL", "CANCELLED", "EXPIRED", "REJECTED"):
                return INVALID_FIELD
            if msg.kind == "FILL" and not violates_spec(msg) and (msg.qty <= 0 or msg.price <= 0 or not msg.trade_id):
                return INVALID_FIELD
        elif family == "escape":
            msg = decode_escape(data)
            if cid != "all" and not SAFE_ID.fullmatch(cid):
                return INVALID_FIELD
        else:
            raise AssertionError(family)
    except DecodeError as exc:
        return frozenset({exc.reason_code.value})
    return SEMANTIC if violates_spec(msg) else None


def acceptable_fact(subject: str, data: bytes) -> bool:
    """A fact that would legitimately create an execution is not hostile input: leave it out."""
    try:
        msg = decode_fact(data)
    except DecodeError:
        return True
    return not (isinstance(msg, (ExecutionCreated, IntentRejected)) and msg.cid == subject.rsplit(".", 1)[-1])


def venue_would_accept(op: str, data: bytes) -> bool:
    """True for a request the paper venue would carry out (a valid order): not hostile, leave it out."""
    if op != "new":
        return False
    try:
        order = decode(data, NewOrder)
    except DecodeError:
        return False
    if violates_spec(order):
        return False  # hostile: the venue must refuse it
    cfg = venue_model.VenueConfig(symbols=DEFAULT_SYMBOLS)
    try:
        _, ack, _ = venue_model.on_new(venue_model.new_venue(cfg), cfg, order, time.time())
    except Exception:
        return False
    return ack.accepted


def intake_accepts(data: bytes) -> bool:
    try:
        parse_intent(data, KNOWN_SYMBOLS)
        return True
    except IntentError:
        return False


# ------------------------------------------------------------------------------------------------
# The barrage
# ------------------------------------------------------------------------------------------------


def build_barrage() -> dict[str, list[Hostile]]:
    seq = iter(range(1_000_000))

    def cid() -> str:
        return f"xhostile{next(seq):05d}"

    sample_cid = "xhostilebase"
    base_cmds = commands(sample_cid)
    enc = msgspec.json.encode
    other_msgs = [enc(m) for m in base_cmds.values()] + [enc(f) for f in facts(sample_cid)[1:]] + [enc(report(sample_cid)), enc(escape_request(sample_cid))] + [enc(m) for m in venue_requests().values()]
    barrage: dict[str, list[Hostile]] = {}

    def js_family(family: str, subject_of, base_of, pick_base=None) -> None:
        def strat():
            @st.composite
            def one(draw):
                c = subject_of(cid) if family != "escape.all" else "exec.escape.all"
                base = base_of(c.rsplit(".", 1)[-1]) if pick_base is None else draw(pick_base(c.rsplit(".", 1)[-1]))
                doc = msgspec.to_builtins(base)
                others = [m for m in other_msgs if m != enc(base)]
                kind, data = draw(mutated(doc, leaves(base), others))
                return Hostile(c, data, kind)

            return one()

        fam = "escape" if family.startswith("escape") else family

        def hostile(h: Hostile) -> bool:
            if fam == "evt":
                return acceptable_fact(h.subject, h.data)
            return expected_reason(fam, h.subject, h.data) is not None

        items = collect(strat().filter(hostile), PER_SUBJECT)
        for i in range(OVERSIZED):
            c = subject_of(cid) if family != "escape.all" else "exec.escape.all"
            base = base_of(c.rsplit(".", 1)[-1]) if pick_base is None else facts(c.rsplit(".", 1)[-1])[1]
            items.append(Hostile(c, oversized(msgspec.to_builtins(base), 256 * 1024 + 1 + i * 40_000), "oversized"))
        if family != "escape.all":  # a legal subject token that is not a legal id (KV keys, subjects)
            for i in range(2):
                token = BAD_SUBJECT_TOKENS[(len(barrage) * 2 + i) % len(BAD_SUBJECT_TOKENS)]
                c = subject_of(lambda: token)
                base = base_of(token) if pick_base is None else facts(token)[3]
                if family == "escape":
                    base = escape_request(None)
                items.append(Hostile(c, msgspec.json.encode(base), "bad_subject"))
        barrage[family] = items

    for stage in ("precheck", "split", "send", "adjust"):
        js_family(f"cmd.{stage}", lambda mk, s=stage: f"exec.cmd.{s}.{mk()}", lambda c, s=stage: commands(c)[s])
    js_family("evt", lambda mk: f"exec.evt.{mk()}", None, pick_base=lambda c: st.sampled_from(facts(c)))
    js_family("report", lambda mk: f"venue.report.{mk()}", report)
    js_family("escape", lambda mk: f"exec.escape.{mk()}", escape_request)
    js_family("escape.all", lambda mk: "exec.escape.all", lambda c: escape_request(None))
    # Control characters and line separators that end up in the reason detail (a header value).
    nasty = "Pre\x00\x01\u2028\r\nx\x7f"
    for family, subject_of, doc in (
        ("cmd.precheck", lambda c: f"exec.cmd.precheck.{c}", lambda c: {**msgspec.to_builtins(commands(c)["precheck"]), "type": nasty}),
        ("evt", lambda c: f"exec.evt.{c}", lambda c: {**msgspec.to_builtins(facts(c)[4]), "liquidity": 5, "type": nasty}),
        ("report", lambda c: f"venue.report.{c}", lambda c: {**msgspec.to_builtins(report(c)), "kind": nasty}),
    ):
        c = cid()
        barrage[family].append(Hostile(subject_of(c), json.dumps(doc(c)).encode(), "control_chars"))
    # Valid facts about executions that do not exist: acknowledged, and nothing else happens.
    for fact in (facts(cid())[4], facts(cid())[9], facts(cid())[7]):
        barrage["evt"].append(Hostile(f"exec.evt.{fact.cid}", msgspec.json.encode(fact), "unknown_execution"))

    # exec.intake: malformed intents (they must all be refused)
    @st.composite
    def intent(draw):
        kind, data = draw(mutated(INTENT_DOC, intent_leaves(), other_msgs, id_fields=("symbol", "strategy_id", "client_key")))
        return Hostile("exec.intake", data, kind)

    items = collect(intent().filter(lambda h: not intake_accepts(h.data)), PER_SUBJECT)
    items += [Hostile("exec.intake", oversized(INTENT_DOC, 256 * 1024 + 1 + i * 40_000), "oversized") for i in range(OVERSIZED)]
    barrage["intake"] = items

    # venue.api.*: malformed venue requests
    for op, base in venue_requests().items():
        @st.composite
        def vreq(draw, op=op, base=base):
            others = [m for m in other_msgs if m != enc(base)]
            kind, data = draw(mutated(msgspec.to_builtins(base), leaves(base), others))
            return Hostile(f"venue.api.{op}", data, kind)

        items = collect(vreq().filter(lambda h, op=op: not venue_would_accept(op, h.data)), PER_SUBJECT)
        items += [Hostile(f"venue.api.{op}", oversized(msgspec.to_builtins(base), 256 * 1024 + 1 + i * 40_000), "oversized") for i in range(OVERSIZED)]
        barrage[f"venue.{op}"] = items
    return barrage


STREAM_OF = {"cmd": "EXEC_CMD", "evt": "EXEC_EVT", "report": "VENUE_RPT", "escape": "EXEC_ESCAPE"}
DURABLE_OF = {"cmd.precheck": "precheck", "cmd.split": "split", "cmd.send": "send", "cmd.adjust": "adjust", "report": "monitor", "escape": "escape", "escape.all": "escape"}
WORKER_OF = {"precheck": "precheck", "split": "split", "send": "send", "adjust": "adjust", "monitor": "monitor", "escape": "escape", "coordinator": "coordinator", "ledger": "ledger"}


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _dead_letters(js) -> list:
    """Every message in EXEC_DLQ, read with an ephemeral pull consumer."""
    info = await js.stream_info("EXEC_DLQ")
    if info.state.messages == 0:
        return []
    sub = await js.pull_subscribe("exec.dlq.>", durable=None, stream="EXEC_DLQ")
    out = []
    try:
        while len(out) < info.state.messages:
            try:
                batch = await sub.fetch(min(256, info.state.messages - len(out)), timeout=2)
            except nats.errors.TimeoutError:
                break
            out += batch
    finally:
        await sub.unsubscribe()
    return out


async def test_hostile_barrage_is_refused_dead_lettered_or_acknowledged(stack):
    barrage = build_barrage()
    pids = {n: w.proc.pid for n, w in stack.workers.items()}
    nc = await nats.connect(stack.url)
    js = nc.jetstream(timeout=10)
    evt_consumers = [*COORDINATOR_CONSUMERS, "ledger"]
    from jetexec.client import JetexecClient

    async with JetexecClient.connect(stack.url) as jx:  # the pipeline works, and the gateway knows the symbols
        receipt = await jx.submit({"symbol": "MSFT", "side": "SELL", "qty": 2, "strategy_id": "before-hostile", "client_key": "before"})
        assert (await jx.wait(receipt.correlation_id, timeout=20)).state.value == "COMPLETE"

    # ---- publish: JetStream subjects (remember each message's stream sequence) -------------------
    published: dict[tuple[str, int], tuple[str, Hostile]] = {}  # (stream, seq) -> (family, message)
    for family, items in barrage.items():
        if family == "intake" or family.startswith("venue."):
            continue
        stream = STREAM_OF[family.split(".")[0]]
        for i, h in enumerate(items):
            ack = await js.publish(h.subject, h.data, headers={"Nats-Msg-Id": f"hostile.{family}.{i}"})
            assert ack.stream == stream and not ack.duplicate
            published[(stream, ack.seq)] = (family, h)

    # ---- request/reply subjects: every request answered, with a reason code --------------------
    sem = asyncio.Semaphore(16)

    async def ask(h: Hostile) -> tuple[Hostile, dict | None]:
        async with sem:
            try:
                msg = await nc.request(h.subject, h.data, timeout=10)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
                return h, {"_no_answer": type(exc).__name__}
            return h, json.loads(msg.data)

    answers = await asyncio.gather(*(ask(h) for fam, items in barrage.items() if fam == "intake" or fam.startswith("venue.") for h in items))
    unanswered = [(h.subject, h.mutation, h.data[:120], reply) for h, reply in answers if "_no_answer" in reply]
    assert not unanswered, f"{len(unanswered)} requests got no answer: {unanswered[:5]}"
    for h, reply in answers:
        if h.subject == "exec.intake":
            assert reply["accepted"] is False and reply["state"] == "FAILED", (h, reply)
            assert reply["reason_code"].startswith("VALIDATION_"), (h, reply)
        elif "error" in reply:
            assert reply["error"] in ReasonCode.__members__, (h, reply)
        else:  # decoded, and refused by the venue with a reason (an order it would accept is not in the barrage)
            assert reply.get("accepted") is False or reply.get("found") is False, (h, reply)
            assert reply.get("accepted") is not False or reply.get("reason_code") in ReasonCode.__members__ or reply.get("reject_reason"), (h, reply)

    # ---- the expected outcome of every JetStream message ----------------------------------------
    expect_dlq: dict[tuple[str, int], frozenset[str]] = {}  # (durable, stream seq) -> acceptable reasons
    expect_noop: list[tuple[str, int]] = []  # (durable, stream seq) acknowledged without effect
    expect_audited: set[int] = set()  # EXEC_EVT seqs the ledger must audit as LEDGER_UNDECODABLE_FACT
    for (stream, seq), (family, h) in published.items():
        fam = "escape" if family.startswith("escape") else family
        reason = expected_reason(fam, h.subject, h.data)
        if family == "evt":
            assert (reason is None) == (h.mutation == "unknown_execution"), h
            if reason is None:
                expect_noop += [("coordinator", seq), ("ledger", seq)]
                continue
            expect_dlq[("coordinator", seq)] = reason
            if SAFE_ID.fullmatch(h.subject.rsplit(".", 1)[-1]):
                expect_audited.add(seq)  # the ledger skips it, audited (its fold must not stop)
            else:
                expect_dlq[("ledger", seq)] = INVALID_FIELD  # no execution can have that subject
        else:
            assert reason is not None, (family, h)
            expect_dlq[(DURABLE_OF[family], seq)] = reason
    stream_of_durable = {d: CONSUMERS[d].stream for d in CONSUMERS} | {"coordinator": "EXEC_EVT"}  # its DLQ subject names the worker

    async def dlq_complete():
        return (await js.stream_info("EXEC_DLQ")).state.messages >= len(expect_dlq)

    await wait_for(dlq_complete, timeout=30, interval=0.2, what=f"{len(expect_dlq)} dead letters")
    got: dict[tuple[str, int], object] = {}
    for m in await _dead_letters(js):
        durable = m.subject.rsplit(".", 1)[-1]
        key = (durable, int(m.headers["Jetexec-Stream-Seq"]))
        assert key not in got, f"dead-lettered twice: {key}"
        got[key] = m
    missing = sorted(set(expect_dlq) - set(got))
    extra = sorted(set(got) - set(expect_dlq))
    assert not missing, f"{len(missing)} hostile messages were not dead-lettered, e.g. {[(k, published[(stream_of_durable[k[0]], k[1])]) for k in missing[:3]]}"
    assert not extra, f"unexpected dead letters: {[(k, got[k].headers) for k in extra[:3]]}"
    for key, reason in expect_dlq.items():
        m = got[key]
        family, h = published[(stream_of_durable[key[0]], key[1])]
        assert m.headers["Jetexec-Reason"] in reason, (family, h.mutation, h.data[:200], m.headers)
        assert m.headers["Jetexec-Deliveries"] == "1", ("poison must be recognised at once", family, h.data[:200], m.headers)
        assert m.headers["Jetexec-Subject"] == h.subject and m.data == h.data

    # ---- nothing left unacknowledged ------------------------------------------------------------
    async def drained() -> bool:
        for stream in ("EXEC_CMD", "VENUE_RPT", "EXEC_ESCAPE"):
            if (await js.stream_info(stream)).state.messages:
                return False
        for durable in evt_consumers:
            info = await js.consumer_info("EXEC_EVT", durable)
            if info.num_pending or info.num_ack_pending:
                return False
        return True

    await wait_for(drained, timeout=30, interval=0.2, what="work queues empty and EXEC_EVT consumers caught up")

    # ---- every dead-lettered command became a StageFailed fact (acknowledged: no such execution) ----
    for (durable, seq), m in got.items():
        cmd_cid = m.headers["Jetexec-Subject"].rsplit(".", 1)[-1]
        if durable not in ("precheck", "split", "send", "adjust") or not SAFE_ID.fullmatch(cmd_cid):
            continue
        last = await js.get_last_msg("EXEC_EVT", f"exec.evt.*.{cmd_cid}")
        fact = decode_fact(last.data)
        assert isinstance(fact, StageFailed) and fact.stage == durable and fact.reason_code is ReasonCode.POISON_MESSAGE, fact

    # ---- the ledger audited each fact it had to skip -----------------------------------------
    async def audited() -> set[int]:
        sub = await js.pull_subscribe("exec.audit.>", durable=None, stream="AUDIT")
        seen: set[int] = set()
        try:
            while True:
                try:
                    batch = await sub.fetch(256, timeout=1)
                except nats.errors.TimeoutError:
                    break
                for m in batch:
                    e = json.loads(m.data)
                    if e.get("code") == "LEDGER_UNDECODABLE_FACT":
                        seen.add(int(e["payload"]["stream_seq"]))
        finally:
            await sub.unsubscribe()
        return seen

    async def all_audited() -> bool:
        return expect_audited <= await audited()

    await wait_for(all_audited, timeout=20, interval=0.5, what=f"{len(expect_audited)} LEDGER_UNDECODABLE_FACT audit entries")

    # ---- no execution was created by a hostile fact or command -----------------------------------
    kv = await js.key_value("EXECUTIONS")
    try:
        keys = set(await kv.keys())
    except Exception:
        keys = set()
    hostile_cids = {h.subject.rsplit(".", 1)[-1] for _, h in published.values()}
    assert not keys & hostile_cids, sorted(keys & hostile_cids)[:5]

    # ---- counters on each worker's /metrics ------------------------------------------------------
    per_worker = Counter(WORKER_OF[d] for d, _ in expect_dlq)
    for name in sorted(set(per_worker) | {"coordinator", "ledger", "precheck", "split", "send", "adjust", "monitor", "escape"}):
        if name not in stack.workers:
            continue
        text = stack.metrics(name)
        assert _metric(text, "jetexec_dead_letters_total", worker=name) == per_worker[name], (name, per_worker[name])
        assert _metric(text, "jetexec_messages_total", worker=name, outcome="dead_lettered") == per_worker[name], name
        assert _metric(text, "jetexec_messages_total", worker=name, outcome="error") == 0, f"{name}: a hostile message hit the unexpected-exception path"
    reasons = Counter(m.headers["Jetexec-Reason"] for m in got.values())

    # ---- no crash, no stall: same processes, no tracebacks, and a normal intent still completes -----

    async with JetexecClient.connect(stack.url) as jx:
        t0 = time.monotonic()
        receipt = await jx.submit({"symbol": "AAPL", "side": "BUY", "qty": 3, "strategy_id": "after-hostile", "client_key": "after"})
        assert receipt.accepted, receipt
        result = await jx.wait(receipt.correlation_id, timeout=20)
        assert result.state.value == "COMPLETE" and result.filled_qty == 3, result
        assert time.monotonic() - t0 < 15
    for name, w in stack.workers.items():
        assert w.proc.poll() is None and w.proc.pid == pids[name], f"worker {name} exited"
        err = w.err.read_text(errors="replace")
        assert "Traceback" not in err, f"{name} logged a traceback:\n{err[-3000:]}"
    await nc.close()

    counts = {fam: len(items) for fam, items in barrage.items()}
    print(f"\nhostile messages per subject: {counts} (total {sum(counts.values())})")
    print(f"mutations: {dict(Counter(h.mutation for items in barrage.values() for h in items))}")
    print(f"dead letters by consumer: {dict(Counter(d for d, _ in got))}")
    print(f"dead letters by reason: {dict(reasons)}; facts acknowledged as no-ops: {len(expect_noop)} (per consumer); audited by the ledger: {len(expect_audited)}")
