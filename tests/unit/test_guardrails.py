"""core.guardrails: every B9 boundary, with the B12 fixes (one slippage threshold set, GR064 WARNING)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import adjust, guardrails
from core.guardrails import (
    FS095_REASONS,
    SLIPPAGE_MAX_PCT,
    SLIPPAGE_WARN_PCT,
    alert,
    check_all_sends_failed,
    check_daily_trade_limit,
    check_fill_delay,
    check_fill_timeout,
    check_insufficient_balance,
    check_invalid_symbol,
    check_slippage,
    check_slippage_exceeded,
    check_split_count,
    escape_alerts,
    severity_for,
)
from schemas.enums import AlertCode, ExecutionState, Severity

D = Decimal


# ------------------------------------------------------------------ alert() / severity


@pytest.mark.parametrize("code", list(AlertCode))
def test_severity_follows_code(code: AlertCode) -> None:
    expected = (
        Severity.FAIL_SAFE
        if code.value.startswith("FS")
        else Severity.WARNING
        if code is AlertCode.GR064
        else Severity.GUARDRAIL
    )
    assert severity_for(code) is expected
    a = alert(code, ExecutionState.PRECHECK, "m", 12.5)
    assert a.severity is expected and a.code is code
    assert a.stage == "PRECHECK" and a.message == "m" and a.ts == 12.5


def test_alert_accepts_string_stage_and_code_value() -> None:
    a = alert("GR061", "PRECHECK", "x")  # type: ignore[arg-type]
    assert a.code is AlertCode.GR061 and a.severity is Severity.GUARDRAIL and a.stage == "PRECHECK"
    assert a.ts == 0.0


# ------------------------------------------------------------------ FS090


@pytest.mark.parametrize(("sent", "failed", "fires"), [(0, 3, True), (1, 2, False), (0, 0, False), (3, 0, False)])
def test_fs090_all_sends_failed(sent: int, failed: int, fires: bool) -> None:
    a = check_all_sends_failed(sent, failed, ts=5.0)
    if not fires:
        assert a is None
        return
    assert a is not None
    assert a.code is AlertCode.FS090 and a.severity is Severity.FAIL_SAFE and a.stage == "SENDING"
    assert a.message == "All 3 orders failed to send" and a.ts == 5.0


# ------------------------------------------------------------------ FS091


def test_fs091_invalid_symbol() -> None:
    a = check_invalid_symbol("")
    assert a is not None and a.code is AlertCode.FS091 and a.severity is Severity.FAIL_SAFE and a.stage == "PRECHECK"
    assert check_invalid_symbol("AAPL") is None
    assert check_invalid_symbol("AAPL", {"AAPL", "MSFT"}) is None
    b = check_invalid_symbol("XXX", {"AAPL"})
    assert b is not None and b.code is AlertCode.FS091


# ------------------------------------------------------------------ GR060


@pytest.mark.parametrize(("n", "fires"), [(20, False), (21, True), (25, True), (0, False)])
def test_gr060_split_count(n: int, fires: bool) -> None:
    a = check_split_count(n)
    assert (a is not None) is fires
    if a:
        assert a.code is AlertCode.GR060 and a.severity is Severity.GUARDRAIL and a.stage == "SPLITTING"
        assert "consolidating" in a.message


def test_gr060_accepts_a_sequence_and_custom_max() -> None:
    assert check_split_count([1] * 25) is not None
    assert check_split_count([1] * 5, max_splits=5) is None
    assert check_split_count([1] * 6, max_splits=5) is not None


# ------------------------------------------------------------------ GR061


def test_gr061_insufficient_balance() -> None:
    assert check_insufficient_balance(D(100), D(200)) is None
    assert check_insufficient_balance(D(200), D(200)) is None  # equal is enough
    a = check_insufficient_balance(D(201), D(200))
    assert a is not None and a.code is AlertCode.GR061 and a.severity is Severity.GUARDRAIL and a.stage == "PRECHECK"
    assert check_insufficient_balance(D(1), D(0)) is not None
    assert check_insufficient_balance(D(1), D(-5)) is not None
    # Our one deviation from B9: nothing to pay -> no alert, even with no capital.
    assert check_insufficient_balance(D(0), D(0)) is None


# ------------------------------------------------------------------ GR062


@pytest.mark.parametrize(("count", "fires"), [(100, True), (101, True), (99, False), (50, False)])
def test_gr062_daily_limit(count: int, fires: bool) -> None:
    a = check_daily_trade_limit(count)
    assert (a is not None) is fires
    if a:
        assert a.code is AlertCode.GR062 and a.severity is Severity.GUARDRAIL and a.stage == "PRECHECK"


# ------------------------------------------------------------------ GR063 / FS094


@pytest.mark.parametrize(
    ("fill", "fires"),
    [("75100", False), ("75225", False), ("74775", False), ("75226", True), ("75500", True), ("74500", True)],
)
def test_gr063_slippage_warn(fill: str, fires: bool) -> None:
    a = check_slippage(D(75000), D(fill))
    assert (a is not None) is fires
    if a:
        assert a.code is AlertCode.GR063 and a.severity is Severity.GUARDRAIL and a.stage == "MONITORING"


def test_gr063_orig_zero_or_negative_never_fires() -> None:
    assert check_slippage(D(0), D(100)) is None
    assert check_slippage(D(-1), D(100)) is None
    assert check_slippage_exceeded(D(0), D(100)) is None


def test_gr063_custom_threshold_and_numeric_inputs() -> None:
    assert check_slippage(100, 101, D("0.02")) is None
    assert check_slippage(100.0, 103.0, D("0.02")) is not None
    assert check_slippage("100", "102.01", D("0.02")) is not None


@pytest.mark.parametrize(("fill", "fires"), [("76000", True), ("75100", False), ("75375", False), ("75376", True)])
def test_fs094_slippage_exceeded(fill: str, fires: bool) -> None:
    a = check_slippage_exceeded(D(75000), D(fill))
    assert (a is not None) is fires
    if a:
        assert a.code is AlertCode.FS094 and a.severity is Severity.FAIL_SAFE and a.stage == "ADJUSTING"


def test_one_threshold_set_everywhere() -> None:
    """B12: the seed used 0.3 % in its helper and 0.5 % for GR063 in adjust. We use one set."""
    assert SLIPPAGE_WARN_PCT == D("0.003") and SLIPPAGE_MAX_PCT == D("0.005")
    cfg = adjust.AdjustConfig()
    assert cfg.slippage_warn_pct == guardrails.SLIPPAGE_WARN_PCT
    assert cfg.slippage_max_pct == guardrails.SLIPPAGE_MAX_PCT


# ------------------------------------------------------------------ GR064


@pytest.mark.parametrize(
    ("elapsed", "threshold", "fires"),
    [(35, 30, True), (1, 30, False), (5, 3, True), (30, 30, False), (30.001, 30, True)],
)
def test_gr064_fill_delay(elapsed: float, threshold: float, fires: bool) -> None:
    a = check_fill_delay(elapsed, threshold)
    assert (a is not None) is fires
    if a:
        # B12 fix: always WARNING, stage MONITORING
        assert a.code is AlertCode.GR064 and a.severity is Severity.WARNING and a.stage == "MONITORING"


def test_gr064_default_threshold_is_30s() -> None:
    assert check_fill_delay(30.0) is None
    assert check_fill_delay(31.0) is not None


# ------------------------------------------------------------------ FS093


def test_fs093_fill_timeout() -> None:
    a = check_fill_timeout(D(60), D(100), ts=3.0)
    assert a is not None and a.code is AlertCode.FS093 and a.severity is Severity.FAIL_SAFE
    assert a.stage == "MONITORING" and "40" in a.message and a.ts == 3.0
    assert check_fill_timeout(D(100), D(100)) is None
    assert check_fill_timeout(D(0), D(100)) is not None
    assert check_fill_timeout(120, 100) is None  # overfill is not a timeout


# ------------------------------------------------------------------ FS092 / FS095


@pytest.mark.parametrize("reason", sorted(FS095_REASONS))
def test_escape_alerts_with_fs095(reason: str) -> None:
    alerts = escape_alerts(reason, ts=9.0)
    assert [a.code for a in alerts] == [AlertCode.FS092, AlertCode.FS095]
    assert all(a.severity is Severity.FAIL_SAFE and a.stage == "ESCAPING" and a.ts == 9.0 for a in alerts)
    assert alerts[0].message == f"Emergency escape triggered: {reason}"


@pytest.mark.parametrize("reason", ["TIME_LIMIT", "MANUAL", "safety_fail", "BROKER_DISCONNECT", "", "FS094"])
def test_escape_alerts_fs092_only(reason: str) -> None:
    alerts = escape_alerts(reason)
    assert [a.code for a in alerts] == [AlertCode.FS092]


def test_fs095_reason_set() -> None:
    assert FS095_REASONS == {"SAFETY_FAIL", "VENUE_DISCONNECT", "ESCAPE_LANE_OVERFLOW", "HALT"}


# ------------------------------------------------------------------ properties


prices = st.decimals(min_value=D("0.01"), max_value=D("1000000"), places=2)


@given(orig=prices, fill=prices)
def test_fs094_implies_gr063(orig: Decimal, fill: Decimal) -> None:
    """Anything past the max is past the warning too; and the checks agree with slippage_pct."""
    s = guardrails.slippage_pct(orig, fill)
    assert s is not None and s >= 0
    warn, hard = check_slippage(orig, fill), check_slippage_exceeded(orig, fill)
    if hard is not None:
        assert warn is not None
    assert (warn is not None) is (s > SLIPPAGE_WARN_PCT)
    assert (hard is not None) is (s > SLIPPAGE_MAX_PCT)
