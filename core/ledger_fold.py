"""The ledger's pure fold: one execution's facts → order ledger, fills, audit entries; fills → positions.

No I/O, no clock (``now`` is the fact's *stream timestamp*, passed in). The worker
(:mod:`workers.ledger.handler`) and every replay (``jetexec ledger verify``, the report, tests) call the
same functions, so a replay of the fact log reproduces the live ledger exactly.

Per execution (:class:`CidState`)
---------------------------------
:func:`apply_fact` applies one fact, in stream order for its cid:

1. The order ledger (:mod:`core.ledger` entries, full history) follows the venue-facing facts: a
   ``SplitDone`` creates the children, ``ChildAccepted``/``ChildRejected``/``ChildFill``/``ChildClosed``
   move them (an order first heard of from the venue was submitted), re-prices and replacements come
   from ``ChildReplaced``/``AdjustDone``, an ``EscapeDone`` cancels what it cancelled and what was
   never sent; plus the escape worker's flatten order. The execution's own transitions are the
   coordinator's to record (it audits them itself); the ledger needs no copy of its decisions.
2. A ``ChildFill`` with a trade id new for this execution becomes a position :class:`core.ledger.Fill`
   (symbol/side/strategy from the ``ExecutionCreated`` fact; the flatten order trades the opposite side).
3. Audit entries (:mod:`core.audit`): every order-history event, ledger alert, operator escape.

Positions (:class:`PositionSlot`)
---------------------------------
A position is path dependent (average entry, realized PnL), so it is defined as the fold of its fills
in **stream-sequence order** — exactly what :func:`replay_positions` computes from the stream. The live
worker handles executions concurrently, so fills of one (symbol, strategy) can reach it out of stream
order; a slot therefore keeps ``base`` (every fill with ``seq <= base_seq``, folded) plus a ``tail`` of
later fills sorted by seq. An out-of-order fill is inserted and the tail re-folded. ``base`` advances
(:func:`slot_compact`) to the ledger consumer's ack floor: a fact at or below it is acked and never
comes back, so nothing can be inserted before it any more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from core import audit
from core.execution_fsm import is_terminal
from core.ids import flatten_order_id
from core.ledger import (
    Fill,
    InvalidOrderTransition,
    OrderEventKind,
    OrderHistoryItem,
    OrderLedgerEntry,
    OverfillError,
    Position,
    PositionBook,
    apply_fill,
    book_replay,
    new_order,
    new_position,
    order_on_event,
)
from schemas.codec import DecodeError, decode_fact
from schemas.enums import OrderState, OrderType, ReasonCode, Side
from schemas.messages import (
    AdjustDone,
    ChildAccepted,
    ChildClosed,
    ChildFill,
    ChildRejected,
    ChildReplaced,
    EscapeDone,
    ExecutionCreated,
    ExecutionRecord,
    IntentRejected,
    OutMsg,
    PartitionProbe,
    SplitDone,
)

__all__ = [
    "CidState",
    "FillRec",
    "OutboxItem",
    "PositionSlot",
    "Replay",
    "Reprice",
    "Step",
    "TailFill",
    "apply_fact",
    "apply_undecodable",
    "decode_for",
    "replay",
    "replay_positions",
    "slot_compact",
    "slot_insert",
    "slot_position",
]

IOC_REASON_PREFIX = "IOC remainder"


class FillRec(msgspec.Struct, frozen=True, kw_only=True):
    """One fill of this execution as the ledger booked it (for TCA and the report)."""

    seq: int  # EXEC_EVT stream sequence of the ChildFill fact
    ts: float  # venue time of the trade (ChildFill.ts)
    stream_ts: float  # when the fact was stored
    trade_id: str
    client_order_id: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    liquidity: str = "TAKER"


class Reprice(msgspec.Struct, frozen=True, array_like=True):
    ts: float
    client_order_id: str
    new_client_order_id: str
    old_price: Decimal | None
    new_price: Decimal | None


class OutboxItem(msgspec.Struct, frozen=True):
    """The audit messages one fact produced (kept until the fact is acked, for re-publishing)."""

    seq: int
    msgs: list[OutMsg]


class CidState(msgspec.Struct, kw_only=True):
    """Everything the ledger knows about one execution (KV ``LEDGER`` key ``x.<cid>``)."""

    cid: str
    last_seq: int = 0  # every fact of this cid with seq <= last_seq is applied
    record: ExecutionRecord | None = None  # the coordinator's record, attached by readers from KV EXECUTIONS (TCA)
    idempotency_key: str = ""
    symbol: str | None = None
    side: Side | None = None
    strategy_id: str | None = None
    order_type: OrderType | None = None
    intent_qty: Decimal | None = None
    arrival_price: Decimal | None = None
    created_ts: float = 0.0
    venue: str = ""  # the venue id the gateway resolved for the execution
    orders: dict[str, OrderLedgerEntry] = {}
    fills: list[FillRec] = []
    reprices: list[Reprice] = []
    n_facts: int = 0
    n_audit: int = 0
    outbox_log: list[OutboxItem] = []

    @property
    def terminal(self) -> bool:
        return self.record is not None and is_terminal(self.record.state)

    @property
    def flatten_id(self) -> str | None:
        return flatten_order_id(self.idempotency_key) if self.idempotency_key else None


@dataclass
class Step:
    state: CidState
    entries: list[audit.AuditEntry] = field(default_factory=list)
    fill: Fill | None = None


# --------------------------------------------------------------------------------------------
# the per-execution fold
# --------------------------------------------------------------------------------------------


def _copy(st: CidState) -> CidState:
    return msgspec.structs.replace(st, orders=dict(st.orders), fills=list(st.fills), reprices=list(st.reprices), outbox_log=list(st.outbox_log))


class _Ctx:
    """Accumulates one fact's order-ledger changes and ledger alerts."""

    def __init__(self, st: CidState, fact: object, now: float) -> None:
        self.st = st
        self.fact = fact
        self.now = now
        self.alerts: list[audit.AuditEntry] = []

    def alert(self, code: str, message: str, coid: str | None = None, **details) -> None:
        self.alerts.append(audit.ledger_alert(self.st.cid, code, message, self.now, coid, **details))

    def event(self, coid: str, kind: OrderEventKind, **kw) -> None:
        entry = self.st.orders.get(coid)
        if entry is None:
            return
        try:
            self.st.orders[coid] = order_on_event(entry, kind, self.now, **kw)
        except InvalidOrderTransition as exc:
            self.alert("LEDGER_ORDER_STATE", f"order {coid}: {exc}", coid, event=kind.value, state=entry.state.value)

    def add_order(self, coid: str, side: Side, qty: Decimal, price: Decimal | None, reason: str = "") -> OrderLedgerEntry | None:
        st = self.st
        if coid in st.orders:
            return st.orders[coid]
        if st.symbol is None or qty <= 0:
            return None
        entry = new_order(coid, st.cid, st.symbol, side, qty, self.now, strategy_id=st.strategy_id or "", price=price if price and price > 0 else None, venue=st.venue)
        if reason:
            entry = msgspec.structs.replace(entry, reason=reason)
        st.orders[coid] = entry
        return entry

    def fill(self, f: ChildFill) -> None:
        coid = f.client_order_id
        entry = self.st.orders.get(coid)
        if entry is None:
            return
        kw = dict(qty=f.qty, price=f.price, fee=f.fee, trade_id=f.trade_id)
        try:
            self.st.orders[coid] = order_on_event(entry, OrderEventKind.FILL, self.now, **kw)
            return
        except OverfillError:
            if coid == self.st.flatten_id:  # the flatten quantity was an estimate: the venue knows
                entry = msgspec.structs.replace(entry, qty=entry.filled_qty + f.qty)
                self.st.orders[coid] = order_on_event(entry, OrderEventKind.FILL, self.now, **kw)
                return
            self.alert("LEDGER_OVERFILL", f"order {coid}: fill {f.qty} takes filled {entry.filled_qty} above qty {entry.qty}", coid, trade_id=f.trade_id)
            event = "ORDER_OVERFILL"
        except InvalidOrderTransition as exc:
            self.alert("LEDGER_ORDER_STATE", f"fill on order {coid}: {exc}", coid, trade_id=f.trade_id, state=entry.state.value)
            event = "ORDER_FILL_OUT_OF_STATE"
        # Book the venue's trade anyway (it happened); keep the state.
        notional = entry.fill_notional + f.qty * f.price
        filled = entry.filled_qty + f.qty
        self.st.orders[coid] = msgspec.structs.replace(
            entry,
            filled_qty=filled,
            fill_notional=notional,
            fees=entry.fees + f.fee,
            avg_fill_price=notional / filled,
            trade_ids=entry.trade_ids + (f.trade_id,),
            history=entry.history + (OrderHistoryItem(self.now, entry.state, event, f"{f.trade_id} {f.qty} @ {f.price}"),),
            updated_at=self.now,
        )

    def submitted(self, coid: str) -> None:
        """The venue answered for an order still CREATED here: it was sent."""
        entry = self.st.orders.get(coid)
        if entry is not None and entry.state is OrderState.CREATED:
            self.event(coid, OrderEventKind.SUBMIT)

    def replaced(self, coid: str, new_coid: str, new_price: Decimal | None, generation: int) -> None:
        """A re-price: in place (same id) or cancel/replace under a new client order id."""
        old = self.st.orders.get(coid)
        if old is None or old.state in (OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED, OrderState.EXPIRED, OrderState.FAILED):
            return
        if new_coid == coid:
            if old.price != new_price:
                self._reprice(coid, old.price, new_price, generation)
            return
        self._replace_id(coid, old.price, new_coid, new_price)

    def _reprice(self, coid: str, old: Decimal | None, new: Decimal | None, generation: int) -> None:
        entry = self.st.orders.get(coid)
        if entry is None:
            return
        item = OrderHistoryItem(self.now, entry.state, "ORDER_REPLACED", f"price {old} -> {new} (generation {generation})")
        self.st.orders[coid] = msgspec.structs.replace(entry, price=new, history=entry.history + (item,), updated_at=self.now)
        self.st.reprices.append(Reprice(self.now, coid, coid, old, new))

    def _replace_id(self, coid: str, old_price: Decimal | None, new_coid: str, new_price: Decimal | None) -> None:
        """Cancel/replace under a new client order id: the old order ends, a new one carries the rest."""
        old = self.st.orders[coid]
        item = OrderHistoryItem(self.now, old.state, "ORDER_REPLACED", f"replaced by {new_coid} at {new_price}")
        self.st.orders[coid] = msgspec.structs.replace(old, history=old.history + (item,), updated_at=self.now)
        if old.state in (OrderState.SUBMITTED, OrderState.ACKNOWLEDGED, OrderState.PARTIALLY_FILLED):
            self.event(coid, OrderEventKind.CANCEL, reason=f"replaced by {new_coid}")
        rest = old.qty - old.filled_qty
        if self.add_order(new_coid, old.side, rest if rest > 0 else old.qty, new_price, reason=f"replaces {coid}"):
            self.event(new_coid, OrderEventKind.SUBMIT)
            self.event(new_coid, OrderEventKind.ACK)
        self.st.reprices.append(Reprice(self.now, coid, new_coid, old_price, new_price))

    def flatten_entry(self, coid: str) -> OrderLedgerEntry | None:
        """The escape worker's flatten order (not a child: the record does not track it)."""
        st = self.st
        if coid in st.orders or st.side is None:
            return st.orders.get(coid)
        qty = sum((o.filled_qty for c, o in st.orders.items() if c != coid), Decimal(0))
        if qty <= 0:
            qty = sum((f.qty for f in st.fills if f.client_order_id == coid), Decimal(0))
        if self.fact is not None and isinstance(self.fact, ChildFill) and qty <= 0:
            qty = self.fact.qty
        entry = self.add_order(coid, st.side.opposite, qty if qty > 0 else Decimal(1), None, reason="flatten")
        if entry is not None:
            self.event(coid, OrderEventKind.SUBMIT)
        return st.orders.get(coid)


def _fill_side(st: CidState, coid: str) -> Side | None:
    entry = st.orders.get(coid)
    if entry is not None:
        return entry.side
    if st.side is None:
        return None
    return st.side.opposite if coid == st.flatten_id else st.side


def apply_fact(st: CidState | None, fact: object, seq: int, now: float) -> Step:
    """Apply one fact of ``st.cid`` (stream sequence ``seq``, stream time ``now``). Pure.

    Returns the new state (``last_seq = seq``), its audit entries (``source = evt:<seq>``, numbered),
    and the position fill if the fact is a new ChildFill. Facts must come in stream order per cid.
    """
    cid = fact.cid  # type: ignore[attr-defined]
    new = _copy(st) if st is not None else CidState(cid=cid)
    new.last_seq = seq
    new.n_facts += 1
    ctx = _Ctx(new, fact, now)
    entries: list[audit.AuditEntry] = []
    before_orders = dict(new.orders)
    fold = _FOLD.get(type(fact))
    fill = fold(ctx, fact) if fold is not None else None
    entries += audit.order_entries(cid, before_orders, new.orders, now)
    entries += audit.operator_entries_for_fact(fact, now)
    entries += ctx.alerts
    numbered = audit.numbered(entries, f"evt:{seq}")
    new.n_audit += len(numbered)
    return Step(state=new, entries=numbered, fill=fill)


# ---- one fold per fact type (a fact type not listed changes no order: the coordinator's business) ----
def _on_created(ctx: _Ctx, fact: ExecutionCreated) -> None:
    st = ctx.st
    if st.symbol is not None:
        return None  # the same intent again
    intent = fact.intent
    st.idempotency_key = fact.idempotency_key
    st.symbol, st.side, st.strategy_id = intent.symbol, intent.side, intent.strategy_id
    st.order_type, st.intent_qty = intent.order_type, intent.qty
    st.arrival_price = fact.arrival_price
    st.venue = intent.venue or ""
    st.created_ts = ctx.now
    return None


def _on_rejected(ctx: _Ctx, fact: IntentRejected) -> None:
    if not ctx.st.idempotency_key:
        ctx.st.idempotency_key = fact.idempotency_key
        ctx.st.created_ts = ctx.now
    return None


def _on_split(ctx: _Ctx, fact: SplitDone) -> None:
    for c in fact.children:
        ctx.add_order(c.client_order_id, ctx.st.side or Side.BUY, c.qty, c.price)
    return None


def _on_accepted(ctx: _Ctx, fact: ChildAccepted) -> None:
    coid = fact.client_order_id
    ctx.submitted(coid)
    ctx.event(coid, OrderEventKind.ACK, venue_order_id=fact.venue_order_id)
    return None


def _on_rejected_child(ctx: _Ctx, fact: ChildRejected) -> None:
    coid = fact.client_order_id
    ctx.submitted(coid)
    kind = OrderEventKind.FAIL if fact.reason_code is ReasonCode.VENUE_TIMEOUT else OrderEventKind.REJECT
    ctx.event(coid, kind, reason=fact.reason_code.value)
    return None


_CLOSE_EVENT = {OrderState.CANCELLED: OrderEventKind.CANCEL, OrderState.EXPIRED: OrderEventKind.EXPIRE, OrderState.REJECTED: OrderEventKind.REJECT}


def _on_closed(ctx: _Ctx, fact: ChildClosed) -> None:
    kind = _CLOSE_EVENT.get(fact.state)
    if kind is not None:
        ctx.submitted(fact.client_order_id)
        ctx.event(fact.client_order_id, kind, reason=fact.reason or fact.state.value)
    return None


def _on_replaced(ctx: _Ctx, fact: ChildReplaced) -> None:
    ctx.replaced(fact.client_order_id, fact.new_client_order_id, fact.new_price, fact.generation)
    return None


def _on_adjusted(ctx: _Ctx, fact: AdjustDone) -> None:
    for rep in fact.replaced:
        ctx.replaced(rep.client_order_id, rep.new_client_order_id, rep.new_price, rep.generation)
    return None


def _on_escaped(ctx: _Ctx, fact: EscapeDone) -> None:
    st = ctx.st
    reason = f"escape: {fact.reason}"
    for coid in fact.cancelled:
        entry = st.orders.get(coid)
        if entry is not None and entry.state in (OrderState.SUBMITTED, OrderState.ACKNOWLEDGED, OrderState.PARTIALLY_FILLED):
            ctx.event(coid, OrderEventKind.CANCEL, reason=reason)
    tried = set(fact.attempted) | set(fact.cancelled) | set(fact.failed)
    for coid, entry in list(st.orders.items()):
        if entry.state is OrderState.CREATED and coid not in tried and coid != st.flatten_id:
            ctx.event(coid, OrderEventKind.CANCEL, reason=f"{reason} (never sent)")
    if fact.flatten_client_order_id:
        fid = fact.flatten_client_order_id
        if ctx.flatten_entry(fid) is not None and st.orders[fid].state in (OrderState.CREATED, OrderState.SUBMITTED):
            ctx.event(fid, OrderEventKind.ACK)  # the escape worker only reports an accepted flatten
    return None


def _on_fill(ctx: _Ctx, fact: ChildFill) -> Fill | None:
    st = ctx.st
    coid = fact.client_order_id
    if any(f.trade_id == fact.trade_id for f in st.fills):
        return None  # the same trade again (a re-published report): booked once
    if st.symbol is None or st.strategy_id is None:
        ctx.alert("LEDGER_FILL_WITHOUT_EXECUTION", f"fill {fact.trade_id} for an execution without ExecutionCreated", coid, trade_id=fact.trade_id)
        return None
    if coid not in st.orders:
        if coid == st.flatten_id:
            ctx.flatten_entry(coid)
        else:
            ctx.alert("LEDGER_UNKNOWN_ORDER", f"fill {fact.trade_id} for unknown order {coid}: booked on the intent's side", coid, trade_id=fact.trade_id)
    ctx.submitted(coid)
    side = _fill_side(st, coid) or Side.BUY
    st.fills.append(FillRec(seq=st.last_seq, ts=fact.ts, stream_ts=ctx.now, trade_id=fact.trade_id, client_order_id=coid, side=side, qty=fact.qty, price=fact.price, fee=fact.fee, liquidity=fact.liquidity))
    ctx.fill(fact)
    return Fill(trade_id=fact.trade_id, client_order_id=coid, symbol=st.symbol, strategy_id=st.strategy_id, side=side, qty=fact.qty, price=fact.price, fee=fact.fee)


_FOLD = {
    ExecutionCreated: _on_created,
    IntentRejected: _on_rejected,
    SplitDone: _on_split,
    ChildAccepted: _on_accepted,
    ChildRejected: _on_rejected_child,
    ChildFill: _on_fill,
    ChildClosed: _on_closed,
    ChildReplaced: _on_replaced,
    AdjustDone: _on_adjusted,
    EscapeDone: _on_escaped,
}
"""What each fact does to the order ledger and the position book."""


def decode_for(cid: str, data: bytes) -> object:
    """The fact in ``data`` on subject ``exec.evt.<cid>``, or ``(cid, detail)`` when it does not decode
    or names another execution (live worker and replays use this one function, so they agree)."""
    try:
        fact = decode_fact(data)
    except DecodeError as exc:
        return (cid, str(exc))
    if fact.cid != cid:
        return (cid, f"{ReasonCode.VALIDATION_INVALID_FIELD.value}: fact cid {fact.cid!r} on the subject of {cid!r}")
    return fact


def apply_undecodable(st: CidState | None, cid: str, seq: int, now: float, detail: str) -> Step:
    """A fact that does not decode: skipped (the coordinator dead-letters it too), but audited."""
    new = _copy(st) if st is not None else CidState(cid=cid)
    new.last_seq = seq
    new.n_facts += 1
    entry = audit.ledger_alert(cid, "LEDGER_UNDECODABLE_FACT", f"fact at stream seq {seq} skipped: {detail}"[:500], now, stream_seq=seq)
    entries = audit.numbered([entry], f"evt:{seq}")
    new.n_audit += 1
    return Step(state=new, entries=entries)


# --------------------------------------------------------------------------------------------
# positions in stream order
# --------------------------------------------------------------------------------------------


class TailFill(msgspec.Struct, frozen=True, array_like=True):
    seq: int
    fill: Fill


class PositionSlot(msgspec.Struct, frozen=True, kw_only=True):
    """One (symbol, strategy) position: ``base`` (fills up to ``base_seq``) + ``tail`` (later fills,
    sorted by seq). The position is :func:`slot_position`."""

    symbol: str
    strategy_id: str
    base: Position
    base_seq: int = 0
    tail: tuple[TailFill, ...] = ()
    last_seq: int = 0  # highest seq applied
    updated_ts: float = 0.0


def new_slot(symbol: str, strategy_id: str) -> PositionSlot:
    return PositionSlot(symbol=symbol, strategy_id=strategy_id, base=new_position(symbol, strategy_id))


def slot_position(slot: PositionSlot) -> Position:
    pos = slot.base
    for t in slot.tail:
        f = t.fill
        pos = apply_fill(pos, f.side, f.qty, f.price, f.fee)
    return pos


def slot_insert(slot: PositionSlot, seq: int, fill: Fill, ts: float = 0.0) -> tuple[PositionSlot, bool, bool]:
    """Insert a fill at its stream position. Returns ``(slot, applied, in_order)``: ``applied`` is
    False for a trade id already in the tail (a redelivered fact); ``in_order`` is False when the fill
    landed before others (the caller must re-fold) or — which cannot happen for an unacked fact — at
    or before ``base_seq`` (then it is appended and the caller should alert)."""
    if any(t.fill.trade_id == fill.trade_id for t in slot.tail):
        return slot, False, True
    item = TailFill(seq, fill)
    tail = list(slot.tail)
    in_order = not tail or tail[-1].seq < seq
    if seq <= slot.base_seq:
        in_order = False
        tail.append(item)
    elif in_order:
        tail.append(item)
    else:
        i = len(tail)
        while i > 0 and tail[i - 1].seq > seq:
            i -= 1
        tail.insert(i, item)
    return msgspec.structs.replace(slot, tail=tuple(tail), last_seq=max(slot.last_seq, seq), updated_ts=ts or slot.updated_ts), True, in_order


def slot_compact(slot: PositionSlot, floor: int) -> PositionSlot:
    """Fold tail fills with ``seq <= floor`` (the ledger consumer's ack floor) into ``base``."""
    if not slot.tail or slot.tail[0].seq > floor:
        return slot
    base = slot.base
    k = 0
    for t in slot.tail:
        if t.seq > floor:
            break
        f = t.fill
        base = apply_fill(base, f.side, f.qty, f.price, f.fee)
        k += 1
    return msgspec.structs.replace(slot, base=base, base_seq=max(slot.base_seq, slot.tail[k - 1].seq), tail=slot.tail[k:])


# --------------------------------------------------------------------------------------------
# replay
# --------------------------------------------------------------------------------------------


@dataclass
class Replay:
    states: dict[str, CidState]
    fills: list[tuple[int, Fill]]
    entries: list[audit.AuditEntry]


def replay(facts: Iterable[tuple[int, float, object]]) -> Replay:
    """Fold ``(seq, stream_ts, fact)`` in stream order — the whole ledger from the fact log. A fact
    that is ``bytes`` or an Exception stands for an undecodable message."""
    states: dict[str, CidState] = {}
    fills: list[tuple[int, Fill]] = []
    entries: list[audit.AuditEntry] = []
    for seq, ts, fact in facts:
        if isinstance(fact, tuple):  # (cid, error detail) of an undecodable fact
            cid, detail = fact
            step = apply_undecodable(states.get(cid), cid, seq, ts, detail)
            states[cid] = step.state
            entries += step.entries
            continue
        if isinstance(fact, PartitionProbe):
            continue  # the coordinators' ownership probe: no execution's
        step = apply_fact(states.get(fact.cid), fact, seq, ts)  # type: ignore[attr-defined]
        states[step.state.cid] = step.state
        entries += step.entries
        if step.fill is not None:
            fills.append((seq, step.fill))
    return Replay(states, fills, entries)


def replay_positions(fills: Iterable[tuple[int, Fill]]) -> PositionBook:
    """The position book from fills in stream-sequence order (``core.ledger.book_replay``)."""
    ordered = [f for _, f in sorted(fills, key=lambda t: t[0])]
    book, _ = book_replay(ordered)
    return book

