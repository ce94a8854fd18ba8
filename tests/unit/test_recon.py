"""Reconciliation diffing (pure), issue life cycle, snapshots."""

from __future__ import annotations

from decimal import Decimal as D

from hypothesis import given, settings, strategies as st

from core import recon
from core.ledger import OrderEventKind, new_order, order_on_event
from schemas.enums import OrderState as O, Side


def order(state=O.ACKNOWLEDGED, fills=(), qty=D(10), coid="c1", cid="x1"):
    e = new_order(coid, cid, "AAPL", Side.BUY, qty, 1.0, strategy_id="s1")
    e = order_on_event(e, OrderEventKind.SUBMIT, 1.0)
    if state is not O.SUBMITTED:
        e = order_on_event(e, OrderEventKind.ACK, 1.1, venue_order_id="V1")
    for tid, q, p in fills:
        e = order_on_event(e, OrderEventKind.FILL, 1.2, qty=q, price=p, trade_id=tid)
    if state in (O.CANCELLED, O.EXPIRED):
        e = order_on_event(e, OrderEventKind.CANCEL if state is O.CANCELLED else OrderEventKind.EXPIRE, 1.3)
    return e


def vf(tid, q, p, fee="0.01"):
    return recon.VenueFill(trade_id=tid, qty=D(q), price=D(p), fee=D(fee), ts=5.0)


def venue(state=O.FILLED, fills=None, qty=D(10), found=True, filled=None):
    f = None if fills is None else tuple(fills)
    filled_qty = filled if filled is not None else (sum((x.qty for x in f), D(0)) if f else D(0))
    return recon.VenueOrder(client_order_id="c1", found=found, state=state if found else None, qty=qty if found else D(0), filled_qty=filled_qty, fills=f)


def test_missing_fill_is_backfilled_exactly():
    o = order(fills=[("c1-T1", D(4), D("100"))])
    v = venue(fills=[vf("c1-T1", "4", "100"), vf("c1-T2", "6", "100.05", "0.02")])
    r = recon.diff_order(o, v)
    assert [(b.fill.trade_id, b.fill.qty, b.fill.price, b.fill.fee) for b in r.backfills] == [("c1-T2", D(6), D("100.05"), D("0.02"))]
    assert [i.code for i in r.issues] == ["RECON_FILL_MISSING"] and r.issues[0].details["backfilled"] is True
    assert r.closes == []


def test_without_per_trade_detail_a_quantity_gap_is_an_issue_not_a_backfill():
    o = order(fills=[("c1-T1", D(4), D("100"))])
    r = recon.diff_order(o, venue(fills=None, filled=D(10)))
    assert r.backfills == [] and [i.code for i in r.issues] == ["RECON_FILL_QTY_MISMATCH", "RECON_STATE_MISMATCH"]


def test_clean_order_is_clean():
    o = order(state=O.FILLED, fills=[("c1-T1", D(10), D("100"))])
    assert recon.diff_order(o, venue(fills=[vf("c1-T1", "10", "100")])).clean
    assert recon.diff_order(o, venue(fills=None, filled=D(10))).clean


def test_missed_close_is_backfilled_and_open_at_venue_is_flagged():
    live = order(state=O.ACKNOWLEDGED)
    r = recon.diff_order(live, venue(state=O.CANCELLED, fills=[]))
    assert [(c.client_order_id, c.state) for c in r.closes] == [("c1", O.CANCELLED)]
    closed = order(state=O.CANCELLED)
    r2 = recon.diff_order(closed, venue(state=O.ACKNOWLEDGED, fills=[]))
    assert [i.code for i in r2.issues] == ["RECON_STATE_MISMATCH"] and r2.closes == []


def test_unknown_at_venue_and_extra_ledger_trade_and_qty():
    assert [i.code for i in recon.diff_order(order(state=O.ACKNOWLEDGED), venue(found=False)).issues] == ["RECON_ORDER_UNKNOWN_AT_VENUE"]
    assert recon.diff_order(order(state=O.SUBMITTED), venue(found=False)).clean  # may still be on its way
    o = order(state=O.FILLED, fills=[("c1-T1", D(10), D("100"))])
    r = recon.diff_order(o, venue(fills=[vf("c1-T9", "10", "100")]))
    assert sorted(i.code for i in r.issues) == ["RECON_FILL_MISSING", "RECON_FILL_UNKNOWN_AT_VENUE"]
    q = recon.diff_order(order(state=O.ACKNOWLEDGED), venue(state=O.ACKNOWLEDGED, fills=[], qty=D(12)))
    assert [i.code for i in q.issues] == ["RECON_QTY_MISMATCH"]
    assert recon.diff_order(order(state=O.ACKNOWLEDGED), venue(state=O.ACKNOWLEDGED, fills=[], qty=D(12)), is_estimate=True).clean


def test_open_count_and_ordering():
    orders = [order(coid="c2", cid="x2"), order(coid="c1", cid="x1")]
    r = recon.reconcile(orders, {}, venue_open=3, ledger_open_total=2)
    assert r.checked == 0 and [i.code for i in r.issues] == ["RECON_OPEN_COUNT_MISMATCH"]
    assert recon.reconcile(orders, {}, venue_open=2, ledger_open_total=2).clean


def test_issue_keys_are_stable_and_lifecycle():
    o = order(fills=[])
    a = recon.diff_order(o, venue(fills=None, filled=D(3))).issues
    b = recon.diff_order(o, venue(fills=None, filled=D(3))).issues
    assert [i.key for i in a] == [i.key for i in b]
    c = recon.diff_order(o, venue(fills=None, filled=D(4))).issues
    assert a[0].key != c[0].key
    new, resolved = recon.issue_changes({}, a)
    assert new == a and resolved == []
    new, resolved = recon.issue_changes({a[0].key: {}}, [])
    assert new == [] and resolved == [a[0].key]


def test_second_pass_keeps_only_persistent_findings():
    o = order(fills=[])
    first = recon.diff_order(o, venue(fills=[vf("c1-T1", "4", "100")]))
    # by the second pass the fill arrived through the monitor: nothing left to do
    o2 = order(fills=[("c1-T1", D(4), D("100"))])
    second = recon.diff_order(o2, venue(fills=[vf("c1-T1", "4", "100")]))
    assert recon.persistent(first, second).clean
    assert recon.persistent(first, first).backfills == first.backfills


def test_snapshot_counts_and_open_orders():
    orders = [order(coid="a"), order(coid="b", state=O.FILLED, fills=[("b-T1", D(10), D("1"))])]
    snap = recon.build_snapshot(ts=1.0, positions=[{"symbol": "AAPL"}], orders=orders, order_row=lambda o: o.client_order_id, audit_high_water=7, evt_high_water=9, ledger_ack_floor=9)
    assert snap["orders"] == ["a"] and snap["order_counts"] == {"ACKNOWLEDGED": 1, "FILLED": 1} and snap["audit_high_water"] == 7
    full = recon.build_snapshot(ts=1.0, positions=[], orders=orders, order_row=lambda o: o.client_order_id, audit_high_water=7, evt_high_water=9, ledger_ack_floor=9, include_all_orders=True)
    assert full["orders"] == ["a", "b"] and full["orders_total"] == 2


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9), st.integers(9000, 11000)), min_size=1, max_size=12, unique_by=lambda t: t), st.data())
def test_backfills_are_exactly_the_missing_trades_and_applying_them_reconciles(trades, data):
    venue_fills = [vf(f"c1-T{i + 1}", q, D(p) / 100) for i, (q, p) in enumerate(trades)]
    total = sum((f.qty for f in venue_fills), D(0))
    known = data.draw(st.lists(st.sampled_from(venue_fills), unique_by=lambda f: f.trade_id))
    o = order(qty=total, fills=[(f.trade_id, f.qty, f.price) for f in known])
    v = venue(fills=venue_fills, qty=total)
    r = recon.diff_order(o, v)
    assert {b.fill.trade_id for b in r.backfills} == {f.trade_id for f in venue_fills} - {f.trade_id for f in known}
    for b in r.backfills:  # what the ledger does with a back-filled ChildFill
        o = order_on_event(o, OrderEventKind.FILL, 2.0, qty=b.fill.qty, price=b.fill.price, fee=b.fill.fee, trade_id=b.fill.trade_id)
    assert recon.diff_order(o, v).clean
    assert o.filled_qty == total and o.state is O.FILLED
