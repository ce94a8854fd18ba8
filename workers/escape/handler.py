"""EmergencyEscape — the escape lane. Its own stream, consumer, process and connection.

Consumes:  ``exec.escape.<cid>`` and ``exec.escape.all`` EscapeRequest (stream ``EXEC_ESCAPE``,
           durable consumer ``escape``) — never queued behind ``EXEC_CMD`` work.
Publishes: ``exec.evt.<cid>`` EscapeStarted, then EscapeDone (cancelled / failed children, FS092,
           FS095 where the cause is a safety failure, venue disconnect, halt or lane overflow).
Writes:    KV ``SAFETY``: the HALT fence ``halt.<cid>`` / ``halt.ALL`` *before* any cancel (send
           and adjust check it before every venue call, so stale queued commands die at the front
           of their queue), and ``state`` for a halt (LOCKDOWN) or lane overflow (FAIL).
Calls:     the execution's venue directly (``cancel`` → CancelAck; ``new`` for the flatten order)
           — it does not wait for the send worker or the coordinator.
Tracing:   an operator's request has its own trace; each execution's escape is an ``escape`` span
           inside the *execution's* trace (``ExecutionRecord.trace_parent``) with a link to the
           request's span, and the venue cancels and EscapeStarted/EscapeDone are its children.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

from nats.js.errors import KeyNotFoundError

from bus import tracing
from bus.runtime import Delivery, Out, Poison, WorkerApp
from bus.topology import CONSUMERS, KV_EXECUTIONS, KV_SAFETY, evt_subject
from core.execution_fsm import is_terminal
from core.guardrails import alert, escape_alerts
from core.ids import flatten_order_id
from core.order_fsm import ORDER_TERMINAL
from schemas.codec import decode, decode_escape, encode, is_id
from schemas.enums import AlertCode, OrderType, ReasonCode, SafetyState
from schemas.messages import EscapeDone, EscapeStarted, ExecutionRecord
from schemas.venue import CancelAck, CancelOrder, NewOrder, OrderAck
from workers.common import VenueClient, VenueUnavailable, venues_from_env

OVERFLOW_PENDING = 1000  # escape requests waiting: the lane itself is backing up (FS095)


class EscapeWorker(WorkerApp):
    name = "escape"
    concurrency = 32
    ack_sync = True

    async def setup(self) -> None:
        self.safety_kv = await self.js.key_value(KV_SAFETY)
        self.executions = await self.js.key_value(KV_EXECUTIONS)
        self.venue = VenueClient(self.nc, timeout=2.0, default_venue=venues_from_env().default)
        self.overflowing = False
        self.background.append(asyncio.create_task(self._watch_lane()))

    async def _watch_lane(self) -> None:
        """Poll the lane's own backlog off the hot path (a JetStream API call per escape costs ~1 ms)."""
        while True:
            try:
                info = await self.js.consumer_info("EXEC_ESCAPE", CONSUMERS["escape"].durable)
                self.overflowing = info.num_pending > OVERFLOW_PENDING
            except Exception:
                pass
            await asyncio.sleep(0.5)

    def consumers(self):
        return [("escape", self.handle)]

    async def handle(self, d: Delivery) -> list[Out]:
        req = decode_escape(d.data)
        target = d.subject.rsplit(".", 1)[-1]
        if target != "all" and not is_id(target):  # no execution has it; the fence key would be illegal
            raise Poison(ReasonCode.VALIDATION_INVALID_FIELD.value, f"escape target {target[:40]!r} is not a correlation id")
        reason = req.reason
        if self.overflowing:
            reason = "ESCAPE_LANE_OVERFLOW"
            await self.safety_kv.put("state", SafetyState.FAIL.value.encode())
        # Fence first: from here on no send/adjust worker calls the venue for this scope.
        await self.safety_kv.put(f"halt.{'ALL' if target == 'all' else target}", str(time.time()).encode())
        if req.safety_state is not None:
            await self.safety_kv.put("state", req.safety_state.value.encode())
        if target == "all":
            outs: list[Out] = []
            for cid in await self._live_cids():
                outs += await self._escape_one(cid, reason, req.flatten, d.stream_seq)
            return outs
        return await self._escape_one(target, reason, req.flatten, d.stream_seq)

    async def _live_cids(self) -> list[str]:
        try:
            keys = await self.executions.keys()
        except Exception:
            return []
        live = []
        for key in keys:
            record = await self._record(key)
            if record is not None and not is_terminal(record.state):
                live.append(key)
        return live

    async def _record(self, cid: str) -> ExecutionRecord | None:
        try:
            entry = await self.executions.get(cid)
        except KeyNotFoundError:
            return None
        return decode(entry.value, ExecutionRecord) if entry.value else None

    async def _escape_one(self, cid: str, reason: str, flatten: bool, seq: int) -> list[Out]:
        record = await self._record(cid)
        if record is None or is_terminal(record.state):
            return []  # nothing live: an escape of a finished execution is a no-op
        with tracing.execution_span("escape", record.trace_parent, cid=cid, reason=reason, state=record.state, symbol=record.intent.symbol if record.intent else None):
            outs = await self._escape_live(record, reason, flatten, seq)
            # EscapeStarted/EscapeDone are published after this returns: carry the escape span's
            # context (or, untraced here, the execution's own) so they stay in the execution's trace.
            traceparent = tracing.current_traceparent({"traceparent": record.trace_parent})
        if traceparent:
            outs = [Out(o.subject, o.data, o.msg_id, {"traceparent": traceparent}) for o in outs]
        return outs

    async def _escape_live(self, record: ExecutionRecord, reason: str, flatten: bool, seq: int) -> list[Out]:
        cid = record.cid
        now = time.time()
        subject = evt_subject(cid)
        started = Out(subject, encode(EscapeStarted(cid=cid, reason=reason, fence=cid, ts=now)), f"{cid}.escape.{seq}.started")
        live = [c.client_order_id for c in record.children if c.dispatched and c.state not in ORDER_TERMINAL]
        # Every cancel at once: the slowest child, not the sum of them, bounds the escape.
        venue = self.venue.at(record.intent.venue if record.intent else None)
        acks = await asyncio.gather(*(self._cancel(venue, coid) for coid in live))
        cancelled, failed = [], []
        for coid, ack in zip(live, acks):
            if ack is None:
                failed.append(coid)
            elif ack.accepted or ack.reason_code is ReasonCode.UNKNOWN_ORDER:
                cancelled.append(coid)  # unknown = never arrived; the venue tombstoned it
            elif "closed" not in ack.reject_reason:
                failed.append(coid)  # "already closed" = filled at the venue: its report settles it
        alerts = list(escape_alerts(reason, ts=now))
        if reason == "VENUE_DISCONNECT" or failed:
            if not any(a.code is AlertCode.FS095 for a in alerts):
                alerts.append(alert(AlertCode.FS095, "ESCAPING", f"venue unreachable for {len(failed)} cancels", now))
        tracing.annotate(alerts=[a.code for a in alerts], cancelled=len(cancelled), failed=len(failed))
        flatten_id = await self._flatten(record) if flatten else None
        done = EscapeDone(cid=cid, reason=reason, cancelled=tuple(cancelled), failed=tuple(failed), flatten_client_order_id=flatten_id, alerts=tuple(alerts), ts=time.time())
        # Published in this order, pipelined, before the request is acked.
        return [started, Out(subject, encode(done), f"{cid}.escape.{seq}.done")]

    async def _cancel(self, venue: VenueClient, coid: str) -> CancelAck | None:
        try:
            return await venue.call("cancel", CancelOrder(client_order_id=coid), CancelAck)
        except VenueUnavailable:
            return None

    async def _flatten(self, record: ExecutionRecord) -> str | None:
        """Unwind what was filled with a MARKET order on the opposite side (seed 000's liquidation)."""
        filled = sum((c.filled_qty for c in record.children), Decimal(0))
        if filled <= 0 or record.intent is None:
            return None
        coid = flatten_order_id(record.idempotency_key)
        order = NewOrder(client_order_id=coid, cid=record.cid, symbol=record.intent.symbol, side=record.intent.side.opposite, qty=filled, order_type=OrderType.MARKET, mode=record.mode)
        try:
            ack = await self.venue.at(record.intent.venue).call("new", order, OrderAck)
        except VenueUnavailable:
            return None
        return coid if ack.accepted or ack.reason_code is ReasonCode.DUPLICATE_CLIENT_ORDER_ID else None
