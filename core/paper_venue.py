"""The paper venue's matching model, pure and seeded: price process, depth, partial fills, resting
limits with a queue model, latency, rejects and injectable faults, the market tape.

What it models and why: docs/paper-venue.md.
"""

from __future__ import annotations

import bisect

import hashlib
import math
import random
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import NamedTuple

import msgspec

from core.symbols import DEFAULT_SYMBOLS, SymbolSpec, round_to_lot, round_to_tick
from schemas.enums import ErrorClass, OrderState, OrderType, ReasonCode, Side
from schemas.venue import (
    CancelAck,
    CancelOrder,
    ExecutionReport,
    ModifyAck,
    ModifyOrder,
    NewOrder,
    OrderAck,
    OrderStatus,
    QueryOrder,
    SymbolInfo,
)

__all__ = [
    "FEE_QUANTUM",
    "LIVE_STATES",
    "Print",
    "RestingOrder",
    "VenueConfig",
    "VenueState",
    "VenueUnavailable",
    "advance",
    "interval_vwap",
    "latency_s",
    "new_venue",
    "on_cancel",
    "on_modify",
    "on_new",
    "on_query",
    "quote",
    "should_reply",
    "spec_for",
    "step_at",
    "volume_profile",
]

FEE_QUANTUM = Decimal("0.0001")
VWAP_QUANTUM = Decimal("0.000001")
PROFILE_QUANTUM = Decimal("0.000000000001")  # 1e-12
INTRADAY_BUCKETS = 96  # 15-minute buckets over a 24h session drive the per-step market volume
LIVE_STATES = frozenset({OrderState.ACKNOWLEDGED, OrderState.PARTIALLY_FILLED})
IOC_REASON = "IOC remainder: book depth exhausted"
_EPS = 1e-4  # in steps: epoch-second floats carry ~0.24 us of noise, so T0 + 0.3 may read as 2.99999 steps
_BPS = Decimal(10000)


class VenueUnavailable(ConnectionError):
    """The ``disconnect`` fault: the venue refuses every request."""


class VenueConfig(msgspec.Struct, frozen=True, kw_only=True):
    seed: int = 7
    tick_interval_s: float = 0.1  # price process step
    reject_rate: Decimal = Decimal(0)  # probability a NewOrder is rejected (deterministic per client_order_id)
    fee_bps: Decimal = Decimal("1")  # taker fee; maker fee_bps/2
    latency_new_ms: tuple[float, float] = (0.2, 1.0)  # (median, p99) of a lognormal
    latency_modify_ms: tuple[float, float] = (0.2, 1.0)
    latency_cancel_ms: tuple[float, float] = (0.1, 0.5)
    faults: frozenset[str] = frozenset()  # "disconnect", "drop_ack", "late_fill_after_cancel"
    symbols: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS
    market_flow: Decimal = Decimal("0.2")  # mean market print per step, as a fraction of one displayed level
    tape_limit: int = 5000  # prints kept in state.tape (all symbols)
    # None: every step is applied (exact). N: a gap longer than N steps (a venue restored after long
    # downtime) skips the excess by moving the origin forward: the mid at step k is unchanged, the
    # clock-to-step mapping shifts. Call-pattern independence only holds for gaps <= N.
    max_catchup_steps: int | None = None


class Print(NamedTuple):
    """One simulated market trade on the tape (a JSON array on the wire)."""

    ts: float
    symbol: str
    price: Decimal
    qty: Decimal


class RestingOrder(msgspec.Struct, frozen=True, kw_only=True):
    """The venue's record of one order (live or closed). Frozen: updates make a new one."""

    client_order_id: str
    cid: str
    symbol: str
    side: Side
    order_type: OrderType
    qty: Decimal
    price: Decimal | None = None  # limit price; None for MARKET
    venue_order_id: str = ""  # "" for rejected orders
    state: OrderState = OrderState.ACKNOWLEDGED
    filled_qty: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)  # sum(qty * price) of fills
    fees: Decimal = Decimal(0)
    fill_count: int = 0  # n of the last trade id "<client_order_id>-T<n>"
    queue_ahead: Decimal = Decimal(0)  # displayed size ahead at its price level
    priority: int = 0  # time priority; a re-price or size increase takes a new one
    cancelled_qty: Decimal = Decimal(0)
    created_ts: float = 0.0
    updated_ts: float = 0.0
    reject_reason: str = ""

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def leaves_qty(self) -> Decimal:
        return self.qty - self.filled_qty if self.live else Decimal(0)

    @property
    def avg_price(self) -> Decimal | None:
        return self.notional / self.filled_qty if self.filled_qty else None


class VenueState(msgspec.Struct, kw_only=True):
    """Everything the venue knows. Treated as immutable: every function returns a new one."""

    origin: float | None = None  # time of step 0
    step: int = 0  # last price step applied
    fair: dict[str, float] = {}  # unrounded price process (binary float: exact in JSON, IEEE-deterministic)
    mids: dict[str, Decimal] = {}  # fair rounded to tick
    orders: dict[str, RestingOrder] = {}  # by client_order_id, every order ever seen
    open_ids: list[str] = []  # live orders, in arrival order
    taken_bid: dict[str, Decimal] = {}  # displayed bid liquidity taken by aggressive orders this step
    taken_ask: dict[str, Decimal] = {}
    order_seq: int = 0  # venue order ids "V<seq>"
    priority_seq: int = 0
    trade_seq: int = 0  # client fills, venue-wide
    volume: dict[str, Decimal] = {}  # cumulative simulated market volume
    tape: list[Print] = []  # last config.tape_limit market prints
    duplicate_attempts: int = 0
    dropped_acks: int = 0
    rejected: int = 0


# --------------------------------------------------------------------------------------------
# deterministic randomness


def _seed_int(*parts: object) -> int:
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "big")


def _rng(*parts: object) -> random.Random:
    return random.Random(_seed_int(*parts))


def _uniform(*parts: object) -> float:
    """A deterministic draw in [0, 1) from the hash itself (53 bits)."""
    return (_seed_int(*parts) >> (256 - 53)) / float(1 << 53)


def _dec(x: float) -> Decimal:
    return Decimal(repr(x))


# --------------------------------------------------------------------------------------------
# reference helpers


def spec_for(config: VenueConfig, symbol: str) -> SymbolSpec | None:
    return _spec_index(config.symbols).get(symbol)


@lru_cache(maxsize=64)
def _spec_index(symbols: tuple[SymbolSpec, ...]) -> dict[str, SymbolSpec]:
    return {s.symbol: s for s in symbols}


def _level(spec: SymbolSpec) -> Decimal:
    return spec.depth_lots * spec.lot_size


def _is_multiple(x: Decimal, unit: Decimal) -> bool:
    q = x / unit
    return q == q.to_integral_value()


def _min_mid(spec: SymbolSpec) -> Decimal:
    return spec.tick_size * 2


def _mid(st: VenueState, spec: SymbolSpec) -> Decimal:
    mid = st.mids.get(spec.symbol)
    if mid is None:  # symbol added to the config after this state was created
        mid = st.mids[spec.symbol] = max(round_to_tick(spec.reference_price, spec.tick_size), _min_mid(spec))
        st.fair.setdefault(spec.symbol, float(spec.reference_price))
    return mid


def _touch(mid: Decimal, spec: SymbolSpec) -> tuple[Decimal, Decimal]:
    """(bid, ask) = mid -/+ spread/2, rounded outward to the tick (mid is always on the tick)."""
    half = spec.tick_size * ((spec.spread_ticks + 1) // 2)
    return max(mid - half, spec.tick_size), mid + half


def _fee(qty: Decimal, price: Decimal, bps: Decimal) -> Decimal:
    return (qty * price * bps / _BPS).quantize(FEE_QUANTUM, rounding=ROUND_HALF_UP)


def _session_position(spec: SymbolSpec, ts: float) -> float | None:
    """Position in [0, 1) of ``ts`` within the symbol's daily session, None when closed."""
    minute = (ts / 60.0) % 1440.0
    s = spec.session
    length = (s.close_minute - s.open_minute) % 1440 or 1440
    pos = (minute - s.open_minute) % 1440.0
    if pos >= length:
        return None
    return pos / length


def step_at(state: VenueState, config: VenueConfig, now: float) -> int:
    """Index of the last price step at or before ``now`` (the state's current step if unanchored)."""
    if state.origin is None:
        return state.step
    return max(0, math.floor((now - state.origin) / config.tick_interval_s + _EPS))


# --------------------------------------------------------------------------------------------
# construction, clock


def new_venue(config: VenueConfig, start: float | None = None) -> VenueState:
    """A fresh venue at step 0 (mid = reference price). ``start`` anchors step 0 in time; without it
    the first ``now`` the venue is given does."""
    if config.tick_interval_s <= 0:
        raise ValueError("tick_interval_s must be > 0")
    if config.tape_limit < 0:
        raise ValueError("tape_limit must be >= 0")
    fair: dict[str, float] = {}
    mids: dict[str, Decimal] = {}
    for spec in config.symbols:
        mid = max(round_to_tick(spec.reference_price, spec.tick_size), _min_mid(spec))
        fair[spec.symbol] = float(spec.reference_price)
        mids[spec.symbol] = mid
    return VenueState(
        origin=start,
        fair=fair,
        mids=mids,
        volume={s.symbol: Decimal(0) for s in config.symbols},
    )


def _clone(s: VenueState) -> VenueState:
    """A copy the caller may mutate. O(orders): a long-running worker passes ``in_place=True``
    instead (it never needs the old state), and learns what changed from the ack and reports."""
    return msgspec.structs.replace(
        s,
        fair=dict(s.fair),
        mids=dict(s.mids),
        orders=dict(s.orders),
        open_ids=list(s.open_ids),
        taken_bid=dict(s.taken_bid),
        taken_ask=dict(s.taken_ask),
        volume=dict(s.volume),
        tape=list(s.tape),
    )


def advance(state: VenueState, config: VenueConfig, now: float, *, in_place: bool = False) -> tuple[VenueState, list[ExecutionReport]]:
    """Step the price process up to ``now`` and match resting orders at every step. Returns the new
    state and the FILL reports, in step order. A ``now`` before the current step changes nothing."""
    st = state if in_place else _clone(state)
    reports = _advance(st, config, now)
    return st, reports


class _Ctx(NamedTuple):
    """Per-symbol constants of the step loop (floats and ints for speed; all deterministic)."""

    spec: SymbolSpec
    prefix: "hashlib._Hash"
    sigma: float
    tick: Decimal
    tick_f: float
    half_ticks: int
    flow_lots: float  # mean market print per step, in lots, before the intraday multiplier
    profile: tuple[float, ...]


@lru_cache(maxsize=64)
def _ctx(seed: int, spec: SymbolSpec, market_flow: Decimal) -> _Ctx:
    prefix = hashlib.sha256()
    for part in (seed, "step", spec.symbol):
        prefix.update(str(part).encode())
        prefix.update(b"\x1f")
    return _Ctx(
        spec=spec,
        prefix=prefix,
        sigma=float(spec.volatility_bps) / 10000.0,
        tick=spec.tick_size,
        tick_f=float(spec.tick_size),
        half_ticks=(spec.spread_ticks + 1) // 2,
        flow_lots=float(spec.depth_lots * market_flow),
        profile=_profile_floats(seed, spec.symbol, INTRADAY_BUCKETS),
    )


def _advance(st: VenueState, config: VenueConfig, now: float) -> list[ExecutionReport]:
    if st.origin is None:
        st.origin = now
        return []
    target = step_at(st, config, now)
    if target <= st.step:
        return []
    cap = config.max_catchup_steps
    if cap is not None and target - st.step > cap:
        skip = target - st.step - cap
        st.origin += skip * config.tick_interval_s
        target -= skip
    reports: list[ExecutionReport] = []
    st.taken_bid.clear()
    st.taken_ask.clear()
    ctxs = [_ctx(config.seed, spec, config.market_flow) for spec in config.symbols]
    rng = random.Random()  # re-seeded from sha256(seed, "step", symbol, k) for every draw set
    for k in range(st.step + 1, target + 1):
        ts = st.origin + k * config.tick_interval_s
        by_symbol: dict[str, list[str]] = {}
        for oid in st.open_ids:
            by_symbol.setdefault(st.orders[oid].symbol, []).append(oid)
        for ctx in ctxs:
            _step_symbol(st, config, ctx, rng, k, ts, by_symbol.get(ctx.spec.symbol, ()), reports)
        if reports:
            st.open_ids = [oid for oid in st.open_ids if st.orders[oid].live]
    st.step = target
    if len(st.tape) > config.tape_limit:
        del st.tape[: len(st.tape) - config.tape_limit]
    return reports


def _step_symbol(
    st: VenueState,
    config: VenueConfig,
    ctx: _Ctx,
    rng: random.Random,
    k: int,
    ts: float,
    open_ids: list[str] | tuple[()],
    reports: list[ExecutionReport],
) -> None:
    spec = ctx.spec
    sym = spec.symbol
    h = ctx.prefix.copy()
    h.update(str(k).encode())
    h.update(b"\x1f")
    rng.seed(int.from_bytes(h.digest(), "big"))  # == _rng(seed, "step", sym, k)
    z = rng.gauss(0.0, ctx.sigma)
    buyer_aggressor = rng.random() < 0.5
    size_draw = rng.expovariate(1.0)

    tick = ctx.tick
    fair = st.fair.get(sym)
    if fair is None:
        fair = float(spec.reference_price)
    fair = max(fair * (1.0 + z), 2.0 * ctx.tick_f)
    st.fair[sym] = fair
    mid_t = max(round(fair / ctx.tick_f), 2)
    st.mids[sym] = Decimal(mid_t) * tick

    if spec.halted:
        return
    pos = _session_position(spec, ts)
    if pos is None:
        return
    bid = Decimal(max(mid_t - ctx.half_ticks, 1)) * tick
    ask = Decimal(mid_t + ctx.half_ticks) * tick
    intraday = ctx.profile[min(int(pos * INTRADAY_BUCKETS), INTRADAY_BUCKETS - 1)] * INTRADAY_BUCKETS
    flow_lots = int(ctx.flow_lots * intraday * size_draw)
    flow = Decimal(flow_lots) * spec.lot_size if flow_lots > 0 else Decimal(0)
    if flow_lots > 0:
        st.tape.append(Print(ts, sym, ask if buyer_aggressor else bid, flow))
        st.volume[sym] = st.volume.get(sym, Decimal(0)) + flow

    if not open_ids:
        return
    level = _level(spec)
    maker_bps = config.fee_bps / 2
    # through: the opposite touch crossed the limit price -> up to one displayed level per tick crossed
    crossed: set[str] = set()
    for oid in open_ids:
        o = st.orders[oid]
        if o.price is None:
            continue
        through = (o.price - ask) if o.side is Side.BUY else (bid - o.price)
        if through > 0:
            crossed.add(oid)
            cap = (through / tick).to_integral_value(rounding=ROUND_DOWN) * level
            q = min(o.leaves_qty, cap)
            st.orders[oid] = msgspec.structs.replace(o, queue_ahead=Decimal(0))
            if q > 0:
                reports.append(_fill(st, oid, q, o.price, maker_bps, ts))
    if flow <= 0:
        return
    # at the touch: the step's print trades against resting orders at or better than the same-side
    # best price; the displayed size ahead of an order goes first
    resting_side = Side.BUY if not buyer_aggressor else Side.SELL
    at_touch: list[RestingOrder] = []
    for oid in open_ids:
        o = st.orders[oid]
        if oid in crossed or not o.live or o.side is not resting_side or o.price is None:
            continue
        best = bid if o.side is Side.BUY else ask
        behind = o.price < best if o.side is Side.BUY else o.price > best
        if behind:
            continue
        if o.price != best and o.queue_ahead:  # the level it queued at is gone: nothing ahead now
            o = st.orders[oid] = msgspec.structs.replace(o, queue_ahead=Decimal(0))
        at_touch.append(o)
    sign = -1 if resting_side is Side.BUY else 1  # best price first, then time priority
    at_touch.sort(key=lambda r: (sign * r.price, r.priority))  # type: ignore[operator]
    remaining = flow
    for o in at_touch:
        if remaining <= 0:
            break
        eaten = min(o.queue_ahead, flow)
        if eaten:
            o = st.orders[o.client_order_id] = msgspec.structs.replace(o, queue_ahead=o.queue_ahead - eaten)
        q = min(o.leaves_qty, remaining, flow - eaten)
        if q > 0:
            remaining -= q
            reports.append(_fill(st, o.client_order_id, q, o.price, maker_bps, ts))  # type: ignore[arg-type]


def _fill(st: VenueState, oid: str, qty: Decimal, price: Decimal, bps: Decimal, ts: float) -> ExecutionReport:
    o = st.orders[oid]
    filled = o.filled_qty + qty
    fee = _fee(qty, price, bps)
    n = o.fill_count + 1
    o = msgspec.structs.replace(
        o,
        filled_qty=filled,
        notional=o.notional + qty * price,
        fees=o.fees + fee,
        fill_count=n,
        state=OrderState.FILLED if filled >= o.qty else OrderState.PARTIALLY_FILLED,
        updated_ts=ts,
    )
    st.orders[oid] = o
    st.trade_seq += 1
    return ExecutionReport(
        kind="FILL",
        cid=o.cid,
        client_order_id=oid,
        venue_order_id=o.venue_order_id,
        trade_id=f"{oid}-T{n}",
        qty=qty,
        price=price,
        fee=fee,
        cum_qty=filled,
        leaves_qty=o.qty - filled,
        ts=ts,
    )


def _cancel(st: VenueState, oid: str, ts: float, reason: str) -> ExecutionReport:
    o = st.orders[oid]
    leaves = o.leaves_qty
    o = msgspec.structs.replace(o, state=OrderState.CANCELLED, cancelled_qty=leaves, updated_ts=ts)
    st.orders[oid] = o
    if oid in st.open_ids:
        st.open_ids.remove(oid)
    return ExecutionReport(
        kind="CANCELLED",
        cid=o.cid,
        client_order_id=oid,
        venue_order_id=o.venue_order_id,
        qty=leaves,
        cum_qty=o.filled_qty,
        leaves_qty=leaves,
        ts=ts,
        reason=reason,
    )


def _take(
    st: VenueState, config: VenueConfig, spec: SymbolSpec, oid: str, limit: Decimal | None, ts: float
) -> list[ExecutionReport]:
    """Walk the displayed opposite levels (best first) with an aggressive order, up to ``limit``."""
    o = st.orders[oid]
    sym = spec.symbol
    bid, ask = _touch(_mid(st, spec), spec)
    level = _level(spec)
    tick = spec.tick_size
    buy = o.side is Side.BUY
    taken_map = st.taken_ask if buy else st.taken_bid
    taken = taken_map.get(sym, Decimal(0))
    remaining = o.leaves_qty
    reports: list[ExecutionReport] = []
    i = int((taken / level).to_integral_value(rounding=ROUND_DOWN))
    while remaining > 0 and i < spec.levels:
        px = ask + tick * i if buy else bid - tick * i
        if px <= 0:
            break
        if limit is not None and (px > limit if buy else px < limit):
            break
        avail = level * (i + 1) - taken
        q = min(remaining, avail)
        if q > 0:
            reports.append(_fill(st, oid, q, px, config.fee_bps, ts))
            remaining -= q
            taken += q
        i += 1
    taken_map[sym] = taken
    return reports


def _rest(st: VenueState, spec: SymbolSpec, oid: str) -> None:
    """Join the book at the order's limit price, behind the displayed size there (none if it
    improves the best price)."""
    o = st.orders[oid]
    bid, ask = _touch(_mid(st, spec), spec)
    assert o.price is not None
    improves = o.price > bid if o.side is Side.BUY else o.price < ask
    st.priority_seq += 1
    st.orders[oid] = msgspec.structs.replace(
        o, queue_ahead=Decimal(0) if improves else _level(spec), priority=st.priority_seq
    )
    if oid in st.open_ids:
        st.open_ids.remove(oid)
    st.open_ids.append(oid)


def _marketable(st: VenueState, spec: SymbolSpec, side: Side, price: Decimal) -> bool:
    bid, ask = _touch(_mid(st, spec), spec)
    return price >= ask if side is Side.BUY else price <= bid


# --------------------------------------------------------------------------------------------
# requests


def _check_up(config: VenueConfig) -> None:
    if "disconnect" in config.faults:
        raise VenueUnavailable("venue disconnected (fault injection)")


def _drops(config: VenueConfig, op: str) -> bool:
    return "drop_ack" in config.faults or f"drop_ack:{op}" in config.faults


def should_reply(config: VenueConfig, op: str, ack: OrderAck | ModifyAck | CancelAck) -> bool:
    """False when the ``drop_ack`` fault says the worker must not send this (accepted) ack."""
    return not (ack.accepted and _drops(config, op))


def on_new(
    state: VenueState, config: VenueConfig, order: NewOrder, now: float, *, in_place: bool = False
) -> tuple[VenueState, OrderAck, list[ExecutionReport]]:
    """Advance to ``now``, then validate and match a new order. Reports include fills of other resting
    orders that the advance produced, then this order's fills (and IOC cancel for a MARKET)."""
    _check_up(config)
    st = state if in_place else _clone(state)
    reports = _advance(st, config, now)
    oid = order.client_order_id

    existing = st.orders.get(oid)
    if existing is not None:
        st.duplicate_attempts += 1
        ack = OrderAck(
            accepted=False,
            client_order_id=oid,
            venue_order_id=existing.venue_order_id,
            reject_reason="duplicate client_order_id",
            reason_code=ReasonCode.DUPLICATE_CLIENT_ORDER_ID,
            error_class=ErrorClass.NON_RETRYABLE,
        )
        return st, ack, reports

    def reject(code: ReasonCode, why: str) -> tuple[VenueState, OrderAck, list[ExecutionReport]]:
        st.rejected += 1
        st.orders[oid] = RestingOrder(
            client_order_id=oid,
            cid=order.cid,
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            qty=order.qty,
            price=order.price,
            state=OrderState.REJECTED,
            created_ts=now,
            updated_ts=now,
            reject_reason=why,
        )
        ack = OrderAck(
            accepted=False,
            client_order_id=oid,
            reject_reason=why,
            reason_code=code,
            error_class=ErrorClass.NON_RETRYABLE,
        )
        return st, ack, reports

    spec = spec_for(config, order.symbol)
    if spec is None:
        return reject(ReasonCode.VALIDATION_INVALID_SYMBOL, f"unknown symbol {order.symbol!r}")
    if not order.qty.is_finite() or order.qty <= 0:
        return reject(ReasonCode.VALIDATION_INVALID_QUANTITY, "qty must be > 0")
    if not _is_multiple(order.qty, spec.lot_size):
        return reject(ReasonCode.VALIDATION_INVALID_QUANTITY, f"qty {order.qty} not a multiple of lot {spec.lot_size}")
    price: Decimal | None = None
    if order.order_type is OrderType.LIMIT:
        if order.price is None or not order.price.is_finite() or order.price <= 0:
            return reject(ReasonCode.VALIDATION_INVALID_PRICE, "LIMIT needs a price > 0")
        if not _is_multiple(order.price, spec.tick_size):
            return reject(
                ReasonCode.VALIDATION_INVALID_PRICE, f"price {order.price} not a multiple of tick {spec.tick_size}"
            )
        price = order.price
    if spec.halted:
        return reject(ReasonCode.HALTED, f"{spec.symbol} halted")
    if _session_position(spec, now) is None:
        return reject(ReasonCode.MARKET_CLOSED, f"{spec.symbol} session closed")
    if config.reject_rate > 0 and _uniform(config.seed, "reject", oid) < float(config.reject_rate):
        return reject(ReasonCode.VENUE_REJECTED, "rejected by venue")

    st.order_seq += 1
    vid = f"V{st.order_seq}"
    st.orders[oid] = RestingOrder(
        client_order_id=oid,
        cid=order.cid,
        venue_order_id=vid,
        symbol=order.symbol,
        side=order.side,
        order_type=order.order_type,
        qty=order.qty,
        price=price,
        created_ts=now,
        updated_ts=now,
    )
    if _drops(config, "new"):
        st.dropped_acks += 1
    ack = OrderAck(accepted=True, client_order_id=oid, venue_order_id=vid)

    if price is None:  # MARKET: walk everything displayed, IOC the rest
        reports.extend(_take(st, config, spec, oid, None, now))
        if st.orders[oid].live:
            reports.append(_cancel(st, oid, now, IOC_REASON))
        return st, ack, reports
    if _marketable(st, spec, order.side, price):
        reports.extend(_take(st, config, spec, oid, price, now))
    if st.orders[oid].live:
        _rest(st, spec, oid)
    return st, ack, reports


def on_modify(
    state: VenueState, config: VenueConfig, req: ModifyOrder, now: float, *, in_place: bool = False
) -> tuple[VenueState, ModifyAck, list[ExecutionReport]]:
    """Re-price and/or re-size a live LIMIT order. A new price or a larger size loses queue priority
    (and may make the order marketable: it then takes liquidity like a new order); a smaller size
    keeps it. ``new_qty`` is the new total quantity and must stay above the filled quantity."""
    _check_up(config)
    st = state if in_place else _clone(state)
    reports = _advance(st, config, now)
    oid = req.client_order_id
    o = st.orders.get(oid)

    def reject(code: ReasonCode, why: str) -> tuple[VenueState, ModifyAck, list[ExecutionReport]]:
        ack = ModifyAck(
            accepted=False,
            client_order_id=oid,
            venue_order_id=o.venue_order_id if o is not None else "",
            reject_reason=why,
            reason_code=code,
            error_class=ErrorClass.NON_RETRYABLE,
        )
        return st, ack, reports

    if o is None:
        return reject(ReasonCode.UNKNOWN_ORDER, "unknown order")
    if not o.live or o.price is None:
        return reject(ReasonCode.UNKNOWN_ORDER, f"order not live ({o.state.value})")
    spec = spec_for(config, o.symbol)
    if spec is None:  # symbol removed from the config since the order was accepted
        return reject(ReasonCode.VALIDATION_INVALID_SYMBOL, f"unknown symbol {o.symbol!r}")
    if req.new_price is None and req.new_qty is None:
        return reject(ReasonCode.VALIDATION_MISSING_FIELD, "nothing to modify")
    new_price = o.price if req.new_price is None else req.new_price
    new_qty = o.qty if req.new_qty is None else req.new_qty
    if not new_price.is_finite() or new_price <= 0 or not _is_multiple(new_price, spec.tick_size):
        return reject(ReasonCode.VALIDATION_INVALID_PRICE, f"bad price {new_price}")
    if not new_qty.is_finite() or not _is_multiple(new_qty, spec.lot_size) or new_qty <= o.filled_qty:
        return reject(
            ReasonCode.VALIDATION_INVALID_QUANTITY, f"qty {new_qty} must be a lot multiple above filled {o.filled_qty}"
        )

    loses_priority = new_price != o.price or new_qty > o.qty
    st.orders[oid] = msgspec.structs.replace(o, price=new_price, qty=new_qty, updated_ts=now)
    if _drops(config, "modify"):
        st.dropped_acks += 1
    ack = ModifyAck(
        accepted=True, client_order_id=oid, venue_order_id=o.venue_order_id, new_price=new_price, new_qty=new_qty
    )
    if loses_priority:
        if _marketable(st, spec, o.side, new_price):
            reports.extend(_take(st, config, spec, oid, new_price, now))
        if st.orders[oid].live:
            _rest(st, spec, oid)
        else:
            st.open_ids.remove(oid)
    return st, ack, reports


def on_cancel(
    state: VenueState, config: VenueConfig, req: CancelOrder, now: float, *, in_place: bool = False
) -> tuple[VenueState, CancelAck, list[ExecutionReport]]:
    """Cancel a live order: a CANCELLED report carrying the cancelled leaves, and the same leaves on
    the ack. Cancelling an already CANCELLED order is idempotent (accepted, same leaves, no report);
    any other closed order is refused with "already closed"."""
    _check_up(config)
    st = state if in_place else _clone(state)
    reports = _advance(st, config, now)
    oid = req.client_order_id
    o = st.orders.get(oid)
    if o is None:
        ack = CancelAck(
            accepted=False,
            client_order_id=oid,
            reject_reason="unknown order",
            reason_code=ReasonCode.UNKNOWN_ORDER,
            error_class=ErrorClass.NON_RETRYABLE,
        )
        return st, ack, reports
    if o.state is OrderState.CANCELLED:
        if _drops(config, "cancel"):
            st.dropped_acks += 1
        ack = CancelAck(accepted=True, client_order_id=oid, venue_order_id=o.venue_order_id, leaves_qty=o.cancelled_qty)
        return st, ack, reports
    if not o.live:
        return st, _closed_ack(o), reports

    if "late_fill_after_cancel" in config.faults and o.price is not None:
        spec = spec_for(config, o.symbol)
        lot = spec.lot_size if spec is not None else Decimal(1)
        q = min(o.leaves_qty, max(lot, round_to_lot(o.leaves_qty / 2, lot)))
        reports.append(_fill(st, oid, q, o.price, config.fee_bps / 2, now))
        if not st.orders[oid].live:
            st.open_ids.remove(oid)
            return st, _closed_ack(st.orders[oid]), reports

    if _drops(config, "cancel"):
        st.dropped_acks += 1
    rep = _cancel(st, oid, now, "cancelled by client")
    reports.append(rep)
    ack = CancelAck(accepted=True, client_order_id=oid, venue_order_id=o.venue_order_id, leaves_qty=rep.leaves_qty)
    return st, ack, reports


def _closed_ack(o: RestingOrder) -> CancelAck:
    return CancelAck(
        accepted=False,
        client_order_id=o.client_order_id,
        venue_order_id=o.venue_order_id,
        reject_reason="already closed",
        error_class=ErrorClass.NON_RETRYABLE,
    )


def on_query(state: VenueState, req: QueryOrder) -> OrderStatus:
    o = state.orders.get(req.client_order_id)
    if o is None:
        return OrderStatus(found=False, client_order_id=req.client_order_id)
    return OrderStatus(
        found=True,
        client_order_id=o.client_order_id,
        venue_order_id=o.venue_order_id,
        state=o.state,
        qty=o.qty,
        filled_qty=o.filled_qty,
        price=o.price,
    )


def quote(state: VenueState, config: VenueConfig, symbol: str) -> SymbolInfo:
    """Current mid (as reference_price) and touch of ``symbol``. Raises KeyError for an unknown one."""
    spec = spec_for(config, symbol)
    if spec is None:
        raise KeyError(symbol)
    mid = state.mids.get(symbol, spec.reference_price)
    bid, ask = _touch(mid, spec)
    return SymbolInfo(
        symbol=symbol, reference_price=mid, lot_size=spec.lot_size, tick_size=spec.tick_size, bid=bid, ask=ask
    )


# --------------------------------------------------------------------------------------------
# market data for TCA / VWAP


def interval_vwap(state: VenueState, symbol: str, t0: float, t1: float) -> Decimal | None:
    """VWAP of the simulated market prints of ``symbol`` with ``t0 <= ts <= t1`` (quantized to 1e-6);
    None when the tape holds no volume there."""
    notional = Decimal(0)
    vol = Decimal(0)
    tape = state.tape  # in time order (prints are appended as the clock steps)
    lo = bisect.bisect_left(tape, t0, key=lambda p: p.ts)
    hi = bisect.bisect_right(tape, t1, key=lambda p: p.ts)
    for p in tape[lo:hi]:
        if p.symbol == symbol:
            notional += p.price * p.qty
            vol += p.qty
    if not vol:
        return None
    return (notional / vol).quantize(VWAP_QUANTUM, rounding=ROUND_HALF_UP)


@lru_cache(maxsize=256)
def _profile_floats(seed: int, symbol: str, buckets: int) -> tuple[float, ...]:
    rng = _rng(seed, "profile", symbol)
    a_open = 1.5 + rng.random()  # open auction spike
    a_close = 1.0 + rng.random()  # into-the-close ramp
    w = []
    for i in range(buckets):
        x = (i + 0.5) / buckets
        base = 1.0 + a_open * math.exp(-x / 0.07) + a_close * math.exp(-(1.0 - x) / 0.05)
        w.append(base * (0.95 + 0.1 * rng.random()))
    total = sum(w)
    return tuple(v / total for v in w)


@lru_cache(maxsize=256)
def _profile_decimal(seed: int, symbol: str, buckets: int) -> tuple[Decimal, ...]:
    fl = _profile_floats(seed, symbol, buckets)
    head = [_dec(v).quantize(PROFILE_QUANTUM, rounding=ROUND_DOWN) for v in fl[:-1]]
    return (*head, Decimal(1) - sum(head, Decimal(0)))


def volume_profile(config: VenueConfig, symbol: str, buckets: int) -> tuple[Decimal, ...]:
    """Historical intraday volume share per bucket of the session (U-shaped: heavy open, quiet
    middle, ramp into the close), deterministic per (seed, symbol). Each share is quantized to 1e-12
    and the last bucket takes the remainder, so the Decimal sum is exactly 1."""
    if buckets < 1:
        raise ValueError("buckets must be >= 1")
    return _profile_decimal(config.seed, symbol, buckets)


# --------------------------------------------------------------------------------------------
# latency

_Z99 = 2.3263478740408408  # standard normal 99th percentile


def latency_s(config: VenueConfig, op: str, key: str) -> float:
    """Deterministic per (seed, op, key) draw, in seconds, from a lognormal with the op's
    (median, p99) in ms. ``op``: "new", "modify", "cancel" ("query" uses the cancel distribution)."""
    params = {
        "new": config.latency_new_ms,
        "modify": config.latency_modify_ms,
        "cancel": config.latency_cancel_ms,
        "query": config.latency_cancel_ms,
    }.get(op)
    if params is None:
        raise ValueError(f"unknown op {op!r}")
    median, p99 = params
    if median <= 0:
        return 0.0
    sigma = max(math.log(max(p99, median) / median), 0.0) / _Z99
    z = _rng(config.seed, "latency", op, key).gauss(0.0, 1.0)
    return median * math.exp(sigma * z) / 1000.0
