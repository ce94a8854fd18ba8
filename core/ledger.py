"""The ledger model, pure: order-ledger entries and their history, fills, positions (volume-weighted
entry, realized PnL on reductions and flips, unrealized PnL at a mark), the position invariant.

The rules and the worked numbers: docs/ledger-model.md.
"""

from __future__ import annotations

import decimal
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, TypeAlias

import msgspec

from core.order_fsm import ORDER_LIVE, ORDER_TERMINAL, InvalidOrderTransition, order_transition
from schemas.enums import OrderState, Side

__all__ = [
    "ACTIVE_STATES",
    "DIVISION_DIGITS",
    "TERMINAL_STATES",
    "DuplicateFillConflict",
    "DuplicateOrder",
    "Fill",
    "FillKey",
    "InvalidOrderTransition",
    "LedgerPrecisionError",
    "OrderEventKind",
    "OrderHistoryItem",
    "OrderLedgerEntry",
    "Orders",
    "OverfillError",
    "Position",
    "PositionBook",
    "PositionKey",
    "active_orders",
    "apply_fill",
    "book_apply",
    "book_check",
    "book_decode",
    "book_encode",
    "book_position",
    "book_replay",
    "check_invariant",
    "equity",
    "history_in_range",
    "ledger_add",
    "ledger_apply",
    "new_order",
    "new_position",
    "order_by_id",
    "order_on_event",
    "orders_by_state",
    "orders_by_symbol",
    "orders_in_time_range",
    "position_key",
    "snapshot",
    "state_counts",
    "unrealized_pnl",
]

# --------------------------------------------------------------------------------------------
# Decimal plumbing
# --------------------------------------------------------------------------------------------

DIVISION_DIGITS = 34
"""Significant digits a quotient is rounded to (half-even), as in IEEE decimal128. Relative, not a fixed
number of places: a fixed quantum would blow up in ``avg = cost / qty`` for tiny quantities."""

_PREC = 100
_EXACT = Context(
    prec=_PREC,
    rounding=ROUND_HALF_EVEN,
    Emin=-999_999,
    Emax=999_999,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow, decimal.Inexact],
)
_DIV = Context(
    prec=DIVISION_DIGITS,
    rounding=ROUND_HALF_EVEN,
    Emin=-999_999,
    Emax=999_999,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
_ZERO = Decimal(0)


class LedgerPrecisionError(ArithmeticError):
    """A sum or product would need rounding (inputs far outside any realistic range)."""


def _x() -> Context:
    """The exact context (``localcontext`` works on a copy, so flags never leak between calls)."""
    return _EXACT


def _z(d: Decimal) -> Decimal:
    """Canonical zero: no ``-0`` (e.g. ``-5 * 0``) ever leaves the ledger."""
    return _ZERO if d == 0 else d


def _div(a: Decimal, b: Decimal) -> Decimal:
    """``a / b`` rounded half-even to :data:`DIVISION_DIGITS` significant digits (exact if it fits)."""
    return _z(_DIV.divide(a, b))


def _dec(value: Decimal | int | str, name: str) -> Decimal:
    if isinstance(value, float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a Decimal, int or str, not {type(value).__name__}")
    try:
        d = value if isinstance(value, Decimal) else Decimal(value)
    except decimal.InvalidOperation as exc:
        raise ValueError(f"{name} is not a number: {value!r}") from exc
    if not d.is_finite():
        raise ValueError(f"{name} must be finite, got {d}")
    return d


def _sign(d: Decimal) -> int:
    return (d > 0) - (d < 0)


# --------------------------------------------------------------------------------------------
# Positions
# --------------------------------------------------------------------------------------------

PositionKey: TypeAlias = tuple[str, str]
"""``(symbol, strategy_id)``."""


def position_key(symbol: str, strategy_id: str) -> PositionKey:
    return (symbol, strategy_id)


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """One (symbol, strategy) position. Build with :func:`new_position`, change with :func:`apply_fill`."""

    symbol: str
    strategy_id: str
    qty: Decimal = _ZERO  # signed: long > 0, short < 0
    avg_entry_price: Decimal = _ZERO  # 0 when flat
    realized_pnl: Decimal = _ZERO  # gross of fees
    fees: Decimal = _ZERO
    cash: Decimal = _ZERO
    bought_qty: Decimal = _ZERO
    sold_qty: Decimal = _ZERO
    buy_notional: Decimal = _ZERO
    sell_notional: Decimal = _ZERO
    fills_applied: int = 0
    cost_basis: Decimal = _ZERO  # signed cost of the open quantity (== avg * qty up to rounding)
    initial_cash: Decimal = _ZERO

    @property
    def key(self) -> PositionKey:
        return (self.symbol, self.strategy_id)

    @property
    def is_flat(self) -> bool:
        return self.qty == 0


def new_position(symbol: str, strategy_id: str, *, initial_cash: Decimal | int | str = 0) -> Position:
    """A flat position whose cash starts at ``initial_cash``."""
    c = _dec(initial_cash, "initial_cash")
    return Position(symbol=symbol, strategy_id=strategy_id, cash=c, initial_cash=c)


def apply_fill(
    position: Position,
    side: Side | str,
    qty: Decimal | int | str,
    price: Decimal | int | str,
    fee: Decimal | int | str = 0,
) -> Position:
    """The position after one fill of ``qty`` (> 0) at ``price`` (> 0) paying ``fee``.

    Raises ``ValueError`` on a bad side/qty/price, :class:`LedgerPrecisionError` if exact arithmetic is
    impossible.
    """
    side = Side(side)
    x = _dec(qty, "qty")
    p = _dec(price, "price")
    f = _dec(fee, "fee")
    if x <= 0:
        raise ValueError(f"qty must be > 0, got {x}")
    if p <= 0:
        raise ValueError(f"price must be > 0, got {p}")
    s = side.sign
    try:
        with decimal.localcontext(_x()):
            notional = x * p
            pos = position
            q, k, r = pos.qty, pos.cost_basis, pos.realized_pnl
            if q == 0 or _sign(q) == s:  # open or add
                k = k + s * notional
                q = q + s * x
            else:  # reduce, maybe flip
                open_abs = abs(q)
                closed = min(x, open_abs)
                released = k if closed == open_abs else _div(k * closed, open_abs)
                k = k - released
                r = r - s * closed * p - released
                q = q + s * closed
                rest = x - closed
                if rest > 0:  # flip: open the remainder at the fill price
                    k = s * rest * p
                    q = s * rest
            if s > 0:
                cash = pos.cash - notional - f
                bought, sold = pos.bought_qty + x, pos.sold_qty
                bn, sn = pos.buy_notional + notional, pos.sell_notional
            else:
                cash = pos.cash + notional - f
                bought, sold = pos.bought_qty, pos.sold_qty + x
                bn, sn = pos.buy_notional, pos.sell_notional + notional
            fees = pos.fees + f
    except decimal.Inexact as exc:
        raise LedgerPrecisionError(
            f"fill {side.value} {x} @ {p} fee {f} on {position.symbol}/{position.strategy_id} "
            "cannot be booked exactly"
        ) from exc
    q, k = _z(q), _z(k)
    avg = _ZERO if q == 0 else _div(k, q)
    return msgspec.structs.replace(
        position,
        qty=q,
        avg_entry_price=avg,
        realized_pnl=_z(r),
        fees=_z(fees),
        cash=_z(cash),
        bought_qty=bought,
        sold_qty=sold,
        buy_notional=bn,
        sell_notional=sn,
        fills_applied=position.fills_applied + 1,
        cost_basis=k if q != 0 else _ZERO,
    )


def unrealized_pnl(position: Position, mark: Decimal | int | str) -> Decimal:
    """``(mark - avg_entry) * qty``; 0 when flat."""
    if position.qty == 0:
        return _ZERO
    m = _dec(mark, "mark")
    with decimal.localcontext(_x()):
        return _z((m - position.avg_entry_price) * position.qty)


def equity(position: Position, mark: Decimal | int | str) -> Decimal:
    """``cash + qty * mark`` (cash plus market value; the seed's ``cash + unrealized`` is wrong)."""
    m = _dec(mark, "mark")
    with decimal.localcontext(_x()):
        return _z(position.cash + position.qty * m)


def check_invariant(position: Position) -> str | None:
    """None when the module-level invariants 1-5 hold, else a human-readable reason (first breach)."""
    p = position
    who = f"{p.symbol}/{p.strategy_id}"
    try:
        with decimal.localcontext(_x()):
            if p.qty != p.bought_qty - p.sold_qty:
                return (
                    f"{who}: qty {p.qty} != bought_qty {p.bought_qty} - sold_qty {p.sold_qty} "
                    f"(= {p.bought_qty - p.sold_qty})"
                )
            expected_cash = p.initial_cash + p.sell_notional - p.buy_notional - p.fees
            if p.cash != expected_cash:
                return (
                    f"{who}: cash {p.cash} != initial_cash {p.initial_cash} + sell_notional "
                    f"{p.sell_notional} - buy_notional {p.buy_notional} - fees {p.fees} (= {expected_cash})"
                )
            residual = (p.cash - p.initial_cash) + p.fees + p.cost_basis - p.realized_pnl
            if residual != 0:
                return (
                    f"{who}: VWAP conservation broken: (cash - initial_cash) + fees + cost_basis - "
                    f"realized_pnl = {residual} (expected 0)"
                )
            for name in ("bought_qty", "sold_qty", "buy_notional", "sell_notional"):
                if getattr(p, name) < 0:
                    return f"{who}: {name} {getattr(p, name)} is negative"
            if p.fills_applied < 0:
                return f"{who}: fills_applied {p.fills_applied} is negative"
    except decimal.Inexact:
        return f"{who}: ledger values exceed exact precision"
    if p.qty == 0:
        if p.cost_basis != 0 or p.avg_entry_price != 0:
            return f"{who}: flat but cost_basis {p.cost_basis} / avg_entry_price {p.avg_entry_price} not 0"
        return None
    if _sign(p.cost_basis) != _sign(p.qty):
        return f"{who}: cost_basis {p.cost_basis} has not the sign of qty {p.qty}"
    expected_avg = _div(p.cost_basis, p.qty)
    if p.avg_entry_price != expected_avg or p.avg_entry_price <= 0:
        return (
            f"{who}: avg_entry_price {p.avg_entry_price} != cost_basis {p.cost_basis} / qty {p.qty} "
            f"(= {expected_avg})"
        )
    return None


# --------------------------------------------------------------------------------------------
# Fill dedupe and the position book
# --------------------------------------------------------------------------------------------

FillKey: TypeAlias = str
"""A fill's identity: the venue trade id."""


class Fill(msgspec.Struct, frozen=True, kw_only=True):
    trade_id: str
    client_order_id: str
    symbol: str
    strategy_id: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal = _ZERO

    @property
    def key(self) -> FillKey:
        return self.trade_id


class DuplicateFillConflict(Exception):
    """A trade id seen before arrived with a different payload. The book was not changed."""

    def __init__(self, trade_id: FillKey, existing: Fill, incoming: Fill) -> None:
        self.trade_id = trade_id
        self.existing = existing
        self.incoming = incoming
        super().__init__(
            f"trade id {trade_id!r} already applied with a different payload: {existing!r} != {incoming!r}"
        )


class PositionBook(msgspec.Struct, frozen=True):
    """Positions by (symbol, strategy_id) plus every applied fill by trade id (in application order).

    Immutable style: :func:`book_apply` returns a new book (copying the two dicts, O(n) per fill).
    Encode with :func:`book_encode` (JSON has no tuple keys).
    """

    positions: dict[PositionKey, Position] = {}
    fills: dict[FillKey, Fill] = {}

    @property
    def applied_trade_ids(self) -> tuple[FillKey, ...]:
        return tuple(self.fills)


def book_position(book: PositionBook, symbol: str, strategy_id: str) -> Position:
    """The position for the key, or a flat one (cash 0) if nothing was booked yet."""
    pos = book.positions.get((symbol, strategy_id))
    return pos if pos is not None else new_position(symbol, strategy_id)


def book_apply(book: PositionBook, fill: Fill) -> tuple[PositionBook, bool]:
    """Apply a fill once. ``(book, False)`` for an identical repeat; conflict raises."""
    seen = book.fills.get(fill.trade_id)
    if seen is not None:
        if seen == fill:
            return book, False
        raise DuplicateFillConflict(fill.trade_id, seen, fill)
    current = book_position(book, fill.symbol, fill.strategy_id)
    pos = apply_fill(current, fill.side, fill.qty, fill.price, fill.fee)
    positions = dict(book.positions)
    positions[pos.key] = pos
    fills = dict(book.fills)
    fills[fill.trade_id] = fill
    return PositionBook(positions, fills), True


def book_replay(fills: Iterable[Fill], book: PositionBook | None = None) -> tuple[PositionBook, int]:
    """Apply fills in order; returns the book and how many were applied (not skipped as duplicates)."""
    b = book if book is not None else PositionBook()
    n = 0
    for f in fills:
        b, applied = book_apply(b, f)
        n += applied
    return b, n


def book_check(book: PositionBook) -> str | None:
    """Every position's invariant, plus "position == cumulative fills": each position's totals equal the
    sums over the book's stored fills for its key (and no fill's key lacks a position)."""
    totals: dict[PositionKey, list[Any]] = {}
    try:
        with decimal.localcontext(_x()):
            for f in book.fills.values():
                t = totals.setdefault((f.symbol, f.strategy_id), [_ZERO, _ZERO, _ZERO, _ZERO, _ZERO, 0])
                if f.side is Side.BUY:
                    t[0] += f.qty
                    t[2] += f.qty * f.price
                else:
                    t[1] += f.qty
                    t[3] += f.qty * f.price
                t[4] += f.fee
                t[5] += 1
    except decimal.Inexact:
        return "fill totals exceed exact precision"
    for key, pos in sorted(book.positions.items()):
        if key != pos.key:
            return f"position stored under {key} belongs to {pos.key}"
        reason = check_invariant(pos)
        if reason is not None:
            return reason
        b, s, bn, sn, fees, n = totals.pop(key, [_ZERO, _ZERO, _ZERO, _ZERO, _ZERO, 0])
        got = (pos.bought_qty, pos.sold_qty, pos.buy_notional, pos.sell_notional, pos.fees, pos.fills_applied)
        if got != (b, s, bn, sn, fees, n):
            return (
                f"{key[0]}/{key[1]}: totals (bought, sold, buy_notional, sell_notional, fees, fills) {got} "
                f"!= cumulative fills {(b, s, bn, sn, fees, n)}"
            )
    if totals:
        return f"fills without a position: {sorted(totals)}"
    return None


class _BookWire(msgspec.Struct, frozen=True):
    positions: list[Position]
    fills: list[Fill]


def book_encode(book: PositionBook) -> bytes:
    """JSON bytes (positions sorted by key, fills in application order)."""
    positions = [book.positions[k] for k in sorted(book.positions)]
    return msgspec.json.encode(_BookWire(positions, list(book.fills.values())))


def book_decode(data: bytes) -> PositionBook:
    w = msgspec.json.decode(data, type=_BookWire)
    return PositionBook({p.key: p for p in w.positions}, {f.trade_id: f for f in w.fills})


def snapshot(book: PositionBook, marks: Mapping[str, Decimal]) -> list[dict[str, Any]]:
    """Positions sorted by (symbol, strategy_id), decimals as strings (public JSON contract).

    Contract keys: symbol, strategy_id, qty, avg_entry_price, realized_pnl, unrealized_pnl, fees, cash.
    Extra keys: mark, market_value, cost_basis, bought_qty, sold_qty, fills_applied.
    ``unrealized_pnl`` is "0" for a flat position; for an open one without a mark it is ``None`` (and so
    are ``mark`` and ``market_value``) rather than a made-up number.
    """
    out: list[dict[str, Any]] = []
    for key in sorted(book.positions):
        p = book.positions[key]
        mark = marks.get(p.symbol)
        m = None if mark is None else _dec(mark, "mark")
        if m is not None:
            upnl: str | None = str(unrealized_pnl(p, m))
            with decimal.localcontext(_x()):
                mv: str | None = str(_z(p.qty * m))
        elif p.qty == 0:
            upnl, mv = "0", "0"
        else:
            upnl, mv = None, None
        out.append(
            {
                "symbol": p.symbol,
                "strategy_id": p.strategy_id,
                "qty": str(p.qty),
                "avg_entry_price": str(p.avg_entry_price),
                "realized_pnl": str(p.realized_pnl),
                "unrealized_pnl": upnl,
                "fees": str(p.fees),
                "cash": str(p.cash),
                "mark": None if m is None else str(m),
                "market_value": mv,
                "cost_basis": str(p.cost_basis),
                "bought_qty": str(p.bought_qty),
                "sold_qty": str(p.sold_qty),
                "fills_applied": p.fills_applied,
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# Order ledger (seed 002 A3, with A11's fixes: cumulative fills, PARTIALLY_FILLED self-loop, no overfill,
# a time-range query). Transitions come from core.order_fsm.
# --------------------------------------------------------------------------------------------

TERMINAL_STATES = ORDER_TERMINAL
ACTIVE_STATES = ORDER_LIVE  # may still receive fills


class OrderEventKind(str, enum.Enum):
    SUBMIT = "SUBMIT"
    ACK = "ACK"
    FILL = "FILL"
    CANCEL = "CANCEL"  # the venue confirmed the cancel
    REJECT = "REJECT"
    EXPIRE = "EXPIRE"
    FAIL = "FAIL"


_TARGET: dict[OrderEventKind, OrderState] = {
    OrderEventKind.SUBMIT: OrderState.SUBMITTED,
    OrderEventKind.ACK: OrderState.ACKNOWLEDGED,
    OrderEventKind.CANCEL: OrderState.CANCELLED,
    OrderEventKind.REJECT: OrderState.REJECTED,
    OrderEventKind.EXPIRE: OrderState.EXPIRED,
    OrderEventKind.FAIL: OrderState.FAILED,
}
# An ACK that arrives after a fill or a close is stale, not an error (the fill implied the ack).
_STALE_ACK = frozenset(
    {OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.CANCELLED, OrderState.EXPIRED}
)
# The venue may have executed before a cancel/expiry/loss was recorded: the fill is booked on the entry
# (filled_qty, avg) without re-opening it (core.order_fsm: late fills are accounted by the caller).
_LATE_FILL = frozenset({OrderState.CANCELLED, OrderState.EXPIRED, OrderState.FAILED})


class OverfillError(ValueError):
    """A fill would take filled_qty above the order quantity. The entry is unchanged."""

    def __init__(self, client_order_id: str, filled_qty: Decimal, fill_qty: Decimal, qty: Decimal) -> None:
        self.client_order_id = client_order_id
        self.filled_qty = filled_qty
        self.fill_qty = fill_qty
        self.qty = qty
        super().__init__(f"order {client_order_id}: filled {filled_qty} + fill {fill_qty} > qty {qty}")


class DuplicateOrder(ValueError):
    pass


class OrderHistoryItem(msgspec.Struct, frozen=True, array_like=True):
    """``(ts, state, event, detail)``; encodes as a JSON array."""

    ts: float
    state: OrderState
    event: str  # ORDER_CREATED | ORDER_SUBMITTED | ... (seed A5 event types)
    detail: str = ""


class OrderLedgerEntry(msgspec.Struct, frozen=True, kw_only=True):
    client_order_id: str
    correlation_id: str
    symbol: str
    side: Side
    qty: Decimal
    filled_qty: Decimal = _ZERO
    avg_fill_price: Decimal | None = None
    state: OrderState = OrderState.CREATED
    history: tuple[OrderHistoryItem, ...] = ()
    strategy_id: str = ""
    price: Decimal | None = None
    venue_order_id: str | None = None
    fill_notional: Decimal = _ZERO
    fees: Decimal = _ZERO
    trade_ids: tuple[str, ...] = ()
    created_at: float = 0.0
    updated_at: float = 0.0
    reason: str = ""
    venue: str = ""  # the venue id the order went to ("" = the default venue)

    @property
    def remaining_qty(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES


def new_order(
    client_order_id: str,
    correlation_id: str,
    symbol: str,
    side: Side | str,
    qty: Decimal | int | str,
    ts: float,
    *,
    strategy_id: str = "",
    price: Decimal | int | str | None = None,
    venue: str = "",
) -> OrderLedgerEntry:
    q = _dec(qty, "qty")
    if q <= 0:
        raise ValueError(f"qty must be > 0, got {q}")
    px = None if price is None else _dec(price, "price")
    if px is not None and px <= 0:
        raise ValueError(f"price must be > 0, got {px}")
    return OrderLedgerEntry(
        client_order_id=client_order_id,
        correlation_id=correlation_id,
        symbol=symbol,
        side=Side(side),
        qty=q,
        price=px,
        strategy_id=strategy_id,
        history=(OrderHistoryItem(ts, OrderState.CREATED, "ORDER_CREATED"),),
        created_at=ts,
        updated_at=ts,
        venue=venue,
    )


def order_on_event(
    entry: OrderLedgerEntry,
    event_kind: OrderEventKind | str,
    ts: float,
    *,
    qty: Decimal | int | str | None = None,
    price: Decimal | int | str | None = None,
    fee: Decimal | int | str = 0,
    trade_id: str | None = None,
    venue_order_id: str | None = None,
    reason: str = "",
) -> OrderLedgerEntry:
    """The entry after one event. Pure. Transitions are :data:`core.order_fsm.ORDER_TRANSITIONS`.

    * SUBMIT/ACK/CANCEL/REJECT/EXPIRE/FAIL move to SUBMITTED/ACKNOWLEDGED/CANCELLED/REJECTED/EXPIRED/FAILED;
      repeating the event that produced the current state returns the entry unchanged; an off-table move
      raises :class:`core.order_fsm.InvalidOrderTransition`. An ACK after a fill or a close is stale: the
      state stays, only a missing ``venue_order_id`` is recorded.
    * FILL needs ``qty`` and ``price``. Filled quantity is cumulative: PARTIALLY_FILLED until it reaches
      ``qty`` (FILLED); exceeding ``qty`` raises :class:`OverfillError`. A ``trade_id`` already recorded on
      the entry returns it unchanged. A fill on a CANCELLED/EXPIRED/FAILED order is a *late fill*: booked
      (history event ORDER_LATE_FILL) without changing the state. A fill on CREATED/REJECTED raises.
    """
    kind = OrderEventKind(event_kind)
    state = entry.state
    if kind is OrderEventKind.FILL:
        if qty is None or price is None:
            raise ValueError("FILL needs qty and price")
        if trade_id is not None and trade_id in entry.trade_ids:
            return entry
        x, p, f = _dec(qty, "qty"), _dec(price, "price"), _dec(fee, "fee")
        if x <= 0 or p <= 0:
            raise ValueError(f"fill qty and price must be > 0, got {x} @ {p}")
        with decimal.localcontext(_x()):
            filled = entry.filled_qty + x
            notional = entry.fill_notional + x * p
            fees = entry.fees + f
        if filled > entry.qty:
            raise OverfillError(entry.client_order_id, entry.filled_qty, x, entry.qty)
        if state in _LATE_FILL:
            new_state, event = state, "ORDER_LATE_FILL"
        else:
            new_state = order_transition(
                state, OrderState.FILLED if filled == entry.qty else OrderState.PARTIALLY_FILLED
            )
            event = "ORDER_" + new_state.value
        detail = f"{trade_id or ''} {x} @ {p}".strip()
        return msgspec.structs.replace(
            entry,
            state=new_state,
            filled_qty=filled,
            fill_notional=notional,
            fees=fees,
            avg_fill_price=_div(notional, filled),
            trade_ids=entry.trade_ids + ((trade_id,) if trade_id is not None else ()),
            history=entry.history + (OrderHistoryItem(ts, new_state, event, detail),),
            updated_at=ts,
        )
    target = _TARGET[kind]
    if kind is OrderEventKind.ACK and state in _STALE_ACK:
        if venue_order_id is not None and entry.venue_order_id is None:
            return msgspec.structs.replace(entry, venue_order_id=venue_order_id)
        return entry
    if order_transition(state, target) is state:
        return entry  # repeated event: no-op
    changes: dict[str, Any] = {}
    if venue_order_id is not None:
        changes["venue_order_id"] = venue_order_id
    if reason:
        changes["reason"] = reason
    return msgspec.structs.replace(
        entry,
        state=target,
        history=entry.history + (OrderHistoryItem(ts, target, "ORDER_" + target.value, reason),),
        updated_at=ts,
        **changes,
    )


# -- collections: a ledger is a Mapping[client_order_id, OrderLedgerEntry] ----------------------

Orders: TypeAlias = Mapping[str, OrderLedgerEntry] | Iterable[OrderLedgerEntry]
"""What the query helpers accept: a ledger mapping or any iterable of entries."""


def ledger_add(
    ledger: Mapping[str, OrderLedgerEntry], entry: OrderLedgerEntry
) -> dict[str, OrderLedgerEntry]:
    """A new ledger with ``entry`` added; a known client_order_id raises :class:`DuplicateOrder`."""
    if entry.client_order_id in ledger:
        raise DuplicateOrder(f"order {entry.client_order_id} already in the ledger")
    out = dict(ledger)
    out[entry.client_order_id] = entry
    return out


def ledger_apply(
    ledger: Mapping[str, OrderLedgerEntry],
    client_order_id: str,
    update: Callable[[OrderLedgerEntry], OrderLedgerEntry],
) -> dict[str, OrderLedgerEntry]:
    """A new ledger with one entry replaced by ``update(entry)``; unknown id raises ``KeyError``."""
    out = dict(ledger)
    out[client_order_id] = update(ledger[client_order_id])
    return out


def _entries(orders: Orders) -> Iterable[OrderLedgerEntry]:
    return orders.values() if isinstance(orders, Mapping) else orders


def order_by_id(
    orders: Orders, client_order_id: str
) -> OrderLedgerEntry | None:
    if isinstance(orders, Mapping):
        return orders.get(client_order_id)
    return next((o for o in orders if o.client_order_id == client_order_id), None)


def orders_by_symbol(
    orders: Orders, symbol: str
) -> list[OrderLedgerEntry]:
    return [o for o in _entries(orders) if o.symbol == symbol]


def orders_by_state(
    orders: Orders, *states: OrderState
) -> list[OrderLedgerEntry]:
    wanted = frozenset(states)
    return [o for o in _entries(orders) if o.state in wanted]


def active_orders(orders: Orders) -> list[OrderLedgerEntry]:
    return orders_by_state(orders, *ACTIVE_STATES)


def state_counts(orders: Orders) -> dict[OrderState, int]:
    counts: dict[OrderState, int] = {}
    for o in _entries(orders):
        counts[o.state] = counts.get(o.state, 0) + 1
    return counts


def orders_in_time_range(
    orders: Orders,
    start: float,
    end: float,
    *,
    by: str = "created",
) -> list[OrderLedgerEntry]:
    """Orders with ``start <= t <= end`` (inclusive), sorted by t then id.

    ``by``: "created" (t = created_at), "updated" (t = updated_at) or "any" (some history event in range;
    sorted by created_at).
    """
    if by not in ("created", "updated", "any"):
        raise ValueError(f"by must be created, updated or any, got {by!r}")
    if by == "any":
        hit = [o for o in _entries(orders) if any(start <= h.ts <= end for h in o.history)]
        return sorted(hit, key=lambda o: (o.created_at, o.client_order_id))
    attr = "created_at" if by == "created" else "updated_at"
    hit = [o for o in _entries(orders) if start <= getattr(o, attr) <= end]
    return sorted(hit, key=lambda o: (getattr(o, attr), o.client_order_id))


def history_in_range(
    orders: Orders, start: float, end: float
) -> list[tuple[str, OrderHistoryItem]]:
    """``(client_order_id, item)`` for each history item with ``start <= ts <= end``, by ts (stable)."""
    items: Sequence[tuple[str, OrderHistoryItem]] = [
        (o.client_order_id, h) for o in _entries(orders) for h in o.history if start <= h.ts <= end
    ]
    return sorted(items, key=lambda t: t[1].ts)
