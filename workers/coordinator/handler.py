"""Coordinator — owns the execution and child-order state machines.

Consumes:  ``exec.evt.<cid>`` (every fact; durable consumer ``coordinator``).
Publishes: ``exec.cmd.<stage>.<cid>`` stage commands, ``exec.escape.<cid>`` escape requests, and
           ``exec.evt.<cid>`` TimerFired facts when a deadline or a scheduled child comes due.
State:     KV ``EXECUTIONS`` (key = cid), written only with a revision check.

Per fact: load the record and its revision → :func:`core.coordinator.decide` → write with
``update(last=revision)`` (a concurrent writer makes us reload and re-decide) → publish the outbox
(deterministic ids) → ack. A redelivered fact (stream sequence ≤ ``last_fact_seq``) re-publishes
the stored outbox, which the server de-duplicates. Timers live in memory and are rebuilt from KV on
start, so deadlines and TWAP schedules survive a restart.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from bus import metrics
from bus.runtime import Delivery, Out, Retry, WorkerApp
from bus.topology import KV_EXECUTIONS, evt_subject
from core.coordinator import CoordinatorConfig, decide, next_wake
from schemas.codec import decode, decode_fact, encode
from schemas.messages import ExecutionRecord, TimerFired

log = logging.getLogger("jetexec.coordinator")


class CoordinatorWorker(WorkerApp):
    name = "coordinator"
    concurrency = 256

    async def setup(self) -> None:
        self.kv = await self.js.key_value(KV_EXECUTIONS)
        self.config = CoordinatorConfig()
        self.timers: list[tuple[float, str]] = []
        self.wake_at: dict[str, float] = {}
        self.timer_event = asyncio.Event()
        await self._load_timers()
        self.background.append(asyncio.create_task(self._timer_loop()))

    def consumers(self):
        return [("coordinator", self.handle)]

    async def handle(self, d: Delivery) -> list[Out]:
        fact = decode_fact(d.data)
        for _attempt in range(20):
            record, revision = await self._load(fact.cid)
            if record is not None and d.stream_seq and d.stream_seq <= record.last_fact_seq:
                return self._outbox(record)  # already applied: re-publish, ids de-duplicate
            new = decide(record, fact, time.time(), self.config)
            if new is None:
                return []
            new.last_fact_seq = d.stream_seq
            try:
                if revision is None:
                    await self.kv.create(fact.cid, encode(new))
                else:
                    await self.kv.update(fact.cid, encode(new), last=revision)
            except KeyWrongLastSequenceError:
                continue  # another coordinator advanced it: reload and decide again
            except Exception as exc:
                if "wrong last sequence" in str(exc).lower() or "key exists" in str(exc).lower():
                    continue
                raise Retry(f"KV write failed: {type(exc).__name__}")
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

    async def _load_timers(self) -> None:
        """Rebuild every live execution's next wake-up from KV (restart safety)."""
        try:
            keys = await self.kv.keys()
        except Exception:
            return  # empty bucket
        for key in keys:
            record, _ = await self._load(key)
            if record is not None:
                self._arm(record)

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
            fact = TimerFired(cid=cid, step=record.version, kind="WAKE", ts=time.time())
            try:
                await self.publisher.publish_one(evt_subject(cid), encode(fact), f"{cid}.timer.{record.version}.{int(due * 1000)}")
            except Exception:
                log.warning("timer publish failed for %s; retrying", cid)
                self.wake_at[cid] = time.time() + 0.5
                heapq.heappush(self.timers, (self.wake_at[cid], cid))
