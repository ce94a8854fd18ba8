"""Split planning: the seed B4 table, VWAP (seed C1), GR060, lot handling and plan invariants."""

from __future__ import annotations

from decimal import Decimal as D
from fractions import Fraction

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.ids import client_order_id
from core.split import (
    SplitConfig,
    SplitPlan,
    apportion,
    choose_strategy,
    plan_split,
    u_shaped_profile,
)
from core.symbols import DEFAULT_SYMBOLS, SymbolSpec
from schemas.enums import AlertCode, OrderState, OrderType, Severity, Side, SplitStrategy, Urgency
from schemas.messages import ChildOrder, Intent

SPECS = {s.symbol: s for s in DEFAULT_SYMBOLS}
AAPL = SPECS["AAPL"]
BTC = SPECS["BTC-USD"]
NOW = 1_700_000_000.0
KEY = "ik-test"


def intent(
    qty: D | int = 100,
    *,
    symbol: str = "AAPL",
    side: Side = Side.BUY,
    order_type: OrderType = OrderType.MARKET,
    price: D | None = None,
    urgency: Urgency = Urgency.NORMAL,
    split: SplitStrategy = SplitStrategy.AUTO,
    horizon_s: int | None = None,
) -> Intent:
    return Intent(
        symbol=symbol,
        side=side,
        qty=D(qty),
        order_type=order_type,
        price=price,
        strategy_id="strat-1",
        urgency=urgency,
        split=split,
        horizon_s=horizon_s,
    )


def plan(qty: int | D, config: SplitConfig | None = None, spec: SymbolSpec = AAPL, **kw) -> SplitPlan:
    it = intent(qty, symbol=spec.symbol, **kw)
    return plan_split(it, D(qty), KEY, spec, config or SplitConfig(), NOW)


def sizes(p: SplitPlan) -> list[int]:
    return [int(c.qty) for c in p.children]


# --------------------------------------------------------------------------------------------
# Seed B4 table (default config unless stated)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "config", "urgency", "strategy", "expected"),
    [
        (50, SplitConfig(), Urgency.NORMAL, SplitStrategy.SINGLE, [50]),
        (100, SplitConfig(), Urgency.NORMAL, SplitStrategy.SINGLE, [100]),
        (101, SplitConfig(), Urgency.NORMAL, SplitStrategy.TWAP, [21, 20, 20, 20, 20]),
        (200, SplitConfig(), Urgency.NORMAL, SplitStrategy.TWAP, [40] * 5),
        (500, SplitConfig(), Urgency.NORMAL, SplitStrategy.TWAP, [100] * 5),
        (503, SplitConfig(), Urgency.NORMAL, SplitStrategy.TWAP, [101, 101, 101, 100, 100]),
        (1000, SplitConfig(), Urgency.NORMAL, SplitStrategy.TWAP, [200] * 5),
        (1001, SplitConfig(), Urgency.NORMAL, SplitStrategy.ICEBERG, [300, 300, 300, 101]),
        (3333, SplitConfig(), Urgency.NORMAL, SplitStrategy.ICEBERG, [999, 999, 999, 336]),
        (5000, SplitConfig(), Urgency.NORMAL, SplitStrategy.ICEBERG, [1500, 1500, 1500, 500]),
        (5000, SplitConfig(), Urgency.URGENT, SplitStrategy.TWAP, [1000] * 5),
        (3, SplitConfig(min_split_qty=1, twap_buckets=5), Urgency.NORMAL, SplitStrategy.TWAP, [1, 1, 1]),
    ],
)
def test_seed_b4_table(qty, config, urgency, strategy, expected):
    p = plan(qty, config, urgency=urgency)
    assert p.strategy is strategy
    assert sizes(p) == expected
    assert p.alerts == ()


def test_quantity_override_is_what_gets_split():
    # B4 "order 500, override 200": the precheck quantity (e.g. after GR061) is split, not intent.qty.
    p = plan_split(intent(500), D(200), KEY, AAPL, SplitConfig(), NOW)
    assert p.strategy is SplitStrategy.TWAP
    assert sizes(p) == [40] * 5


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        # 20 iceberg chunks of 50 > max 5
        (SplitConfig(min_split_qty=10, max_children=5, iceberg_visible_pct=D("0.05")), [200] * 5),
        # 100 iceberg chunks of 10 > max 20
        (SplitConfig(min_split_qty=1, max_children=20, iceberg_visible_pct=D("0.01")), [50] * 20),
    ],
)
def test_gr060_consolidates_to_max_children(config, expected):
    p = plan(1000, config)
    assert p.strategy is SplitStrategy.ICEBERG  # label kept
    assert sizes(p) == expected
    assert [c.index for c in p.children] == list(range(len(expected)))
    assert all(c.scheduled_at == NOW for c in p.children)  # iceberg: all at now
    (alert,) = p.alerts
    assert alert.code is AlertCode.GR060
    assert alert.severity is Severity.GUARDRAIL
    assert alert.stage == "SPLITTING"
    assert "consolidating" in alert.message
    assert f"→ {config.max_children}" in alert.message
    assert alert.ts == NOW


def test_gr060_boundary_exactly_max_is_fine():
    # B9: 20 ok, more alerts. TWAP with 20 buckets is exactly max → no alert.
    p = plan(1000, SplitConfig(twap_buckets=20, max_children=20))
    assert len(p.children) == 20 and p.alerts == ()
    p = plan(1000, SplitConfig(twap_buckets=21, max_children=20))
    assert len(p.children) == 20 and p.alerts[0].code is AlertCode.GR060
    assert sizes(p) == [50] * 20


def test_gr060_twap_respreads_over_horizon():
    p = plan(1000, SplitConfig(twap_buckets=10, max_children=4), horizon_s=100)
    assert p.strategy is SplitStrategy.TWAP
    assert sizes(p) == [250] * 4
    assert [c.scheduled_at for c in p.children] == [NOW, NOW + 25, NOW + 50, NOW + 75]


def test_huge_iceberg_does_not_materialise_every_slice():
    # 10^9 one-lot slices would hang if built before consolidation.
    cfg = SplitConfig(min_split_qty=1, iceberg_visible_pct=D("0.000000001"))
    p = plan(10**9, cfg)
    assert p.strategy is SplitStrategy.ICEBERG
    assert len(p.children) == 20 and sum(sizes(p)) == 10**9
    assert "1000000000 → 20" in p.alerts[0].message


# --------------------------------------------------------------------------------------------
# Strategy choice
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty_lots", "urgency", "expected"),
    [
        (0, Urgency.NORMAL, SplitStrategy.SINGLE),
        (100, Urgency.URGENT, SplitStrategy.SINGLE),  # small stays single even when urgent
        (101, Urgency.LOW, SplitStrategy.TWAP),
        (1000, Urgency.HIGH, SplitStrategy.TWAP),  # exactly 10 × min is not "more than"
        (1001, Urgency.HIGH, SplitStrategy.ICEBERG),
        (1001, Urgency.URGENT, SplitStrategy.TWAP),
    ],
)
def test_choose_strategy_auto(qty_lots, urgency, expected):
    assert choose_strategy(intent(qty_lots, urgency=urgency), qty_lots, SplitConfig()) is expected


@pytest.mark.parametrize("explicit", [SplitStrategy.SINGLE, SplitStrategy.TWAP, SplitStrategy.VWAP, SplitStrategy.ICEBERG])
@pytest.mark.parametrize("qty_lots", [1, 50, 500, 5000])
def test_explicit_split_overrides_auto(explicit, qty_lots):
    it = intent(qty_lots, split=explicit, urgency=Urgency.URGENT)
    assert choose_strategy(it, qty_lots, SplitConfig()) is explicit


def test_explicit_single_for_large_qty():
    p = plan(5000, split=SplitStrategy.SINGLE)
    assert p.strategy is SplitStrategy.SINGLE and sizes(p) == [5000]
    assert p.children[0].scheduled_at == NOW


def test_explicit_twap_for_small_qty():
    p = plan(7, split=SplitStrategy.TWAP)
    assert p.strategy is SplitStrategy.TWAP and sizes(p) == [2, 2, 1, 1, 1]


def test_explicit_iceberg_for_small_qty():
    p = plan(10, split=SplitStrategy.ICEBERG)
    assert p.strategy is SplitStrategy.ICEBERG and sizes(p) == [3, 3, 3, 1]


# --------------------------------------------------------------------------------------------
# TWAP schedule and child fields
# --------------------------------------------------------------------------------------------


def test_twap_schedule_default_horizon():
    p = plan(500)
    assert [c.scheduled_at for c in p.children] == [NOW + 12 * i for i in range(5)]


def test_twap_schedule_intent_horizon():
    p = plan(500, horizon_s=300)
    assert [c.scheduled_at for c in p.children] == [NOW + 60 * i for i in range(5)]


def test_zero_horizon_sends_everything_now():
    p = plan(500, horizon_s=0)
    assert all(c.scheduled_at == NOW for c in p.children)


def test_child_fields_and_ids():
    p = plan(503, side=Side.SELL, order_type=OrderType.LIMIT, price=D("190.123"))
    assert [c.index for c in p.children] == [0, 1, 2, 3, 4]
    assert [c.client_order_id for c in p.children] == [client_order_id(KEY, i, 0) for i in range(5)]
    for c in p.children:
        assert c.symbol == "AAPL" and c.side is Side.SELL and c.order_type is OrderType.LIMIT
        assert c.generation == 0
        assert c.price == D("190.13")  # SELL limit rounds up onto the tick


@pytest.mark.parametrize(
    ("side", "raw", "expected"),
    [
        (Side.BUY, D("190.129"), D("190.12")),  # never above the buyer's limit
        (Side.SELL, D("190.121"), D("190.13")),  # never below the seller's limit
        (Side.BUY, D("190.12"), D("190.12")),
        (Side.SELL, D("190.12"), D("190.12")),
    ],
)
def test_limit_price_rounded_inside_the_limit(side, raw, expected):
    p = plan(50, side=side, order_type=OrderType.LIMIT, price=raw)
    assert p.children[0].price == expected
    assert p.children[0].price.as_tuple().exponent == -2  # on the tick grid's precision


def test_limit_price_on_coarse_tick():
    spec = SPECS["005930"]  # tick 100
    p = plan(50, spec=spec, order_type=OrderType.LIMIT, price=D("75049"))
    assert p.children[0].price == D("75000")


def test_market_price_passes_through():
    assert plan(50).children[0].price is None


def test_limit_without_price_is_refused():
    with pytest.raises(ValueError, match="LIMIT"):
        plan(50, order_type=OrderType.LIMIT, price=None)


def test_spec_for_another_symbol_is_refused():
    with pytest.raises(ValueError, match="spec is for"):
        plan_split(intent(50), D(50), KEY, BTC, SplitConfig(), NOW)


# --------------------------------------------------------------------------------------------
# Lots
# --------------------------------------------------------------------------------------------


def test_btc_lot_quantities():
    # 1.0009 BTC = 1000 lots of 0.001 (the 0.0009 tail is below a lot) → TWAP 5 × 0.200
    p = plan_split(intent(D("1.0009"), symbol="BTC-USD"), D("1.0009"), KEY, BTC, SplitConfig(), NOW)
    assert p.strategy is SplitStrategy.TWAP
    assert [c.qty for c in p.children] == [D("0.200")] * 5
    assert sum(c.qty for c in p.children) == D("1.000")


def test_btc_iceberg_lots():
    p = plan_split(intent(D("1.001"), symbol="BTC-USD"), D("1.001"), KEY, BTC, SplitConfig(), NOW)
    assert p.strategy is SplitStrategy.ICEBERG
    assert [c.qty for c in p.children] == [D("0.300"), D("0.300"), D("0.300"), D("0.101")]


def test_lot_size_above_one():
    spec = SymbolSpec(symbol="X", reference_price=D(10), lot_size=D(100))
    p = plan_split(intent(D(25_050), symbol="X"), D(25_050), KEY, spec, SplitConfig(), NOW)
    # 250 lots → TWAP 5 × 50 lots = 5 × 5000 units; the 50-unit tail is dropped
    assert p.strategy is SplitStrategy.TWAP
    assert [c.qty for c in p.children] == [D(5000)] * 5


@pytest.mark.parametrize("qty", [D("0.0009"), D(0), D("-1"), D("NaN")])
def test_less_than_one_lot_gives_empty_plan(qty):
    p = plan_split(intent(D(1), symbol="BTC-USD"), qty, KEY, BTC, SplitConfig(), NOW)
    assert p.children == () and p.alerts == ()


# --------------------------------------------------------------------------------------------
# VWAP
# --------------------------------------------------------------------------------------------

C1_PROFILE = [D(x) for x in (15, 12, 10, 8, 8, 10, 12, 15, 10)]  # percent


def test_vwap_seed_c1_worked_example():
    it = intent(1000, split=SplitStrategy.VWAP, horizon_s=90)
    p = plan_split(it, D(1000), KEY, AAPL, SplitConfig(), NOW, C1_PROFILE)
    assert p.strategy is SplitStrategy.VWAP
    assert sizes(p) == [150, 120, 100, 80, 80, 100, 120, 150, 100]
    assert [c.scheduled_at for c in p.children] == [NOW + 10 * i for i in range(9)]
    assert p.alerts == ()


def test_vwap_profile_is_renormalised():
    # fractions of 1 and raw volumes give the same plan as percentages
    it = intent(1000, split=SplitStrategy.VWAP)
    as_pct = plan_split(it, D(1000), KEY, AAPL, SplitConfig(), NOW, C1_PROFILE)
    as_frac = plan_split(it, D(1000), KEY, AAPL, SplitConfig(), NOW, [x / 100 for x in C1_PROFILE])
    as_vol = plan_split(it, D(1000), KEY, AAPL, SplitConfig(), NOW, [x * 12345 for x in C1_PROFILE])
    assert as_pct == as_frac == as_vol


def test_vwap_largest_remainder_rounding():
    # 10 lots over thirds: exact 3.33 each → 4,3,3 (earliest wins the tie), sum exact
    it = intent(10, split=SplitStrategy.VWAP)
    p = plan_split(it, D(10), KEY, AAPL, SplitConfig(), NOW, [D(1), D(1), D(1)])
    assert sizes(p) == [4, 3, 3]
    # 7 lots over 10/20/70 % → exact 0.7/1.4/4.9 → floors 0/1/4, two left go to .9 and .7
    p = plan_split(intent(7, split=SplitStrategy.VWAP), D(7), KEY, AAPL, SplitConfig(), NOW, [D(10), D(20), D(70)])
    assert sizes(p) == [1, 1, 5]


def test_vwap_drops_zero_buckets_but_keeps_bucket_times():
    it = intent(100, split=SplitStrategy.VWAP, horizon_s=40)
    p = plan_split(it, D(100), KEY, AAPL, SplitConfig(), NOW, [D(0), D(1), D(0), D(3)])
    assert sizes(p) == [25, 75]
    assert [c.index for c in p.children] == [0, 1]
    assert [c.scheduled_at for c in p.children] == [NOW + 10, NOW + 30]


def test_vwap_default_profile_is_u_shaped():
    it = intent(1000, split=SplitStrategy.VWAP)
    p = plan_split(it, D(1000), KEY, AAPL, SplitConfig(), NOW)
    assert sizes(p) == [300, 150, 100, 150, 300]


def test_vwap_too_many_buckets_triggers_gr060():
    it = intent(1000, split=SplitStrategy.VWAP)
    p = plan_split(it, D(1000), KEY, AAPL, SplitConfig(), NOW, [D(1)] * 40)
    assert p.strategy is SplitStrategy.VWAP
    assert sizes(p) == [50] * 20
    assert p.alerts[0].code is AlertCode.GR060
    assert [c.scheduled_at for c in p.children] == [NOW + 3 * i for i in range(20)]


@pytest.mark.parametrize("profile", [[], [D(0), D(0)], [D(1), D(-1), D(5)], [D("NaN")]])
def test_vwap_bad_profile_is_refused(profile):
    with pytest.raises(ValueError):
        plan_split(intent(1000, split=SplitStrategy.VWAP), D(1000), KEY, AAPL, SplitConfig(), NOW, profile)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 9, 20, 77])
def test_u_shaped_profile(n):
    prof = u_shaped_profile(n)
    assert len(prof) == n
    assert sum(prof) == 1
    assert all(isinstance(w, D) and w > 0 for w in prof)
    if n >= 3:
        mid = prof[n // 2]
        assert prof[0] > mid and prof[-1] > mid
        assert abs(prof[0] - prof[-1]) <= D("1e-12")  # symmetric up to the last digit


def test_u_shaped_profile_rejects_nonpositive():
    with pytest.raises(ValueError):
        u_shaped_profile(0)


# --------------------------------------------------------------------------------------------
# Config validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_children": 0},
        {"twap_buckets": 0},
        {"min_split_qty": -1},
        {"iceberg_visible_pct": D(0)},
        {"iceberg_visible_pct": D("1.5")},
        {"iceberg_visible_pct": D("NaN")},
        {"default_horizon_s": -1},
    ],
)
def test_config_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        SplitConfig(**kwargs)


def test_config_decodes_from_json():
    cfg = msgspec.json.decode(b'{"max_children": 10, "iceberg_visible_pct": "0.25"}', type=SplitConfig)
    assert cfg.max_children == 10 and cfg.iceberg_visible_pct == D("0.25")
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"max_children": 0}', type=SplitConfig)


# --------------------------------------------------------------------------------------------
# Iceberg release policy
# --------------------------------------------------------------------------------------------

def _sent(record) -> list[str]:
    return [c.client_order_id for c in record.children if c.dispatched]


@pytest.mark.parametrize("strategy", [SplitStrategy.ICEBERG, SplitStrategy.TWAP])
def test_the_coordinator_follows_the_release_policy_not_the_strategy_name(strategy):
    """A SEQUENTIAL plan goes out one child at a time, the next when the previous closes; the
    coordinator reads the policy on SplitDone, whatever the strategy is called."""
    from core.coordinator import decide
    from schemas.enums import ExecutionMode, ReleasePolicy
    from schemas.messages import ChildClosed, ChildFill, ExecutionCreated, PrecheckDone, SplitDone

    intent = Intent(symbol="AAPL", side=Side.BUY, qty=D(30), order_type=OrderType.MARKET, strategy_id="s")
    children = tuple(ChildOrder(client_order_id=f"c{i}", index=i, symbol="AAPL", side=Side.BUY, qty=D(10), order_type=OrderType.MARKET, scheduled_at=100.0) for i in range(3))
    r = decide(None, ExecutionCreated(cid="x1", idempotency_key="ik", intent=intent, mode=ExecutionMode.PAPER), 100.0)
    r = decide(r, PrecheckDone(cid="x1", step=1, passed=True, qty=D(30)), 100.0)
    r = decide(r, SplitDone(cid="x1", step=2, strategy=strategy, children=children, release=ReleasePolicy.SEQUENTIAL), 100.0)
    assert r.release is ReleasePolicy.SEQUENTIAL and _sent(r) == ["c0"]  # all due, one released
    r = decide(r, ChildFill(cid="x1", client_order_id="c0", trade_id="t0", qty=D(10), price=D(1)), 101.0)
    assert _sent(r) == ["c0", "c1"]  # filled → the next
    r = decide(r, ChildClosed(cid="x1", client_order_id="c1", state=OrderState.CANCELLED), 102.0)
    assert _sent(r) == ["c0", "c1", "c2"]  # closed unfilled → the next too
    # the same children SCHEDULED (all due now): every one goes at once
    r2 = decide(None, ExecutionCreated(cid="x2", idempotency_key="ik2", intent=intent, mode=ExecutionMode.PAPER), 100.0)
    r2 = decide(r2, PrecheckDone(cid="x2", step=1, passed=True, qty=D(30)), 100.0)
    r2 = decide(r2, SplitDone(cid="x2", step=2, strategy=strategy, children=children, release=ReleasePolicy.SCHEDULED), 100.0)
    assert _sent(r2) == ["c0", "c1", "c2"]


def test_every_strategy_is_registered_with_its_policy_and_needs():
    from core.split import STRATEGIES, needs_profile
    from schemas.enums import ReleasePolicy

    assert set(STRATEGIES) == set(SplitStrategy) - {SplitStrategy.AUTO}
    assert STRATEGIES[SplitStrategy.ICEBERG].release is ReleasePolicy.SEQUENTIAL
    assert all(STRATEGIES[s].release is ReleasePolicy.SCHEDULED for s in (SplitStrategy.SINGLE, SplitStrategy.TWAP, SplitStrategy.VWAP))
    assert needs_profile(SplitStrategy.VWAP) and not needs_profile(SplitStrategy.TWAP) and not needs_profile(SplitStrategy.AUTO)
    assert plan(5000, split=SplitStrategy.ICEBERG).release is ReleasePolicy.SEQUENTIAL


# --------------------------------------------------------------------------------------------
# apportion
# --------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(0, 10**6),
    weights=st.lists(st.integers(0, 1000), min_size=1, max_size=30).filter(lambda w: sum(w) > 0),
)
def test_apportion_exact_and_within_one_unit(total, weights):
    parts = apportion(total, [D(w) for w in weights])
    assert sum(parts) == total
    s = sum(weights)
    for p, w in zip(parts, weights):
        exact = Fraction(total * w, s)
        assert p >= 0
        assert abs(p - exact) < 1


# --------------------------------------------------------------------------------------------
# Plan invariants (property tests)
# --------------------------------------------------------------------------------------------

configs = st.builds(
    SplitConfig,
    min_split_qty=st.integers(0, 500),
    max_children=st.integers(1, 30),
    twap_buckets=st.integers(1, 30),
    iceberg_visible_pct=st.decimals(D("0.001"), D(1), places=3),
    default_horizon_s=st.integers(0, 3600),
)
profiles = st.none() | st.lists(st.integers(0, 1000).map(D), min_size=1, max_size=40).filter(
    lambda p: sum(p) > 0
)
specs = st.sampled_from(
    [AAPL, BTC, SPECS["005930"], SymbolSpec(symbol="AAPL", reference_price=D(1), lot_size=D(100))]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=specs,
    lots_=st.integers(0, 200_000),
    tail=st.integers(0, 999),
    config=configs,
    split=st.sampled_from(list(SplitStrategy)),
    urgency=st.sampled_from(list(Urgency)),
    horizon=st.none() | st.integers(0, 7200),
    profile=profiles,
    now=st.floats(0, 2e9, allow_nan=False),
    side=st.sampled_from(list(Side)),
)
def test_plan_invariants(spec, lots_, tail, config, split, urgency, horizon, profile, now, side):
    # qty = whole lots plus a sub-lot tail that must be dropped
    qty = D(lots_) * spec.lot_size + spec.lot_size * D(tail) / D(1000)
    it = Intent(
        symbol=spec.symbol,
        side=side,
        qty=qty,
        order_type=OrderType.MARKET,
        strategy_id="s",
        urgency=urgency,
        split=split,
        horizon_s=horizon,
    )
    p = plan_split(it, qty, KEY, spec, config, now, profile)
    again = plan_split(it, qty, KEY, spec, config, now, profile)
    assert p == again  # deterministic

    eff_horizon = horizon if horizon is not None else config.default_horizon_s
    assert p.strategy is not SplitStrategy.AUTO
    assert p.strategy is choose_strategy(it, lots_, config)
    if split is not SplitStrategy.AUTO:
        assert p.strategy is split

    if lots_ == 0:
        assert p.children == ()
        return

    # children sum exactly to the lot-rounded quantity, in whole lots, each at least one lot
    assert sum(c.qty for c in p.children) == D(lots_) * spec.lot_size
    for c in p.children:
        n_lots = c.qty / spec.lot_size
        assert n_lots == n_lots.to_integral_value() and n_lots >= 1
    assert 1 <= len(p.children) <= config.max_children

    # schedule inside [now, now + horizon], first child due now unless VWAP's leading buckets are empty
    for c in p.children:
        assert now <= c.scheduled_at <= now + eff_horizon
    times = [c.scheduled_at for c in p.children]
    assert times == sorted(times)
    if p.strategy is not SplitStrategy.VWAP or p.alerts:
        assert times[0] == now
    if p.strategy is SplitStrategy.ICEBERG:
        assert set(times) == {now}

    # ids: unique, deterministic, indexed from 0
    ids = [c.client_order_id for c in p.children]
    assert len(set(ids)) == len(ids)
    assert ids == [client_order_id(KEY, i, 0) for i in range(len(ids))]
    assert [c.index for c in p.children] == list(range(len(ids)))
    assert all(c.symbol == spec.symbol and c.side is side for c in p.children)

    # GR060 exactly when consolidation happened, and then the TWAP rule over the total
    for a in p.alerts:
        assert a.code is AlertCode.GR060 and a.severity is Severity.GUARDRAIL and a.stage == "SPLITTING"
    if p.alerts:
        assert len(p.children) == config.max_children
        sz = [int(c.qty / spec.lot_size) for c in p.children]
        assert max(sz) - min(sz) <= 1 and sz == sorted(sz, reverse=True)
    if p.strategy is SplitStrategy.SINGLE:
        assert len(p.children) == 1


@settings(max_examples=100, deadline=None)
@given(
    lots_=st.integers(1, 100_000),
    profile=st.lists(st.integers(0, 1000).map(D), min_size=1, max_size=20).filter(lambda p: sum(p) > 0),
)
def test_vwap_children_track_profile_within_one_lot(lots_, profile):
    it = intent(lots_, split=SplitStrategy.VWAP, horizon_s=len(profile) * 10)
    p = plan_split(it, D(lots_), KEY, AAPL, SplitConfig(), NOW, profile)
    assert p.alerts == ()  # ≤ 20 buckets
    assert sum(sizes(p)) == lots_
    shares = [Fraction(lots_) * Fraction(w) / Fraction(sum(profile)) for w in profile]
    # each child sits at its own bucket's time (10 s per bucket), so map it back to its bucket
    by_bucket = {round((c.scheduled_at - NOW) / 10): int(c.qty) for c in p.children}
    assert len(by_bucket) == len(p.children)
    for b, share in enumerate(shares):
        got = by_bucket.get(b, 0)
        assert abs(got - share) < 1  # largest remainder: within one lot of the exact share
        if share >= 1:
            assert got >= 1  # a bucket worth a lot is never dropped


@settings(max_examples=100, deadline=None)
@given(lots_=st.integers(1, 100_000), config=configs)
def test_auto_twap_and_iceberg_sizes(lots_, config):
    p = plan(lots_, config)
    sz = sizes(p)
    if p.alerts:
        return
    if p.strategy is SplitStrategy.TWAP:
        n = min(config.twap_buckets, lots_)
        assert len(sz) == n and max(sz) - min(sz) <= 1 and sz == sorted(sz, reverse=True)
    elif p.strategy is SplitStrategy.ICEBERG:
        visible = max(1, int(D(lots_) * config.iceberg_visible_pct))
        assert all(s == visible for s in sz[:-1]) and 1 <= sz[-1] <= visible
