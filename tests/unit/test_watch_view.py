"""The live view's fold (WatchModel) and frame, on plain records: filters, fills from record deltas,
no roll-back by a late revision, full ids and the safety line."""

from __future__ import annotations

from decimal import Decimal

from rich.console import Console

from jetexec.cli.watch import WatchModel, frame
from jetexec.client import SafetyStatus
from schemas.enums import ExecutionState, OrderState, OrderType, SafetyState, Side
from schemas.messages import ChildRecord, ExecutionRecord, Intent

D = Decimal


def record(cid: str, version: int, state=ExecutionState.MONITORING, filled=D(0), notional=D(0), strategy="s1", symbol="AAPL") -> ExecutionRecord:
    child = ChildRecord(client_order_id=f"c{cid[1:]}-00-0", index=0, qty=D(10), order_type=OrderType.MARKET, price=None, state=OrderState.PARTIALLY_FILLED if filled else OrderState.ACKNOWLEDGED, filled_qty=filled, notional=notional, last_fill_at=1000.0 + version)
    intent = Intent(symbol=symbol, side=Side.BUY, qty=D(10), order_type=OrderType.MARKET, strategy_id=strategy)
    return ExecutionRecord(cid=cid, idempotency_key="ik", state=state, version=version, intent=intent, children=[child], created_at=1000.0, updated_at=1000.0 + version)


def render(model: WatchModel) -> str:
    console = Console(width=250, record=True, color_system=None)
    console.print(frame(model, "127.0.0.1:4222", now=1010.0))
    return console.export_text()


A = "x" + "a" * 23
B = "x" + "b" * 23


def test_fills_are_the_increases_after_the_view_caught_up():
    m = WatchModel()
    m.apply(record(A, 1, filled=D(2), notional=D(380)))  # history: not a new fill
    m.apply(None)
    m.apply(record(A, 2, filled=D(5), notional=D("950.3")))
    assert [(f.qty, f.price) for f in m.fills] == [(D(3), D("190.1"))]
    m.apply(record(A, 1, filled=D(2), notional=D(380)))  # a late older revision changes nothing
    assert m.records[A].version == 2 and len(m.fills) == 1


def test_filters_and_the_frame():
    m = WatchModel(strategy_id="s1", states={ExecutionState.MONITORING})
    m.apply(record(A, 1))
    m.apply(record(B, 1, strategy="other"))
    m.apply(None)
    m.safety = SafetyStatus(state=SafetyState.LOCKDOWN, halted=["ALL", A])
    text = render(m)
    assert A in text and B not in text  # the full id, and only the strategy asked for
    assert "safety LOCKDOWN" in text and "halts ALL (1 execution fence)" in text and "filter strategy=s1 state=MONITORING" in text
    assert "BUY 10 AAPL" in text and "0/10" in text and "1/1" in text  # filled/qty and open/children
