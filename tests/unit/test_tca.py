"""TCA math with worked numbers, batch aggregation, and properties."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, settings, strategies as st

from core.tca import MarketWindow, TcaChild, TcaExecution, TcaFill, batch_tca, bps, execution_tca, percentile, plain, time_weighted_mid
from schemas.enums import Side


def ex(side=Side.BUY, fills=((D(40), D("100.10")), (D(60), D("100.20"))), arrival=D("100.00"), market=None, target=D(100), **kw):
    return TcaExecution(
        correlation_id="x1",
        symbol="AAPL",
        side=side,
        strategy_id="s1",
        state=kw.pop("state", "COMPLETE"),
        target_qty=target,
        arrival_price=arrival,
        created_at=1000.0,
        first_ack_at=1000.010,
        first_fill_at=1000.015,
        completed_at=1002.0,
        fills=tuple(TcaFill(ts=1000.5, qty=q, price=p, fee=D("0.10")) for q, p in fills),
        market=market,
        **kw,
    )


def test_worked_example_buy():
    # avg = (40*100.10 + 60*100.20) / 100 = 100.16; arrival 100.00 → +16 bps (a cost)
    t = execution_tca(ex(market=MarketWindow(t0=1000.0, t1=1002.0, vwap=D("100.08"), volume=D(900), prints=12)))
    assert t.avg_price == D("100.16")
    assert t.arrival_slippage_bps == D("16.0000")
    assert t.arrival_cost == D("16")  # (10016 - 10000) money
    # vs VWAP 100.08: (100.16 - 100.08) / 100.08 * 1e4 = 7.993605...
    assert t.vwap_slippage_bps == D("7.9936") and t.vwap_source == "venue_tape"
    assert t.participation_rate == D("0.1")  # 100 / (900 + 100)
    assert t.fill_rate == 1 and t.filled_qty == 100 and t.notional == D("10016.00")
    assert t.fees == D("0.20") and t.fees_bps == (D("0.20") / D("10016") * 10000).quantize(D("0.0001"))
    assert t.completion_s == 2.0
    assert t.latency_ms == {"intent_to_ack": 10.0, "ack_to_first_fill": 5.0, "first_fill_to_done": 1985.0, "intent_to_first_fill": 15.0, "intent_to_done": 2000.0}


def test_worked_example_sell_sign_convention():
    # selling below the arrival mid is a cost: (100.00 - 99.90) / 100 * 1e4 = +10 bps
    t = execution_tca(ex(side=Side.SELL, fills=((D(100), D("99.90")),)))
    assert t.arrival_slippage_bps == D("10.0000") and t.arrival_cost == D("10")
    better = execution_tca(ex(side=Side.SELL, fills=((D(100), D("100.05")),)))
    assert better.arrival_slippage_bps == D("-5.0000")


def test_quote_twap_stands_in_without_the_tape_and_participation_is_unknown():
    mids = ((999.0, D("100.00")), (1001.0, D("100.10")))  # 100.00 for 1 s, 100.10 for 1 s
    t = execution_tca(ex(market=MarketWindow(t0=999.0, t1=1003.0, mids=mids)))
    assert t.interval_vwap == D("100.05") and t.vwap_source == "quote_twap"
    assert t.participation_rate is None and t.market_volume is None
    empty_tape = execution_tca(ex(market=MarketWindow(t0=999.0, t1=1003.0, volume=D(0), mids=mids)))
    assert empty_tape.participation_rate is None


def test_partial_fill_children_cancel_replace_and_rejects():
    children = (
        TcaChild(client_order_id="a", qty=D(50), state="FILLED", sent=True, replaces=2),
        TcaChild(client_order_id="b", qty=D(30), state="CANCELLED", sent=True, client_cancelled=True),
        TcaChild(client_order_id="c", qty=D(10), state="REJECTED", sent=True, reject_reason="VENUE_REJECTED"),
        TcaChild(client_order_id="d", qty=D(10), state="FAILED", sent=True, reject_reason="VENUE_TIMEOUT"),
        TcaChild(client_order_id="e", qty=D(10), state="CANCELLED", sent=False),
    )
    t = execution_tca(ex(fills=((D(50), D("100")),), children=children))
    assert t.fill_rate == D("0.5") and t.children == 5 and t.orders_sent == 4
    assert t.client_cancels == 1 and t.replaces == 2 and t.cancel_replace_ratio == D("0.75")
    assert t.rejects == {"VENUE_REJECTED": 1, "VENUE_TIMEOUT": 1}


def test_no_fills_no_prices():
    t = execution_tca(ex(fills=(), state="FAILED", reason_code="INSUFFICIENT_CAPITAL"))
    assert t.avg_price is None and t.arrival_slippage_bps is None and t.fill_rate == 0 and t.fees_bps is None
    b = batch_tca([t])
    assert b.failed_by_reason == {"INSUFFICIENT_CAPITAL": 1} and b.arrival_slippage_bps is None


def test_fill_overtaking_its_ack_gives_no_negative_leg():
    x = ex()
    x = type(x)(**{**{f: getattr(x, f) for f in x.__struct_fields__}, "first_ack_at": 1000.020, "first_fill_at": 1000.015})
    lat = execution_tca(x).latency_ms
    assert lat["ack_to_first_fill"] is None and lat["intent_to_first_fill"] == 15.0


def test_batch_is_notional_weighted_with_percentiles():
    a = execution_tca(ex(fills=((D(100), D("100.10")),)))  # +10 bps on 10010
    b = execution_tca(ex(side=Side.SELL, fills=((D(100), D("100.20")),)))  # -20 bps on 10020
    batch = batch_tca([a, b])
    expect = (D("10.0000") * D("10010.00") + D("-20.0000") * D("10020.00")) / D("20030.00")
    assert batch.arrival_slippage_bps == expect.quantize(D("0.0001"))
    assert batch.executions == 2 and batch.states == {"COMPLETE": 2} and batch.fully_filled == 2
    assert batch.latency_ms["intent_to_done"] == {"n": 2, "p50": 2000.0, "p90": 2000.0, "p99": 2000.0, "max": 2000.0}
    assert batch.filled_notional == D("20030.00") and batch.arrival_cost == D("-10")


def test_percentile_nearest_rank():
    vals = [15, 20, 35, 40, 50]
    assert percentile(vals, 30) == 20 and percentile(vals, 40) == 20 and percentile(vals, 50) == 35 and percentile(vals, 100) == 50
    assert percentile([], 50) is None and percentile([7], 99) == 7


def test_time_weighted_mid_edges():
    assert time_weighted_mid([], 0, 1) is None
    assert time_weighted_mid([(5.0, D("10"))], 0, 1) is None  # nothing at or before the window end
    assert time_weighted_mid([(0.0, D("10"))], 1, 3) == D("10")
    assert time_weighted_mid([(0.0, D("10")), (2.0, D("12"))], 1, 3) == D("11")


def test_plain():
    assert plain(D("75100.0000000")) == D("75100") and str(plain(D("75100.0000000"))) == "75100"
    assert str(plain(D("190.039999999999"))) == "190.04"


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10**6), st.integers(1, 10**6))
def test_bps_is_antisymmetric_in_side(price_cents, ref_cents):
    p, r = D(price_cents) / 100, D(ref_cents) / 100
    assert bps(Side.BUY, p, r) == -bps(Side.SELL, p, r)
    assert (bps(Side.BUY, p, r) > 0) == (p > r)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50), st.floats(1, 100))
def test_percentile_is_an_element_and_monotonic(vals, p):
    v = percentile(vals, p)
    assert v in vals
    assert percentile(vals, min(100.0, p + 10)) >= v


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 100), st.integers(9000, 11000)), min_size=1, max_size=20))
def test_avg_price_between_min_and_max_fill_price(fills):
    t = execution_tca(ex(fills=tuple((D(q), D(p) / 100) for q, p in fills), target=D(sum(q for q, _ in fills))))
    prices = [D(p) / 100 for _, p in fills]
    assert min(prices) <= t.avg_price <= max(prices)
    assert t.fill_rate == 1


def test_rejects_side_strings():
    with pytest.raises(ValueError):
        bps("HOLD", D(1), D(1))
