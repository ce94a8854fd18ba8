"""FillMonitor — venue execution reports into facts the coordinator aggregates.

Consumes:  ``venue.report.<cid>`` ExecutionReport (durable consumer ``monitor``; scale it freely).
Publishes: ``exec.evt.<cid>`` ChildFill (one per venue trade, id = trade id, so a repeated report
           is dropped by the server and again by the coordinator's per-child trade-id set) or
           ChildClosed (CancelAck / expiry / venue reject).

Aggregation (cumulative quantity, average price, fees), late fills after a cancel, completion,
GR064 and FS093 are decided by the coordinator (:mod:`core.coordinator`) over the stored record.
"""

from __future__ import annotations

from decimal import Decimal

from bus.runtime import Delivery, Out, Poison, WorkerApp
from bus.topology import evt_subject
from schemas.codec import decode, encode
from schemas.enums import OrderState, ReasonCode
from schemas.messages import ChildClosed, ChildFill
from schemas.venue import ExecutionReport

_CLOSES = {"CANCELLED": OrderState.CANCELLED, "EXPIRED": OrderState.EXPIRED, "REJECTED": OrderState.REJECTED}


class MonitorWorker(WorkerApp):
    name = "monitor"

    def consumers(self):
        return [("monitor", self.handle)]

    def handle(self, d: Delivery) -> list[Out]:  # pure: the runtime runs it batched
        rpt = decode(d.data, ExecutionReport)
        if rpt.cid != d.cid:
            raise Poison(ReasonCode.VALIDATION_INVALID_FIELD.value, f"report cid {rpt.cid!r} does not match subject")
        if rpt.kind == "FILL":
            if rpt.qty <= 0 or rpt.price <= 0 or not rpt.trade_id:
                raise Poison(ReasonCode.VALIDATION_INVALID_FIELD.value, "fill without trade id, quantity or price")
            fact = ChildFill(cid=rpt.cid, client_order_id=rpt.client_order_id, trade_id=rpt.trade_id, qty=rpt.qty, price=rpt.price, fee=rpt.fee or Decimal(0), ts=rpt.ts)
            return [Out(evt_subject(rpt.cid), encode(fact), f"{rpt.cid}.fill.{rpt.trade_id}")]
        state = _CLOSES.get(rpt.kind)
        if state is None:
            raise Poison(ReasonCode.VALIDATION_INVALID_FIELD.value, f"unknown report kind {rpt.kind!r}")
        fact = ChildClosed(cid=rpt.cid, client_order_id=rpt.client_order_id, state=state, reason=rpt.reason, ts=rpt.ts)
        return [Out(evt_subject(rpt.cid), encode(fact), f"{rpt.cid}.close.{rpt.client_order_id}.{rpt.kind}")]
