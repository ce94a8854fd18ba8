"""core.adjust: AdaptiveAdjust decisions (B7 reworked: tick steps, one threshold set, adverse slippage)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from core.adjust import AdjustAction, AdjustConfig, AdjustDecision, adverse_slippage, decide_adjust
from schemas.enums import AlertCode, OrderType, Severity, Side
from schemas.messages import ChildOrder

D = Decimal
TICK = D(100)


def child(price: Any = 75000, side: Side = Side.BUY, cid: str = "c0", order_type: OrderType = OrderType.LIMIT,
          qty: Any = 40) -> ChildOrder:  # fmt: skip
    return ChildOrder(
        client_order_id=cid,
        index=0,
        symbol="005930",
        side=side,
        qty=D(qty),
        order_type=order_type,
        price=D(price) if price is not None else None,
    )


def decide(
    side: Side = Side.BUY,
    children: list[ChildOrder] | None = None,
    arrival: Any = 75000,
    bid: Any = 74900,
    ask: Any = 75100,
    tick: Decimal = TICK,
    round: int = 0,  # noqa: A002
    config: AdjustConfig | None = None,
    **kw: Any,
) -> AdjustDecision:
    return decide_adjust(
        side,
        children if children is not None else [child(side=side)],
        D(arrival) if arrival is not None else None,
        D(bid) if bid is not None else None,
        D(ask) if ask is not None else None,
        tick,
        round,
        config,
        **kw,
    )


# ------------------------------------------------------------------ rounds


@pytest.mark.parametrize("rnd", [3, 4, 10])
def test_max_rounds_escapes_with_fs094(rnd: int) -> None:
    d = decide(round=rnd, now=7.0)
    assert d.action is AdjustAction.ESCAPE and d.new_prices == {}
    assert [a.code for a in d.alerts] == [AlertCode.FS094]
    a = d.alerts[0]
    assert a.severity is Severity.FAIL_SAFE and a.stage == "ADJUSTING" and a.ts == 7.0
    assert "max adjustment rounds reached" in a.message


@pytest.mark.parametrize("rnd", [0, 1, 2])
def test_rounds_below_max_still_adjust(rnd: int) -> None:
    d = decide(children=[child(74500)], round=rnd)
    assert d.action is AdjustAction.PRICE_IMPROVE and d.alerts == ()


def test_max_rounds_from_config() -> None:
    assert decide(round=1, config=AdjustConfig(max_rounds=1)).action is AdjustAction.ESCAPE
    assert decide(round=0, config=AdjustConfig(max_rounds=0)).action is AdjustAction.ESCAPE


# ------------------------------------------------------------------ price rule


def test_buy_moves_up_to_the_ask() -> None:
    d = decide()  # 75000, ask 75100, round 0: +1 tick
    assert d.action is AdjustAction.PRICE_IMPROVE and d.new_prices == {"c0": D(75100)}


def test_sell_moves_down_to_the_bid() -> None:
    d = decide(Side.SELL)
    assert d.action is AdjustAction.PRICE_IMPROVE and d.new_prices == {"c0": D(74900)}


def test_steps_grow_with_round_and_cross_at_most_one_tick() -> None:
    # BUY 74800, ask 74900: round 0 -> 74900, round 1 -> 75000 (ask + 1 tick), round 2 capped at 75000
    kids = [child(74800)]
    assert decide(children=kids, ask=74900, round=0).new_prices == {"c0": D(74900)}
    assert decide(children=kids, ask=74900, round=1).new_prices == {"c0": D(75000)}
    assert decide(children=kids, ask=74900, round=2).new_prices == {"c0": D(75000)}
    # SELL mirror: 75200, bid 75100
    kids = [child(75200, Side.SELL)]
    assert decide(Side.SELL, kids, bid=75100, round=0).new_prices == {"c0": D(75100)}
    assert decide(Side.SELL, kids, bid=75100, round=2).new_prices == {"c0": D(75000)}


def test_tick_steps_per_round() -> None:
    cfg = AdjustConfig(tick_steps_per_round=2)
    # round 1 -> 4 ticks up, cap = ask + 2 ticks
    d = decide(children=[child(74000)], arrival=74500, ask=74300, round=1, config=cfg)
    assert d.new_prices == {"c0": D(74400)}
    d = decide(children=[child(74000)], arrival=74500, ask=74500, round=1, config=cfg)
    assert d.new_prices == {"c0": D(74400)}


def test_already_at_or_through_cap_waits() -> None:
    d = decide(children=[child(75200)], ask=75100)  # cap 75200 == current
    assert d.action is AdjustAction.WAIT and d.new_prices == {} and d.alerts == ()


def test_quote_on_the_wrong_side_never_moves_price_back() -> None:
    """B7's 'BUY ask 74000 -> WAIT + GR063' becomes a plain WAIT: we never move a BUY down."""
    d = decide(ask=74000)
    assert d.action is AdjustAction.WAIT and d.new_prices == {} and d.alerts == ()
    d = decide(Side.SELL, bid=76000)
    assert d.action is AdjustAction.WAIT and d.new_prices == {} and d.alerts == ()


def test_missing_quote_waits() -> None:
    assert decide(ask=None).action is AdjustAction.WAIT
    assert decide(Side.SELL, bid=None).action is AdjustAction.WAIT
    assert decide(bid=None).action is AdjustAction.PRICE_IMPROVE  # BUY only needs the ask


def test_market_children_are_not_repriced() -> None:
    d = decide(children=[child(None, order_type=OrderType.MARKET)])
    assert d.action is AdjustAction.WAIT and d.new_prices == {}
    kids = [child(None, cid="m", order_type=OrderType.MARKET), child(75000, cid="l")]
    d = decide(children=kids)
    assert d.action is AdjustAction.PRICE_IMPROVE and d.new_prices == {"l": D(75100)}


def test_no_children_waits() -> None:
    assert decide(children=[]).action is AdjustAction.WAIT


def test_several_children() -> None:
    kids = [child(75000, cid="a"), child(74900, cid="b"), child(75100, cid="c")]
    d = decide(children=kids, ask=75100)
    assert d.new_prices == {"a": D(75100), "b": D(75000), "c": D(75200)}


def test_off_grid_price_rounds_to_tick() -> None:
    d = decide(children=[child(75050)], ask=75100)  # 75150 -> floor 75100
    assert d.new_prices == {"c0": D(75100)}
    d = decide(Side.SELL, [child(74950, Side.SELL)], bid=74900)  # 74850 -> ceil 74900
    assert d.new_prices == {"c0": D(74900)}


def test_sell_never_below_one_tick() -> None:
    d = decide(Side.SELL, [child("0.02", Side.SELL)], arrival="0.02", bid="0.01", tick=D("0.01"),
               config=AdjustConfig(slippage_warn_pct=D(1), slippage_max_pct=D(1)))  # fmt: skip
    assert d.new_prices == {"c0": D("0.01")}
    d = decide(Side.SELL, [child("0.01", Side.SELL)], arrival="0.02", bid="0.01", tick=D("0.01"),
               config=AdjustConfig(slippage_warn_pct=D(1), slippage_max_pct=D(1)))  # fmt: skip
    assert d.action is AdjustAction.WAIT


# ------------------------------------------------------------------ slippage (one threshold set)


def test_gr063_warn_waits() -> None:
    d = decide(children=[child(75200)], ask=75300, now=3.0)  # 75300 vs 75000 = 0.4 %
    assert d.action is AdjustAction.WAIT and d.new_prices == {}
    assert [a.code for a in d.alerts] == [AlertCode.GR063]
    assert d.alerts[0].severity is Severity.GUARDRAIL and d.alerts[0].stage == "ADJUSTING" and d.alerts[0].ts == 3.0


def test_exactly_warn_threshold_improves() -> None:
    d = decide(children=[child(75200)], ask=75225, tick=D(25))  # 75225 = exactly 0.3 %
    assert d.action is AdjustAction.PRICE_IMPROVE and d.new_prices == {"c0": D(75225)}


def test_exactly_max_threshold_only_warns() -> None:
    d = decide(children=[child(75350)], ask=75375, tick=D(25))  # exactly 0.5 %
    assert d.action is AdjustAction.WAIT and [a.code for a in d.alerts] == [AlertCode.GR063]


def test_fs094_max_slippage_escapes() -> None:
    d = decide(children=[child(75400)], ask=75500)  # 0.667 %
    assert d.action is AdjustAction.ESCAPE and d.new_prices == {}
    assert [a.code for a in d.alerts] == [AlertCode.FS094] and d.alerts[0].severity is Severity.FAIL_SAFE


def test_sell_slippage_mirrors() -> None:
    d = decide(Side.SELL, [child(74800, Side.SELL)], bid=74700)  # 74700 vs 75000 = 0.4 %
    assert d.action is AdjustAction.WAIT and [a.code for a in d.alerts] == [AlertCode.GR063]
    d = decide(Side.SELL, [child(74600, Side.SELL)], bid=74500)
    assert d.action is AdjustAction.ESCAPE


def test_worst_child_decides() -> None:
    d = decide(children=[child(75000, cid="a"), child(75200, cid="b")], ask=75300)
    assert d.action is AdjustAction.WAIT and d.new_prices == {}


def test_moving_toward_arrival_is_not_slippage() -> None:
    """A passive BUY far below arrival improves freely: slippage is adverse-only."""
    d = decide(children=[child(74000)], ask=74100)
    assert d.action is AdjustAction.PRICE_IMPROVE and d.new_prices == {"c0": D(74100)}


def test_without_arrival_the_current_price_is_the_reference() -> None:
    assert decide(arrival=None).action is AdjustAction.PRICE_IMPROVE  # 75100 vs 75000
    d = decide(children=[child(74000)], arrival=None, ask=74500, round=2)  # 74300 vs 74000: 0.405 %
    assert d.action is AdjustAction.WAIT and [a.code for a in d.alerts] == [AlertCode.GR063]


def test_custom_thresholds() -> None:
    cfg = AdjustConfig(slippage_warn_pct=D("0.01"), slippage_max_pct=D("0.02"))
    assert decide(children=[child(75400)], ask=75500, config=cfg).action is AdjustAction.PRICE_IMPROVE


def test_adverse_slippage() -> None:
    assert adverse_slippage(Side.BUY, D(75000), D(75300)) == D("0.004")
    assert adverse_slippage(Side.BUY, D(75000), D(74000)) == 0
    assert adverse_slippage(Side.SELL, D(75000), D(74700)) == D("0.004")
    assert adverse_slippage(Side.SELL, D(75000), D(76000)) == 0
    assert adverse_slippage(Side.BUY, D(0), D(1)) == 0


# ------------------------------------------------------------------ contract


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        decide(tick=D(0))
    with pytest.raises(ValueError):
        decide(round=-1)
    with pytest.raises(ValueError):
        AdjustConfig(tick_steps_per_round=0)
    with pytest.raises(ValueError):
        AdjustConfig(slippage_warn_pct=D("0.01"), slippage_max_pct=D("0.005"))


def test_defaults_and_wire_strings() -> None:
    c = AdjustConfig()
    assert (c.max_rounds, c.tick_steps_per_round) == (3, 1)
    assert (c.slippage_warn_pct, c.slippage_max_pct) == (D("0.003"), D("0.005"))
    assert [a.value for a in AdjustAction] == ["PRICE_IMPROVE", "WAIT", "ESCAPE"]
    assert AdjustAction.WAIT == "WAIT"
    doc = json.loads(msgspec.json.encode(decide()))
    assert doc["action"] == "PRICE_IMPROVE" and doc["new_prices"] == {"c0": "75100"}


# ------------------------------------------------------------------ properties

ticks = st.sampled_from([D("0.01"), D("0.5"), D(1), D(25), D(100)])


@settings(max_examples=300)
@given(
    side=st.sampled_from(list(Side)),
    tick=ticks,
    base=st.integers(1, 20_000),
    offs=st.lists(st.integers(-5, 5), min_size=1, max_size=5),
    off_grid=st.booleans(),
    bid_off=st.none() | st.integers(-8, 8),
    spread=st.integers(1, 10),
    arrival_off=st.none() | st.integers(-100, 100),
    rnd=st.integers(0, 4),
    steps=st.integers(1, 3),
)
def test_prices_only_improve_and_stay_on_tick(
    side: Side, tick: Decimal, base: int, offs: list[int], off_grid: bool, bid_off: int | None, spread: int,
    arrival_off: int | None, rnd: int, steps: int,
) -> None:  # fmt: skip
    cur_ticks = [max(1, base + o) for o in offs]  # children close together, quotes near them
    kids = [
        child(c * tick + (tick / 3 if off_grid else 0), side, cid=f"c{i}") for i, c in enumerate(cur_ticks)
    ]
    bid_t = max(1, base + bid_off) if bid_off is not None else None
    bid = bid_t * tick if bid_t is not None else None
    ask = (bid_t + spread) * tick if bid_t is not None else None
    arrival = max(1, base + arrival_off) * tick if arrival_off is not None else None
    cfg = AdjustConfig(tick_steps_per_round=steps)
    d = decide_adjust(side, kids, arrival, bid, ask, tick, rnd, cfg)
    event(d.action.value)
    by_id = {k.client_order_id: k for k in kids}
    if rnd >= cfg.max_rounds:
        assert d.action is AdjustAction.ESCAPE and [a.code for a in d.alerts] == [AlertCode.FS094]
    if d.action is not AdjustAction.PRICE_IMPROVE:
        assert d.new_prices == {}
        return
    assert d.new_prices and d.alerts == ()
    for cid, new in d.new_prices.items():
        cur = by_id[cid].price
        assert cur is not None and ask is not None and bid is not None
        assert new % tick == 0
        assert new > 0
        if side is Side.BUY:
            assert new > cur  # never down
            assert new <= ask + steps * tick  # crosses the touch by at most tick_steps_per_round
            assert new <= cur + (rnd + 1) * steps * tick
        else:
            assert new < cur  # never up
            assert new >= bid - steps * tick or new == tick
            assert new >= cur - (rnd + 1) * steps * tick
        ref = arrival if arrival is not None else cur
        assert adverse_slippage(side, ref, new) <= cfg.slippage_warn_pct


@given(side=st.sampled_from(list(Side)), rnd=st.integers(0, 10), max_rounds=st.integers(0, 5))
def test_escape_exactly_when_rounds_run_out(side: Side, rnd: int, max_rounds: int) -> None:
    d = decide(side, round=rnd, config=AdjustConfig(max_rounds=max_rounds))
    if rnd >= max_rounds:
        assert d.action is AdjustAction.ESCAPE
    else:
        assert d.action is not AdjustAction.ESCAPE  # default quotes: one tick, 0.13 % slippage
