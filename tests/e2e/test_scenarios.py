"""Issue 3 scenarios, end to end over `jetexec up` (workers as processes): every split strategy,
each fail-safe and guardrail code observed in a result's `alerts`, PAUSE then ALLOW, live refused,
escape of resting limits, venue faults during send, halt and resume.

The system runs with short stage timeouts and a zero-volatility symbol CALM so the scenarios are
deterministic; every knob used is a documented configuration variable.
"""

import json
import time
from decimal import Decimal

import pytest

from core.symbols import DEFAULT_SYMBOLS
from tests.conftest import wait_for_sync
from tests.e2e.harness import Up

pytestmark = pytest.mark.e2e

CALM = {"symbol": "CALM", "reference_price": "100.00", "lot_size": "1", "tick_size": "0.01", "volatility_bps": "0", "depth_lots": "500"}


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scenarios")
    profile = tmp / "profile.json"
    profile.write_text(json.dumps({"CALM": [1] * 30}))  # 30 VWAP buckets → GR060 consolidates to 20
    symbols = [json.loads(json.dumps({k: str(v) if not isinstance(v, (int, bool)) else v for k, v in vars_(s).items()})) for s in DEFAULT_SYMBOLS] + [CALM]
    env = {
        "JETEXEC_COORDINATOR_CONFIG": json.dumps({"stage_timeout_ms": {"MONITORING": 1500, "ADJUSTING": 3000}, "fill_delay_warn_s": 1.0}),
        "JETEXEC_ADJUST_CONFIG": json.dumps({"tick_steps_per_round": 45}),
        "JETEXEC_PRECHECK_CONFIG": json.dumps({"daily_trade_limit": 6, "available_capital": "150000"}),
        "JETEXEC_VENUE_CONFIG": json.dumps({"seed": 11, "symbols": symbols}),
        "JETEXEC_VOLUME_PROFILE_FILE": str(profile),
    }
    with Up(tmp, env=env) as up:
        yield up


def vars_(spec):
    import msgspec

    d = msgspec.to_builtins(spec)
    d.pop("session", None)
    return d


def intent(**kw):
    base = {"symbol": "CALM", "side": "BUY", "order_type": "MARKET"}
    return {**base, **kw}


def qtys(result):
    return [c["qty"] for c in result["children"]]


def test_each_split_strategy_as_planned(system):
    single, twap, iceberg, vwap = system.submit([
        intent(qty=50, strategy_id="sp-single"),
        intent(qty=101, split="TWAP", horizon_s=2, strategy_id="sp-twap"),
        intent(qty=1001, strategy_id="sp-ice"),
        intent(qty=1000, split="VWAP", horizon_s=2, strategy_id="sp-vwap"),
    ])
    assert (single["strategy"], qtys(single)) == ("SINGLE", ["50"])
    assert (twap["strategy"], qtys(twap)) == ("TWAP", ["21", "20", "20", "20", "20"])
    assert (iceberg["strategy"], qtys(iceberg)) == ("ICEBERG", ["300", "300", "300", "101"])
    assert vwap["strategy"] == "VWAP" and len(vwap["children"]) == 20 and "GR060" in vwap["alerts"]
    assert sum(Decimal(q) for q in qtys(vwap)) == 1000
    for r in (single, twap, iceberg, vwap):
        assert r["state"] == "COMPLETE" and r["fill_rate"] == "1", r


def test_fill_timeout_adjust_rounds_then_escape(system):
    """A limit resting below the market: FS093 (fill timeout) → ADJUSTING; GR064 (no fill); the
    re-price would cost > 0.3 % (GR063: wait); after the last round FS094 → escape → FS092."""
    (r,) = system.submit([intent(qty=100, order_type="LIMIT", price="99.90", strategy_id="adj")], timeout=60)
    assert r["state"] == "ESCAPED", r
    for code in ("FS093", "GR064", "GR063", "FS094", "FS092"):
        assert code in r["alerts"], (code, r["alerts"])
    assert [c["state"] for c in r["children"]] == ["CANCELLED"]
    assert r["filled_qty"] == "0"


def test_all_sends_rejected_is_fs090(system):
    system.venue_faults([], reject_rate="1")
    try:
        (r,) = system.submit([intent(qty=10, strategy_id="fs090")])
    finally:
        system.venue_faults([], reject_rate="0")
    assert r["state"] == "FAILED" and r["reason_code"] == "ALL_SENDS_FAILED" and "FS090" in r["alerts"]
    assert r["children"][0]["state"] == "REJECTED"


def test_invalid_symbol_is_fs091(system):
    (r,) = system.submit([intent(qty=1, symbol="ZZZZ", strategy_id="fs091")])
    assert r["state"] == "FAILED" and r["reason_code"] == "VALIDATION_INVALID_SYMBOL" and r["alerts"] == ["FS091"]


def test_capital_reduces_quantity_gr061(system):
    (r,) = system.submit([intent(qty=2000, order_type="LIMIT", price="100.05", strategy_id="gr061")])
    assert "GR061" in r["alerts"] and r["state"] == "COMPLETE"
    assert r["filled_qty"] == "1499"  # floor(150000 / 100.05)


def test_daily_trade_limit_gr062(system):
    results = system.submit([intent(qty=1, strategy_id="gr062", client_key=f"k{i}") for i in range(7)])
    states = sorted(r["state"] for r in results)
    assert states == ["COMPLETE"] * 6 + ["FAILED"]
    (failed,) = [r for r in results if r["state"] == "FAILED"]
    assert failed["reason_code"] == "DAILY_LIMIT_REACHED" and "GR062" in failed["alerts"]


def test_pause_then_allow(system):
    system.kv("SAFETY", "risk_hook", json.dumps({"kind": "conditional", "pause_symbols": ["CALM"]}))
    try:
        (receipt,) = system.submit_nowait([intent(qty=5, strategy_id="pause")])
        cid = receipt["correlation_id"]
        first = time.monotonic()
        wait_for_sync(lambda: system.status(cid)["state"] == "PRECHECK", what="paused in PRECHECK")
        # Still paused a moment later: PAUSE holds the execution, it does not fail it.
        wait_for_sync(lambda: time.monotonic() - first > 1.0 and system.status(cid)["state"] == "PRECHECK", what="still paused")
    finally:
        system.kv("SAFETY", "risk_hook", None)
    wait_for_sync(lambda: system.status(cid)["state"] == "COMPLETE", what="allowed after the hook cleared")


def test_pause_until_deadline_fails(system):
    system.kv("SAFETY", "risk_hook", json.dumps({"kind": "conditional", "pause_symbols": ["CALM"]}))
    try:
        (r,) = system.submit([intent(qty=5, strategy_id="pause-timeout")], timeout=30)
    finally:
        system.kv("SAFETY", "risk_hook", None)
    assert r["state"] == "FAILED" and r["reason_code"] == "RISK_PAUSE_TIMEOUT"


def test_risk_block(system):
    system.kv("SAFETY", "risk_hook", json.dumps({"kind": "conditional", "max_qty": "3"}))
    try:
        (r,) = system.submit([intent(qty=5, strategy_id="block")])
    finally:
        system.kv("SAFETY", "risk_hook", None)
    assert r["state"] == "FAILED" and r["reason_code"] == "RISK_BLOCKED"


def test_live_refused_by_default(system):
    system.kv("SAFETY", "mode", "LIVE")
    try:
        (r,) = system.submit([intent(qty=5, strategy_id="live")])
    finally:
        system.kv("SAFETY", "mode", "PAPER")
    assert r["state"] == "FAILED" and r["reason_code"] == "POLICY_LIVE_NOT_ENABLED"


def test_shadow_routes_nothing(system):
    before = system.venue_stats()["orders"]
    system.kv("SAFETY", "mode", "SHADOW")
    try:
        (r,) = system.submit([intent(qty=5, strategy_id="shadow")])
    finally:
        system.kv("SAFETY", "mode", "PAPER")
    assert r["state"] == "COMPLETE" and r["filled_qty"] == "5"
    assert system.venue_stats()["orders"] == before


def test_escape_of_resting_limits_cancels_every_child(system):
    (receipt,) = system.submit_nowait([intent(qty=300, order_type="LIMIT", price="99.50", split="TWAP", horizon_s=1, strategy_id="esc")])
    cid = receipt["correlation_id"]
    wait_for_sync(lambda: [c["state"] for c in system.status(cid)["children"]].count("ACKNOWLEDGED") == 5, what="all five children resting")
    assert system.cli("escape", cid).returncode == 0
    wait_for_sync(lambda: system.status(cid)["state"] == "ESCAPED", what="ESCAPED")
    r = system.status(cid)
    assert [c["state"] for c in r["children"]] == ["CANCELLED"] * 5
    assert "FS092" in r["alerts"]


def test_escape_with_flatten_unwinds_the_filled_quantity(system):
    """A TWAP part-way through, then `jetexec escape --flatten`: the unsent slices are cancelled and
    the filled quantity is sold back with a MARKET order (seed 000's liquidation); the ledger ends flat."""
    (receipt,) = system.submit_nowait([intent(qty=500, split="TWAP", horizon_s=30, strategy_id="flat")])
    cid = receipt["correlation_id"]
    wait_for_sync(lambda: system.status(cid)["filled_qty"] == "100", what="the first slice filled, four scheduled")
    assert system.cli("escape", cid, "--flatten").returncode == 0
    wait_for_sync(lambda: system.status(cid)["state"] == "ESCAPED", what="ESCAPED")
    assert [c["state"] for c in system.status(cid)["children"]] == ["FILLED"] + ["CANCELLED"] * 4
    venue = system.request("venue.api.orders", {})
    (flatten,) = [oid for oid in venue if "-FL-" in oid]
    assert venue[flatten] == "FILLED"

    def flat() -> bool:
        res = system.cli("ledger", "positions", "--json")
        rows = [json.loads(line) for line in res.stdout.decode().splitlines() if line.strip()]
        return any(r["strategy_id"] == "flat" and r["symbol"] == "CALM" and Decimal(r["qty"]) == 0 for r in rows)

    wait_for_sync(flat, what="the ledger position back to flat")


def test_venue_fault_during_send_never_duplicates(system):
    before = system.venue_stats()
    system.venue_faults(["drop_ack:new"])
    try:
        (r,) = system.submit([intent(qty=7, strategy_id="dropack")], timeout=60)
    finally:
        system.venue_faults([])
    after = system.venue_stats()
    assert r["state"] == "COMPLETE" and r["filled_qty"] == "7"
    assert after["duplicate_attempts"] == before["duplicate_attempts"]
    assert after["orders"] == before["orders"] + 1


def test_venue_disconnect_then_recovery(system):
    system.venue_faults(["disconnect"])
    (receipt,) = system.submit_nowait([intent(qty=4, strategy_id="disc")])
    cid = receipt["correlation_id"]
    wait_for_sync(lambda: system.status(cid)["state"] == "SENDING", what="stuck sending while the venue is down")
    system.venue_faults([])
    wait_for_sync(lambda: system.status(cid)["state"] in ("COMPLETE", "ESCAPED"), timeout=40, what="resolved after reconnect")
    assert system.venue_stats()["duplicate_attempts"] == 0


def test_halt_cancels_everything_and_refuses_intake_until_resume(system):
    # A TWAP over ten minutes: its first slice rests, the rest wait for their time, and MONITORING's
    # clock starts after the last slice — so only the halt can end it, however slow this machine is.
    (receipt,) = system.submit_nowait([intent(qty=20, order_type="LIMIT", price="99.50", strategy_id="halt", split="TWAP", horizon_s=600)])
    cid = receipt["correlation_id"]
    wait_for_sync(lambda: system.status(cid)["children"] and system.status(cid)["children"][0]["state"] == "ACKNOWLEDGED", what="resting")
    assert system.cli("halt").returncode == 0
    wait_for_sync(lambda: system.status(cid)["state"] == "ESCAPED", what="halted execution escaped")
    halted = system.status(cid)
    assert "FS095" in halted["alerts"] and "FS092" in halted["alerts"]
    (refused,) = system.submit([intent(qty=1, strategy_id="halt-new")])
    assert refused["state"] == "FAILED" and refused["reason_code"] == "SAFETY_BLOCKED" and "FS090" in refused["alerts"]
    assert system.cli("resume").returncode == 0
    (ok,) = system.submit([intent(qty=1, strategy_id="halt-after")])
    assert ok["state"] == "COMPLETE"
