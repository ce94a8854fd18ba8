"""Audit entries, the ledger's per-execution fold, stream-ordered position slots, deterministic export."""

from __future__ import annotations

import json
import random
from decimal import Decimal as D

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from core import audit
from core.coordinator import decide, decision_audit
from core.ids import client_order_id, flatten_order_id
from core.ledger import Fill, book_replay, check_invariant
from schemas.enums import AdjustAction, TimerKind, ExecutionMode, ExecutionState as S, OrderState as O, OrderType, ReasonCode, Side, SplitStrategy
from schemas.messages import (
    AdjustDone,
    ChildAccepted,
    ChildClosed,
    ChildFill,
    ChildOrder,
    ChildReplaced,
    EscapeDone,
    EscapeStarted,
    ExecutionCreated,
    Intent,
    IntentRejected,
    PrecheckDone,
    SplitDone,
)
from core.ledger_fold import decode_for, new_slot, replay, replay_positions, slot_compact, slot_insert, slot_position


def execution(cid, key, *, symbol="AAPL", side=Side.BUY, qty=D(10), strategy="s1", fills=((D(4), D("190.01")), (D(6), D("190.02"))), t=1000.0, order_type=OrderType.MARKET, close=None):
    intent = Intent(symbol=symbol, side=side, qty=qty, order_type=order_type, strategy_id=strategy, price=D("190") if order_type is OrderType.LIMIT else None)
    c0 = client_order_id(key, 0)
    out = [
        ExecutionCreated(cid=cid, idempotency_key=key, intent=intent, mode=ExecutionMode.PAPER, arrival_price=D("190.00"), ts=t),
        PrecheckDone(cid=cid, step=1, passed=True, qty=qty, ts=t),
        SplitDone(cid=cid, step=2, strategy=SplitStrategy.SINGLE, children=(ChildOrder(client_order_id=c0, index=0, symbol=symbol, side=side, qty=qty, order_type=order_type, price=intent.price),), ts=t),
        ChildAccepted(cid=cid, client_order_id=c0, venue_order_id="V1", ts=t),
    ]
    for i, (q, p) in enumerate(fills):
        out.append(ChildFill(cid=cid, client_order_id=c0, trade_id=f"{c0}-T{i + 1}", qty=q, price=p, fee=D("0.01"), ts=t))
    if close is not None:
        out.append(ChildClosed(cid=cid, client_order_id=c0, state=close, reason="IOC remainder: book depth exhausted", ts=t))
    return out


def fold(facts, start_seq=1):
    return replay((start_seq + i, 1000.0 + i, f) for i, f in enumerate(facts))


# ---- transitions are exactly the coordinator's ---------------------------------------------------


def coordinator_audit(facts, start_seq=1):
    """The entries the coordinator writes for these facts (one decision each)."""
    rec, out = None, []
    for i, f in enumerate(facts):
        new = decide(rec, f, 1000.0 + i)
        if new is not None:
            out += decision_audit(rec, new, start_seq + i, 1000.0 + i, f)
            rec = new
    return rec, out


def test_execution_transitions_are_the_coordinators_once_each():
    facts = execution("x1", "ik-1")
    rec, entries = coordinator_audit(facts)
    got = [(e.from_state, e.to_state) for e in entries if e.event_type == audit.EXECUTION_TRANSITION]
    assert got == [(t.from_state.value, t.to_state.value) for t in rec.transitions]
    assert got == [("INIT", "PRECHECK"), ("PRECHECK", "SPLITTING"), ("SPLITTING", "SENDING"), ("SENDING", "MONITORING"), ("MONITORING", "COMPLETE")]
    assert rec.state is S.COMPLETE
    assert all(e.source.startswith("coord:") for e in entries)
    # deciding the same facts again (a redelivery, a takeover's replay) writes the same ids
    assert [audit.msg_id(e.source, e.n) for e in coordinator_audit(facts)[1]] == [audit.msg_id(e.source, e.n) for e in entries]
    # the ledger keeps the order ledger and writes no execution transition of its own
    assert not any(e.event_type == audit.EXECUTION_TRANSITION for e in fold(facts).entries)


def test_order_history_transitions_and_fill_booking():
    r = fold(execution("x1", "ik-1"))
    coid = client_order_id("ik-1", 0)
    order = [(e.from_state, e.to_state, e.payload["event"]) for e in r.entries if e.event_type == audit.ORDER_TRANSITION]
    assert order == [
        (None, "CREATED", "ORDER_CREATED"),
        ("CREATED", "SUBMITTED", "ORDER_SUBMITTED"),
        ("SUBMITTED", "ACKNOWLEDGED", "ORDER_ACKNOWLEDGED"),
        ("ACKNOWLEDGED", "PARTIALLY_FILLED", "ORDER_PARTIALLY_FILLED"),
        ("PARTIALLY_FILLED", "FILLED", "ORDER_FILLED"),
    ]
    entry = r.states["x1"].orders[coid]
    assert entry.state is O.FILLED and entry.filled_qty == 10 and entry.fees == D("0.02")
    assert entry.avg_fill_price == (4 * D("190.01") + 6 * D("190.02")) / 10
    assert all(e.client_order_id == coid for e in r.entries if e.event_type == audit.ORDER_TRANSITION)


def test_entries_are_numbered_per_fact_and_ids_unique():
    r = fold(execution("x1", "ik-1") + execution("x2", "ik-2", side=Side.SELL))
    ids = [audit.msg_id(e.source, e.n) for e in r.entries]
    assert len(ids) == len(set(ids))
    for e in r.entries:
        assert e.source.startswith("evt:")
    # the same facts at the same stream positions give the same entries, byte for byte
    again = fold(execution("x1", "ik-1") + execution("x2", "ik-2", side=Side.SELL))
    assert [audit.encode_entry(e) for e in again.entries] == [audit.encode_entry(e) for e in r.entries]


def test_repeated_fill_and_repeated_created_are_booked_once():
    facts = execution("x1", "ik-1")
    facts = facts[:5] + [facts[4]] + facts[5:] + [facts[0]]
    r = fold(facts)
    assert len(r.fills) == 2
    assert r.states["x1"].orders[client_order_id("ik-1", 0)].filled_qty == 10
    assert sum(1 for e in r.entries if e.payload.get("event") == "ORDER_CREATED") == 1


def test_intent_rejected_is_a_failed_execution_with_its_alerts():
    from core.guardrails import alert
    from schemas.enums import AlertCode

    f = IntentRejected(cid="xr", idempotency_key="ik-r", reason_code=ReasonCode.VALIDATION_INVALID_SYMBOL, detail="NOPE", alerts=(alert(AlertCode.FS091, "INIT", "invalid symbol", 5.0),))
    r = fold([f])
    assert r.entries == [] and r.fills == []  # no order, no fill: nothing for the ledger to audit
    rec, entries = coordinator_audit([f])
    kinds = [(e.event_type, e.from_state, e.to_state, e.code) for e in entries]
    assert kinds == [(audit.EXECUTION_TRANSITION, "INIT", "FAILED", None), (audit.ALERT, None, None, "FS091")]
    assert rec.state is S.FAILED


def test_ioc_close_late_fill_and_reprice():
    key = "ik-9"
    c0 = client_order_id(key, 0)
    facts = execution("x9", key, order_type=OrderType.LIMIT, fills=((D(3), D("190")),))
    facts += [
        ChildReplaced(cid="x9", client_order_id=c0, new_client_order_id=c0, new_price=D("190.05"), generation=1, ts=1.0),
        ChildClosed(cid="x9", client_order_id=c0, state=O.CANCELLED, reason="cancelled by client"),
        ChildFill(cid="x9", client_order_id=c0, trade_id=f"{c0}-T2", qty=D(2), price=D("190.05"), fee=D(0)),
    ]
    r = fold(facts)
    entry = r.states["x9"].orders[c0]
    assert entry.state is O.CANCELLED and entry.filled_qty == 5 and entry.price == D("190.05")
    events = [e.payload.get("event") or e.event_type for e in r.entries if e.client_order_id == c0]
    assert events[-3:] == [audit.ORDER_REPLACED, "ORDER_CANCELLED", "ORDER_LATE_FILL"]
    assert entry.reason == "cancelled by client"
    assert [f.qty for _, f in r.fills] == [3, 2]


def test_flatten_fill_books_the_opposite_side_even_before_escape_done():
    key = "ik-f"
    fl = flatten_order_id(key)
    facts = execution("xf", key, fills=((D(4), D("190.01")),))
    facts += [
        EscapeStarted(cid="xf", reason="MANUAL", fence="xf"),
        ChildFill(cid="xf", client_order_id=fl, trade_id=f"{fl}-T1", qty=D(4), price=D("189.99"), fee=D("0.01")),
        EscapeDone(cid="xf", reason="MANUAL", cancelled=(client_order_id(key, 0),), flatten_client_order_id=fl),
    ]
    r = fold(facts)
    assert [(f.side, f.qty) for _, f in r.fills] == [(Side.BUY, 4), (Side.SELL, 4)]
    book = replay_positions(r.fills)
    assert book.positions[("AAPL", "s1")].qty == 0
    st_ = r.states["xf"]
    assert st_.orders[fl].side is Side.SELL and st_.orders[fl].filled_qty == 4 and st_.orders[fl].reason == "flatten"
    ops = [e for e in r.entries if e.event_type == audit.OPERATOR_ACTION]
    assert [(e.code, e.payload["reason"]) for e in ops] == [("ESCAPE", "MANUAL")]
    assert st_.orders[client_order_id(key, 0)].state is O.CANCELLED


def test_undecodable_and_foreign_facts_are_audited_not_dropped():
    assert isinstance(decode_for("x1", b"{not json"), tuple)
    other = execution("x2", "ik-2")[0]
    got = decode_for("x1", msgspec.json.encode(other))
    assert isinstance(got, tuple) and "x2" in got[1]
    r = replay([(1, 1.0, ("x1", "bad")), (2, 2.0, execution("x1", "ik-1")[0])])
    assert r.entries[0].code == "LEDGER_UNDECODABLE_FACT" and r.states["x1"].last_seq == 2


def test_adjust_round_reprice_is_audited_as_replacement():
    key = "ik-a"
    c0 = client_order_id(key, 0)
    facts = execution("xa", key, order_type=OrderType.LIMIT, fills=())
    from schemas.messages import TimerFired

    # a fill timeout moves MONITORING -> ADJUSTING; AdjustDone re-prices and returns to MONITORING
    facts.append(TimerFired(cid="xa", step=5, kind=TimerKind.WAKE))
    facts.append(AdjustDone(cid="xa", step=6, round=0, action=AdjustAction.PRICE_IMPROVE, replaced=(ChildReplaced(cid="xa", client_order_id=c0, new_client_order_id=c0, new_price=D("190.02"), generation=1),)))
    seqs = list(range(1, len(facts) + 1))
    times = [1000.0] * 4 + [1000.0 + 61, 1000.0 + 62]  # past the 60 s MONITORING timeout
    r = replay(zip(seqs, times, facts))
    rep = [e for e in r.entries if e.event_type == audit.ORDER_REPLACED]
    assert len(rep) == 1 and rep[0].payload["price"] == "190.02"
    assert r.states["xa"].orders[c0].price == D("190.02")
    # the same facts through the coordinator: the round and its alert are in its entries
    rec, entries = None, []
    for seq, ts, f in zip(seqs, times, facts):
        new = decide(rec, f, ts)
        if new is not None:
            entries += decision_audit(rec, new, seq, ts, f)
            rec = new
    tr = [(e.from_state, e.to_state) for e in entries if e.event_type == audit.EXECUTION_TRANSITION]
    assert ("MONITORING", "ADJUSTING") in tr and tr[-1] == ("ADJUSTING", "MONITORING")
    assert any(e.code == "FS093" for e in entries)


# ---- positions in stream order ----------------------------------------------------------------------

fills_strategy = st.lists(
    st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 50), st.integers(9000, 11000), st.integers(0, 30)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(fills_strategy, st.randoms(use_true_random=False), st.integers(0, 40))
def test_slot_equals_stream_order_replay_whatever_the_arrival_order(rows, rnd, floor_at):
    fills = [(i * 3 + 1, Fill(trade_id=f"t{i}", client_order_id="c", symbol="AAPL", strategy_id="s", side=side, qty=D(q), price=D(p) / 100, fee=D(f) / 100)) for i, (side, q, p, f) in enumerate(rows)]
    arrival = list(fills)
    rnd.shuffle(arrival)
    slot = new_slot("AAPL", "s")
    for n, (seq, fill) in enumerate(arrival):
        slot, applied, _ = slot_insert(slot, seq, fill)
        assert applied
        slot2, again, _ = slot_insert(slot, seq, fill)  # a redelivery is recognised by trade id
        assert not again and slot2 is slot
        if n == floor_at:
            # compaction only ever covers a prefix that has fully arrived (the ack floor)
            arrived = {s for s, _ in arrival[: n + 1]}
            floor = 0
            for s, _ in fills:
                if s not in arrived:
                    break
                floor = s
            slot = slot_compact(slot, floor)
    expected, _ = book_replay([f for _, f in fills])
    pos = slot_position(slot)
    assert pos == expected.positions[("AAPL", "s")]
    assert check_invariant(pos) is None
    assert slot_position(slot_compact(slot, 10**9)) == pos


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 20)), min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_interleaving_executions_keeps_each_execution_identical(sides, rnd):
    """Per-cid folds are independent of how executions interleave (only per-cid order matters)."""
    per = [execution(f"x{i}", f"ik-{i}", side=side, qty=D(q), fills=((D(q), D("190.01")),)) for i, (side, q) in enumerate(sides)]
    serial = fold([f for fs in per for f in fs])
    queues = [list(fs) for fs in per]
    mixed = []
    while any(queues):
        q = rnd.choice([q for q in queues if q])
        mixed.append(q.pop(0))
    inter = fold(mixed)
    for cid in serial.states:
        a, b = serial.states[cid], inter.states[cid]
        view = lambda s: {k: (o.state, o.filled_qty, o.trade_ids, [h.event for h in o.history]) for k, o in s.orders.items()}  # noqa: E731
        assert view(a) == view(b)
    assert sorted(f.trade_id for _, f in serial.fills) == sorted(f.trade_id for _, f in inter.fills)


# ---- queries and export ------------------------------------------------------------------------------


def _stored(entries):
    return [msgspec.structs.replace(e, seq=i + 1) for i, e in enumerate(entries)]


def test_filters():
    es = _stored(fold(execution("x1", "ik-1") + execution("x2", "ik-2")).entries)
    coid = client_order_id("ik-2", 0)
    assert {e.correlation_id for e in audit.filter_entries(es, correlation_id="x2")} == {"x2"}
    assert all(e.client_order_id == coid for e in audit.filter_entries(es, client_order_id=coid))
    assert len(audit.filter_entries(es, client_order_id=coid)) == 5
    tr = audit.filter_entries(es, event_type="order_transition")
    assert tr and all(e.event_type == audit.ORDER_TRANSITION for e in tr)
    window = audit.filter_entries(es, since=1002.0, until=1003.0)
    assert window and all(1002.0 <= e.ts <= 1003.0 for e in window)
    assert [e.seq for e in audit.filter_entries(list(reversed(es)))] == sorted(e.seq for e in es)


def test_export_is_deterministic_valid_json_and_order_independent():
    es = _stored(fold(execution("x1", "ik-1") + execution("x2", "ik-2")).entries)
    a = audit.export_bytes(es, {"correlation_id": None})
    b = audit.export_bytes(list(reversed(es)), {})
    assert a == b
    doc = json.loads(a)
    assert doc["format"] == "jetexec-audit/1" and doc["count"] == len(es) and doc["first_seq"] == 1
    assert [e["seq"] for e in doc["entries"]] == list(range(1, len(es) + 1))
    for e in doc["entries"]:
        for k in ("seq", "ts", "correlation_id", "event_type", "from_state", "to_state", "code"):
            assert k in e
    assert json.loads(audit.export_bytes([], {})) == {"count": 0, "filters": {}, "first_seq": None, "format": "jetexec-audit/1", "last_seq": None, "entries": []}


def test_wire_round_trip_without_seq():
    e = fold(execution("x1", "ik-1")).entries[0]
    data = audit.encode_entry(msgspec.structs.replace(e, seq=42))
    assert b'"seq":0' in data
    assert audit.decode_entry(data, 7) == msgspec.structs.replace(e, seq=7)


def test_parse_ts():
    assert audit.parse_ts("1716000000.5") == 1716000000.5
    assert audit.parse_ts("2024-05-18T02:40:00Z") == 1716000000.0
    assert audit.parse_ts("2024-05-18T02:40:00Z") == audit.parse_ts("2024-05-18T02:40:00+00:00") == audit.parse_ts("2024-05-18T02:40:00")
    assert audit.parse_ts("-15m", now=1000.0) == 100.0
    assert audit.parse_ts(None) is None
    with pytest.raises(ValueError):
        audit.parse_ts("yesterday")


def test_safety_changes_are_operator_actions():
    halt = audit.safety_entries("state", "LOCKDOWN", "NORMAL", False, 5.0)
    assert [(e.code, e.from_state, e.to_state, e.correlation_id) for e in halt] == [("HALT", "NORMAL", "LOCKDOWN", audit.SYSTEM_CID)]
    assert audit.safety_entries("state", "NORMAL", "LOCKDOWN", False, 6.0)[0].code == "RESUME"
    assert audit.safety_entries("mode", "SHADOW", "PAPER", False, 7.0)[0].code == "MODE_CHANGE"
    fence = audit.safety_entries("halt.x1", "123.0", None, False, 8.0)[0]
    assert (fence.code, fence.correlation_id) == ("FENCE_SET", "x1")
    assert audit.safety_entries("halt.ALL", None, "1", True, 9.0)[0].code == "FENCE_CLEARED"


def test_a_non_operator_escape_is_not_an_operator_action():
    assert audit.operator_entries_for_fact(EscapeStarted(cid="x", reason="VENUE_FATAL", fence="x"), 1.0) == []
    assert audit.operator_entries_for_fact(EscapeStarted(cid="x", reason="HALT", fence="x"), 1.0)[0].code == "ESCAPE"


def test_random_fact_orders_never_crash_the_fold():
    """Facts out of any order (a broken producer) are folded without exceptions."""
    rnd = random.Random(4)
    base = execution("x1", "ik-1", close=O.CANCELLED) + execution("x2", "ik-2", side=Side.SELL)
    for _ in range(50):
        facts = list(base)
        rnd.shuffle(facts)
        r = fold(facts)
        assert all(e.source for e in r.entries)
