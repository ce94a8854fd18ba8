"""core.precheck: the seed's six checks (B3) plus ours, in order, and the daily counter helpers."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from core.precheck import (
    LIVE_NO_VENUE_DETAIL,
    LIVE_NOT_ENABLED_DETAIL,
    DailyCounter,
    PrecheckConfig,
    PrecheckContext,
    PrecheckOutcome,
    StrategyLimits,
    daily_bucket,
    minute_of_day_utc,
    run_precheck,
)
from core.risk import RiskHookConfig, RiskResult, evaluate_risk
from core.symbols import Session, SymbolSpec
from schemas.enums import (
    AlertCode,
    ExecutionMode,
    OrderType,
    ReasonCode,
    RiskDecision,
    SafetyState,
    Severity,
    Side,
)
from schemas.messages import Intent

D = Decimal
SPEC = SymbolSpec(symbol="005930", reference_price=D(75000), tick_size=D(100))
BTC = SymbolSpec(symbol="BTC-USD", reference_price=D(65000), lot_size=D("0.001"), tick_size=D("0.5"))
ALLOW = RiskResult(decision=RiskDecision.ALLOW, reason="ok")


def intent(
    qty: Any = 100, price: Any = 75000, side: Side = Side.BUY, order_type: OrderType = OrderType.LIMIT,
    symbol: str = "005930",
) -> Intent:  # fmt: skip
    return Intent(
        symbol=symbol,
        side=side,
        qty=D(qty),
        order_type=order_type,
        strategy_id="s1",
        price=D(price) if price is not None and order_type is OrderType.LIMIT else None,
    )


def ctx(**kw: Any) -> PrecheckContext:
    base: dict[str, Any] = dict(
        safety_state=SafetyState.NORMAL,
        mode=ExecutionMode.PAPER,
        venue_connected=True,
        spec=SPEC,
        minute_of_day=600,
        risk=ALLOW,
        available_capital=D(10_000_000),
        reference_price=D(75000),
    )
    base.update(kw)
    for k in ("available_capital", "reference_price", "position_qty", "daily_notional"):
        if isinstance(base.get(k), (int, str)):
            base[k] = D(base[k])
    return PrecheckContext(**base)


def run(it: Intent | None = None, config: PrecheckConfig | None = None, **kw: Any) -> PrecheckOutcome:
    return run_precheck(it if it is not None else intent(), ctx(**kw), config)


def codes(out: PrecheckOutcome) -> list[AlertCode]:
    return [a.code for a in out.alerts]


# ------------------------------------------------------------------ pass


def test_happy_path() -> None:
    out = run()
    assert out == PrecheckOutcome(passed=True, reason_code=None, detail="", qty=D(100), alerts=(), pause=False)


def test_market_order_passes() -> None:
    out = run(intent(50, order_type=OrderType.MARKET))
    assert out.passed and out.qty == D(50) and out.alerts == ()


# ------------------------------------------------------------------ 0) live governance


@pytest.mark.parametrize("switches", [(False, False), (True, False), (False, True)])
def test_live_needs_both_switches(switches: tuple[bool, bool]) -> None:
    out = run(mode=ExecutionMode.LIVE, live_switches=switches)
    assert not out.passed and out.reason_code is ReasonCode.POLICY_LIVE_NOT_ENABLED
    assert out.detail == LIVE_NOT_ENABLED_DETAIL
    assert out.detail == (
        "live execution is governance-blocked: set both the config flag and the environment variable"
    )


def test_live_with_both_switches_and_a_live_venue_passes() -> None:
    assert run(mode=ExecutionMode.LIVE, live_switches=(True, True), live_venue=True).passed


def test_live_without_a_live_venue_is_refused_even_with_both_switches() -> None:
    out = run(mode=ExecutionMode.LIVE, live_switches=(True, True))
    assert not out.passed and out.reason_code is ReasonCode.POLICY_LIVE_NOT_ENABLED
    assert out.detail == LIVE_NO_VENUE_DETAIL and "no live venue" in out.detail


@pytest.mark.parametrize("mode", [ExecutionMode.PAPER, ExecutionMode.SHADOW])
def test_non_live_modes_ignore_switches(mode: ExecutionMode) -> None:
    assert run(mode=mode, live_switches=(False, False)).passed


# ------------------------------------------------------------------ 1) safety


@pytest.mark.parametrize("state", [SafetyState.FAIL, SafetyState.LOCKDOWN])
def test_safety_blocks_with_fs090(state: SafetyState) -> None:
    out = run(safety_state=state, now=42.0)
    assert not out.passed and out.reason_code is ReasonCode.SAFETY_BLOCKED
    assert codes(out) == [AlertCode.FS090]
    a = out.alerts[0]
    assert a.severity is Severity.FAIL_SAFE and a.stage == "PRECHECK" and a.ts == 42.0
    assert state.value in a.message


@pytest.mark.parametrize("state", [SafetyState.NORMAL, SafetyState.WARNING])
def test_safety_normal_and_warning_pass(state: SafetyState) -> None:
    assert run(safety_state=state).passed


# ------------------------------------------------------------------ 2) position limit


def test_position_9900_plus_100_passes() -> None:
    assert run(position_qty=9900).passed  # exactly 10000: equal passes


def test_position_9950_plus_100_exceeds() -> None:
    out = run(position_qty=9950)
    assert not out.passed and out.reason_code is ReasonCode.POSITION_LIMIT_EXCEEDED and out.alerts == ()


def test_position_is_signed_by_side() -> None:
    assert run(intent(side=Side.SELL), position_qty=9950).passed  # 9850
    out = run(intent(side=Side.SELL), position_qty=-9950)  # -10050
    assert out.reason_code is ReasonCode.POSITION_LIMIT_EXCEEDED
    assert run(intent(side=Side.SELL), position_qty=-9900).passed  # -10000


def test_pure_reduction_of_over_limit_position_passes() -> None:
    assert run(intent(side=Side.SELL), position_qty=12000).passed  # 12000 -> 11900
    assert run(intent(side=Side.BUY), position_qty=-12000).passed  # -12000 -> -11900
    # ... but not flipping through zero beyond the limit, nor adding to it
    out = run(intent(qty=30000, side=Side.SELL, price=75000), position_qty=12000, available_capital=10**12)
    assert out.reason_code is ReasonCode.POSITION_LIMIT_EXCEEDED  # -> -18000
    assert run(position_qty=12000).reason_code is ReasonCode.POSITION_LIMIT_EXCEEDED


def test_per_symbol_position_override() -> None:
    cfg = PrecheckConfig(max_position_overrides={"005930": D(50)})
    assert run(config=cfg).reason_code is ReasonCode.POSITION_LIMIT_EXCEEDED
    assert run(intent(50), config=cfg).passed
    assert cfg.max_position_for("AAPL") == D(10000)


# ------------------------------------------------------------------ 3) capital (GR061), verified numbers


@pytest.mark.parametrize(
    ("capital", "passed", "qty", "reason"),
    [
        (10_000_000, True, 100, None),
        (7_500_000, True, 100, None),
        (7_499_999, True, 99, None),
        (5_000_000, True, 66, None),
        (74_999, False, 100, ReasonCode.INSUFFICIENT_CAPITAL),
        (0, False, 100, ReasonCode.INSUFFICIENT_CAPITAL),
        (-5, False, 100, ReasonCode.INSUFFICIENT_CAPITAL),
    ],
)
def test_capital_b3_numbers(capital: int, passed: bool, qty: int, reason: ReasonCode | None) -> None:
    out = run(available_capital=capital)
    assert out.passed is passed and out.qty == D(qty) and out.reason_code is reason
    if passed and qty < 100:
        assert codes(out) == [AlertCode.GR061]
        assert out.alerts[0].message == f"qty reduced 100 → {qty}"
        assert out.alerts[0].severity is Severity.GUARDRAIL and out.alerts[0].stage == "PRECHECK"
    else:
        assert out.alerts == ()


def test_capital_is_checked_before_venue() -> None:
    out = run(available_capital=0, venue_connected=False)
    assert out.reason_code is ReasonCode.INSUFFICIENT_CAPITAL


def test_gr061_alert_kept_when_a_later_check_fails() -> None:
    out = run(available_capital=5_000_000, venue_connected=False)
    assert out.reason_code is ReasonCode.VENUE_DISCONNECTED
    assert codes(out) == [AlertCode.GR061] and out.qty == D(66)


def test_b10_1000_at_75000_with_50m_is_reduced_to_666() -> None:
    cfg = PrecheckConfig(daily_notional_limit=D(10**9))
    out = run(intent(1000), cfg, available_capital=50_000_000)
    assert out.passed and out.qty == D(666) and codes(out) == [AlertCode.GR061]
    # With the default 10M daily notional, the reduced 49.95M order is over the daily limit.
    out = run(intent(1000), available_capital=50_000_000)
    assert out.reason_code is ReasonCode.DAILY_LIMIT_REACHED and codes(out) == [AlertCode.GR061, AlertCode.GR062]


def test_market_buy_uses_reference_price() -> None:
    it = intent(order_type=OrderType.MARKET)
    out = run(it, available_capital=5_000_000)
    assert out.passed and out.qty == D(66) and codes(out) == [AlertCode.GR061]
    out = run(it, available_capital=5_000_000, reference_price=None)  # falls back to the spec price
    assert out.qty == D(66)
    out = run(it, available_capital=5_000_000, reference_price=D(50000))
    assert out.passed and out.qty == D(100) and out.alerts == ()


def test_capital_defaults_to_config() -> None:
    assert run(available_capital=None).passed  # 100,000,000 by default
    cfg = PrecheckConfig(available_capital=D(5_000_000))
    assert run(config=cfg, available_capital=None).qty == D(66)


def test_reduction_respects_lot_size() -> None:
    it = intent(qty="1", price="65000", symbol="BTC-USD")
    out = run(it, spec=BTC, reference_price=D(65000), available_capital=30_000)
    assert out.passed and out.qty == D("0.461") and codes(out) == [AlertCode.GR061]
    out = run(it, spec=BTC, reference_price=D(65000), available_capital=64)  # < one lot (65)
    assert out.reason_code is ReasonCode.INSUFFICIENT_CAPITAL


def test_sell_closing_a_long_needs_no_capital() -> None:
    out = run(intent(side=Side.SELL), position_qty=100, available_capital=0)
    assert out.passed and out.qty == D(100) and out.alerts == ()


def test_sell_opening_a_short_is_charged() -> None:
    out = run(intent(side=Side.SELL), position_qty=40, available_capital=0)
    assert out.passed and out.qty == D(40) and codes(out) == [AlertCode.GR061]  # only the closing part
    out = run(intent(side=Side.SELL), position_qty=0, available_capital=5_000_000)
    assert out.passed and out.qty == D(66)
    out = run(intent(side=Side.SELL), position_qty=40, available_capital=1_500_000)
    assert out.passed and out.qty == D(60)  # 40 closing + 20 short
    out = run(intent(side=Side.SELL), position_qty=0, available_capital=0)
    assert out.reason_code is ReasonCode.INSUFFICIENT_CAPITAL
    out = run(intent(side=Side.SELL), position_qty=-50, available_capital=0)  # extending a short
    assert out.reason_code is ReasonCode.INSUFFICIENT_CAPITAL


# ------------------------------------------------------------------ 4) venue


def test_venue_disconnected() -> None:
    out = run(venue_connected=False)
    assert not out.passed and out.reason_code is ReasonCode.VENUE_DISCONNECTED and out.alerts == ()


# ------------------------------------------------------------------ 5) symbol / market


def test_unknown_symbol_fs091() -> None:
    out = run(spec=None)
    assert out.reason_code is ReasonCode.VALIDATION_INVALID_SYMBOL
    assert codes(out) == [AlertCode.FS091] and out.alerts[0].severity is Severity.FAIL_SAFE
    assert out.alerts[0].stage == "PRECHECK"


def test_unknown_symbol_market_order_without_any_price() -> None:
    out = run(intent(order_type=OrderType.MARKET), spec=None, reference_price=None)
    assert out.reason_code is ReasonCode.VALIDATION_INVALID_SYMBOL


def test_spec_of_another_symbol_is_invalid() -> None:
    out = run(spec=BTC)
    assert out.reason_code is ReasonCode.VALIDATION_INVALID_SYMBOL


def test_halted_symbol() -> None:
    out = run(spec=msgspec.structs.replace(SPEC, halted=True))
    assert out.reason_code is ReasonCode.SYMBOL_HALTED


@pytest.mark.parametrize(("minute", "open_"), [(539, False), (540, True), (929, True), (930, False), (0, False)])
def test_market_session(minute: int, open_: bool) -> None:
    spec = msgspec.structs.replace(SPEC, session=Session(open_minute=540, close_minute=930))
    out = run(spec=spec, minute_of_day=minute)
    assert out.passed is open_
    if not open_:
        assert out.reason_code is ReasonCode.MARKET_CLOSED


def test_overnight_session() -> None:
    spec = msgspec.structs.replace(SPEC, session=Session(open_minute=1320, close_minute=120))
    assert run(spec=spec, minute_of_day=1400).passed
    assert run(spec=spec, minute_of_day=60).passed
    assert run(spec=spec, minute_of_day=600).reason_code is ReasonCode.MARKET_CLOSED


# ------------------------------------------------------------------ 6) daily limits (GR062)


def test_daily_99_passes() -> None:
    assert run(daily_count=99).passed


@pytest.mark.parametrize("count", [100, 150])
def test_daily_100_blocks_with_gr062(count: int) -> None:
    out = run(daily_count=count)
    assert out.reason_code is ReasonCode.DAILY_LIMIT_REACHED
    assert codes(out) == [AlertCode.GR062] and out.alerts[0].severity is Severity.GUARDRAIL


def test_daily_notional() -> None:
    assert run(daily_notional=2_500_000).passed  # 2.5M + 7.5M = 10M: equal passes
    out = run(daily_notional=2_500_001)
    assert out.reason_code is ReasonCode.DAILY_LIMIT_REACHED and codes(out) == [AlertCode.GR062]


def test_daily_notional_uses_the_reduced_qty() -> None:
    # 66 x 75000 = 4.95M after GR061; 5.05M + 4.95M = 10M passes
    out = run(available_capital=5_000_000, daily_notional=5_050_000)
    assert out.passed and out.qty == D(66)


def test_daily_limits_from_config() -> None:
    cfg = PrecheckConfig(daily_trade_limit=5, daily_notional_limit=D(1_000_000))
    assert run(config=cfg, daily_count=5).reason_code is ReasonCode.DAILY_LIMIT_REACHED
    assert run(intent(13), config=cfg, daily_count=4).passed  # 975,000
    assert run(intent(14), config=cfg, daily_count=4).reason_code is ReasonCode.DAILY_LIMIT_REACHED


# ------------------------------------------------------------------ 7) price collar


@pytest.mark.parametrize(
    ("price", "ok"), [(78750, True), (78751, False), (71250, True), (71249, False), (75000, True)]
)
def test_price_collar(price: int, ok: bool) -> None:
    out = run(intent(price=price), available_capital=10**10)
    assert out.passed is ok
    if not ok:
        assert out.reason_code is ReasonCode.PRICE_COLLAR


def test_collar_falls_back_to_spec_reference() -> None:
    out = run(intent(price=80000), reference_price=None, available_capital=10**10)
    assert out.reason_code is ReasonCode.PRICE_COLLAR


def test_collar_not_applied_to_market_orders() -> None:
    assert run(intent(order_type=OrderType.MARKET), reference_price=D(90000), available_capital=10**10).passed


def test_collar_config() -> None:
    cfg = PrecheckConfig(price_collar_pct=D("0.01"))
    assert run(intent(price=76000), config=cfg).reason_code is ReasonCode.PRICE_COLLAR


# ------------------------------------------------------------------ 8) risk hook


def test_risk_block() -> None:
    out = run(risk=RiskResult(decision=RiskDecision.BLOCK, reason="desk closed"))
    assert not out.passed and out.reason_code is ReasonCode.RISK_BLOCKED and out.detail == "desk closed"
    assert not out.pause


def test_risk_pause() -> None:
    out = run(risk=RiskResult(decision=RiskDecision.PAUSE, reason="paused"))
    assert not out.passed and out.pause and out.reason_code is None and out.detail == "paused"


def test_risk_from_conditional_hook() -> None:
    hook = RiskHookConfig(kind="conditional", max_qty=D(50))
    it = intent()
    out = run(it, risk=evaluate_risk(hook, it))
    assert out.reason_code is ReasonCode.RISK_BLOCKED and "exceeds max 50" in out.detail


# ------------------------------------------------------------------ order of checks


def test_check_order() -> None:
    """Start with everything wrong and fix one thing at a time: each fix reveals the next check."""
    bad: dict[str, Any] = dict(
        mode=ExecutionMode.LIVE,
        safety_state=SafetyState.LOCKDOWN,
        position_qty=D(99_999),
        available_capital=D(0),
        venue_connected=False,
        spec=None,
        daily_count=100,
        risk=RiskResult(decision=RiskDecision.BLOCK, reason="no"),
    )
    it = intent(price=90000)  # outside the collar
    fixes: list[tuple[ReasonCode, dict[str, Any]]] = [
        (ReasonCode.POLICY_LIVE_NOT_ENABLED, {"mode": ExecutionMode.PAPER}),
        (ReasonCode.SAFETY_BLOCKED, {"safety_state": SafetyState.WARNING}),
        (ReasonCode.POSITION_LIMIT_EXCEEDED, {"position_qty": D(0)}),
        (ReasonCode.INSUFFICIENT_CAPITAL, {"available_capital": D(10**9)}),
        (ReasonCode.VENUE_DISCONNECTED, {"venue_connected": True}),
        (ReasonCode.VALIDATION_INVALID_SYMBOL, {"spec": SPEC}),
        (ReasonCode.DAILY_LIMIT_REACHED, {"daily_count": 0}),
        (ReasonCode.PRICE_COLLAR, {"reference_price": D(90000)}),
        (ReasonCode.RISK_BLOCKED, {"risk": ALLOW}),
    ]
    for expected, fix in fixes:
        out = run(it, **bad)
        assert out.reason_code is expected, (expected, out)
        bad.update(fix)
    assert run(it, **bad).passed


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_position_qty": D(-1)},
        {"max_position_overrides": {"X": D(-1)}},
        {"daily_trade_limit": -1},
        {"daily_notional_limit": D(-1)},
        {"price_collar_pct": D("-0.01")},
    ],
)
def test_config_rejects_negative_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PrecheckConfig(**kwargs)


def test_config_defaults() -> None:
    c = PrecheckConfig()
    assert c.max_position_qty == D(10000) and c.daily_trade_limit == 100
    assert c.daily_notional_limit == D(10_000_000) and c.price_collar_pct == D("0.05")
    assert c.available_capital == D(100_000_000) and c.max_position_overrides == {}


# ------------------------------------------------------------------ daily counter helpers


def test_daily_bucket() -> None:
    assert daily_bucket("strategy", 0) == "strategy.19700101"
    assert daily_bucket("s1", 1_700_000_000) == "s1.20231114"  # 2023-11-14T22:13:20Z
    assert daily_bucket("s1", 1_700_006_399.9) == "s1.20231114"
    assert daily_bucket("s1", 1_700_006_400) == "s1.20231115"  # UTC midnight


NATS_KV_KEY = re.compile(r"^[-/_=\.a-zA-Z0-9]+$")  # nats-py's VALID_KEY_RE


@given(a=st.text(min_size=1, max_size=20), b=st.text(min_size=1, max_size=20), t=st.integers(0, 4_000_000_000))
def test_daily_bucket_keys_are_legal_and_distinct(a: str, b: str, t: int) -> None:
    ka, kb = daily_bucket(a, t), daily_bucket(b, t)
    assert NATS_KV_KEY.match(ka) and NATS_KV_KEY.match(kb)
    assert (ka == kb) is (a == b)


def test_minute_of_day_utc() -> None:
    assert minute_of_day_utc(0) == 0
    assert minute_of_day_utc(1_700_000_000) == 22 * 60 + 13
    assert minute_of_day_utc(86_399) == 1439


def test_daily_counter_add() -> None:
    c = DailyCounter().add(D(7_500_000)).add(D(100))
    assert c == DailyCounter(count=2, notional=D(7_500_100))


# ------------------------------------------------------------------ properties

lot_sizes = st.sampled_from([D(1), D(10), D("0.001"), D("0.5")])


@given(
    qty_lots=st.integers(1, 100_000),
    lot=lot_sizes,
    price=st.decimals(min_value=D("0.01"), max_value=D(1_000_000), places=2),
    capital=st.decimals(min_value=D(-1000), max_value=D(10**12), places=2),
    position=st.integers(-20_000, 20_000),
    side=st.sampled_from(list(Side)),
    order_type=st.sampled_from(list(OrderType)),
)
def test_qty_never_grows_and_reductions_are_lot_multiples(
    qty_lots: int, lot: Decimal, price: Decimal, capital: Decimal, position: int, side: Side, order_type: OrderType
) -> None:
    qty = qty_lots * lot
    spec = SymbolSpec(symbol="X", reference_price=price, lot_size=lot)
    it = Intent(symbol="X", side=side, qty=qty, order_type=order_type, strategy_id="s",
                price=price if order_type is OrderType.LIMIT else None)  # fmt: skip
    cfg = PrecheckConfig(max_position_qty=D(10**9), daily_notional_limit=D(10**20))
    out = run_precheck(
        it,
        ctx(spec=spec, reference_price=price, available_capital=capital, position_qty=D(position) * lot),
        cfg,
    )
    event("passed" if out.passed else str(out.reason_code))
    event("reduced" if out.qty < qty else "full")
    assert 0 < out.qty <= qty
    if out.qty < qty:
        assert AlertCode.GR061 in codes(out)
        assert out.qty % lot == 0
        if side is Side.BUY:
            assert out.qty * price <= capital
    if out.passed:
        assert out.reason_code is None and not out.pause
    else:
        assert out.reason_code is ReasonCode.INSUFFICIENT_CAPITAL
        if side is Side.BUY:
            assert capital < price * lot or capital <= 0


# ------------------------------------------------------------------ per-strategy and per-symbol limits


def test_a_strategys_position_cap_applies_on_top_of_the_symbols_limit() -> None:
    cfg = PrecheckConfig(max_position_qty=D(1000), max_position_overrides={"005930": D(500)}, strategy_limits={"s1": StrategyLimits(max_position_qty=D(200))})
    assert cfg.max_position_for("005930", "s1") == D(200)  # the smaller of the two
    assert cfg.max_position_for("005930", "other") == D(500)
    assert cfg.max_position_for("AAPL", "s1") == D(200)
    assert run(intent(200), cfg).passed
    out = run(intent(201), cfg)
    assert out.reason_code is ReasonCode.POSITION_LIMIT_EXCEEDED and "max |position| 200" in out.detail


def test_a_strategys_daily_limits_replace_the_defaults() -> None:
    cfg = PrecheckConfig(daily_trade_limit=100, strategy_limits={"s1": StrategyLimits(daily_trade_limit=3)})
    assert run(intent(), cfg, daily_count=2).passed
    out = run(intent(), cfg, daily_count=3)
    assert out.reason_code is ReasonCode.DAILY_LIMIT_REACHED and "(3/3)" in out.detail
    generous = PrecheckConfig(daily_trade_limit=1, strategy_limits={"s1": StrategyLimits(daily_trade_limit=500, daily_notional_limit=D(10**12))})
    assert run(intent(), generous, daily_count=400).passed


def test_a_symbols_own_price_collar() -> None:
    wide = PrecheckConfig(price_collar_overrides={"005930": D("0.5")})
    assert run(intent(price=100000), wide).passed  # 33 % away: inside this symbol's 50 %
    out = run(intent(price=100000), PrecheckConfig())
    assert out.reason_code is ReasonCode.PRICE_COLLAR and "collar 5" in out.detail


def test_negative_strategy_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        PrecheckConfig(strategy_limits={"s1": StrategyLimits(daily_trade_limit=-1)})
    with pytest.raises(ValueError):
        PrecheckConfig(price_collar_overrides={"X": D(-1)})
