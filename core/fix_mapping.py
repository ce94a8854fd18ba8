"""FIX 4.4 ↔ the venue protocol, as pure functions over plain data (no engine, no I/O).

The session layer — logon, heartbeats, test requests, sequence numbers, ResendRequest and gap fill,
reconnects — is QuickFIX's (``workers/venue_fix``). This module is only the application layer: which
FIX message a venue op becomes, and what each ExecutionReport (8) or OrderCancelReject (9) means for
the order and for the pipeline.

=============================== ================================================================
jetexec                         FIX 4.4
=============================== ================================================================
new (NewOrder)                  NewOrderSingle (D): ClOrdID(11) = the child's client order id,
                                Symbol(55) = the venue symbol, Side(54), OrderQty(38),
                                OrdType(40) 1 MARKET / 2 LIMIT, Price(44), TimeInForce(59) 0 DAY
                                (3 IOC for MARKET), HandlInst(21) 1, TransactTime(60)
modify (ModifyOrder)            OrderCancelReplaceRequest (G): ClOrdID = ``<child>.r<generation>``,
                                OrigClOrdID(41) = the order's current ClOrdID, new Price / OrderQty
cancel (CancelOrder)            OrderCancelRequest (F): ClOrdID = ``<child>.x<n>``, OrigClOrdID
query (QueryOrder)              OrderStatusRequest (H): ClOrdID = the current ClOrdID; also sent for
                                every open order after each logon
8, ExecType(150) 0 New          the ``new`` answer: OrderAck accepted, venue order id = OrderID(37)
8, ExecType F Trade             ExecutionReport FILL: trade id = ExecID(17), qty LastQty(32),
                                price LastPx(31), fee Commission(12), CumQty(14), LeavesQty(151)
8, ExecType 5 Replaced          the ``modify`` answer: ModifyAck accepted (new Price, OrderQty)
8, ExecType 4 Canceled          ExecutionReport CANCELLED (qty = what was open) + the ``cancel`` answer
8, ExecType C Expired           ExecutionReport EXPIRED
8, ExecType 8 Rejected          the ``new`` answer refused (OrdRejReason(103) 6 → duplicate id,
                                1 → unknown symbol, else VENUE_REJECTED); after an ack: REJECTED
8, ExecType I Order status      the ``query`` answer (OrdStatus(39) → state; OrdRejReason 5 =
                                the venue does not know the order)
9 OrderCancelReject             CxlRejResponseTo(434) 1 → the ``cancel`` answer refused, 2 → the
                                ``modify`` answer refused; reason Text(58), CxlRejReason(102)
                                0 → "already closed", 1 → UNKNOWN_ORDER
=============================== ================================================================

An ExecID seen before is never a second fill (the order keeps every ExecID it booked). A report for
a ClOrdID no order has, or one that changes nothing, is a *notice*: the worker logs it and keeps it
in ``EXEC_DLQ`` (``exec.dlq.venue-<id>``) with the raw message — nothing from the venue is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import msgspec

from core.venue_config import FixSession
from schemas.enums import OrderState, OrderType, ReasonCode, Side
from schemas.venue import ExecutionReport, FillRow, OrderStatus

# ---- tags ----------------------------------------------------------------------------------------
AVG_PX, CL_ORD_ID, COMMISSION, CUM_QTY, EXEC_ID, HANDL_INST = 6, 11, 12, 14, 17, 21
LAST_PX, LAST_QTY, MSG_SEQ_NUM, MSG_TYPE, ORDER_ID, ORDER_QTY = 31, 32, 34, 35, 37, 38
ORD_STATUS, ORD_TYPE, ORIG_CL_ORD_ID, POSS_DUP, PRICE, SIDE, SYMBOL = 39, 40, 41, 43, 44, 54, 55
TEXT, TIME_IN_FORCE, TRANSACT_TIME, CXL_REJ_REASON, ORD_REJ_REASON = 58, 59, 60, 102, 103
EXEC_TYPE, LEAVES_QTY, CXL_REJ_RESPONSE_TO = 150, 151, 434

INBOUND_TAGS = (
    AVG_PX, CL_ORD_ID, COMMISSION, CUM_QTY, EXEC_ID, LAST_PX, LAST_QTY, ORDER_ID, ORDER_QTY,
    ORD_STATUS, ORD_TYPE, ORIG_CL_ORD_ID, PRICE, SIDE, SYMBOL, TEXT, CXL_REJ_REASON, ORD_REJ_REASON,
    EXEC_TYPE, LEAVES_QTY, CXL_REJ_RESPONSE_TO,
)
HEADER_TAGS = (MSG_SEQ_NUM, MSG_TYPE, POSS_DUP)

_SIDE = {Side.BUY: "1", Side.SELL: "2"}
_ORD_TYPE = {OrderType.MARKET: "1", OrderType.LIMIT: "2"}
_ORD_STATUS = {
    "0": OrderState.ACKNOWLEDGED,
    "1": OrderState.PARTIALLY_FILLED,
    "2": OrderState.FILLED,
    "4": OrderState.CANCELLED,
    "6": OrderState.ACKNOWLEDGED,  # pending cancel: still live
    "8": OrderState.REJECTED,
    "A": OrderState.SUBMITTED,  # pending new
    "C": OrderState.EXPIRED,
    "E": OrderState.ACKNOWLEDGED,  # pending replace: still live
}
_TERMINAL = frozenset({OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED, OrderState.EXPIRED})
_LIVE = frozenset({OrderState.SUBMITTED, OrderState.ACKNOWLEDGED, OrderState.PARTIALLY_FILLED})


def quickfix_settings(venue: str, s: FixSession, store_dir: str, data_dictionary: str) -> str:
    """The QuickFIX settings file of one venue's initiator session."""
    lines = [
        "[DEFAULT]",
        "ConnectionType=initiator",
        f"ReconnectInterval={max(1, s.reconnect_s)}",
        f"FileStorePath={store_dir}/store",
        f"FileLogPath={store_dir}/log",
        "StartTime=00:00:00",
        "EndTime=00:00:00",
        "UseDataDictionary=Y",
        f"DataDictionary={data_dictionary}",
        "ValidateUserDefinedFields=N",
        "AllowUnknownMsgFields=Y",
        "PersistMessages=Y",
        "SocketNodelay=Y",
        f"ResetOnLogon={'Y' if s.reset_on_logon else 'N'}",
        "ResetOnLogout=N",
        "ResetOnDisconnect=N",
        "[SESSION]",
        "BeginString=FIX.4.4",
        f"SenderCompID={s.sender_comp_id}",
        f"TargetCompID={s.target_comp_id}",
        f"SessionQualifier={venue}",
        f"HeartBtInt={s.heartbeat_s}",
        f"SocketConnectHost={s.host}",
        f"SocketConnectPort={s.port}",
    ]
    if s.tls:
        lines += ["SSLEnable=Y", "SSLProtocols=+TLSv1.2 +TLSv1.3", "SSLValidateCertificates=Y"]
        if s.tls_ca:
            lines.append(f"SSLCAFile={s.tls_ca}")
        if s.tls_cert:
            lines += [f"SSLCertificateFile={s.tls_cert}", f"SSLPrivateKeyFile={s.tls_key or s.tls_cert}"]
    return "\n".join(lines) + "\n"


# ---- the venue's record of one order --------------------------------------------------------------


class FixOrder(msgspec.Struct, kw_only=True):
    """What the FIX venue worker knows of one child order (KV ``VENUE_ORDERS`` ``<venue>.<child id>``).

    Written before any message about it is sent: a record that exists means the NewOrderSingle was
    handed to the engine, whose store delivers it (a resend after a gap included) — so the worker
    never sends a second D for a client order id."""

    client_order_id: str
    cid: str
    symbol: str  # jetexec's symbol
    wire_symbol: str  # the venue's
    side: Side
    order_type: OrderType
    qty: Decimal
    price: Decimal | None = None
    cl_ord_id: str = ""  # the ClOrdID the venue knows the order by now
    chain: list[str] = []  # every ClOrdID sent for it (D, G, F), oldest first
    generation: int = 0
    cancels: int = 0
    state: OrderState = OrderState.SUBMITTED
    venue_order_id: str = ""
    cum_qty: Decimal = Decimal(0)
    fills: list[FillRow] = []
    reject_reason: str = ""
    reason_code: ReasonCode | None = None
    created_ts: float = 0.0
    updated_ts: float = 0.0
    tombstone: bool = False  # cancelled before it was ever sent: a later NewOrder is refused

    @property
    def live(self) -> bool:
        return self.state in _LIVE

    @property
    def leaves_qty(self) -> Decimal:
        return self.qty - self.cum_qty if self.live else Decimal(0)

    @property
    def exec_ids(self) -> set[str]:
        return {f.trade_id for f in self.fills}


def replace_id(o: FixOrder) -> str:
    return f"{o.client_order_id}.r{o.generation + 1}"


def cancel_id(o: FixOrder) -> str:
    return f"{o.client_order_id}.x{o.cancels + 1}"


def child_of(cl_ord_id: str) -> str:
    """The child's client order id a ClOrdID belongs to (``c-00-0.r2`` → ``c-00-0``)."""
    head, _, tail = cl_ord_id.rpartition(".")
    return head if head and tail[:1] in ("r", "x") and tail[1:].isdigit() else cl_ord_id


# ---- outbound ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FixOut:
    """One application message to send: its type and its body fields, in order."""

    msg_type: str
    fields: tuple[tuple[int, str], ...]


def _d(x: Decimal) -> str:
    return format(x.normalize(), "f")


def new_order_single(o: FixOrder, transact_time: str) -> FixOut:
    f = [(CL_ORD_ID, o.client_order_id), (HANDL_INST, "1"), (SYMBOL, o.wire_symbol), (SIDE, _SIDE[o.side]), (TRANSACT_TIME, transact_time), (ORDER_QTY, _d(o.qty)), (ORD_TYPE, _ORD_TYPE[o.order_type])]
    if o.order_type is OrderType.LIMIT and o.price is not None:
        f += [(PRICE, _d(o.price)), (TIME_IN_FORCE, "0")]
    else:
        f.append((TIME_IN_FORCE, "3"))
    return FixOut("D", tuple(f))


def cancel_replace(o: FixOrder, new_cl_ord_id: str, price: Decimal, qty: Decimal, transact_time: str) -> FixOut:
    return FixOut("G", ((ORIG_CL_ORD_ID, o.cl_ord_id), (CL_ORD_ID, new_cl_ord_id), (HANDL_INST, "1"), (SYMBOL, o.wire_symbol), (SIDE, _SIDE[o.side]), (TRANSACT_TIME, transact_time), (ORDER_QTY, _d(qty)), (ORD_TYPE, "2"), (PRICE, _d(price)), (TIME_IN_FORCE, "0")))


def cancel_request(o: FixOrder, new_cl_ord_id: str, transact_time: str) -> FixOut:
    return FixOut("F", ((ORIG_CL_ORD_ID, o.cl_ord_id), (CL_ORD_ID, new_cl_ord_id), (SYMBOL, o.wire_symbol), (SIDE, _SIDE[o.side]), (TRANSACT_TIME, transact_time), (ORDER_QTY, _d(o.qty))))


def status_request(o: FixOrder) -> FixOut:
    return FixOut("H", ((CL_ORD_ID, o.cl_ord_id or o.client_order_id), (SYMBOL, o.wire_symbol), (SIDE, _SIDE[o.side])))


# ---- inbound -------------------------------------------------------------------------------------


@dataclass
class Inbound:
    """What one inbound application message means.

    ``order`` is the updated record (None: no order has this ClOrdID), ``reports`` go to the
    pipeline (``venue.<id>.report.<cid>``), ``answers`` resolve waiting venue ops (the ClOrdID the
    op sent, and what it answers), ``notice`` says why the message is kept as a notice."""

    order: FixOrder | None
    reports: list[ExecutionReport] = field(default_factory=list)
    answers: list[tuple[str, "Answer"]] = field(default_factory=list)
    notice: str = ""
    changed: bool = False


@dataclass(frozen=True)
class Answer:
    kind: str  # new | modify | cancel | query
    accepted: bool
    reason: str = ""
    reason_code: ReasonCode | None = None


def _dec(v: str | None, default: Decimal = Decimal(0)) -> Decimal:
    if v is None or v == "":
        return default
    try:
        d = Decimal(v)
    except InvalidOperation:
        return default
    # "3.0" and "3" are one quantity: keep the plain form (never exponent notation)
    return Decimal(format(d.normalize(), "f")) if d.is_finite() else default


def _reject_code(reason: str | None) -> ReasonCode:
    return {"6": ReasonCode.DUPLICATE_CLIENT_ORDER_ID, "1": ReasonCode.VALIDATION_INVALID_SYMBOL, "5": ReasonCode.UNKNOWN_ORDER, "13": ReasonCode.VALIDATION_INVALID_QUANTITY}.get(reason or "", ReasonCode.VENUE_REJECTED)


def on_message(venue: str, o: FixOrder | None, msg: dict[int, str], now: float) -> Inbound:
    """Apply one inbound ExecutionReport (8) or OrderCancelReject (9) to the order it names."""
    mtype = msg.get(MSG_TYPE, "")
    if o is None:
        return Inbound(None, notice=f"{mtype} for ClOrdID {msg.get(CL_ORD_ID)!r} / OrigClOrdID {msg.get(ORIG_CL_ORD_ID)!r}: no such order")
    o = msgspec.structs.replace(o, chain=list(o.chain), fills=list(o.fills))
    if mtype == "9":
        return _cancel_reject(o, msg, now)
    if mtype != "8":
        return Inbound(o, notice=f"unexpected message type {mtype}")
    exec_type = msg.get(EXEC_TYPE, "")
    r = _Applying(venue, o, msg, now, Inbound(o), msg.get(CL_ORD_ID, ""))
    if msg.get(ORDER_ID) and msg.get(ORDER_ID) != "NONE" and not o.venue_order_id:
        o.venue_order_id = msg[ORDER_ID]
        r.out.changed = True
    step = _BY_EXEC_TYPE.get(exec_type)
    if step is None:
        r.out.notice = f"ExecType {exec_type!r} not mapped"
    else:
        step(r)
    if r.out.changed:
        o.updated_ts = now
    return r.out


@dataclass
class _Applying:
    """One ExecutionReport being applied: the order (a private copy), the message, what it means."""

    venue: str
    o: FixOrder
    msg: dict[int, str]
    now: float
    out: Inbound
    cl: str  # the ClOrdID the report names

    def report(self, kind: str, **kw) -> ExecutionReport:
        o = self.o
        fields = {"cum_qty": o.cum_qty, "leaves_qty": o.leaves_qty, **kw}
        return ExecutionReport(kind=kind, cid=o.cid, client_order_id=o.client_order_id, venue_order_id=o.venue_order_id, ts=self.now, venue=self.venue, **fields)

    def close(self, state: OrderState, kind: str, reason: str) -> None:
        """The order ends with what was still open; the pipeline hears it as ``kind``."""
        leaves = self.o.qty - self.o.cum_qty
        self.o.state = state
        self.out.changed = True
        self.out.reports.append(self.report(kind, qty=leaves, leaves_qty=leaves, reason=reason))


def _new_ack(r: _Applying) -> None:  # ExecType 0 New
    if r.o.state is OrderState.SUBMITTED:
        r.o.state = OrderState.ACKNOWLEDGED
        r.out.changed = True
    r.out.answers.append((r.cl, Answer("new", True)))


def _trade(r: _Applying) -> None:  # ExecType F Trade (1/2: the FIX 4.2 style partial/fill)
    o, out, msg = r.o, r.out, r.msg
    exec_id = msg.get(EXEC_ID, "")
    qty, px = _dec(msg.get(LAST_QTY)), _dec(msg.get(LAST_PX))
    if not exec_id or qty <= 0 or px <= 0:
        out.notice = f"trade report without ExecID, LastQty or LastPx (ExecID {exec_id!r})"
        return
    if exec_id in o.exec_ids:
        out.notice = f"ExecID {exec_id} already booked (a repeated report is never a second fill)"
        return
    o.cum_qty += qty
    fee = _dec(msg.get(COMMISSION))
    o.fills.append(FillRow(trade_id=exec_id, qty=qty, price=px, fee=fee, ts=r.now, cum_qty=o.cum_qty))
    if o.state not in _TERMINAL:  # a late fill is booked, but the order stays closed
        o.state = OrderState.FILLED if o.cum_qty >= o.qty else OrderState.PARTIALLY_FILLED
    out.changed = True
    out.reports.append(r.report("FILL", trade_id=exec_id, qty=qty, price=px, fee=fee))
    if o.state is OrderState.PARTIALLY_FILLED or o.state is OrderState.FILLED:
        out.answers.append((o.client_order_id, Answer("new", True)))  # a fill is an ack too


def _replaced(r: _Applying) -> None:  # ExecType 5 Replaced
    o, cl = r.o, r.cl
    if cl and cl not in o.chain:
        o.chain.append(cl)
    if cl:
        o.cl_ord_id = cl
    o.generation = max(o.generation, _generation(cl))
    o.price = _dec(r.msg.get(PRICE), o.price or Decimal(0)) or o.price
    o.qty = _dec(r.msg.get(ORDER_QTY), o.qty)
    r.out.changed = True
    r.out.answers.append((cl, Answer("modify", True)))


def _cancelled(r: _Applying) -> None:  # ExecType 4 Canceled
    if r.o.state in _TERMINAL:
        r.out.notice = f"cancel of an order already {r.o.state.value}"
        r.out.answers.append((r.cl, Answer("cancel", r.o.state is OrderState.CANCELLED)))
        return
    r.close(OrderState.CANCELLED, "CANCELLED", r.msg.get(TEXT, "cancelled"))
    r.out.answers.append((r.cl, Answer("cancel", True)))


def _expired(r: _Applying) -> None:  # ExecType C Expired
    if r.o.state in _TERMINAL:
        r.out.notice = f"expiry of an order already {r.o.state.value}"
        return
    r.close(OrderState.EXPIRED, "EXPIRED", r.msg.get(TEXT, "expired"))


def _rejected(r: _Applying) -> None:  # ExecType 8 Rejected
    o, out = r.o, r.out
    code, why = _reject_code(r.msg.get(ORD_REJ_REASON)), r.msg.get(TEXT, "rejected by venue")
    if o.state is OrderState.SUBMITTED:
        if code is ReasonCode.DUPLICATE_CLIENT_ORDER_ID:
            # The venue already has this ClOrdID: only this worker sends it, so the earlier
            # arrival is ours. The order stands; its status request tells the rest.
            out.notice = "venue says duplicate ClOrdID: keeping the earlier arrival"
            out.answers.append((r.cl, Answer("new", True)))
        else:
            o.state, o.reject_reason, o.reason_code = OrderState.REJECTED, why, code
            out.changed = True
            out.answers.append((r.cl, Answer("new", False, why, code)))
    elif o.state in _TERMINAL:
        out.notice = f"reject of an order already {o.state.value}: {why}"
    else:
        o.reject_reason, o.reason_code = why, code
        r.close(OrderState.REJECTED, "REJECTED", why)


def _order_status(r: _Applying) -> None:  # ExecType I Order status: the query's answer
    o, out = r.o, r.out
    status = r.msg.get(ORD_STATUS, "")
    if status == "8" and r.msg.get(ORD_REJ_REASON) == "5":
        # The venue does not know it. Either it never arrived (a session reset lost it) or it was
        # rejected: in both cases it is not live, and it is never sent again.
        if o.state is OrderState.SUBMITTED:
            o.state, o.reject_reason, o.reason_code = OrderState.REJECTED, "unknown at the venue", ReasonCode.UNKNOWN_ORDER
            out.changed = True
        elif o.live:
            out.notice = f"venue does not know live order {o.cl_ord_id}"
    else:
        state = _ORD_STATUS.get(status)
        cum = _dec(r.msg.get(CUM_QTY), o.cum_qty)
        if cum > o.cum_qty:
            out.notice = f"venue reports cum qty {cum}, fills booked {o.cum_qty}: recon back-fills from the fills it serves"
        if state is not None and o.live and state is not o.state and state not in _TERMINAL:
            o.state = state
            out.changed = True
        if state in _TERMINAL and o.live and cum <= o.cum_qty:
            # Closed at the venue with no fill we lack: close it here too, with what was open.
            kind = {OrderState.CANCELLED: "CANCELLED", OrderState.EXPIRED: "EXPIRED", OrderState.REJECTED: "REJECTED"}.get(state)
            if kind is not None:
                r.close(state, kind, "order status")
    out.answers.append((r.cl, Answer("query", True)))


# ExecType(150) → what it does to the order; the table in the module docstring, in code.
_BY_EXEC_TYPE = {
    "0": _new_ack,
    "F": _trade, "1": _trade, "2": _trade,
    "5": _replaced,
    "4": _cancelled,
    "C": _expired,
    "8": _rejected,
    "I": _order_status,
}


def _generation(cl: str) -> int:
    _, _, tail = cl.rpartition(".")
    return int(tail[1:]) if tail[:1] == "r" and tail[1:].isdigit() else 0


def _cancel_reject(o: FixOrder, msg: dict[int, str], now: float) -> Inbound:
    to = msg.get(CXL_REJ_RESPONSE_TO, "")
    cl = msg.get(CL_ORD_ID, "")
    reason = msg.get(CXL_REJ_REASON, "")
    text = msg.get(TEXT, "")
    why = "already closed" if reason == "0" else ("unknown order" if reason == "1" else (text or "refused by venue"))
    code = ReasonCode.UNKNOWN_ORDER if reason == "1" else None
    kind = "cancel" if to == "1" else "modify"
    return Inbound(o, answers=[(cl, Answer(kind, False, why + (f": {text}" if text and text != why else ""), code))])


def status_of(o: FixOrder | None, client_order_id: str) -> OrderStatus:
    if o is None or o.tombstone:
        return OrderStatus(found=False, client_order_id=client_order_id)
    return OrderStatus(found=True, client_order_id=o.client_order_id, venue_order_id=o.venue_order_id, state=o.state, qty=o.qty, filled_qty=o.cum_qty, price=o.price)
