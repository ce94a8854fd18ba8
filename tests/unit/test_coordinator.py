"""Coordinator decisions over plain data: each fact moves the record and fills the outbox."""

from decimal import Decimal

from core.coordinator import CoordinatorConfig, decide, next_wake, to_result
from core.ids import client_order_id
from schemas.codec import decode
from schemas.enums import TimerKind, AlertCode, ErrorClass, ExecutionMode, ExecutionState as S, OrderState as O, OrderType, ReasonCode, Side, SplitStrategy
from schemas.messages import (
    ChildAccepted,
    ChildClosed,
    ChildFill,
    ChildOrder,
    ChildRejected,
    Command,
    EscapeDone,
    EscapeRequest,
    ExecutionCreated,
    Intent,
    IntentRejected,
    PrecheckDone,
    SendCommand,
    SplitDone,
    StageFailed,
    TimerFired,
)

CID, KEY = "xabc", "ik-abc"
T0 = 1_000_000.0
INTENT = Intent(symbol="AAPL", side=Side.BUY, qty=Decimal(100), order_type=OrderType.MARKET, strategy_id="s")


def child(i, qty="100", at=T0, otype=OrderType.MARKET, price=None):
    return ChildOrder(client_order_id=client_order_id(KEY, i), index=i, symbol="AAPL", side=Side.BUY, qty=Decimal(qty), order_type=otype, price=price, scheduled_at=at)


def run(facts, t=T0, record=None):
    for i, f in enumerate(facts):
        new = decide(record, f, t + i * 0.001)
        record = new or record
    return record


def started(children=(child(0),), strategy=SplitStrategy.SINGLE):
    r = run([ExecutionCreated(cid=CID, idempotency_key=KEY, intent=INTENT, mode=ExecutionMode.PAPER)])
    r = run([PrecheckDone(cid=CID, step=r.version, passed=True, qty=Decimal(100))], record=r)
    return run([SplitDone(cid=CID, step=r.version, strategy=strategy, children=tuple(children))], record=r)


def commands(record):
    return [(m.subject, decode(m.data, Command)) for m in record.outbox if m.subject.startswith("exec.cmd.")]


def test_happy_path_single_to_complete():
    r = run([ExecutionCreated(cid=CID, idempotency_key=KEY, intent=INTENT, mode=ExecutionMode.PAPER)])
    assert r.state is S.PRECHECK and commands(r)[0][0] == f"exec.cmd.precheck.{CID}"
    r = run([PrecheckDone(cid=CID, step=r.version, passed=True, qty=Decimal(100))], record=r)
    assert r.state is S.SPLITTING and commands(r)[0][0] == f"exec.cmd.split.{CID}"
    r = run([SplitDone(cid=CID, step=r.version, strategy=SplitStrategy.SINGLE, children=(child(0),))], record=r)
    assert r.state is S.SENDING
    (subject, cmd), = commands(r)
    assert subject == f"exec.cmd.send.{CID}" and isinstance(cmd, SendCommand) and cmd.child.qty == Decimal(100)
    coid = cmd.child.client_order_id
    r = run([ChildAccepted(cid=CID, client_order_id=coid, venue_order_id="V1")], record=r)
    assert r.state is S.MONITORING and r.children[0].state is O.ACKNOWLEDGED
    r = run([ChildFill(cid=CID, client_order_id=coid, trade_id="t1", qty=Decimal(40), price=Decimal(75000)),
             ChildFill(cid=CID, client_order_id=coid, trade_id="t2", qty=Decimal(60), price=Decimal(76000))], record=r)
    assert r.state is S.COMPLETE
    res = to_result(r)
    assert res.filled_qty == Decimal(100) and res.avg_fill_price == Decimal(75600) and res.fill_rate == Decimal(1)
    assert [t.to_state for t in r.transitions] == [S.PRECHECK, S.SPLITTING, S.SENDING, S.MONITORING, S.COMPLETE]


def test_outbox_ids_are_deterministic_per_version():
    a = run([ExecutionCreated(cid=CID, idempotency_key=KEY, intent=INTENT, mode=ExecutionMode.PAPER)])
    b = run([ExecutionCreated(cid=CID, idempotency_key=KEY, intent=INTENT, mode=ExecutionMode.PAPER)], t=T0 + 5)
    assert [m.msg_id for m in a.outbox] == [m.msg_id for m in b.outbox] == [f"{CID}.1.0"]


def test_duplicate_creation_and_duplicate_fill_change_nothing():
    r = started()
    assert decide(r, ExecutionCreated(cid=CID, idempotency_key=KEY, intent=INTENT, mode=ExecutionMode.PAPER), T0) is None
    coid = r.children[0].client_order_id
    r = run([ChildFill(cid=CID, client_order_id=coid, trade_id="t1", qty=Decimal(10), price=Decimal(1))], record=r)
    assert decide(r, ChildFill(cid=CID, client_order_id=coid, trade_id="t1", qty=Decimal(10), price=Decimal(1)), T0) is None
    assert r.children[0].filled_qty == Decimal(10) and r.state is S.MONITORING


def test_fill_before_ack_is_accepted():
    r = started()
    coid = r.children[0].client_order_id
    r = run([ChildFill(cid=CID, client_order_id=coid, trade_id="t1", qty=Decimal(100), price=Decimal(5))], record=r)
    assert r.state is S.COMPLETE and r.children[0].state is O.FILLED


def test_rejected_intent_is_a_failed_execution():
    r = decide(None, IntentRejected(cid=CID, idempotency_key=KEY, reason_code=ReasonCode.VALIDATION_INVALID_SIDE, detail="side"), T0)
    assert r.state is S.FAILED and to_result(r).reason_code is ReasonCode.VALIDATION_INVALID_SIDE


def test_precheck_block_fails_with_reason_and_alerts():
    r = run([ExecutionCreated(cid=CID, idempotency_key=KEY, intent=INTENT, mode=ExecutionMode.PAPER)])
    r = run([PrecheckDone(cid=CID, step=r.version, passed=False, reason_code=ReasonCode.SAFETY_BLOCKED, detail="LOCKDOWN")], record=r)
    assert r.state is S.FAILED and r.reason_code is ReasonCode.SAFETY_BLOCKED


def test_all_sends_failed_is_fs090():
    kids = (child(0, "50"), child(1, "50"))
    r = started(kids, SplitStrategy.TWAP)
    for k in kids:
        r = run([ChildRejected(cid=CID, client_order_id=k.client_order_id, reason_code=ReasonCode.VENUE_REJECTED, error_class=ErrorClass.NON_RETRYABLE)], record=r)
    assert r.state is S.FAILED and r.reason_code is ReasonCode.ALL_SENDS_FAILED
    assert AlertCode.FS090 in to_result(r).alerts


def test_fatal_venue_error_escapes():
    r = started()
    r = run([ChildRejected(cid=CID, client_order_id=r.children[0].client_order_id, reason_code=ReasonCode.VENUE_FATAL, error_class=ErrorClass.FATAL)], record=r)
    assert r.state is S.ESCAPING
    assert any(m.subject == f"exec.escape.{CID}" and decode(m.data, EscapeRequest).cid == CID for m in r.outbox)


def test_twap_children_go_out_on_schedule_via_timer():
    kids = (child(0, "50", at=T0), child(1, "50", at=T0 + 10))
    r = started(kids, SplitStrategy.TWAP)
    assert [c.dispatched for c in r.children] == [True, False]
    r = run([ChildAccepted(cid=CID, client_order_id=kids[0].client_order_id, venue_order_id="V")], record=r)
    assert r.state is S.MONITORING and next_wake(r) == T0 + 10
    assert decide(r, TimerFired(cid=CID, step=r.version, kind=TimerKind.WAKE), T0 + 5) is None  # nothing due yet
    r2 = decide(r, TimerFired(cid=CID, step=r.version, kind=TimerKind.WAKE), T0 + 10)
    assert [c.dispatched for c in r2.children] == [True, True]
    assert [c.child.index for _, c in commands(r2)] == [1]


def test_iceberg_releases_next_slice_when_previous_fills():
    kids = (child(0, "30"), child(1, "30"), child(2, "40"))
    r = started(kids, SplitStrategy.ICEBERG)
    assert [c.dispatched for c in r.children] == [True, False, False]
    r = run([ChildFill(cid=CID, client_order_id=kids[0].client_order_id, trade_id="a", qty=Decimal(30), price=Decimal(1))], record=r)
    assert [c.dispatched for c in r.children] == [True, True, False]


def test_monitoring_timeout_goes_adjusting_with_fs093_then_escape():
    r = started((child(0, otype=OrderType.LIMIT, price=Decimal("1.00")),))
    r = run([ChildAccepted(cid=CID, client_order_id=r.children[0].client_order_id, venue_order_id="V")], record=r)
    assert r.state is S.MONITORING
    r = decide(r, TimerFired(cid=CID, step=r.version, kind=TimerKind.WAKE), r.deadline_at)
    assert r.state is S.ADJUSTING and AlertCode.FS093 in to_result(r).alerts
    assert commands(r)[0][0] == f"exec.cmd.adjust.{CID}"
    r = decide(r, TimerFired(cid=CID, step=r.version, kind=TimerKind.WAKE), r.deadline_at)
    assert r.state is S.ESCAPING


def test_stale_timeout_is_ignored():
    r = started()
    old_deadline = r.deadline_at
    r = run([ChildAccepted(cid=CID, client_order_id=r.children[0].client_order_id, venue_order_id="V")], record=r)
    assert r.state is S.MONITORING and r.deadline_at > old_deadline
    assert decide(r, TimerFired(cid=CID, step=1, kind=TimerKind.WAKE), old_deadline + 0.1) is None


def test_escape_ends_escaped_when_every_child_is_cancelled():
    kids = (child(0, "50", at=T0), child(1, "50", at=T0 + 30))
    r = started(kids, SplitStrategy.TWAP)
    c0 = kids[0].client_order_id
    r = run([ChildAccepted(cid=CID, client_order_id=c0, venue_order_id="V")], record=r)
    r = run([EscapeDone(cid=CID, reason="MANUAL", cancelled=(c0,))], record=r)
    assert r.state is S.ESCAPED
    assert [c.state for c in r.children] == [O.CANCELLED, O.CANCELLED]  # the unsent one never left


def test_escape_waits_for_failed_cancels():
    r = started()
    c0 = r.children[0].client_order_id
    r = run([ChildAccepted(cid=CID, client_order_id=c0, venue_order_id="V")], record=r)
    r = run([EscapeDone(cid=CID, reason="MANUAL", failed=(c0,))], record=r)
    assert r.state is S.ESCAPING
    r = run([ChildClosed(cid=CID, client_order_id=c0, state=O.CANCELLED)], record=r)
    assert r.state is S.ESCAPED


def test_dead_lettered_precheck_fails_and_send_escapes():
    r = run([ExecutionCreated(cid=CID, idempotency_key=KEY, intent=INTENT, mode=ExecutionMode.PAPER)])
    assert run([StageFailed(cid=CID, stage="precheck", reason_code=ReasonCode.POISON_MESSAGE)], record=r).state is S.FAILED
    r = started()
    assert run([StageFailed(cid=CID, stage="send", reason_code=ReasonCode.MAX_DELIVERIES)], record=r).state is S.ESCAPING


def test_gr064_once_per_silent_child():
    r = started()
    r = run([ChildAccepted(cid=CID, client_order_id=r.children[0].client_order_id, venue_order_id="V")], record=r)
    cfg = CoordinatorConfig(fill_delay_warn_s=30)
    r = decide(r, TimerFired(cid=CID, step=r.version, kind=TimerKind.WAKE), T0 + 31, cfg)
    assert [a.code for a in r.alerts].count(AlertCode.GR064) == 1
    assert decide(r, TimerFired(cid=CID, step=r.version, kind=TimerKind.WAKE), T0 + 40, cfg) is None


def test_schedule_wake_sends_due_children_but_judges_no_timeout():
    kids = (child(0, "50", at=T0), child(1, "50", at=T0 + 10))
    r = started(kids, SplitStrategy.TWAP)
    r = run([ChildAccepted(cid=CID, client_order_id=kids[0].client_order_id, venue_order_id="V")], record=r)
    late = r.deadline_at + 100  # way past the MONITORING deadline and the second child's time
    r2 = decide(r, TimerFired(cid=CID, step=r.version, kind=TimerKind.SCHEDULE), late)
    assert r2.state is S.MONITORING and [c.dispatched for c in r2.children] == [True, True]
    r3 = decide(r2, TimerFired(cid=CID, step=r2.version, kind=TimerKind.WAKE), late)
    assert r3.state is S.ADJUSTING  # the full wake judges the timeout


def test_monitoring_deadline_starts_after_the_last_scheduled_child():
    kids = (child(0, "50", at=T0), child(1, "50", at=T0 + 600))  # a 10-minute TWAP, 60 s MONITORING
    r = started(kids, SplitStrategy.TWAP)
    r = run([ChildAccepted(cid=CID, client_order_id=kids[0].client_order_id, venue_order_id="V")], record=r)
    assert r.state is S.MONITORING and r.deadline_at == T0 + 600 + 60
    mid = decide(r, TimerFired(cid=CID, step=r.version, kind=TimerKind.WAKE), T0 + 120)
    assert mid.state is S.MONITORING  # no fill timeout mid-schedule (only GR064 for the silent child)
    assert AlertCode.FS093 not in to_result(mid).alerts and AlertCode.GR064 in to_result(mid).alerts
