"""Coordinator — owns the execution and child-order state machines.

Consumes:  ``exec.evt.<cid>`` (every fact; durable consumer ``coordinator``).
Publishes: ``exec.cmd.<stage>.<cid>`` stage commands, ``exec.escape.<cid>`` escape requests, and
           ``exec.evt.<cid>`` TimerFired facts when a deadline or a scheduled child comes due.
State:     KV ``EXECUTIONS`` (key = cid), written only with a revision check.
Config:    ``JETEXEC_COORDINATOR_CONFIG`` JSON: ``stage_timeout_ms`` per state, ``fill_delay_warn_s``
           (GR064), ``max_adjust_rounds``.

Per fact: load the record and its revision → :func:`core.coordinator.decide` (``now`` = the fact's
stream timestamp, so the ledger can replay exactly the same decisions) → write with
``update(last=revision)`` (a concurrent writer makes us reload and re-decide) → publish the outbox
(deterministic ids) → ack. Re-applying a fact changes nothing; if the fact's own outbox is still in
the record's ``outbox_log`` it is published again (the server drops the duplicate ids), which covers
a crash between the KV write and the publish. On start, the coordinator re-publishes the recent
outboxes of every execution (same reason: after a crash, JetStream redelivers the dead process's
in-flight facts only after ``ack_wait``, newer facts first).

Timers live in memory and are rebuilt from KV on start, so deadlines and TWAP schedules survive a
restart. Stage timeouts that passed while no coordinator ran wait ``STARTUP_GRACE_S`` (longer than
the consumer's ack wait), so stage results stuck with the dead process are applied before any
timeout is judged.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import os
import time

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from bus import metrics, tracing
from bus.runtime import Delivery, Out, Poison, Retry, WorkerApp
from bus.topology import CONSUMERS, DUPLICATE_WINDOW_S, KV_EXECUTIONS, evt_subject
from core.coordinator import CoordinatorConfig, decide, next_wake, schedule_due
from core.execution_fsm import is_terminal
from schemas.codec import decode, decode_fact, encode
from schemas.enums import ReasonCode
from schemas.messages import ExecutionCreated, ExecutionRecord, IntentRejected, OutboxEntry, TimerFired

log = logging.getLogger("jetexec.coordinator")

OUTBOX_LOG = 8
STARTUP_GRACE_S = CONSUMERS["coordinator"].ack_wait_s + 1.0


class CoordinatorWorker(WorkerApp):
    name = "coordinator"
    concurrency = 256

    async def setup(self) -> None:
        self.kv = await self.js.key_value(KV_EXECUTIONS)
        self.config = CoordinatorConfig.from_mapping(json.loads(os.environ.get("JETEXEC_COORDINATOR_CONFIG", "{}")))
        self.cache: dict[str, tuple[ExecutionRecord, int]] = {}  # live executions written by us
        self.timers: list[tuple[float, str]] = []
        self.wake_at: dict[str, float] = {}
        self.timer_event = asyncio.Event()
        self.grace_until = 0.0
        await self._recover()
        self.background.append(asyncio.create_task(self._timer_loop()))

    def consumers(self):
        return [("coordinator", self.handle)]

    async def handle(self, d: Delivery) -> list[Out]:
        fact = decode_fact(d.data)
        if fact.cid != d.cid:  # it would change another execution than the subject's: poison
            raise Poison(ReasonCode.VALIDATION_INVALID_FIELD.value, f"fact cid {fact.cid!r} does not match its subject")
        for attempt in range(20):
            # The cache saves a KV read per fact; the revision check on write keeps it honest (a
            # write by another coordinator fails our CAS, and we reload from KV).
            cached = self.cache.get(fact.cid) if attempt == 0 else None
            if cached is None and attempt == 0 and isinstance(fact, (ExecutionCreated, IntentRejected)):
                cached = (None, None)  # a new execution: create() below fails if it exists after all
            record, revision = cached if cached is not None else await self._load(fact.cid)
            new = decide(record, fact, d.ts or time.time(), self.config)
            if new is None:
                if record is None:
                    return []
                # Already applied (a redelivery): publish its outbox again if we still have it.
                return [Out(m.subject, m.data, m.msg_id) for e in record.outbox_log if e.seq == d.stream_seq for m in e.msgs]
            new.last_fact_seq = d.stream_seq
            if new.outbox:
                new.outbox_log = [*(record.outbox_log if record else []), OutboxEntry(d.stream_seq, new.outbox)][-OUTBOX_LOG:]
            try:
                if revision is None:
                    # The execution's trace context, for what it publishes later from no message:
                    # timers and outbox re-publishes (docs/observability.md).
                    new.trace_parent = tracing.current_traceparent(d.headers)
                    new_revision = await self.kv.create(fact.cid, encode(new))
                else:
                    new_revision = await self.kv.update(fact.cid, encode(new), last=revision)
            except KeyWrongLastSequenceError:
                self.cache.pop(fact.cid, None)
                continue  # another coordinator advanced it: reload and decide again
            except Exception as exc:
                self.cache.pop(fact.cid, None)
                if "wrong last sequence" in str(exc).lower() or "key exists" in str(exc).lower():
                    continue
                raise Retry(f"KV write failed: {type(exc).__name__}")
            tracing.annotate(state=new.state, symbol=new.intent.symbol if new.intent else None, side=new.intent.side if new.intent else None, alerts=[a.code for a in new.alerts[len(record.alerts) if record else 0 :]])
            if is_terminal(new.state):
                self.cache.pop(fact.cid, None)
            else:
                self.cache[fact.cid] = (new, new_revision)
            if record is None or record.state is not new.state:
                metrics.EXECUTIONS.labels(new.state.value).inc()
            for a in new.alerts[len(record.alerts) if record else 0 :]:
                metrics.ALERTS.labels(a.code.value).inc()
            self._arm(new)
            return self._outbox(new)
        raise Retry("CAS contention", delay=0.05)

    async def _load(self, cid: str) -> tuple[ExecutionRecord | None, int | None]:
        try:
            entry = await self.kv.get(cid)
        except KeyNotFoundError:
            return None, None
        if entry.value is None:
            return None, None
        return decode(entry.value, ExecutionRecord), entry.revision

    @staticmethod
    def _outbox(record: ExecutionRecord) -> list[Out]:
        return [Out(m.subject, m.data, m.msg_id) for m in record.outbox]

    async def on_reconnected(self) -> None:
        """After a bus outage, stage results may sit with a dead delivery until ack_wait: judge no
        timeout until they have had that chance (as after our own restart)."""
        self.grace_until = max(self.grace_until, time.time() + STARTUP_GRACE_S)

    # ---- timers ------------------------------------------------------------------------------
    def _arm(self, record: ExecutionRecord) -> None:
        wake = next_wake(record, self.config)
        if wake is None:
            self.wake_at.pop(record.cid, None)
            return
        if self.wake_at.get(record.cid) == wake:
            return
        self.wake_at[record.cid] = wake
        heapq.heappush(self.timers, (wake, record.cid))
        self.timer_event.set()

    async def _recover(self) -> None:
        """Rebuild every live execution's next wake-up from KV, and re-publish recent outboxes."""
        try:
            keys = await self.kv.keys()
        except Exception:
            return  # empty bucket
        recent = time.time() - DUPLICATE_WINDOW_S + 30  # only ids the server can still de-duplicate
        # A fact at or below the consumer's ack floor was acked, so its outbox was published (we
        # publish before we ack): re-publishing it could only make duplicates — and a work-queue
        # stream forgets the ids of consumed messages when the server restarts.
        try:
            ack_floor = (await self.js.consumer_info("EXEC_EVT", CONSUMERS["coordinator"].durable)).ack_floor.stream_seq
        except Exception:
            ack_floor = 0
        for key in keys:
            record, _ = await self._load(key)
            if record is None:
                continue
            if not is_terminal(record.state):
                # Live work from before: its stage results may be held by the dead process's
                # deliveries until ack_wait, so judge no stage timeout before then.
                self.grace_until = time.time() + STARTUP_GRACE_S
            self._arm(record)
            if record.updated_at >= recent and record.outbox_log:
                headers = {"traceparent": record.trace_parent} if record.trace_parent else None  # its execution's trace
                outs = [Out(m.subject, m.data, m.msg_id, headers) for e in record.outbox_log if e.seq > ack_floor for m in e.msgs]
                await self.publisher.publish(outs)

    async def _timer_loop(self) -> None:
        while True:
            delay = self.timers[0][0] - time.time() if self.timers else 3600
            if delay > 0:
                self.timer_event.clear()
                try:
                    await asyncio.wait_for(self.timer_event.wait(), min(delay, 1.0))
                except asyncio.TimeoutError:
                    pass
                continue
            due, cid = heapq.heappop(self.timers)
            if self.wake_at.get(cid) != due:
                continue  # superseded by a later arm
            del self.wake_at[cid]
            record, _ = await self._load(cid)
            if record is None:
                continue
            kind = "WAKE"
            if time.time() < self.grace_until:
                # In the grace after a restart or an outage: scheduled children still go out on
                # time ("SCHEDULE" wakes judge no stage timeout); the full wake comes after it.
                kind = "SCHEDULE"
                self.wake_at[cid] = self.grace_until
                heapq.heappush(self.timers, (self.grace_until, cid))
                if not schedule_due(record, time.time()):
                    continue
            fact = TimerFired(cid=cid, step=record.version, kind=kind, ts=time.time())
            # No incoming message here: publish under the execution's stored trace context.
            headers = {"traceparent": record.trace_parent} if record.trace_parent else None
            try:
                await self.publisher.publish_one(evt_subject(cid), encode(fact), f"{cid}.{'timer' if kind == 'WAKE' else 'sched'}.{record.version}.{int(due * 1000)}", headers)
            except Exception:
                log.warning("timer publish failed for %s; retrying", cid)
                self.wake_at[cid] = time.time() + 0.5
                heapq.heappush(self.timers, (self.wake_at[cid], cid))
