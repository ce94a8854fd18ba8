"""The ledger's pure fold: one execution's facts → order ledger, fills, audit entries; fills → positions.

No I/O, no clock (``now`` is the fact's *stream timestamp*, passed in). The worker
(:mod:`workers.ledger.handler`) and every replay (``jetexec ledger verify``, the report, tests) call the
same functions, so a replay of the fact log reproduces the live ledger exactly.

Per execution (:class:`CidState`)
---------------------------------
:func:`apply_fact` applies one fact, in stream order for its cid:

1. Execution transitions are derived by re-running :func:`core.coordinator.decide` on the ledger's own
   copy of the record (same config as the coordinator). It is pure, so ``from``/``to`` are exactly the
   coordinator's moves, and deterministic, because ``now`` is the fact's stream timestamp (the
   coordinator uses its wall clock a few ms later; only a timer decision landing inside that gap could
   differ — see docs/ledger.md).
2. The order ledger (:mod:`core.ledger` entries, full history) follows the record's children, plus the
   escape worker's flatten order, which the record does not track.
3. A ``ChildFill`` with a trade id new for this execution becomes a position :class:`core.ledger.Fill`
   (symbol/side/strategy from the ``ExecutionCreated`` fact; the flatten order trades the opposite side).
4. Audit entries (:mod:`core.audit`): every new transition, order-history event, alert, operator escape.

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
from core.coordinator import CoordinatorConfig, decide
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
    check_invariant,
    new_order,
    new_position,
    order_on_event,
)
from schemas.codec import DecodeError, decode_fact
from schemas.enums import OrderState, OrderType, ReasonCode, Side
from schemas.messages import (
    ChildAccepted,
    ChildClosed,
    ChildFill,
    ChildRecord,
    ChildRejected,
    EscapeDone,
    ExecutionCreated,
    ExecutionRecord,
    IntentRejected,
    OutMsg,
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
    record: ExecutionRecord | None = None  # the ledger's own decide() copy (outbox dropped)
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
    fill_rec: FillRec | None = None
    changed: bool = True


# --------------------------------------------------------------------------------------------
# the per-execution fold
# --------------------------------------------------------------------------------------------


def _copy(st: CidState) -> CidState:
    return msgspec.structs.replace(st, orders=dict(st.orders), fills=list(st.fills), reprices=list(st.reprices), outbox_log=list(st.outbox_log))


_EVENT_FOR: dict[OrderState, OrderEventKind] = {
    OrderState.SUBMITTED: OrderEventKind.SUBMIT,
    OrderState.ACKNOWLEDGED: OrderEventKind.ACK,
    OrderState.CANCELLED: OrderEventKind.CANCEL,
    OrderState.REJECTED: OrderEventKind.REJECT,
    OrderState.EXPIRED: OrderEventKind.EXPIRE,
    OrderState.FAILED: OrderEventKind.FAIL,
}


def _filled(record: ExecutionRecord | None) -> Decimal:
    return sum((c.filled_qty for c in record.children), Decimal(0)) if record else Decimal(0)


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

    def sync_children(self, before: ExecutionRecord | None, after: ExecutionRecord) -> None:
        """Make the order ledger follow the record's children (new, re-priced, state changes)."""
        st = self.st
        fact = self.fact
        prior = {c.index: c for c in before.children} if before is not None else {}
        for c in after.children:
            b = prior.get(c.index)
            if b is None:
                self.add_order(c.client_order_id, st.side or Side.BUY, c.qty, c.price)
            elif b.client_order_id != c.client_order_id:
                self._replace_id(b, c)
            elif b.price != c.price:
                self._reprice(c.client_order_id, b.price, c.price, c.generation)
            self._follow_state(c, fact)

    def _follow_state(self, c: ChildRecord, fact: object) -> None:
        entry = self.st.orders.get(c.client_order_id)
        if entry is not None and c.venue_order_id and entry.venue_order_id is None and entry.state is c.state:
            # an ack that came after a fill (stale for the state machine) still names the venue order
            self.st.orders[c.client_order_id] = entry = msgspec.structs.replace(entry, venue_order_id=c.venue_order_id)
        if entry is None or entry.state is c.state:
            return
        kind = _EVENT_FOR.get(c.state)
        if kind is None:
            return  # PARTIALLY_FILLED / FILLED come from fills, never from a state copy
        kw: dict = {}
        if kind is OrderEventKind.ACK and c.venue_order_id:
            kw["venue_order_id"] = c.venue_order_id
        if isinstance(fact, ChildClosed) and fact.client_order_id == c.client_order_id:
            kw["reason"] = fact.reason or fact.state.value
        elif isinstance(fact, ChildRejected) and fact.client_order_id == c.client_order_id:
            kw["reason"] = fact.reason_code.value
        elif isinstance(fact, EscapeDone):
            kw["reason"] = f"escape: {fact.reason}"
        elif kind is OrderEventKind.REJECT and c.reason_code is not None:
            kw["reason"] = c.reason_code.value
        self.event(c.client_order_id, kind, **kw)

    def _reprice(self, coid: str, old: Decimal | None, new: Decimal | None, generation: int) -> None:
        entry = self.st.orders.get(coid)
        if entry is None:
            return
        item = OrderHistoryItem(self.now, entry.state, "ORDER_REPLACED", f"price {old} -> {new} (generation {generation})")
        self.st.orders[coid] = msgspec.structs.replace(entry, price=new, history=entry.history + (item,), updated_at=self.now)
        self.st.reprices.append(Reprice(self.now, coid, coid, old, new))

    def _replace_id(self, b: ChildRecord, c: ChildRecord) -> None:
        """Cancel/replace under a new client order id: the old order ends, a new one carries the rest."""
        old = self.st.orders.get(b.client_order_id)
        if old is not None:
            item = OrderHistoryItem(self.now, old.state, "ORDER_REPLACED", f"replaced by {c.client_order_id} at {c.price}")
            self.st.orders[b.client_order_id] = msgspec.structs.replace(old, history=old.history + (item,), updated_at=self.now)
            if old.state in (OrderState.SUBMITTED, OrderState.ACKNOWLEDGED, OrderState.PARTIALLY_FILLED):
                self.event(b.client_order_id, OrderEventKind.CANCEL, reason=f"replaced by {c.client_order_id}")
        rest = c.qty - (old.filled_qty if old is not None else Decimal(0))
        if self.add_order(c.client_order_id, self.st.side or Side.BUY, rest if rest > 0 else c.qty, c.price, reason=f"replaces {b.client_order_id}"):
            self.event(c.client_order_id, OrderEventKind.SUBMIT)
            self.event(c.client_order_id, OrderEventKind.ACK)
        self.st.reprices.append(Reprice(self.now, b.client_order_id, c.client_order_id, b.price, c.price))

    def flatten_entry(self, coid: str) -> OrderLedgerEntry | None:
        """The escape worker's flatten order (not a child: the record does not track it)."""
        st = self.st
        if coid in st.orders or st.side is None:
            return st.orders.get(coid)
        qty = _filled(st.record)
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


def apply_fact(st: CidState | None, fact: object, seq: int, now: float, cfg: CoordinatorConfig = CoordinatorConfig()) -> Step:
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

    if isinstance(fact, ExecutionCreated) and new.symbol is None:
        intent = fact.intent
        new.idempotency_key = fact.idempotency_key
        new.symbol, new.side, new.strategy_id = intent.symbol, intent.side, intent.strategy_id
        new.order_type, new.intent_qty = intent.order_type, intent.qty
        new.arrival_price = fact.arrival_price
        new.venue = intent.venue or ""
        new.created_ts = now
    elif isinstance(fact, IntentRejected) and not new.idempotency_key:
        new.idempotency_key = fact.idempotency_key
        new.created_ts = now

    before_rec = new.record
    after_rec = decide(before_rec, fact, now, cfg)  # type: ignore[arg-type]
    if after_rec is not None:
        after_rec = msgspec.structs.replace(after_rec, outbox=[], outbox_log=[], last_fact_seq=seq)
        entries += audit.execution_entries(cid, before_rec, after_rec, now, type(fact).__name__)
        new.record = after_rec

    fill: Fill | None = None
    rec: FillRec | None = None
    coid = getattr(fact, "client_order_id", None)
    is_child = new.record is not None and any(c.client_order_id == coid for c in new.record.children)
    if isinstance(fact, ChildFill):
        if any(f.trade_id == fact.trade_id for f in new.fills):
            pass  # the same trade again (a re-published report): booked once
        elif new.symbol is None or new.strategy_id is None:
            ctx.alert("LEDGER_FILL_WITHOUT_EXECUTION", f"fill {fact.trade_id} for an execution without ExecutionCreated", coid, trade_id=fact.trade_id)
        else:
            if not is_child and coid == new.flatten_id:
                ctx.flatten_entry(coid)
            elif not is_child and coid not in new.orders:
                ctx.alert("LEDGER_UNKNOWN_ORDER", f"fill {fact.trade_id} for unknown order {coid}: booked on the intent's side", coid, trade_id=fact.trade_id)
            side = _fill_side(new, coid) or Side.BUY
            rec = FillRec(seq=seq, ts=fact.ts, stream_ts=now, trade_id=fact.trade_id, client_order_id=coid, side=side, qty=fact.qty, price=fact.price, fee=fact.fee, liquidity=fact.liquidity)
            new.fills.append(rec)
            fill = Fill(trade_id=fact.trade_id, client_order_id=coid, symbol=new.symbol, strategy_id=new.strategy_id, side=side, qty=fact.qty, price=fact.price, fee=fact.fee)
            ctx.fill(fact)
    elif coid is not None and not is_child and coid in new.orders:
        # an order the record does not track (the flatten order): follow its own venue events
        if isinstance(fact, ChildAccepted):
            ctx.event(coid, OrderEventKind.ACK, venue_order_id=fact.venue_order_id)
        elif isinstance(fact, ChildRejected):
            kind = OrderEventKind.FAIL if fact.reason_code is ReasonCode.VENUE_TIMEOUT else OrderEventKind.REJECT
            ctx.event(coid, kind, reason=fact.reason_code.value)
        elif isinstance(fact, ChildClosed):
            kind = {OrderState.CANCELLED: OrderEventKind.CANCEL, OrderState.EXPIRED: OrderEventKind.EXPIRE, OrderState.REJECTED: OrderEventKind.REJECT}.get(fact.state)
            if kind is not None:
                ctx.event(coid, kind, reason=fact.reason or fact.state.value)
    if isinstance(fact, EscapeDone) and fact.flatten_client_order_id:
        fid = fact.flatten_client_order_id
        if ctx.flatten_entry(fid) is not None and new.orders[fid].state in (OrderState.CREATED, OrderState.SUBMITTED):
            ctx.event(fid, OrderEventKind.ACK)  # the escape worker only reports an accepted flatten

    if new.record is not None and after_rec is not None:
        ctx.sync_children(before_rec, new.record)

    entries += audit.order_entries(cid, before_orders, new.orders, now)
    entries += audit.operator_entries_for_fact(fact, now)
    entries += ctx.alerts
    numbered = audit.numbered(entries, f"evt:{seq}")
    new.n_audit += len(numbered)
    changed = bool(numbered) or fill is not None or after_rec is not None
    return Step(state=new, entries=numbered, fill=fill, fill_rec=rec, changed=changed)


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


def replay(facts: Iterable[tuple[int, float, object]], cfg: CoordinatorConfig = CoordinatorConfig()) -> Replay:
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
        step = apply_fact(states.get(fact.cid), fact, seq, ts, cfg)  # type: ignore[attr-defined]
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


def position_breach(pos: Position) -> str | None:
    return check_invariant(pos)
