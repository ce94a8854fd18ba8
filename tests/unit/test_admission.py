"""Admission control, pure: how much of a stage deadline the queues took, and when intake refuses."""

from decimal import Decimal

from hypothesis import given, strategies as st

from core.admission import AdmissionConfig, LoadReport, lag_pressure, refusal, stage_pressure
from core.coordinator import decide
from core.ids import client_order_id
from schemas.enums import ExecutionMode, OrderType, Side, SplitStrategy
from schemas.messages import ChildAccepted, ChildOrder, ExecutionCreated, Intent, PrecheckDone, SplitDone

INTENT = Intent(symbol="AAPL", side=Side.BUY, qty=Decimal(5), order_type=OrderType.MARKET, strategy_id="s")


def at_precheck(t0: float):
    return decide(None, ExecutionCreated(cid="x1", idempotency_key="ik-1", intent=INTENT, mode=ExecutionMode.PAPER), t0)


def test_a_stage_result_reports_the_share_of_its_deadline_it_took():
    rec = at_precheck(100.0)
    assert stage_pressure(rec, PrecheckDone(cid="x1", step=1, passed=True), 101.0) == 0.2  # 1 s of PRECHECK's 5 s
    rec = decide(rec, PrecheckDone(cid="x1", step=1, passed=True), 101.0)
    c0 = client_order_id("ik-1", 0)
    split = SplitDone(cid="x1", step=2, strategy=SplitStrategy.SINGLE, children=(ChildOrder(client_order_id=c0, index=0, symbol="AAPL", side=Side.BUY, qty=Decimal(5), order_type=OrderType.MARKET),))
    assert stage_pressure(rec, split, 101.5) == 0.5  # half of SPLITTING's 1 s
    rec = decide(rec, split, 101.5)
    assert stage_pressure(rec, ChildAccepted(cid="x1", client_order_id=c0, venue_order_id="V"), 103.5) == 0.2  # 2 s of SENDING's 10 s
    # not a stage result, or a result for another stage than the current one: nothing to say
    assert stage_pressure(rec, PrecheckDone(cid="x1", step=1, passed=True), 104.0) is None
    assert stage_pressure(None, split, 104.0) is None


def test_intake_refuses_while_a_coordinator_is_under_pressure_and_says_when_to_retry():
    cfg = AdmissionConfig(refuse_at=0.4, max_early=100)
    now = 1000.0
    assert refusal([], now, cfg) is None
    assert refusal([LoadReport(instance="a", pressure=0.1, early=10, at=now)], now, cfg) is None
    detail, retry = refusal([LoadReport(instance="a", pressure=0.1, at=now), LoadReport(instance="b", pressure=0.8, at=now)], now, cfg)
    assert "saturated" in detail and cfg.min_retry_after_ms <= retry <= cfg.max_retry_after_ms
    assert refusal([LoadReport(instance="a", pressure=0.0, early=60, at=now), LoadReport(instance="b", pressure=0.0, early=60, at=now)], now, cfg) is not None
    # a coordinator that stopped reporting is not a reason to refuse forever
    assert refusal([LoadReport(instance="a", pressure=5.0, at=now - 10)], now, cfg) is None
    assert lag_pressure(0.5) == 0.5 and lag_pressure(-1) == 0.0


@given(st.floats(0, 50), st.floats(0, 50))
def test_retry_after_grows_with_pressure_and_stays_bounded(p1, p2):
    cfg = AdmissionConfig()
    r1 = refusal([LoadReport(instance="a", pressure=p1, at=1.0)], 1.0, cfg)
    r2 = refusal([LoadReport(instance="a", pressure=p2, at=1.0)], 1.0, cfg)
    assert (r1 is None) == (p1 < cfg.refuse_at)
    if r1 and r2:
        assert cfg.min_retry_after_ms <= r1[1] <= cfg.max_retry_after_ms
        assert (r1[1] <= r2[1]) == (p1 <= p2) or r1[1] == r2[1]
