"""Snapshots of the coordinator's in-memory state, written off the hot path.

The fact log is the truth; what is written here serves ``status``, waiting clients and a fast
takeover. Two kinds of write, both compare-and-set (so a coordinator that lost its partition
without noticing cannot overwrite its successor):

* **Records** (KV ``EXECUTIONS`` key ``<cid>``): every record that changed since the last flush,
  coalesced, pipelined, every ``FLUSH_S`` — and a terminal record at once, followed by its result on
  ``exec.result.<cid>`` (the snapshot is stored first, so a client that subscribes late and then
  reads the snapshot never misses the result).
* **Checkpoints** (KV ``COORD`` key ``cp.<p>``): per partition, the watermark ``w`` (every fact of
  the partition with stream sequence ``<= w`` is reflected in stored records) and the live cids. A
  new owner loads the live records and replays the partition's facts after ``w``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from bus.jspub import JsPublisher, PublishError
from bus.topology import KV_COORD, KV_EXECUTIONS, result_subject
from core.coordinator import to_result
from core.execution_fsm import is_terminal
from schemas.codec import encode
from schemas.messages import Checkpoint, ExecutionRecord

log = logging.getLogger("jetexec.coordinator")

FLUSH_S = 0.1  # the flusher's tick
SNAPSHOT_AGE_S = 1.0  # a live record is written once it has been dirty this long (finished ones at once)
CHECKPOINT_S = 0.25  # how far a takeover may have to replay, at most (plus what arrived meanwhile)
HEARTBEAT_S = 1.0  # an owner rewrites its checkpoint at least this often: its age says the owner lives


@dataclass
class PartitionState:
    """What the coordinator knows about one partition of the fact log."""

    index: int
    owned: bool = False
    epoch: int | None = None  # KV revision of our last checkpoint write (None: none yet / not ours)
    applied_seq: int = 0  # highest fact sequence applied
    checkpointed_seq: int = -1
    live: set[str] = field(default_factory=set)
    dirty: dict[str, ExecutionRecord] = field(default_factory=dict)
    dirty_from: dict[str, int] = field(default_factory=dict)  # cid -> lowest fact seq not in its stored record
    dirty_at: dict[str, float] = field(default_factory=dict)  # cid -> when it first became dirty (monotonic)
    checkpoint_at: float = 0.0
    grace_until: float = 0.0  # after a takeover: stage deadlines are judged from then on
    recovering: asyncio.Future | None = None


class SnapshotWriter:
    """Coalesced compare-and-set writes of records and partition checkpoints."""

    def __init__(self, pub: JsPublisher, kv_get, owner: str, on_conflict) -> None:
        self.pub = pub
        self.kv_get = kv_get  # async (bucket, key) -> revision | None: learn a record's revision
        self.owner = owner
        self.on_conflict = on_conflict  # async (partition) -> None: someone else wrote our key
        self.revisions: dict[str, int] = {}  # cid -> KV revision of the last write we know of
        self.wake = asyncio.Event()
        self.flushes = 0

    def mark(self, part: PartitionState, record: ExecutionRecord, seq: int) -> None:
        cid = record.cid
        part.dirty[cid] = record
        part.dirty_from[cid] = min(seq, part.dirty_from.get(cid, seq))
        part.dirty_at.setdefault(cid, time.monotonic())
        if is_terminal(record.state):
            self.wake.set()  # a waiting client: write it now, not at the next tick

    async def run(self, partitions: dict[int, PartitionState]) -> None:
        next_tick = time.monotonic() + FLUSH_S
        while True:
            woken = False
            try:
                await asyncio.wait_for(self.wake.wait(), max(0.0, next_tick - time.monotonic()))
                woken = True
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            try:
                if woken and time.monotonic() < next_tick:
                    await self.flush(partitions, terminal_only=True)  # a client waits for these
                    continue
                next_tick = time.monotonic() + FLUSH_S
                await self.flush(partitions)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("snapshot flush failed; retrying")
                await asyncio.sleep(0.1)

    async def flush(self, partitions: dict[int, PartitionState], checkpoint: bool | None = None, terminal_only: bool = False, everything: bool = False) -> None:
        """Write the finished records (and, unless ``terminal_only``, those dirty for longer than
        ``SNAPSHOT_AGE_S``; all with ``everything``), then the checkpoints that are due."""
        now = time.monotonic()
        for part in partitions.values():
            if not part.owned:
                continue  # released (its state was dropped) or being rebuilt (its records wait for it)
            chosen = [
                cid for cid, r in part.dirty.items()
                if everything or is_terminal(r.state) or (not terminal_only and now - part.dirty_at.get(cid, now) >= SNAPSHOT_AGE_S)
            ]
            batch = {cid: part.dirty.pop(cid) for cid in chosen}
            froms = {cid: part.dirty_from.pop(cid) for cid in chosen if cid in part.dirty_from}
            for cid in chosen:
                part.dirty_at.pop(cid, None)
            ok = await self._write_records(part, batch, froms)
            if not ok or terminal_only:
                continue
            # Every fact of this partition below the oldest one not yet in a stored record is in
            # one: a takeover replays from there.
            watermark = min(part.dirty_from.values()) - 1 if part.dirty_from else part.applied_seq
            due = checkpoint if checkpoint is not None else now - part.checkpoint_at >= CHECKPOINT_S
            stale = now - part.checkpoint_at >= HEARTBEAT_S
            if part.owned and ((due and watermark > part.checkpointed_seq) or stale):
                await self.write_checkpoint(part, max(watermark, part.checkpointed_seq))
                part.checkpoint_at = now
        self.flushes += 1

    async def _write_records(self, part: PartitionState, batch: dict[str, ExecutionRecord], froms: dict[str, int] | None = None) -> bool:
        """Write every record of ``batch``; True when all are stored. Whatever is not stored stays
        dirty (unless a newer version of it already is), so the checkpoint never covers it."""
        if not batch:
            return True
        stored: set[str] = set()
        conflict = False
        try:
            sent = []
            for cid, record in batch.items():
                rev = self.revisions.get(cid)
                if rev is None:
                    rev = await self.kv_get(KV_EXECUTIONS, cid)  # after a takeover: learn what is stored
                headers = {"Nats-Expected-Last-Subject-Sequence": str(rev or 0)}
                sent.append((cid, record, await self.pub.publish(f"$KV.{KV_EXECUTIONS}.{cid}", encode(record), headers)))
            for cid, record, fut in sent:
                try:
                    ack = await fut
                except PublishError as exc:
                    if exc.wrong_last_sequence:
                        self.revisions.pop(cid, None)
                        conflict = True
                        continue  # written again once we know who owns the partition
                    raise
                stored.add(cid)
                self.revisions[cid] = ack.seq
                if is_terminal(record.state):
                    await self.pub.nc.publish(result_subject(cid), encode(to_result(record)))
                    part.live.discard(cid)
                    self.revisions.pop(cid, None)  # terminal: this owner writes it again only after a reload
        finally:
            for cid, record in batch.items():
                if cid not in stored:
                    part.dirty.setdefault(cid, record)  # a newer version marked meanwhile wins
                    if froms and cid in froms:
                        part.dirty_from[cid] = min(froms[cid], part.dirty_from.get(cid, froms[cid]))
                    part.dirty_at.setdefault(cid, time.monotonic())
        if conflict:
            await self.on_conflict(part)
            return False
        return True

    async def write_checkpoint(self, part: PartitionState, watermark: int) -> bool:
        cp = Checkpoint(w=watermark, live=sorted(part.live), owner=self.owner, at=time.time())
        headers = {"Nats-Expected-Last-Subject-Sequence": str(part.epoch or 0)}
        try:
            ack = await (await self.pub.publish(f"$KV.{KV_COORD}.cp.{part.index}", encode(cp), headers))
        except PublishError as exc:
            if exc.wrong_last_sequence:
                await self.on_conflict(part)
                return False
            raise
        part.epoch = ack.seq
        part.checkpointed_seq = watermark
        return True
