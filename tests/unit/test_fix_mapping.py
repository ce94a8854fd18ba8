"""FIX 4.4 application mapping (core/fix_mapping.py): pure, over plain tag → value dicts."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from core import fix_mapping as fm
from core.venue_config import FixSession
from schemas.enums import OrderState, OrderType, ReasonCode, Side

D = Decimal


def order(**kw) -> fm.FixOrder:
    base = dict(client_order_id="c1-00-0", cid="x1", symbol="AAPL", wire_symbol="AAPL.OQ", side=Side.BUY, order_type=OrderType.LIMIT, qty=D(10), price=D("189.50"), cl_ord_id="c1-00-0", chain=["c1-00-0"])
    return fm.FixOrder(**{**base, **kw})


def er(exec_type: str, **tags) -> dict[int, str]:
    msg = {fm.MSG_TYPE: "8", fm.EXEC_TYPE: exec_type, fm.CL_ORD_ID: "c1-00-0", fm.ORDER_ID: "O7"}
    msg.update({int(k[1:]): v for k, v in tags.items()})
    return msg


def fill(exec_id: str, qty: str, px: str = "189.50", cum: str = "0") -> dict[int, str]:
    return er("F", t17=exec_id, t32=qty, t31=px, t14=cum)


def test_outbound_messages_carry_the_venue_symbol_and_the_id_scheme():
    o = order()
    d = dict(fm.new_order_single(o, "20260101-00:00:00.000").fields)
    assert d[fm.CL_ORD_ID] == "c1-00-0" and d[fm.SYMBOL] == "AAPL.OQ" and d[fm.ORD_TYPE] == "2" and d[fm.PRICE] == "189.5" and d[fm.SIDE] == "1"
    m = dict(fm.new_order_single(order(order_type=OrderType.MARKET, price=None), "t").fields)
    assert m[fm.ORD_TYPE] == "1" and fm.PRICE not in m and m[fm.TIME_IN_FORCE] == "3"
    g = fm.cancel_replace(o, fm.replace_id(o), D("189.60"), D(10), "t")
    assert g.msg_type == "G" and dict(g.fields)[fm.ORIG_CL_ORD_ID] == "c1-00-0" and dict(g.fields)[fm.CL_ORD_ID] == "c1-00-0.r1"
    f = fm.cancel_request(o, fm.cancel_id(o), "t")
    assert f.msg_type == "F" and dict(f.fields)[fm.CL_ORD_ID] == "c1-00-0.x1"
    assert fm.status_request(o).msg_type == "H"
    assert [fm.child_of(x) for x in ("c1-00-0", "c1-00-0.r2", "c1-00-0.x10", "a.b")] == ["c1-00-0", "c1-00-0", "c1-00-0", "a.b"]


def test_new_ack_then_partial_then_full_fill():
    o = order(state=OrderState.SUBMITTED)
    ack = fm.on_message("fix", o, er("0"), 1.0)
    assert ack.order.state is OrderState.ACKNOWLEDGED and ack.order.venue_order_id == "O7"
    assert ack.answers == [("c1-00-0", fm.Answer("new", True))] and not ack.reports
    p = fm.on_message("fix", ack.order, fill("E1", "4"), 2.0)
    assert p.order.state is OrderState.PARTIALLY_FILLED and p.order.cum_qty == 4
    (r,) = p.reports
    assert (r.kind, r.trade_id, r.qty, r.price, r.cum_qty, r.leaves_qty, r.venue) == ("FILL", "E1", D(4), D("189.5"), D(4), D(6), "fix")
    f = fm.on_message("fix", p.order, fill("E2", "6"), 3.0)
    assert f.order.state is OrderState.FILLED and f.reports[0].leaves_qty == 0


def test_a_repeated_exec_id_is_never_a_second_fill():
    o = fm.on_message("fix", order(state=OrderState.ACKNOWLEDGED), fill("E1", "4"), 1.0).order
    again = fm.on_message("fix", o, {**fill("E1", "4"), fm.POSS_DUP: "Y"}, 2.0)
    assert again.reports == [] and again.order.cum_qty == 4 and "already booked" in again.notice


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.integers(1, 3)), min_size=1, max_size=30))
def test_fills_counted_once_whatever_the_repeats(seq):
    """Any sequence of trade reports, each possibly repeated (resends, PossDup): booked quantity is
    the sum over distinct ExecIDs, and every FILL report names a new ExecID."""
    o = order(state=OrderState.ACKNOWLEDGED, qty=D(10**6))
    seen: dict[str, int] = {}
    reported: list[str] = []
    for exec_no, qty in seq:
        eid = f"E{exec_no}"
        qty = seen.setdefault(eid, qty)
        out = fm.on_message("fix", o, fill(eid, str(qty)), 1.0)
        o = out.order
        reported += [r.trade_id for r in out.reports]
    assert len(reported) == len(set(reported)) == len(seen)
    assert o.cum_qty == sum(seen.values())


def test_replace_cancel_and_rejections():
    o = order(state=OrderState.ACKNOWLEDGED, generation=1, chain=["c1-00-0", "c1-00-0.r1"])
    rep = fm.on_message("fix", o, er("5", t11="c1-00-0.r1", t41="c1-00-0", t44="189.60", t38="10"), 1.0)
    assert rep.order.cl_ord_id == "c1-00-0.r1" and rep.order.price == D("189.6") and rep.answers == [("c1-00-0.r1", fm.Answer("modify", True))]
    can = fm.on_message("fix", rep.order, er("4", t11="c1-00-0.x1", t41="c1-00-0.r1"), 2.0)
    (r,) = can.reports
    assert can.order.state is OrderState.CANCELLED and r.kind == "CANCELLED" and r.qty == 10 and r.leaves_qty == 10
    assert can.answers == [("c1-00-0.x1", fm.Answer("cancel", True))]
    late = fm.on_message("fix", can.order, er("4", t11="c1-00-0.x2"), 3.0)
    assert late.reports == [] and "already CANCELLED" in late.notice
    rej = fm.on_message("fix", order(state=OrderState.SUBMITTED), er("8", t103="1", t58="unknown symbol"), 1.0)
    assert rej.order.state is OrderState.REJECTED and rej.answers[0][1] == fm.Answer("new", False, "unknown symbol", ReasonCode.VALIDATION_INVALID_SYMBOL)
    after_ack = fm.on_message("fix", order(state=OrderState.ACKNOWLEDGED), er("8", t58="risk"), 1.0)
    assert after_ack.reports[0].kind == "REJECTED"
    expired = fm.on_message("fix", order(state=OrderState.PARTIALLY_FILLED, cum_qty=D(3)), er("C"), 1.0)
    assert expired.reports[0].kind == "EXPIRED" and expired.reports[0].qty == 7


def test_order_cancel_reject_answers_the_op_that_asked():
    o = order(state=OrderState.FILLED, cum_qty=D(10))
    too_late = fm.on_message("fix", o, {fm.MSG_TYPE: "9", fm.CL_ORD_ID: "c1-00-0.x1", fm.ORIG_CL_ORD_ID: "c1-00-0", fm.CXL_REJ_RESPONSE_TO: "1", fm.CXL_REJ_REASON: "0", fm.TEXT: "too late"}, 1.0)
    ((cl, answer),) = too_late.answers
    assert cl == "c1-00-0.x1" and answer.kind == "cancel" and not answer.accepted and "already closed" in answer.reason
    unknown = fm.on_message("fix", o, {fm.MSG_TYPE: "9", fm.CL_ORD_ID: "c1-00-0.r1", fm.CXL_REJ_RESPONSE_TO: "2", fm.CXL_REJ_REASON: "1"}, 1.0)
    assert unknown.answers[0][1] == fm.Answer("modify", False, "unknown order", ReasonCode.UNKNOWN_ORDER)


def test_status_answers_and_unknown_orders():
    pending = order(state=OrderState.SUBMITTED)
    unknown = fm.on_message("fix", pending, er("I", t39="8", t103="5"), 1.0)
    assert unknown.order.state is OrderState.REJECTED and unknown.order.reason_code is ReasonCode.UNKNOWN_ORDER
    assert unknown.answers == [("c1-00-0", fm.Answer("query", True))]
    cancelled = fm.on_message("fix", order(state=OrderState.ACKNOWLEDGED), er("I", t39="4", t14="0"), 1.0)
    assert cancelled.order.state is OrderState.CANCELLED and cancelled.reports[0].kind == "CANCELLED"
    ahead = fm.on_message("fix", order(state=OrderState.ACKNOWLEDGED), er("I", t39="1", t14="4"), 1.0)
    assert ahead.reports == [] and "recon" in ahead.notice and ahead.order.state is OrderState.PARTIALLY_FILLED
    stray = fm.on_message("fix", None, er("F", t17="E9", t32="1", t31="1"), 1.0)
    assert stray.order is None and "no such order" in stray.notice
    assert not fm.status_of(None, "zz").found and fm.status_of(order(), "c1-00-0").found


def test_quickfix_settings_persist_sequence_numbers_and_reconnect():
    s = FixSession(host="127.0.0.1", port=9000, sender_comp_id="ME", target_comp_id="THEM", heartbeat_s=15, reconnect_s=3)
    text = fm.quickfix_settings("fix", s, "/tmp/s", "/dd/FIX44.xml")
    for line in ("ConnectionType=initiator", "ReconnectInterval=3", "FileStorePath=/tmp/s/store", "ResetOnLogon=N", "PersistMessages=Y", "HeartBtInt=15", "SocketConnectPort=9000", "SenderCompID=ME", "TargetCompID=THEM", "DataDictionary=/dd/FIX44.xml"):
        assert line in text.splitlines(), line
    assert "SSLEnable=Y" not in text
    tls = fm.quickfix_settings("fix", FixSession(port=1, sender_comp_id="a", target_comp_id="b", tls=True, tls_ca="/ca.pem"), "/s", "/d")
    assert "SSLEnable=Y" in tls and "SSLCAFile=/ca.pem" in tls
