"""The paper venue's pure matching model (core.paper_venue): determinism, validation, book walking, the
queue model, modify/cancel, faults, persistence and the market data used for TCA/VWAP."""

from __future__ import annotations

from decimal import Decimal as D

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.symbols import Session, SymbolSpec
from core.paper_venue import (
    FEE_QUANTUM,
    IOC_REASON,
    VenueConfig,
    VenueState,
    VenueUnavailable,
    advance,
    interval_vwap,
    latency_s,
    new_venue,
    on_cancel,
    on_modify,
    on_new,
    on_query,
    quote,
    should_reply,
    step_at,
    volume_profile,
)
from schemas.enums import ErrorClass, OrderState, OrderType, ReasonCode, Side
from schemas.venue import CancelOrder, ModifyOrder, NewOrder, QueryOrder

T0 = 1_700_000_000.0
CFG = VenueConfig()
AAPL_LEVEL = D(500)  # depth_lots 500 x lot 1
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def order(coid: str, side: Side = Side.BUY, qty: D | int | str = 100, price: D | str | None = None,
          symbol: str = "AAPL", cid: str = "x1") -> NewOrder:
    return NewOrder(
        client_order_id=coid,
        cid=cid,
        symbol=symbol,
        side=side,
        qty=D(qty),
        order_type=OrderType.MARKET if price is None else OrderType.LIMIT,
        price=None if price is None else D(price),
    )


def started(config: VenueConfig = CFG) -> VenueState:
    state, reports = advance(new_venue(config), config, T0)
    assert reports == [] and state.origin == T0 and state.step == 0
    return state


def enc(state: VenueState) -> bytes:
    return msgspec.json.encode(state)


def fills(reports, coid=None):
    return [r for r in reports if r.kind == "FILL" and (coid is None or r.client_order_id == coid)]


def quiet_config(**spec_kw) -> VenueConfig:
    """One symbol whose mid never moves (volatility 0): only the queue model can fill a resting order."""
    spec = SymbolSpec(symbol="QQQ", reference_price=D("100.00"), volatility_bps=D(0), **spec_kw)
    return VenueConfig(symbols=(spec,))


def scenario(config: VenueConfig):
    """A fixed call sequence touching every operation; returns (final state, all acks, all reports)."""
    s = started(config)
    acks, reports = [], []

    def do(result):
        nonlocal s
        s, *rest = result
        if len(rest) == 2:
            acks.append(rest[0])
            reports.extend(rest[1])
        else:
            reports.extend(rest[0])

    q = quote(s, config, "AAPL")
    do(on_new(s, config, order("m1", qty=1200), T0 + 0.05))
    do(on_new(s, config, order("l1", qty=300, price=q.bid - D("0.03")), T0 + 0.2))
    do(on_new(s, config, order("l2", Side.SELL, qty=400, price=q.ask + D("0.03")), T0 + 0.3))
    do(on_new(s, config, order("b1", Side.SELL, qty="0.25", symbol="BTC-USD"), T0 + 0.4))
    do(advance(s, config, T0 + 3))
    do(on_modify(s, config, ModifyOrder(client_order_id="l2", new_price=quote(s, config, "AAPL").ask), T0 + 3.1))
    do(advance(s, config, T0 + 6))
    do(on_cancel(s, config, CancelOrder(client_order_id="l1"), T0 + 6.5))
    do(on_new(s, config, order("m1", qty=5), T0 + 7))  # duplicate
    do(advance(s, config, T0 + 20))
    return s, acks, reports


# -------------------------------------------------------------------------------------------------
# determinism


def test_same_seed_same_calls_give_identical_states_and_reports():
    s1, a1, r1 = scenario(CFG)
    s2, a2, r2 = scenario(VenueConfig())
    assert enc(s1) == enc(s2)
    assert a1 == a2 and r1 == r2
    assert fills(r1) and s1.duplicate_attempts == 1


def test_different_seeds_differ():
    s1, _, r1 = scenario(VenueConfig(seed=1))
    s2, _, r2 = scenario(VenueConfig(seed=2))
    assert s1.mids != s2.mids
    assert s1.tape != s2.tape


def test_mid_at_step_k_does_not_depend_on_how_advance_is_called():
    one, _ = advance(started(), CFG, T0 + 30)
    many = started()
    t = T0
    while t < T0 + 30:
        t = min(t + 0.037, T0 + 30)
        many, _ = advance(many, CFG, t)
    assert one.step == many.step == 300
    assert one.mids == many.mids and one.fair == many.fair
    assert enc(one) == enc(many)


@FAST
@given(st.lists(st.floats(min_value=0.0, max_value=2.5, allow_nan=False), min_size=1, max_size=25))
def test_chunked_advance_equals_single_advance_with_resting_orders(chunks):
    base = started()
    q = quote(base, CFG, "AAPL")
    base, _, _ = on_new(base, CFG, order("b", qty=700, price=q.bid), T0)
    base, _, _ = on_new(base, CFG, order("s", Side.SELL, qty=700, price=q.ask + D("0.01")), T0)
    end = T0 + sum(chunks)
    single, single_reports = advance(base, CFG, end)
    chunked, chunked_reports, t = base, [], T0
    for c in chunks:
        t += c
        chunked, reps = advance(chunked, CFG, min(t, end))
        chunked_reports += reps
    chunked, reps = advance(chunked, CFG, end)
    chunked_reports += reps
    assert single_reports == chunked_reports
    assert enc(single) == enc(chunked)


def test_functions_do_not_mutate_their_input_state():
    s = started()
    before = enc(s)
    on_new(s, CFG, order("m", qty=1200), T0 + 1)
    advance(s, CFG, T0 + 5)
    on_cancel(s, CFG, CancelOrder(client_order_id="nope"), T0 + 2)
    assert enc(s) == before


def test_step_clock_and_backwards_time():
    s = started()
    assert step_at(s, CFG, T0 + 0.3) == 3  # float division noise does not lose a step
    s, _ = advance(s, CFG, T0 + 1)
    again, reports = advance(s, CFG, T0 + 0.5)  # the clock going backwards changes nothing
    assert reports == [] and enc(again) == enc(s)


def test_price_stays_on_tick_and_above_one_tick():
    spec = SymbolSpec(symbol="PENNY", reference_price=D("0.05"), volatility_bps=D(3000))
    cfg = VenueConfig(symbols=(spec,))
    s = started(cfg)
    seen = set()
    for i in range(1, 201):
        s, _ = advance(s, cfg, T0 + i)
        mid = s.mids["PENNY"]
        seen.add(mid)
        assert mid > spec.tick_size and mid % spec.tick_size == 0
        info = quote(s, cfg, "PENNY")
        assert D(0) < info.bid < info.ask
    assert len(seen) > 1


def test_coarse_tick_symbol_still_moves():
    s, _ = advance(started(), CFG, T0 + 60)
    assert s.mids["005930"] != D(75000)
    assert s.mids["005930"] % D(100) == 0


# -------------------------------------------------------------------------------------------------
# new orders: validation, duplicates, rejection


def test_duplicate_client_order_id_refused_and_counted():
    s = started()
    s, ack, _ = on_new(s, CFG, order("dup", qty=10), T0)
    assert ack.accepted and ack.venue_order_id == "V1"
    for i in range(2):
        s, ack2, reports = on_new(s, CFG, order("dup", Side.SELL, qty=20), T0 + 1 + i)
        assert not ack2.accepted
        assert ack2.reason_code is ReasonCode.DUPLICATE_CLIENT_ORDER_ID
        assert ack2.error_class is ErrorClass.NON_RETRYABLE
        assert ack2.venue_order_id == "V1"  # lets a client that lost the first ack reconcile
        assert fills(reports, "dup") == []
    assert s.duplicate_attempts == 2
    assert s.orders["dup"].qty == D(10) and s.orders["dup"].side is Side.BUY


@pytest.mark.parametrize(
    ("o", "code"),
    [
        (order("u1", symbol="NOPE"), ReasonCode.VALIDATION_INVALID_SYMBOL),
        (order("u2", qty="0.0015", symbol="BTC-USD"), ReasonCode.VALIDATION_INVALID_QUANTITY),
        (order("u3", qty="10.5"), ReasonCode.VALIDATION_INVALID_QUANTITY),
        (order("u4", qty=0), ReasonCode.VALIDATION_INVALID_QUANTITY),
        (order("u5", price="190.005"), ReasonCode.VALIDATION_INVALID_PRICE),
        (order("u6", price="65000.25", qty="0.001", symbol="BTC-USD"), ReasonCode.VALIDATION_INVALID_PRICE),
        (order("u7", price="-1.00"), ReasonCode.VALIDATION_INVALID_PRICE),
    ],
)
def test_invalid_orders_rejected_non_retryable(o, code):
    s, ack, _ = on_new(started(), CFG, o, T0)
    assert not ack.accepted and ack.reason_code is code and ack.error_class is ErrorClass.NON_RETRYABLE
    assert ack.venue_order_id == ""
    status = on_query(s, QueryOrder(client_order_id=o.client_order_id))
    assert status.found and status.state is OrderState.REJECTED
    _, again, _ = on_new(s, CFG, o, T0 + 1)
    assert again.reason_code is ReasonCode.DUPLICATE_CLIENT_ORDER_ID


def test_limit_without_price_rejected():
    o = NewOrder(client_order_id="np", cid="x", symbol="AAPL", side=Side.BUY, qty=D(1), order_type=OrderType.LIMIT)
    _, ack, _ = on_new(started(), CFG, o, T0)
    assert ack.reason_code is ReasonCode.VALIDATION_INVALID_PRICE


def test_halted_and_closed_symbols_rejected():
    cfg = VenueConfig(
        symbols=(
            SymbolSpec(symbol="H", reference_price=D(10), halted=True),
            SymbolSpec(symbol="C", reference_price=D(10), session=Session(0, 1)),  # open 00:00-00:01 UTC
        )
    )
    s = started(cfg)  # T0 is 22:13 UTC
    _, ack, _ = on_new(s, cfg, order("h", symbol="H"), T0)
    assert ack.reason_code is ReasonCode.HALTED
    _, ack, _ = on_new(s, cfg, order("c", symbol="C"), T0)
    assert ack.reason_code is ReasonCode.MARKET_CLOSED


def test_reject_rate_one_rejects_everything():
    cfg = VenueConfig(reject_rate=D(1))
    s = started(cfg)
    for i in range(30):
        s, ack, reports = on_new(s, cfg, order(f"r{i}", qty=10), T0 + i * 0.01)
        assert not ack.accepted and ack.reason_code is ReasonCode.VENUE_REJECTED
        assert ack.error_class is ErrorClass.NON_RETRYABLE
        assert fills(reports) == []
    assert s.rejected == 30 and s.order_seq == 0


def test_reject_rate_draw_is_per_client_order_id():
    cfg = VenueConfig(reject_rate=D("0.5"))
    ids = [f"k{i}" for i in range(200)]

    def outcome(sequence):
        s = started(cfg)
        out = {}
        for i, coid in enumerate(sequence):
            s, ack, _ = on_new(s, cfg, order(coid, qty=1), T0 + i * 0.01)
            out[coid] = ack.accepted
        return out

    forward, backward = outcome(ids), outcome(list(reversed(ids)))
    assert forward == backward  # depends on the id, not on arrival order or time
    assert 60 < sum(forward.values()) < 140
    none = VenueConfig(reject_rate=D(0))
    s = started(none)
    for coid in ids[:50]:
        s, ack, _ = on_new(s, none, order(coid, qty=1), T0)
        assert ack.accepted


# -------------------------------------------------------------------------------------------------
# aggressive orders walk the book


def test_market_buy_walks_levels_within_depth():
    s = started()
    q = quote(s, CFG, "AAPL")
    s, ack, reports = on_new(s, CFG, order("mb", qty=1200), T0)
    assert ack.accepted and ack.venue_order_id == "V1"
    fs = fills(reports, "mb")
    assert len(fs) == 3
    assert [f.price for f in fs] == [q.ask, q.ask + D("0.01"), q.ask + D("0.02")]
    assert [f.qty for f in fs] == [D(500), D(500), D(200)]
    assert sum(f.qty for f in fs) == D(1200)
    avg = sum(f.qty * f.price for f in fs) / D(1200)
    assert avg > q.ask
    assert [f.cum_qty for f in fs] == [D(500), D(1000), D(1200)]
    assert [f.leaves_qty for f in fs] == [D(700), D(200), D(0)]
    assert [f.trade_id for f in fs] == ["mb-T1", "mb-T2", "mb-T3"]
    for f in fs:  # taker fee, 1 bp, quantized to 0.0001
        assert f.fee == (f.qty * f.price * D(1) / D(10000)).quantize(FEE_QUANTUM)
        assert f.ts == T0 and f.venue_order_id == "V1" and f.cid == "x1"
    assert all(r.kind == "FILL" for r in reports)
    st_ = on_query(s, QueryOrder(client_order_id="mb"))
    assert st_.state is OrderState.FILLED and st_.filled_qty == D(1200)
    assert s.open_ids == []


def test_market_sell_walks_down():
    s = started()
    q = quote(s, CFG, "AAPL")
    s, _, reports = on_new(s, CFG, order("ms", Side.SELL, qty=1001), T0)
    fs = fills(reports)
    assert [f.price for f in fs] == [q.bid, q.bid - D("0.01"), q.bid - D("0.02")]
    assert sum(f.qty for f in fs) == D(1001)


def test_market_remainder_beyond_depth_is_cancelled_ioc():
    s = started()
    depth = AAPL_LEVEL * 10
    s, ack, reports = on_new(s, CFG, order("big", qty=depth + 777), T0)
    assert ack.accepted
    fs = fills(reports)
    assert len(fs) == 10 and sum(f.qty for f in fs) == depth
    last = reports[-1]
    assert last.kind == "CANCELLED" and last.reason == IOC_REASON
    assert last.qty == last.leaves_qty == D(777) and last.cum_qty == depth
    assert s.orders["big"].state is OrderState.CANCELLED and s.open_ids == []


def test_liquidity_taken_in_a_step_is_gone_until_the_next_step():
    s = started()
    q = quote(s, CFG, "AAPL")
    s, _, r1 = on_new(s, CFG, order("a", qty=300), T0)
    s, _, r2 = on_new(s, CFG, order("b", qty=300), T0 + 0.01)  # same step
    assert [f.price for f in fills(r2)] == [q.ask, q.ask + D("0.01")]
    assert [f.qty for f in fills(r2)] == [D(200), D(100)]
    s, _, r3 = on_new(s, CFG, order("c", qty=300), T0 + 0.1)  # next step: book rebuilt
    assert len(fills(r3, "c")) == 1 and fills(r3, "c")[0].price == quote(s, CFG, "AAPL").ask


def test_marketable_limit_stops_at_its_price_and_rests_the_rest():
    s = started()
    q = quote(s, CFG, "AAPL")
    limit = q.ask + D("0.01")
    s, ack, reports = on_new(s, CFG, order("lx", qty=1500, price=limit), T0)
    fs = fills(reports)
    assert [f.price for f in fs] == [q.ask, limit]
    assert sum(f.qty for f in fs) == D(1000)
    o = s.orders["lx"]
    assert o.state is OrderState.PARTIALLY_FILLED and o.leaves_qty == D(500) and s.open_ids == ["lx"]


def test_tape_fill_prices_never_violate_limits():
    s = started()
    q = quote(s, CFG, "AAPL")
    s, _, reports = on_new(s, CFG, order("sl", Side.SELL, qty=2000, price=q.bid), T0)
    assert all(f.price >= q.bid for f in fills(reports))


# -------------------------------------------------------------------------------------------------
# resting orders: crossing and the queue model


def _drive_until_filled(s, config, coid, start, dt=0.5, max_steps=2000):
    t, all_reports = start, []
    for _ in range(max_steps):
        t += dt
        s, reports = advance(s, config, t)
        all_reports += reports
        if not s.orders[coid].live:
            return s, all_reports
    raise AssertionError(f"{coid} never filled")


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_limit_rests_then_fills_when_the_price_crosses(side):
    s = started()
    q = quote(s, CFG, "AAPL")
    price = q.bid - D("0.05") if side is Side.BUY else q.ask + D("0.05")
    s, ack, reports = on_new(s, CFG, order("rest", side, qty=300, price=price), T0)
    assert ack.accepted and reports == []
    assert s.orders["rest"].queue_ahead == AAPL_LEVEL  # joined behind a displayed level
    s, reports = _drive_until_filled(s, CFG, "rest", T0)
    fs = fills(reports, "rest")
    assert sum(f.qty for f in fs) == D(300) and fs[-1].cum_qty == D(300) and fs[-1].leaves_qty == 0
    for f in fs:
        assert f.price == price  # a resting order fills at its own price
        assert f.fee == (f.qty * f.price * D("0.5") / D(10000)).quantize(FEE_QUANTUM)  # maker = half
        assert (f.ts - T0) / CFG.tick_interval_s == pytest.approx(round((f.ts - T0) / CFG.tick_interval_s))
    assert s.orders["rest"].state is OrderState.FILLED
    assert "rest" not in s.open_ids


def test_queue_ahead_must_trade_before_a_touch_order_fills():
    cfg = quiet_config()
    s = started(cfg)
    q = quote(s, cfg, "QQQ")
    s, _, _ = on_new(s, cfg, order("q", qty=400, price=q.bid, symbol="QQQ"), T0)
    assert s.orders["q"].queue_ahead == AAPL_LEVEL
    traded = D(0)  # seller-initiated market volume printed at our price since we joined
    t = T0
    partial_seen = False
    for _ in range(400):
        t += 0.1
        before = len(s.tape)
        s, reports = advance(s, cfg, t)
        traded += sum(p.qty for p in s.tape[before:] if p.price == q.bid)
        assert quote(s, cfg, "QQQ").bid == q.bid  # the price never moves: no "through" fills
        assert s.orders["q"].filled_qty == min(D(400), max(D(0), traded - AAPL_LEVEL))
        partial_seen |= s.orders["q"].state is OrderState.PARTIALLY_FILLED
        if not s.orders["q"].live:
            break
    assert s.orders["q"].state is OrderState.FILLED
    assert partial_seen and s.orders["q"].fill_count >= 2


def test_order_improving_the_bid_has_no_queue_ahead():
    cfg = quiet_config(spread_ticks=4)
    s = started(cfg)
    q = quote(s, cfg, "QQQ")
    price = q.bid + D("0.01")
    s, _, _ = on_new(s, cfg, order("in", qty=50, price=price, symbol="QQQ"), T0)
    assert s.orders["in"].queue_ahead == 0
    s, reports = _drive_until_filled(s, cfg, "in", T0, dt=0.1, max_steps=200)
    first_sell_print = next(p for p in s.tape if p.price == q.bid)
    assert fills(reports)[0].ts == first_sell_print.ts  # the very first seller print reaches it


def test_resting_order_crossed_through_fills_up_to_one_level_per_tick():
    cfg = quiet_config()
    s = started(cfg)
    q = quote(s, cfg, "QQQ")
    # a buy limit 3 ticks above the ask that found no liquidity (levels=1, depth exhausted first)
    cfg1 = VenueConfig(symbols=(msgspec.structs.replace(cfg.symbols[0], levels=1),))
    s, _, r = on_new(s, cfg1, order("sweep", qty=500, symbol="QQQ"), T0)  # take the only level
    s, _, r = on_new(s, cfg1, order("thru", qty=1200, price=q.ask + D("0.03"), symbol="QQQ"), T0)
    assert fills(r) == [] and s.orders["thru"].live
    s, reports = advance(s, cfg1, T0 + 0.1)
    f = fills(reports, "thru")
    # ask is 3 ticks below the limit: up to 3 displayed levels (1500) -> the whole 1200 at its price
    assert len(f) == 1 and f[0].qty == D(1200) and f[0].price == q.ask + D("0.03")


# -------------------------------------------------------------------------------------------------
# modify


def test_modify_reprices_and_loses_priority():
    s = started()
    q = quote(s, CFG, "AAPL")
    s, _, _ = on_new(s, CFG, order("m", qty=100, price=q.bid - D("0.50")), T0)
    s, _, _ = on_new(s, CFG, order("n", qty=100, price=q.bid - D("0.50")), T0)
    prio = s.orders["m"].priority
    s, ack, _ = on_modify(s, CFG, ModifyOrder(client_order_id="m", new_price=q.bid - D("0.40")), T0 + 0.01)
    assert ack.accepted and ack.new_price == q.bid - D("0.40") and ack.new_qty == D(100)
    assert ack.venue_order_id == s.orders["m"].venue_order_id
    assert on_query(s, QueryOrder(client_order_id="m")).price == q.bid - D("0.40")
    assert s.orders["m"].priority > prio and s.open_ids == ["n", "m"]
    # shrinking keeps priority, growing loses it
    s, ack, _ = on_modify(s, CFG, ModifyOrder(client_order_id="n", new_qty=D(60)), T0 + 0.02)
    assert ack.accepted and s.open_ids == ["n", "m"] and s.orders["n"].qty == D(60)
    s, ack, _ = on_modify(s, CFG, ModifyOrder(client_order_id="n", new_qty=D(80)), T0 + 0.03)
    assert ack.accepted and s.open_ids == ["m", "n"]


def test_modify_to_a_marketable_price_fills_as_taker():
    s = started()
    q = quote(s, CFG, "AAPL")
    s, _, _ = on_new(s, CFG, order("mm", Side.SELL, qty=700, price=q.ask + D("1.00")), T0)
    s, ack, reports = on_modify(s, CFG, ModifyOrder(client_order_id="mm", new_price=q.bid), T0 + 0.01)
    assert ack.accepted
    fs = fills(reports, "mm")
    assert [f.price for f in fs] == [q.bid] and fs[0].qty == AAPL_LEVEL
    assert fs[0].fee == (fs[0].qty * fs[0].price / D(10000)).quantize(FEE_QUANTUM)  # taker
    assert s.orders["mm"].leaves_qty == D(200) and s.open_ids == ["mm"]


def test_modify_refusals():
    s = started()
    q = quote(s, CFG, "AAPL")
    _, ack, _ = on_modify(s, CFG, ModifyOrder(client_order_id="ghost", new_price=q.bid), T0)
    assert not ack.accepted and ack.reason_code is ReasonCode.UNKNOWN_ORDER
    s, _, _ = on_new(s, CFG, order("done", qty=10), T0)  # market: filled at once
    _, ack, _ = on_modify(s, CFG, ModifyOrder(client_order_id="done", new_price=q.bid), T0)
    assert not ack.accepted and ack.reason_code is ReasonCode.UNKNOWN_ORDER
    s, _, _ = on_new(s, CFG, order("pf", qty=600, price=q.ask), T0)  # 490 filled (10 taken above), 110 rest
    assert s.orders["pf"].filled_qty == D(490)
    _, ack, _ = on_modify(s, CFG, ModifyOrder(client_order_id="pf", new_qty=D(490)), T0)
    assert not ack.accepted and ack.reason_code is ReasonCode.VALIDATION_INVALID_QUANTITY
    _, ack, _ = on_modify(s, CFG, ModifyOrder(client_order_id="pf", new_price=D("1.001")), T0)
    assert not ack.accepted and ack.reason_code is ReasonCode.VALIDATION_INVALID_PRICE
    s, _, _ = on_cancel(s, CFG, CancelOrder(client_order_id="pf"), T0)
    _, ack, _ = on_modify(s, CFG, ModifyOrder(client_order_id="pf", new_price=q.bid), T0)
    assert not ack.accepted and ack.reason_code is ReasonCode.UNKNOWN_ORDER


# -------------------------------------------------------------------------------------------------
# cancel


def test_cancel_returns_leaves_and_is_idempotent():
    s = started()
    q = quote(s, CFG, "AAPL")
    s, _, _ = on_new(s, CFG, order("c", qty=800, price=q.ask), T0)  # 500 filled, 300 rest
    s, ack, reports = on_cancel(s, CFG, CancelOrder(client_order_id="c"), T0 + 0.01)
    assert ack.accepted and ack.leaves_qty == D(300) and ack.venue_order_id == "V1"
    (rep,) = [r for r in reports if r.client_order_id == "c"]
    assert rep.kind == "CANCELLED" and rep.qty == rep.leaves_qty == D(300) and rep.cum_qty == D(500)
    assert rep.cum_qty + rep.leaves_qty == s.orders["c"].qty
    assert s.orders["c"].state is OrderState.CANCELLED and s.open_ids == []
    s, again, reports = on_cancel(s, CFG, CancelOrder(client_order_id="c"), T0 + 0.02)
    assert again.accepted and again.leaves_qty == D(300) and reports == []
    # the cancelled order never fills afterwards
    s, reports = advance(s, CFG, T0 + 60)
    assert fills(reports, "c") == []


def test_cancel_closed_or_unknown_is_refused():
    s = started()
    s, _, _ = on_new(s, CFG, order("f", qty=10), T0)
    _, ack, reports = on_cancel(s, CFG, CancelOrder(client_order_id="f"), T0)
    assert not ack.accepted and ack.reject_reason == "already closed" and reports == []
    _, ack, _ = on_cancel(s, CFG, CancelOrder(client_order_id="ghost"), T0)
    assert not ack.accepted and ack.reason_code is ReasonCode.UNKNOWN_ORDER


def test_late_fill_after_cancel_fault():
    cfg = VenueConfig(faults=frozenset({"late_fill_after_cancel"}))
    s = started(cfg)
    q = quote(s, cfg, "AAPL")
    price = q.bid - D("1.00")
    s, _, _ = on_new(s, cfg, order("lf", qty=301, price=price), T0)
    s, ack, reports = on_cancel(s, cfg, CancelOrder(client_order_id="lf"), T0)
    assert [r.kind for r in reports] == ["FILL", "CANCELLED"]
    fill, cancel = reports
    assert fill.qty == D(150) and fill.price == price and fill.cum_qty == D(150) and fill.leaves_qty == D(151)
    assert cancel.qty == cancel.leaves_qty == D(151) and cancel.cum_qty == D(150)
    assert ack.accepted and ack.leaves_qty == D(151)
    # a single lot left: the late fill completes the order and the cancel is too late
    s, _, _ = on_new(s, cfg, order("one", qty=1, price=price), T0)
    s, ack, reports = on_cancel(s, cfg, CancelOrder(client_order_id="one"), T0)
    assert [r.kind for r in reports] == ["FILL"] and not ack.accepted and ack.reject_reason == "already closed"
    assert s.orders["one"].state is OrderState.FILLED and s.open_ids == []


# -------------------------------------------------------------------------------------------------
# faults


def test_disconnect_raises_and_leaves_state_alone():
    cfg = VenueConfig(faults=frozenset({"disconnect"}))
    s = started(cfg)
    before = enc(s)
    with pytest.raises(VenueUnavailable):
        on_new(s, cfg, order("d", qty=1), T0)
    with pytest.raises(VenueUnavailable):
        on_modify(s, cfg, ModifyOrder(client_order_id="d", new_price=D(1)), T0)
    with pytest.raises(VenueUnavailable):
        on_cancel(s, cfg, CancelOrder(client_order_id="d"), T0)
    assert isinstance(VenueUnavailable("x"), ConnectionError)
    assert enc(s) == before


def test_drop_ack_fault_accepts_but_says_do_not_reply():
    cfg = VenueConfig(faults=frozenset({"drop_ack"}))
    s = started(cfg)
    s, ack, reports = on_new(s, cfg, order("da", qty=10), T0)
    assert ack.accepted and fills(reports) and not should_reply(cfg, "new", ack)
    s, bad, _ = on_new(s, cfg, order("db", qty=10, symbol="NOPE"), T0)
    assert should_reply(cfg, "new", bad)  # rejections are always answered
    assert s.dropped_acks == 1
    assert should_reply(CFG, "new", ack)
    only_new = VenueConfig(faults=frozenset({"drop_ack:new"}))
    assert not should_reply(only_new, "new", ack) and should_reply(only_new, "cancel", ack)


# -------------------------------------------------------------------------------------------------
# persistence


def test_state_round_trips_through_msgspec_json_and_continues_identically():
    s, _, _ = scenario(CFG)
    q = quote(s, CFG, "AAPL")
    s, _, _ = on_new(s, CFG, order("after", qty=250, price=q.bid), T0 + 20)
    raw = msgspec.json.encode(s)
    restored = msgspec.json.decode(raw, type=VenueState)
    assert restored == s
    assert msgspec.json.encode(restored) == raw
    a, ra = advance(s, CFG, T0 + 40)
    b, rb = advance(restored, CFG, T0 + 40)
    assert ra == rb and enc(a) == enc(b)


# -------------------------------------------------------------------------------------------------
# query / quote


def test_query():
    s = started()
    assert on_query(s, QueryOrder(client_order_id="none")).found is False
    q = quote(s, CFG, "AAPL")
    s, _, _ = on_new(s, CFG, order("qq", qty=700, price=q.ask), T0)
    status = on_query(s, QueryOrder(client_order_id="qq"))
    assert status.found and status.venue_order_id == "V1" and status.state is OrderState.PARTIALLY_FILLED
    assert status.qty == D(700) and status.filled_qty == AAPL_LEVEL and status.price == q.ask


@pytest.mark.parametrize("symbol", ["AAPL", "MSFT", "TSLA", "005930", "BTC-USD"])
def test_quote_is_mid_with_spread_on_ticks(symbol):
    s, _ = advance(started(), CFG, T0 + 5)
    info = quote(s, CFG, symbol)
    spec = next(x for x in CFG.symbols if x.symbol == symbol)
    assert info.reference_price == s.mids[symbol]
    assert info.lot_size == spec.lot_size and info.tick_size == spec.tick_size
    assert info.ask - info.bid == spec.tick_size * spec.spread_ticks
    assert info.bid + info.ask == 2 * info.reference_price
    assert info.bid % spec.tick_size == 0 and info.ask % spec.tick_size == 0
    with pytest.raises(KeyError):
        quote(s, CFG, "NOPE")


# -------------------------------------------------------------------------------------------------
# market data: tape, VWAP, volume profile, latency


def test_tape_is_bounded_and_interval_vwap_is_within_prints():
    cfg = VenueConfig(tape_limit=300)
    s, _ = advance(started(cfg), cfg, T0 + 30)  # 300 steps x 5 symbols of prints
    assert len(s.tape) == 300
    assert all(a.ts <= b.ts for a, b in zip(s.tape, s.tape[1:]))
    prints = [p for p in s.tape if p.symbol == "AAPL" and T0 + 25 <= p.ts <= T0 + 30]
    vwap = interval_vwap(s, "AAPL", T0 + 25, T0 + 30)
    assert prints and vwap is not None
    assert min(p.price for p in prints) <= vwap <= max(p.price for p in prints)
    exact = sum(p.price * p.qty for p in prints) / sum(p.qty for p in prints)
    assert abs(vwap - exact) < D("0.000001")
    assert interval_vwap(s, "AAPL", T0 + 100, T0 + 200) is None
    assert s.volume["AAPL"] > 0


def test_tape_does_not_depend_on_client_orders():
    quiet, _ = advance(started(), CFG, T0 + 10)
    busy = started()
    busy, _, _ = on_new(busy, CFG, order("x", qty=3000), T0 + 1)
    busy, _ = advance(busy, CFG, T0 + 10)
    assert quiet.tape == busy.tape and quiet.mids == busy.mids


@FAST
@given(st.integers(min_value=1, max_value=400), st.sampled_from(["AAPL", "005930", "BTC-USD", "ANY"]),
       st.integers(min_value=0, max_value=10**6))
def test_volume_profile_sums_exactly_to_one(buckets, symbol, seed):
    cfg = VenueConfig(seed=seed)
    prof = volume_profile(cfg, symbol, buckets)
    assert len(prof) == buckets
    assert sum(prof) == D(1)
    assert all(p > 0 for p in prof)
    assert prof == volume_profile(VenueConfig(seed=seed), symbol, buckets)


def test_volume_profile_is_u_shaped_and_per_symbol():
    prof = volume_profile(CFG, "AAPL", 26)
    middle = min(prof[8:18])
    assert prof[0] > D("1.5") * middle and prof[-1] > D("1.5") * middle
    assert prof != volume_profile(CFG, "MSFT", 26)
    with pytest.raises(ValueError):
        volume_profile(CFG, "AAPL", 0)


def test_latency_is_deterministic_and_follows_the_distribution():
    draws = sorted(latency_s(CFG, "new", f"c{i}") for i in range(2000))
    assert draws == sorted(latency_s(VenueConfig(), "new", f"c{i}") for i in range(2000))
    assert all(d > 0 for d in draws)
    median, p99 = draws[1000], draws[1980]
    assert median == pytest.approx(0.0002, rel=0.15)
    assert p99 == pytest.approx(0.0010, rel=0.3)
    assert latency_s(CFG, "new", "k") != latency_s(VenueConfig(seed=8), "new", "k")
    assert latency_s(CFG, "cancel", "k") != latency_s(CFG, "new", "k")
    with pytest.raises(ValueError):
        latency_s(CFG, "teleport", "k")


def test_max_catchup_steps_skips_a_long_gap_but_keeps_the_step_path():
    cfg = VenueConfig(max_catchup_steps=50)
    s, _ = advance(started(cfg), cfg, T0 + 3600)
    assert s.step == 50 and s.origin == pytest.approx(T0 + 3600 - 5.0)
    exact, _ = advance(started(), CFG, T0 + 5)
    assert s.mids == exact.mids  # mid at step 50 is the same as without the cap


# -------------------------------------------------------------------------------------------------
# invariants over random call sequences

_ops = st.lists(
    st.tuples(
        st.sampled_from(["new_mkt", "new_lmt", "modify", "cancel", "advance"]),
        st.sampled_from(["AAPL", "BTC-USD"]),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(min_value=1, max_value=1800),  # lots
        st.integers(min_value=-8, max_value=8),  # ticks from the touch
        st.floats(min_value=0.0, max_value=1.5, allow_nan=False),  # time passing
        st.integers(min_value=0, max_value=30),  # which earlier order to touch
    ),
    min_size=1,
    max_size=40,
)


def _run(ops, config):
    s = started(config)
    t = T0
    specs = {x.symbol: x for x in config.symbols}
    trace = []
    ids: list[str] = []
    for i, (kind, sym, side, lots, ticks, dt, pick) in enumerate(ops):
        t += dt
        spec = specs[sym]
        before = enc(s)
        if kind in ("new_mkt", "new_lmt"):
            q = quote(s, config, sym)
            touch = q.bid if side is Side.BUY else q.ask
            price = None if kind == "new_mkt" else max(touch + spec.tick_size * ticks, spec.tick_size)
            coid = f"o{i}"
            ids.append(coid)
            s2, ack, reports = on_new(s, config, order(coid, side, spec.lot_size * lots, price, sym), t)
        elif kind in ("modify", "cancel") and ids:
            coid = ids[pick % len(ids)]
            if kind == "modify":
                o = s.orders[coid]
                spec = specs[o.symbol]
                base = o.price if o.price is not None else spec.reference_price
                req = ModifyOrder(client_order_id=coid, new_price=max(base + spec.tick_size * ticks, spec.tick_size))
                s2, ack, reports = on_modify(s, config, req, t)
            else:
                s2, ack, reports = on_cancel(s, config, CancelOrder(client_order_id=coid), t)
        else:
            s2, reports = advance(s, config, t)
            ack = None
        assert enc(s) == before  # inputs are never mutated
        trace.append((ack, reports))
        s = s2
    return s, trace


@FAST
@given(_ops)
def test_invariants_hold_for_any_call_sequence(ops):
    s, trace = _run(ops, CFG)
    specs = {x.symbol: x for x in CFG.symbols}
    seen_trades = set()
    filled: dict[str, D] = {}
    for _, reports in trace:
        for r in reports:
            o = s.orders[r.client_order_id]
            spec = specs[o.symbol]
            assert r.cum_qty + r.leaves_qty == o.qty  # (_run never changes a quantity)
            if r.kind == "FILL":
                assert r.trade_id not in seen_trades
                seen_trades.add(r.trade_id)
                assert r.qty > 0 and r.qty % spec.lot_size == 0 and r.price % spec.tick_size == 0
                assert r.fee >= 0 and r.fee == r.fee.quantize(FEE_QUANTUM)
                filled[r.client_order_id] = filled.get(r.client_order_id, D(0)) + r.qty
                assert r.cum_qty == filled[r.client_order_id]
            else:
                assert r.kind == "CANCELLED" and r.qty == r.leaves_qty > 0
    for coid, o in s.orders.items():
        assert o.filled_qty == filled.get(coid, D(0)) <= o.qty
        assert o.fill_count == len([t for t in seen_trades if t.startswith(f"{coid}-T")])
        if o.state is OrderState.FILLED:
            assert o.filled_qty == o.qty
        if o.state is OrderState.CANCELLED:
            assert o.filled_qty + o.cancelled_qty == o.qty
    assert s.open_ids == [coid for coid in s.open_ids if s.orders[coid].live]
    assert set(s.open_ids) == {coid for coid, o in s.orders.items() if o.live}
    assert msgspec.json.decode(enc(s), type=VenueState) == s


@FAST
@given(_ops)
def test_any_call_sequence_is_deterministic(ops):
    s1, t1 = _run(ops, CFG)
    s2, t2 = _run(ops, VenueConfig())
    assert t1 == t2 and enc(s1) == enc(s2)


@FAST
@given(
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(min_value=1, max_value=6000),
    st.integers(min_value=-3, max_value=12),
    st.sampled_from(["AAPL", "TSLA", "005930", "BTC-USD"]),
)
def test_limit_fills_never_worse_than_the_limit(side, lots, ticks, sym):
    spec = next(x for x in CFG.symbols if x.symbol == sym)
    s = started()
    q = quote(s, CFG, sym)
    price = q.ask + spec.tick_size * ticks if side is Side.BUY else q.bid - spec.tick_size * ticks
    s, ack, reports = on_new(s, CFG, order("L", side, spec.lot_size * lots, price, sym), T0)
    s, more = advance(s, CFG, T0 + 20)
    fs = fills(reports + more, "L")
    for f in fs:
        assert f.price <= price if side is Side.BUY else f.price >= price
    assert sum((f.qty for f in fs), D(0)) == s.orders["L"].filled_qty
