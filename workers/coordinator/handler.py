"""Coordinator — owns the execution and child-order state machines.

Consumes:  the fact log, partitioned: ``exec.evt.<cid>`` is stored as ``exec.evt.<p>.<cid>`` and each
           partition ``p`` has its own durable consumer ``coordinator-p<p>`` in the priority group
           ``coordinator`` with the pinned-client policy. Every replica pulls every partition; the
           server delivers each partition to one of them (its owner) and moves it to another when the
           owner stops pulling.
Publishes: ``exec.cmd.<stage>.<cid>`` stage commands, ``exec.escape.<cid>`` escape requests,
           ``exec.evt.<cid>`` TimerFired facts, ``exec.audit.<cid>`` the execution's transitions and
           alerts (once each: the id names the fact that caused them), and — core NATS —
           ``exec.result.<cid>`` the terminal result.
Answers:   ``exec.ctl.record.<cid>`` (the owner's record, exact) and ``exec.ctl.live`` (live cids of the
           partitions this replica owns), for the escape worker.
State:     in memory, per partition. The fact log is the durable truth: ``decide`` is a pure function
           of (record, fact, the fact's stream timestamp), so replaying facts rebuilds the state
           exactly. KV ``EXECUTIONS`` (records) and KV ``COORD`` (checkpoints) are snapshots written
           off the hot path by :mod:`workers.coordinator.snapshots`, with compare-and-set.
Config:    ``JETEXEC_COORDINATOR_CONFIG`` JSON: ``stage_timeout_ms`` per state, ``fill_delay_warn_s``
           (GR064), ``max_adjust_rounds``.

Per fact: decide → keep the new record → publish its outbox and audit entries (deterministic ids) →
ack. Re-applying a fact changes nothing; if the fact's own outbox is still in the record's
``outbox_log`` it is published again (the server drops the duplicate ids): that covers a crash
between deciding and publishing.

Taking over a partition (the first delivery after the pin moved here): read its checkpoint, load the
live records it names, replay the partition's facts after the watermark from the stream, then write
a checkpoint (the fence: a previous owner's next compare-and-set fails and it lets go). Deliveries of
facts the replay already applied publish their outboxes again, which is what a fact the previous
owner applied but never acked needs.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import json
import logging
import os
import time
import uuid

from nats.js.errors import KeyNotFoundError

from bus import metrics, tracing
from bus.runtime import HOUSEKEEPING, Delivery, Out, Poison, Retry, WorkerApp
from bus.streams import read_stream
from bus.topology import COORDINATOR_CONSUMERS, CTL_LIVE, CTL_RECORD, KV_COORD, KV_EXECUTIONS, LOAD_SUBJECT, PARTITIONS, audit_subject, coordinator_consumer, evt_subject, partition_of, probe_token
from core import audit
from core.admission import REPORT_EVERY_S, LoadReport, lag_pressure, stage_pressure
from core.coordinator import CoordinatorConfig, decide, decision_audit, next_wake, schedule_due
from core.execution_fsm import is_terminal
from schemas.codec import decode, decode_fact, encode
from schemas.enums import ExecutionState as S, ReasonCode, TimerKind
from schemas.messages import Checkpoint, ExecutionCreated, ExecutionRecord, IntentRejected, OutboxEntry, OutMsg, PartitionProbe, TimerFired
from workers.coordinator.snapshots import PartitionState, SnapshotWriter

log = logging.getLogger("jetexec.coordinator")

OUTBOX_LOG = 8
TAKEOVER_GRACE_S = 6.0  # longer than any stage consumer's ack wait: redelivered work runs first
PROBE_STALE_S = 3.0  # a checkpoint this old (its owner refreshes it every second) means no live owner
TERMINAL_KEPT = 5000  # finished records kept in memory for late facts; older ones reload from KV


class CoordinatorWorker(WorkerApp):
    name = "coordinator"
    concurrency = 256

    async def setup(self) -> None:
        self.kv = await self.js.key_value(KV_EXECUTIONS)
        self.coord_kv = await self.js.key_value(KV_COORD)
        self.config = CoordinatorConfig.from_mapping(json.loads(os.environ.get("JETEXEC_COORDINATOR_CONFIG", "{}")))
        self.instance = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.parts = {p: PartitionState(p) for p in range(PARTITIONS)}
        self.records: dict[str, ExecutionRecord] = {}  # live executions of owned partitions
        self.finished: collections.OrderedDict[str, ExecutionRecord] = collections.OrderedDict()
        self.snapshots = SnapshotWriter(self.jspub, self._revision, self.instance, self._on_conflict)
        self.timers: list[tuple[float, str]] = []
        self.wake_at: dict[str, float] = {}
        self.timer_event = asyncio.Event()
        self.background.append(asyncio.create_task(self.snapshots.run(self.parts)))
        self.background.append(asyncio.create_task(self._timer_loop()))
        await self.nc.subscribe(f"{CTL_RECORD}.*", cb=self._on_ctl_record)
        await self.nc.subscribe(CTL_LIVE, cb=self._on_ctl_live)
        self.background.append(asyncio.create_task(self._probe_loop()))
        self.pressure = 0.0
        self.background.append(asyncio.create_task(self._load_loop()))

    def consumers(self):
        return [(coordinator_consumer(p), self._handler_for(p)) for p in range(PARTITIONS)]

    def configure_loop(self, consumer: str, loop) -> None:
        p = int(consumer.rsplit("p", 1)[1])
        loop.on_pin_lost = lambda: self._release(self.parts[p], "pin moved to another replica")

    def _handler_for(self, p: int):
        part = self.parts[p]

        def handle(d: Delivery):
            if not part.owned:
                return self._take_over_then(part, d)
            return self._apply(part, d)

        return handle

    # ---- one fact ---------------------------------------------------------------------------------
    def _apply(self, part: PartitionState, d: Delivery):
        fact = decode_fact(d.data)
        if fact.cid != d.cid:  # it would change another execution than the subject's: poison
            raise Poison(ReasonCode.VALIDATION_INVALID_FIELD.value, f"fact cid {fact.cid!r} does not match its subject")
        if isinstance(fact, PartitionProbe):
            return []  # its delivery made this replica the owner (or found it one): nothing to decide
        record = self._record(fact.cid)
        if record is None and (d.num_delivered > 1 or not isinstance(fact, (ExecutionCreated, IntentRejected))):
            # Not in memory: a finished execution we evicted, or none at all. (A first delivery of
            # ExecutionCreated is a new execution: the gateway stores it only as a cid's first fact.)
            return self._load_then_apply(part, d, fact)
        return self._decide(part, fact, record, d.stream_seq, d.ts or time.time(), d.headers)

    async def _load_then_apply(self, part: PartitionState, d: Delivery, fact) -> list[Out]:
        record = await self._load(fact.cid)
        if record is not None:
            self._keep(part, record)
        return self._decide(part, fact, record, d.stream_seq, d.ts or time.time(), d.headers)

    def _decide(self, part: PartitionState, fact, record: ExecutionRecord | None, seq: int, now: float, headers: dict | None, replay: bool = False) -> list[Out]:
        new = decide(record, fact, now, self.config)
        if new is None:
            if record is None:
                return []
            # Already applied: publish its outbox again if we still have it (the ids make it a no-op
            # for the server when it was published before).
            return [Out(m.subject, m.data, m.msg_id) for e in record.outbox_log if e.seq == seq for m in e.msgs]
        new.last_fact_seq = seq
        entries = decision_audit(record, new, seq, now, fact)
        audit_msgs = [OutMsg(audit_subject(e.correlation_id), audit.msg_id(e.source, e.n), audit.encode_entry(e)) for e in entries]
        if new.outbox or audit_msgs:
            # Everything this fact produced, so that a redelivery (or a delivery after a takeover's
            # replay) publishes it again: the commands and the audit entries.
            new.outbox_log = [*(record.outbox_log if record else []), OutboxEntry(seq, [*new.outbox, *audit_msgs])][-OUTBOX_LOG:]
        if record is None:
            # The execution's trace context, for what it publishes later from no message: timers.
            new.trace_parent = tracing.current_traceparent(headers)
            if not replay:
                self.snapshots.revisions[new.cid] = 0  # new: the gateway stored it as the cid's first fact
        self._keep(part, new)
        part.applied_seq = max(part.applied_seq, seq)
        self.snapshots.mark(part, new, seq)
        self._arm(new)
        outs = [Out(m.subject, m.data, m.msg_id) for m in (*new.outbox, *audit_msgs)]
        if not replay:
            # How much of a stage deadline the queues took (admission control, core.admission).
            pressure = stage_pressure(record, fact, now, self.config.stage_timeout_ms)
            self.pressure = max(self.pressure, lag_pressure(time.time() - now), pressure or 0.0)
            tracing.annotate(state=new.state, symbol=new.intent.symbol if new.intent else None, side=new.intent.side if new.intent else None, alerts=[a.code for a in new.alerts[len(record.alerts) if record else 0 :]])
            if record is None or record.state is not new.state:
                metrics.EXECUTIONS.labels(new.state.value).inc()
            for a in new.alerts[len(record.alerts) if record else 0 :]:
                metrics.ALERTS.labels(a.code.value).inc()
        return outs

    # ---- records in memory ------------------------------------------------------------------------
    def _record(self, cid: str) -> ExecutionRecord | None:
        record = self.records.get(cid)
        if record is None:
            record = self.finished.get(cid)
        return record

    def _keep(self, part: PartitionState, record: ExecutionRecord) -> None:
        cid = record.cid
        if is_terminal(record.state):
            self.records.pop(cid, None)
            self.finished[cid] = record
            self.finished.move_to_end(cid)
            while len(self.finished) > TERMINAL_KEPT:
                self.finished.popitem(last=False)
        else:
            self.records[cid] = record
            part.live.add(cid)

    async def _load(self, cid: str) -> ExecutionRecord | None:
        try:
            entry = await self.kv.get(cid)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        self.snapshots.revisions[cid] = entry.revision
        return decode(entry.value, ExecutionRecord)

    async def _revision(self, bucket: str, key: str) -> int | None:
        try:
            entry = await (self.kv if bucket == KV_EXECUTIONS else self.coord_kv).get(key)
        except KeyNotFoundError:
            return None
        return entry.revision

    # ---- partition ownership ------------------------------------------------------------------------
    async def _take_over_then(self, part: PartitionState, d: Delivery) -> list[Out]:
        if part.recovering is None:
            part.recovering = asyncio.ensure_future(self._take_over(part))
        try:
            await asyncio.shield(part.recovering)
        finally:
            if part.recovering is not None and part.recovering.done():
                part.recovering = None
        if not part.owned:
            raise Retry("partition not taken over", delay=0.5)
        return self._apply(part, d)

    async def _take_over(self, part: PartitionState) -> None:
        """Rebuild the partition from its checkpoint and the facts after it, then fence it."""
        started = time.monotonic()
        try:
            entry = await self.coord_kv.get(f"cp.{part.index}")
            cp, epoch = decode(entry.value, Checkpoint), entry.revision
        except KeyNotFoundError:
            cp, epoch = Checkpoint(), None
        part.epoch = epoch
        part.live = set()
        records = await asyncio.gather(*(self._load(cid) for cid in cp.live))
        for record in records:
            if record is not None:
                self._keep(part, record)
        replayed = 0
        async for raw in read_stream(self.nc, "EXEC_EVT", f"exec.evt.{part.index}.*", start_seq=cp.w + 1, complete=True):
            try:
                fact = decode_fact(raw.data)
            except Exception:
                continue  # dead-lettered when delivered
            cid = raw.subject.rsplit(".", 1)[-1]
            if fact.cid != cid or isinstance(fact, PartitionProbe):
                continue
            record = self._record(cid)
            if record is None and not isinstance(fact, (ExecutionCreated, IntentRejected)):
                record = await self._load(cid)
                if record is not None:
                    self._keep(part, record)
            # A fact the snapshot reflects already changes nothing (decide is idempotent): no seq
            # bookkeeping, which out-of-order redeliveries would defeat.
            self._decide(part, fact, record, raw.seq, raw.ts, raw.headers, replay=True)
            replayed += 1
        part.applied_seq = max(part.applied_seq, cp.w)
        if part.live:
            # Commands the previous owner decided but never published go out only now (their facts
            # come back to us as redeliveries): judge no stage deadline before they had time to run.
            part.grace_until = time.time() + TAKEOVER_GRACE_S
        part.owned = True
        # The fence: the checkpoint becomes ours, its watermark unchanged — what the replay rebuilt
        # is not stored yet, and a takeover after ours must replay it again.
        if not await self.snapshots.write_checkpoint(part, cp.w):
            part.owned = False
            return
        part.checkpoint_at = time.monotonic()
        for cid in part.live:
            record = self.records.get(cid)
            if record is not None:
                self._arm(record)
        log.warning("took over partition %d: %d live, %d facts replayed after seq %d, %.0f ms", part.index, len(part.live), replayed, cp.w, (time.monotonic() - started) * 1000)

    def _release(self, part: PartitionState, why: str) -> None:
        if not part.owned:
            return
        log.warning("partition %d released: %s", part.index, why)
        part.owned = False
        part.epoch = None
        part.dirty.clear()
        part.dirty_from.clear()
        part.dirty_at.clear()
        part.applied_seq = 0
        for cid in part.live:
            self.records.pop(cid, None)
            self.wake_at.pop(cid, None)
        part.live = set()
        part.checkpointed_seq = -1

    async def _on_conflict(self, part: PartitionState) -> None:
        """A compare-and-set failed: if the checkpoint is no longer ours, someone else owns the
        partition; otherwise a stale writer touched a record, and the next flush writes it again."""
        try:
            entry = await self.coord_kv.get(f"cp.{part.index}")
            ours = entry.revision == part.epoch
        except KeyNotFoundError:
            ours = False
        if not ours:
            self._release(part, "another coordinator wrote its checkpoint")

    async def _load_loop(self) -> None:
        """Publish this replica's load for the gateways (``exec.load``, core NATS) every 100 ms."""
        early_states = (S.INIT, S.PRECHECK, S.SPLITTING, S.SENDING)
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            report = LoadReport(instance=self.instance, pressure=round(self.pressure, 3), early=sum(1 for r in self.records.values() if r.state in early_states), at=time.time())
            self.pressure = 0.0
            try:
                await self.nc.publish(LOAD_SUBJECT, encode(report))
            except Exception:
                pass  # disconnected: the gateways ignore a stale report

    async def _probe_loop(self) -> None:
        """Make every partition that has no live owner get one. The server moves a pin only with a
        delivery, so a partition with live executions but no new facts (a TWAP between slices)
        would wait forever after its owner died: a probe fact is that delivery. Probed at start,
        then whenever a partition we do not own has a checkpoint older than ``PROBE_STALE_S``
        (its owner refreshes it every second)."""
        probed: dict[int, float] = {}
        first = True
        while True:
            now = time.time()
            for part in self.parts.values():
                if part.owned:
                    continue
                if not first:
                    try:
                        at = decode((await self.coord_kv.get(f"cp.{part.index}")).value, Checkpoint).at
                    except KeyNotFoundError:
                        at = 0.0
                    except Exception:
                        continue
                    if now - at < PROBE_STALE_S or now - probed.get(part.index, 0.0) < PROBE_STALE_S:
                        continue
                token = probe_token(part.index)
                probe = PartitionProbe(cid=token, partition=part.index, by=self.instance, ts=now)
                try:
                    # Housekeeping, not part of any execution: no span (and no trace of its own).
                    await self.jspub.request(evt_subject(token), encode(probe), {"Nats-Msg-Id": f"probe.{part.index}.{self.instance}.{int(now)}", HOUSEKEEPING: "probe"})
                    probed[part.index] = now
                except Exception:
                    log.warning("probe of partition %d failed", part.index)
            first = False
            await asyncio.sleep(1.0)

    # ---- control requests (the escape worker) -----------------------------------------------------
    async def _on_ctl_record(self, msg) -> None:
        """The owner answers: its record, or an empty reply when it holds none in memory (finished
        long ago, or never): then the snapshot is the answer, without waiting. Others keep quiet."""
        cid = msg.subject.rsplit(".", 1)[-1]
        if not msg.reply or not self.parts[partition_of(cid)].owned:
            return
        record = self._record(cid)
        await self.nc.publish(msg.reply, encode(record) if record is not None else b"")

    async def _on_ctl_live(self, msg) -> None:
        if not msg.reply:
            return
        owned = [p.index for p in self.parts.values() if p.owned]
        live = [cid for p in self.parts.values() if p.owned for cid in p.live]
        await self.nc.publish(msg.reply, json.dumps({"partitions": owned, "live": live, "instance": self.instance, "pid": os.getpid()}).encode())

    async def teardown(self) -> None:
        # What this replica decided is in memory: write it out before the pin moves on.
        try:
            await self.snapshots.flush(self.parts, checkpoint=True, everything=True)
        except Exception:
            log.warning("final snapshot flush failed")

    # ---- timers -----------------------------------------------------------------------------------
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
                continue  # superseded by a later arm, or the partition was released
            del self.wake_at[cid]
            record = self.records.get(cid)
            if record is None or is_terminal(record.state):
                continue
            kind = TimerKind.WAKE
            grace_until = self.parts[partition_of(cid)].grace_until
            if time.time() < grace_until:
                # Just taken over: scheduled children still go out on time ("SCHEDULE" judges no
                # stage deadline); the full wake comes when the grace ends.
                kind = TimerKind.SCHEDULE
                self.wake_at[cid] = grace_until
                heapq.heappush(self.timers, (grace_until, cid))
                if not schedule_due(record, time.time()):
                    continue
            fact = TimerFired(cid=cid, step=record.version, kind=kind, ts=time.time())
            # No incoming message here: publish under the execution's stored trace context.
            headers = {"traceparent": record.trace_parent} if record.trace_parent else None
            try:
                await self.publisher.publish_one(evt_subject(cid), encode(fact), f"{cid}.{'timer' if kind is TimerKind.WAKE else 'sched'}.{record.version}.{int(due * 1000)}", headers)
            except Exception:
                log.warning("timer publish failed for %s; retrying", cid)
                self.wake_at[cid] = time.time() + 0.5
                heapq.heappush(self.timers, (self.wake_at[cid], cid))


assert set(COORDINATOR_CONSUMERS) == {coordinator_consumer(p) for p in range(PARTITIONS)}
