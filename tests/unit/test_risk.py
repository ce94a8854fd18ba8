"""core.risk: seed 002's risk hooks (A7) as data, the pure evaluator, and config loading."""

from __future__ import annotations

import json
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.risk import (
    DEFAULT_BLOCK_REASON,
    RiskHookConfig,
    RiskResult,
    evaluate_risk,
    load_risk_hook,
)
from schemas.enums import OrderType, RiskDecision, Side
from schemas.messages import Intent

D = Decimal


def intent(symbol: str = "BTC-EUR", qty: str = "0.005") -> Intent:
    return Intent(symbol=symbol, side=Side.BUY, qty=D(qty), order_type=OrderType.MARKET, strategy_id="s1")


# ------------------------------------------------------------------ kinds


def test_null_allows() -> None:
    r = evaluate_risk(RiskHookConfig(), intent())
    assert r.decision is RiskDecision.ALLOW and r.allowed
    assert evaluate_risk(RiskHookConfig(kind="null"), intent(qty="1e9")).decision is RiskDecision.ALLOW


def test_blocking_blocks_with_reason() -> None:
    r = evaluate_risk(RiskHookConfig(kind="blocking"), intent())
    assert r == RiskResult(decision=RiskDecision.BLOCK, reason=DEFAULT_BLOCK_REASON)
    assert DEFAULT_BLOCK_REASON == "Blocked by policy"
    r = evaluate_risk(RiskHookConfig(kind="blocking", reason="desk closed"), intent())
    assert r.decision is RiskDecision.BLOCK and r.reason == "desk closed" and not r.allowed


def test_conditional_max_qty_strict() -> None:
    cfg = RiskHookConfig(kind="conditional", max_qty=D("0.01"))
    assert evaluate_risk(cfg, intent(qty="0.005")).decision is RiskDecision.ALLOW
    assert evaluate_risk(cfg, intent(qty="0.01")).decision is RiskDecision.ALLOW  # equal allowed
    r = evaluate_risk(cfg, intent(qty="0.02"))
    assert r.decision is RiskDecision.BLOCK and r.reason == "Quantity 0.02 exceeds max 0.01"


def test_conditional_allowlist() -> None:
    cfg = RiskHookConfig(kind="conditional", symbol_allowlist=("BTC-EUR", "ETH-EUR"))
    assert evaluate_risk(cfg, intent("ETH-EUR")).decision is RiskDecision.ALLOW
    r = evaluate_risk(cfg, intent("AAPL"))
    assert r.decision is RiskDecision.BLOCK and r.reason == "Symbol AAPL not in allowlist"
    assert evaluate_risk(cfg, intent("btc-eur")).decision is RiskDecision.BLOCK  # exact match


def test_conditional_combined_allows() -> None:
    cfg = RiskHookConfig(kind="conditional", symbol_allowlist=("BTC-EUR", "ETH-EUR"), max_qty=D("0.01"))
    assert evaluate_risk(cfg, intent("BTC-EUR", "0.005")).decision is RiskDecision.ALLOW


def test_conditional_pause() -> None:
    cfg = RiskHookConfig(kind="conditional", pause_symbols=("TSLA",))
    r = evaluate_risk(cfg, intent("TSLA"))
    assert r.decision is RiskDecision.PAUSE and "TSLA" in r.reason
    assert evaluate_risk(cfg, intent("AAPL")).decision is RiskDecision.ALLOW


def test_block_wins_over_pause() -> None:
    cfg = RiskHookConfig(kind="conditional", pause_symbols=("TSLA",), max_qty=D(10))
    assert evaluate_risk(cfg, intent("TSLA", "11")).decision is RiskDecision.BLOCK
    assert evaluate_risk(cfg, intent("TSLA", "10")).decision is RiskDecision.PAUSE
    cfg2 = RiskHookConfig(kind="conditional", pause_symbols=("TSLA",), symbol_allowlist=("AAPL",))
    assert evaluate_risk(cfg2, intent("TSLA")).decision is RiskDecision.BLOCK


def test_qty_argument_overrides_intent_qty() -> None:
    cfg = RiskHookConfig(kind="conditional", max_qty=D(50))
    it = intent(qty="100")
    assert evaluate_risk(cfg, it).decision is RiskDecision.BLOCK
    assert evaluate_risk(cfg, it, D(50)).decision is RiskDecision.ALLOW


def test_conditional_reason_is_a_label() -> None:
    cfg = RiskHookConfig(kind="conditional", reason="desk-limits", max_qty=D(1))
    assert evaluate_risk(cfg, intent(qty="2")).reason == "desk-limits: Quantity 2 exceeds max 1"


def test_conditional_without_criteria_allows() -> None:
    assert evaluate_risk(RiskHookConfig(kind="conditional"), intent()).decision is RiskDecision.ALLOW


def test_empty_allowlist_fails_closed() -> None:
    cfg = RiskHookConfig(kind="conditional", symbol_allowlist=())
    assert evaluate_risk(cfg, intent()).decision is RiskDecision.BLOCK


def test_result_wire_values() -> None:
    r = RiskResult(decision=RiskDecision.BLOCK, reason="x")
    assert json.loads(msgspec.json.encode(r)) == {"decision": "BLOCK", "reason": "x"}


# ------------------------------------------------------------------ construction invariants


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "bogus"},
        {"kind": "null", "max_qty": D(1)},
        {"kind": "blocking", "symbol_allowlist": ("A",)},
        {"kind": "null", "pause_symbols": ("A",)},
        {"kind": "conditional", "max_qty": D(-1)},
        {"kind": "conditional", "max_qty": D("NaN")},
        {"kind": "conditional", "symbol_allowlist": ("",)},
    ],
)
def test_config_invariants(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RiskHookConfig(**kwargs)


def test_config_decodes_from_json_with_validation() -> None:
    cfg = msgspec.json.decode(b'{"kind":"conditional","max_qty":"5","pause_symbols":["X"]}', type=RiskHookConfig)
    assert cfg.max_qty == D(5) and cfg.pause_symbols == ("X",)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"kind":"bogus"}', type=RiskHookConfig)


# ------------------------------------------------------------------ load_risk_hook


def test_load_defaults_to_null() -> None:
    assert load_risk_hook(None) == RiskHookConfig()
    assert load_risk_hook({}) == RiskHookConfig(kind="null")


def test_load_blocking() -> None:
    cfg = load_risk_hook({"kind": "Blocking", "reason": "maintenance"})
    assert cfg == RiskHookConfig(kind="blocking", reason="maintenance")


def test_load_conditional_from_json() -> None:
    raw = json.loads('{"kind": "conditional", "symbol_allowlist": ["BTC-EUR", " ETH-EUR "], "max_qty": 0.01,'
                     ' "pause_symbols": ["XRP-EUR"], "reason": null}')  # fmt: skip
    cfg = load_risk_hook(raw)
    assert cfg.kind == "conditional"
    assert cfg.symbol_allowlist == ("BTC-EUR", "ETH-EUR")
    assert cfg.max_qty == D("0.01")
    assert cfg.pause_symbols == ("XRP-EUR",)
    assert cfg.reason == ""


@pytest.mark.parametrize("raw", ["100", 100, D(100), 100.0, " 100 "])
def test_load_max_qty_forms(raw: object) -> None:
    assert load_risk_hook({"kind": "conditional", "max_qty": raw}).max_qty == D(100)


@pytest.mark.parametrize(
    ("mapping", "needle"),
    [
        ({"kind": "strict"}, "kind must be one of"),
        ({"kind": 3}, "kind must be a string"),
        ({"kind": "conditional", "max_qyt": 5}, "unknown risk hook config key"),
        ({"kind": "conditional", "symbol_allowlist": "AAPL"}, "must be a list"),
        ({"kind": "conditional", "symbol_allowlist": []}, "symbol_allowlist is empty"),
        ({"kind": "conditional", "symbol_allowlist": ["AAPL", 3]}, "non-empty strings"),
        ({"kind": "conditional", "pause_symbols": [""]}, "non-empty strings"),
        ({"kind": "conditional", "max_qty": "abc"}, "max_qty must be a number"),
        ({"kind": "conditional", "max_qty": True}, "max_qty must be a number"),
        ({"kind": "conditional", "max_qty": [1]}, "max_qty must be a number"),
        ({"kind": "conditional", "max_qty": "-1"}, ">= 0"),
        ({"kind": "conditional", "max_qty": "Infinity"}, ">= 0"),
        ({"kind": "null", "max_qty": 5}, "takes no max_qty"),
        ({"kind": "blocking", "symbol_allowlist": ["A"]}, "takes no symbol_allowlist"),
        ({"kind": "blocking", "reason": 5}, "reason must be a string"),
    ],
)
def test_load_bad_config_raises_clear_error(mapping: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        load_risk_hook(mapping)


def test_load_rejects_non_mapping() -> None:
    with pytest.raises(ValueError, match="must be a mapping"):
        load_risk_hook(["kind", "null"])  # type: ignore[arg-type]


# ------------------------------------------------------------------ properties

symbols = st.sampled_from(["AAPL", "MSFT", "TSLA", "005930", "BTC-USD"])
qtys = st.decimals(min_value=D("0.001"), max_value=D(100000), places=3)


@given(sym=symbols, q=qtys, reason=st.text(max_size=10))
def test_null_and_blocking_are_constant(sym: str, q: Decimal, reason: str) -> None:
    it = intent(sym, str(q))
    assert evaluate_risk(RiskHookConfig(), it).decision is RiskDecision.ALLOW
    assert evaluate_risk(RiskHookConfig(kind="blocking", reason=reason), it).decision is RiskDecision.BLOCK


@given(
    sym=symbols,
    q=qtys,
    allow=st.none() | st.lists(symbols, unique=True).map(tuple),
    max_qty=st.none() | qtys,
    pause=st.lists(symbols, unique=True).map(tuple),
)
def test_conditional_decision_table(sym, q, allow, max_qty, pause) -> None:  # type: ignore[no-untyped-def]
    cfg = RiskHookConfig(kind="conditional", symbol_allowlist=allow, max_qty=max_qty, pause_symbols=pause)
    d = evaluate_risk(cfg, intent(sym, str(q))).decision
    blocked = (allow is not None and sym not in allow) or (max_qty is not None and q > max_qty)
    if blocked:
        assert d is RiskDecision.BLOCK
    elif sym in pause:
        assert d is RiskDecision.PAUSE
    else:
        assert d is RiskDecision.ALLOW
