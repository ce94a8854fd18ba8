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
import json
import time
from decimal import Decimal

from nats.js.errors import KeyNotFoundError

from bus import tracing
from bus.runtime import Delivery, Out, Poison, WorkerApp
from bus.topology import CONSUMERS, CTL_LIVE, CTL_RECORD, KV_COORD, KV_EXECUTIONS, KV_SAFETY, PARTITIONS, evt_subject
from core.execution_fsm import is_terminal
from core.guardrails import alert, escape_alerts
from core.ids import flatten_order_id
from core.order_fsm import ORDER_TERMINAL
from schemas.codec import decode, decode_escape, encode, is_id
from schemas.enums import AlertCode, OrderType, ReasonCode, SafetyState
from schemas.messages import Checkpoint, EscapeDone, EscapeStarted, ExecutionRecord
from schemas.venue import CancelAck, CancelOrder, NewOrder, OrderAck
from workers.common import VenueClient, VenueUnavailable, venues_from_env

CTL_WAIT_S = 0.05  # how long the owner may take to answer a record look-up before the snapshot is used
LIVE_WAIT_S = 0.5  # escape-all: how long every partition's owner may take to list its live executions
OVERFLOW_PENDING = 1000  # escape requests waiting: the lane itself is backing up (FS095)


class EscapeWorker(WorkerApp):
    name = "escape"
    concurrency = 32
    ack_sync = True

    async def setup(self) -> None:
        self.safety_kv = await self.js.key_value(KV_SAFETY)
        self.executions = await self.js.key_value(KV_EXECUTIONS)
        self.coord_kv = await self.js.key_value(KV_COORD)
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
        # The fence and the look-up go together: the fence must be stored before the escape reports
        # (from then on no send/adjust worker calls the venue for this scope); a child sent in
        # between is one the look-up may not list, and the coordinator re-escapes it by name.
        fence = self.safety_kv.put(f"halt.{'ALL' if target == 'all' else target}", str(time.time()).encode())
        if req.safety_state is not None:
            await self.safety_kv.put("state", req.safety_state.value.encode())
        if target == "all":
            _, cids = await asyncio.gather(fence, self._live_cids())
            outs: list[Out] = []
            for cid in cids:
                outs += await self._escape_one(cid, reason, req.flatten, d.stream_seq)
            return outs
        if req.children is not None and not req.flatten:
            # The coordinator named the live children: no look-up at all.
            await fence
            with tracing.execution_span("escape", d.headers.get("traceparent"), cid=target, reason=reason):
                return await self._escape_children(target, req.children, reason, None, d.stream_seq, req.venue)
        _, record = await asyncio.gather(fence, self._record(target))
        return await self._escape_record(record, reason, req.flatten, d.stream_seq)

    async def _live_cids(self) -> list[str]:
        """Every live execution: the coordinators answer for the partitions they own (exactly);
        a partition nobody answers for is read from its checkpoint in KV ``COORD``."""
        inbox = self.nc.new_inbox()
        replies: list[dict] = []
        all_answered = asyncio.Event()

        async def on_reply(msg) -> None:
            try:
                replies.append(json.loads(msg.data))
            except ValueError:
                return
            if len({p for r in replies for p in r.get("partitions", ())}) >= PARTITIONS:
                all_answered.set()

        sub = await self.nc.subscribe(inbox, cb=on_reply)
        try:
            await self.nc.publish(CTL_LIVE, b"", reply=inbox)
            try:
                await asyncio.wait_for(all_answered.wait(), LIVE_WAIT_S)
            except asyncio.TimeoutError:
                pass  # some partition has no owner answering: its checkpoint below
        finally:
            await sub.unsubscribe()
        covered = {p for r in replies for p in r.get("partitions", ())}
        live = {cid for r in replies for cid in r.get("live", ())}
        for p in set(range(PARTITIONS)) - covered:
            try:
                entry = await self.coord_kv.get(f"cp.{p}")
                live |= set(decode(entry.value, Checkpoint).live)
            except KeyNotFoundError:
                continue
        return sorted(live)

    async def _record(self, cid: str) -> ExecutionRecord | None:
        """The owner's record (exact); the snapshot when no coordinator holds it in memory."""
        try:
            msg = await self.nc.request(f"{CTL_RECORD}.{cid}", b"", timeout=CTL_WAIT_S)
            if msg.data:
                return decode(msg.data, ExecutionRecord)
        except Exception:
            pass
        try:
            entry = await self.executions.get(cid)
        except KeyNotFoundError:
            return None
        return decode(entry.value, ExecutionRecord) if entry.value else None

    async def _escape_one(self, cid: str, reason: str, flatten: bool, seq: int) -> list[Out]:
        return await self._escape_record(await self._record(cid), reason, flatten, seq)

    async def _escape_record(self, record: ExecutionRecord | None, reason: str, flatten: bool, seq: int) -> list[Out]:
        if record is None or is_terminal(record.state):
            return []  # nothing live: an escape of a finished execution is a no-op
        cid = record.cid
        with tracing.execution_span("escape", record.trace_parent, cid=cid, reason=reason, state=record.state, symbol=record.intent.symbol if record.intent else None):
            live = tuple(c.client_order_id for c in record.children if c.dispatched and c.state not in ORDER_TERMINAL)
            outs = await self._escape_children(cid, live, reason, record if flatten else None, seq, record.intent.venue if record.intent else None)
            # EscapeStarted/EscapeDone are published after this returns: carry the escape span's
            # context (or, untraced here, the execution's own) so they stay in the execution's trace.
            traceparent = tracing.current_traceparent({"traceparent": record.trace_parent})
        if traceparent:
            outs = [Out(o.subject, o.data, o.msg_id, {"traceparent": traceparent}) for o in outs]
        return outs

    async def _escape_children(self, cid: str, live: tuple[str, ...], reason: str, flatten_from: ExecutionRecord | None, seq: int, venue_id: str | None = None) -> list[Out]:
        now = time.time()
        subject = evt_subject(cid)
        started = Out(subject, encode(EscapeStarted(cid=cid, reason=reason, fence=cid, ts=now)), f"{cid}.escape.{seq}.started")
        # Every cancel at once: the slowest child, not the sum of them, bounds the escape.
        venue = self.venue.at(venue_id)
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
        flatten_id = await self._flatten(flatten_from) if flatten_from is not None else None
        done = EscapeDone(cid=cid, reason=reason, cancelled=tuple(cancelled), failed=tuple(failed), attempted=tuple(live), flatten_client_order_id=flatten_id, alerts=tuple(alerts), ts=time.time())
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
