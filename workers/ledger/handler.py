"""Ledger — order ledger, position ledger, audit log, reconciliation, market capture for TCA.

Consumes:  ``exec.evt.>`` (every stored fact; durable consumer ``ledger`` on ``EXEC_EVT``).
Publishes: ``exec.audit.<cid>`` order events and ledger alerts (stream ``AUDIT``; ``exec.audit.system``
           for entries of no execution), ``Nats-Msg-Id = audit.<source>.<n>`` with
           ``source = evt:<fact stream seq>``; back-filled ``ChildFill`` facts (reconciliation, id
           ``<cid>.fill.<trade id>`` — the monitor's own id, so a late original and the back-fill
           de-duplicate).
Reads:     ``exec.result.<cid>`` (an execution ended: :mod:`workers.ledger.capture`), KV ``SAFETY``
           (operator actions: :mod:`workers.ledger.safety_audit`), ``venue.md.<symbol>`` quotes
           (marks, mid history), each order's venue (recon, TCA: :mod:`workers.ledger.recon`).
State:     KV ``LEDGER`` (see :mod:`workers.ledger.store`): ``x.<cid>``, ``pbook.*``/``pos.*``, ``mkt.<cid>``.
Config:    ``JETEXEC_RECON_INTERVAL_S`` (30; 0 = off), ``JETEXEC_SNAPSHOT_INTERVAL_S`` (60; 0 = off),
           ``JETEXEC_RECON_GRACE_S`` (2).

Per fact (the fold is :mod:`core.ledger_fold`, pure), in the runtime's batched path:

1. The execution's state from memory (or KV on a miss). A fact at or below its ``last_seq`` was
   applied: publish its stored audit messages again (if still kept) — the ids make it a no-op.
2. **Gap fill**, only after a failure (a restarted process with facts in flight, a redelivery):
   facts of one cid must be folded in stream order, but JetStream redelivers a dead process's
   in-flight facts after newer ones. So the cid's facts between ``last_seq`` and this one are read
   straight from the stream and folded first; their own later deliveries are no-ops.
3. Fold (pure), book each fill in its position slot (stream-seq ordered; the invariant is checked
   after every update — a breach is an ``ALERT`` entry).
4. The audit messages are the outputs; the runtime publishes them, then — :meth:`before_ack` —
   the changed states and slots are written (gathered for up to ``FLUSH_S``), then the facts are acked.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import time
from decimal import Decimal

import msgspec
from nats.js.errors import KeyNotFoundError

from bus.runtime import Delivery, Out, Poison, WorkerApp
from bus.topology import CONSUMERS, KV_LEDGER, audit_subject, evt_stored, result_subject
from core import audit
from core.ledger import LedgerPrecisionError, Position, PositionBook, apply_fill, check_invariant, snapshot
from schemas.codec import decode, encode, is_id
from schemas.enums import ReasonCode
from schemas.messages import OutMsg, PartitionProbe
from workers.ledger import market as mkt
from workers.ledger.capture import MarketCapture
from workers.ledger.recon import Reconciler, take_snapshot
from workers.ledger.safety_audit import SafetyAuditor
from workers.ledger import store
from core.ledger_fold import CidState, OutboxItem, PositionSlot, apply_fact, apply_undecodable, decode_for, new_slot, slot_compact, slot_insert, slot_position

log = logging.getLogger("jetexec.ledger")

FLUSH_S = 0.1  # the ledger's state is written at most this long after a fact changed it
FLUSH_EARLY_AT = 500  # ... or as soon as this many executions wait to be written
CACHE_MAX = 2000  # states of recent executions; older ones reload from KV (memory stays flat)
OUTBOX_KEEP_MAX = 256
GAP_CHECK_S = 2 * CONSUMERS["ledger"].ack_wait_s  # covers a dead process's redeliveries


class _FactType(msgspec.Struct):
    type: str = ""


_fact_type = msgspec.json.Decoder(_FactType).decode


def _is_first_fact(data: bytes) -> bool:
    """Is this an ExecutionCreated or IntentRejected (an execution's first fact)? Reads one field."""
    try:
        return _fact_type(data).type in ("ExecutionCreated", "IntentRejected")
    except msgspec.DecodeError:
        return False


def public_position(pos: Position, mark: Decimal | None, slot: PositionSlot | None = None) -> dict:
    """The ``pos.*`` JSON: the contract keys of :func:`core.ledger.snapshot` plus bookkeeping."""
    row = snapshot(PositionBook({pos.key: pos}, {}), {pos.symbol: mark} if mark is not None else {})[0]
    if slot is not None:
        row["last_seq"] = slot.last_seq
        row["updated_at"] = slot.updated_ts
    return row


def audit_out(e: audit.AuditEntry) -> OutMsg:
    return OutMsg(audit_subject(e.correlation_id), audit.msg_id(e.source, e.n), audit.encode_entry(e))


class LedgerWorker(WorkerApp):
    name = "ledger"
    concurrency = 64

    async def setup(self) -> None:
        self.gap_check_until = 0.0
        try:
            # Facts arrive out of order only after a failure: a previous process died with some of
            # them in flight (they come back after newer ones). None in flight: none to wait for.
            if (await self.js.consumer_info(store.EVT_STREAM, CONSUMERS["ledger"].durable)).num_ack_pending:
                self.gap_check_until = time.time() + GAP_CHECK_S
        except Exception:
            self.gap_check_until = time.time() + GAP_CHECK_S
        self.kv = await self.js.key_value(KV_LEDGER)
        self.recon_interval_s = float(os.environ.get("JETEXEC_RECON_INTERVAL_S", "30"))
        self.snapshot_interval_s = float(os.environ.get("JETEXEC_SNAPSHOT_INTERVAL_S", "60"))
        self.recon_grace_s = float(os.environ.get("JETEXEC_RECON_GRACE_S", "2"))
        self.states: collections.OrderedDict[str, CidState] = collections.OrderedDict()
        self.slots: dict[tuple[str, str], PositionSlot] = {}
        self.current: dict[tuple[str, str], Position] = {}
        self.ack_floor = 0
        self.dirty_states: dict[str, CidState] = {}
        self.dirty_slots: set[tuple[str, str]] = set()
        self.applied_version = 0
        self.flushed_version = 0
        self.flush_task: asyncio.Future | None = None
        self.applied_facts = 0
        self.market = mkt.MarketRecorder()
        await self.market.start(self.nc)
        await self._load_slots()
        await self._refresh_ack_floor()
        self.background.append(asyncio.create_task(self._floor_loop()))
        self.background.append(asyncio.create_task(SafetyAuditor(self.js, self.kv, self.publisher).run()))
        self.capture = MarketCapture(self.nc, self.kv, self.market, self._state)
        self.background.append(asyncio.create_task(self.capture.run()))
        await self.nc.subscribe(result_subject("*"), cb=self.capture.on_result)
        if self.recon_interval_s > 0:
            self.background.append(asyncio.create_task(self._recon_loop()))
        if self.snapshot_interval_s > 0:
            self.background.append(asyncio.create_task(self._snapshot_loop()))

    def consumers(self):
        return [("ledger", self.handle)]

    # ---- the fact handler --------------------------------------------------------------------
    def handle(self, d: Delivery):
        """Fold one fact in memory; its audit entries are the outputs. The state it changed is
        written by the flusher before the fact is acked (:meth:`before_ack`), one write per key per
        batch however many facts touched it."""
        cid = d.cid
        if not is_id(cid):  # no execution has it, and ``x.<cid>`` would be an illegal KV key
            raise Poison(ReasonCode.VALIDATION_INVALID_FIELD.value, f"subject token {cid[:40]!r} is not a correlation id")
        if cid.startswith("probe-") and isinstance(decode_for(cid, d.data), PartitionProbe):
            return []  # the coordinators' ownership probe: nothing of any execution
        if d.num_delivered > 1:
            self.gap_check_until = time.time() + GAP_CHECK_S
        st = self._cached(cid)
        # Not in memory: load it, unless this is the first delivery of an execution's first fact
        # (the gateway stores ExecutionCreated/IntentRejected only as a cid's first fact).
        new_execution = st is None and d.num_delivered == 1 and _is_first_fact(d.data)
        if (st is None and not new_execution) or time.time() < self.gap_check_until:
            return self._handle_slow(d, st)
        return self._fold(d, [], st)

    async def _handle_slow(self, d: Delivery, st: CidState | None) -> list[Out]:
        try:
            if st is None:
                st = await self._state(d.cid)
            if st is not None and d.stream_seq <= st.last_seq:
                return self._fold(d, [], st)
            # Facts of one cid arrive in stream order unless a delivery failed or a process died;
            # only then (a window after start-up, a redelivery or a failure here) can a gap exist,
            # and only then is it worth a stream read per fact.
            raws = await self._gap(d.cid, st.last_seq if st is not None else 0, d.stream_seq) if time.time() < self.gap_check_until else []
            return self._fold(d, raws, st)
        except Exception:
            self.gap_check_until = time.time() + GAP_CHECK_S  # this fact comes back after later ones
            raise

    def _fold(self, d: Delivery, raws: list, st: CidState | None) -> list[Out]:
        cid = d.cid
        seq = d.stream_seq
        if st is not None and seq <= st.last_seq:
            return [Out(m.subject, m.data, m.msg_id) for e in st.outbox_log if e.seq == seq for m in e.msgs]
        raws.append(store.RawMsg(seq=seq, ts=d.ts, subject=d.subject, data=d.data))
        outs: list[Out] = []
        for raw in raws:
            st, msgs, keys = self._apply(st, cid, raw)
            outs += [Out(m.subject, m.data, m.msg_id) for m in msgs]
            self.dirty_slots |= keys
        assert st is not None
        st.outbox_log = [e for e in st.outbox_log if e.seq > self.ack_floor][-OUTBOX_KEEP_MAX:]
        self.dirty_states[cid] = st
        self._cache(cid, st)
        self.applied_facts += len(raws)
        self.applied_version += 1
        return outs

    def _cached(self, cid: str) -> CidState | None:
        st = self.dirty_states.get(cid) or self.states.get(cid)
        if st is not None:
            self.states[cid] = st
            self.states.move_to_end(cid)
        return st

    async def before_ack(self) -> None:
        """Everything folded so far is stored before the facts that produced it are acked. Writes
        are gathered for up to ``FLUSH_S`` (the acks wait; the ack wait is 30 s): a position or an
        execution that many facts touch meanwhile is written once."""
        target = self.applied_version
        while self.flushed_version < target:
            if self.flush_task is None or self.flush_task.done():
                self.flush_task = asyncio.ensure_future(self._flush_soon())
            await asyncio.shield(self.flush_task)

    async def _flush_soon(self) -> None:
        if len(self.dirty_states) < FLUSH_EARLY_AT:
            await asyncio.sleep(FLUSH_S)  # gathering writes, not waiting for a condition
        await self._flush()

    async def _flush(self) -> None:
        version = self.applied_version
        states, self.dirty_states = self.dirty_states, {}
        keys, self.dirty_slots = self.dirty_slots, set()
        try:
            futures = []
            for key in sorted(keys):
                slot = slot_compact(self.slots[key], self.ack_floor)
                self.slots[key] = slot
                pos = self.current[key]
                futures.append(await self.jspub.publish(f"$KV.{KV_LEDGER}.{store.pbook_key(*key)}", encode(slot)))
                futures.append(await self.jspub.publish(f"$KV.{KV_LEDGER}.{store.pos_key(*key)}", json.dumps(public_position(pos, self.market.mark(pos.symbol), slot)).encode()))
            for cid, st in states.items():
                futures.append(await self.jspub.publish(f"$KV.{KV_LEDGER}.{store.state_key(cid)}", encode(st)))
            await asyncio.gather(*futures)
        except BaseException:
            for cid, st in states.items():
                self.dirty_states.setdefault(cid, st)  # newer folds of the same cid stay newer
            self.dirty_slots |= keys
            raise
        self.flushed_version = max(self.flushed_version, version)

    def _apply(self, st: CidState | None, cid: str, raw: store.RawMsg) -> tuple[CidState, list[OutMsg], set]:
        fact = decode_for(cid, raw.data)
        if isinstance(fact, tuple):
            step = apply_undecodable(st, cid, raw.seq, raw.ts, fact[1])
        else:
            step = apply_fact(st, fact, raw.seq, raw.ts)
        entries = list(step.entries)
        keys: set = set()
        if step.fill is not None:
            key, extra = self._book(step.fill, raw.seq, raw.ts, cid)
            keys.add(key)
            if extra:
                entries += audit.numbered(extra, f"evt:{raw.seq}", start=len(step.entries))
                step.state.n_audit += len(extra)
        msgs = [audit_out(e) for e in entries]
        if msgs:
            step.state.outbox_log.append(OutboxItem(raw.seq, msgs))
        return step.state, msgs, keys

    def _book(self, fill, seq: int, ts: float, cid: str) -> tuple[tuple[str, str], list[audit.AuditEntry]]:
        """Insert a fill into its position slot; the invariant is checked after every update."""
        key = (fill.symbol, fill.strategy_id)
        slot = self.slots.get(key) or new_slot(*key)
        alerts: list[audit.AuditEntry] = []
        new, applied, in_order = slot_insert(slot, seq, fill, ts)
        if applied:
            try:
                cur = self.current.get(key)
                pos = apply_fill(cur, fill.side, fill.qty, fill.price, fill.fee) if in_order and cur is not None else slot_position(new)
            except (ValueError, LedgerPrecisionError) as exc:
                alerts.append(audit.ledger_alert(cid, "LEDGER_POSITION_ERROR", f"fill {fill.trade_id} not booked: {exc}", ts, fill.client_order_id, trade_id=fill.trade_id))
                return key, alerts
            if seq <= slot.base_seq:
                alerts.append(audit.ledger_alert(cid, "LEDGER_FILL_ORDER", f"fill {fill.trade_id} (seq {seq}) arrived after its position was compacted to seq {slot.base_seq}: booked last, replay order differs", ts, fill.client_order_id, trade_id=fill.trade_id))
            self.slots[key] = new
            self.current[key] = pos
        else:
            pos = self.current.get(key) or slot_position(slot)
        reason = check_invariant(pos)
        if reason is not None:
            log.error("position invariant breach: %s", reason)
            alerts.append(audit.ledger_alert(cid, "LEDGER_INVARIANT_BREACH", reason, ts, fill.client_order_id, symbol=fill.symbol, strategy_id=fill.strategy_id, trade_id=fill.trade_id))
        return key, alerts

    async def _gap(self, cid: str, last: int, seq: int) -> list[store.RawMsg]:
        """Facts of ``cid`` with ``last < seq' < seq`` not yet applied, read from the stream."""
        out: list[store.RawMsg] = []
        cur = last + 1
        while cur < seq:
            raw = await store.next_msg(self.nc, store.EVT_STREAM, evt_stored(cid), cur)
            if raw is None or raw.seq >= seq:
                break
            out.append(raw)
            cur = raw.seq + 1
        return out

    # ---- state cache and persistence --------------------------------------------------------
    async def _state(self, cid: str) -> CidState | None:
        st = self._cached(cid)
        if st is not None:
            return st
        try:
            entry = await self.kv.get(store.state_key(cid))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        st = decode(entry.value, CidState)
        self._cache(cid, st)
        return st

    def _cache(self, cid: str, st: CidState) -> None:
        self.states[cid] = st
        self.states.move_to_end(cid)
        while len(self.states) > CACHE_MAX:
            self.states.popitem(last=False)

    async def _load_slots(self) -> None:
        for _key, value in (await store.kv_scan(self.nc, KV_LEDGER, "pbook.")).items():
            try:
                slot = decode(value, PositionSlot)
            except Exception:
                log.exception("unreadable position slot %s", _key)
                continue
            k = (slot.symbol, slot.strategy_id)
            self.slots[k] = slot
            self.current[k] = slot_position(slot)

    async def _persist_slots(self, keys) -> None:
        """Write these position slots now (compacted to the ack floor), with whatever else is dirty."""
        self.dirty_slots |= set(keys)
        self.applied_version += 1
        await self.before_ack()

    async def _refresh_ack_floor(self) -> None:
        try:
            info = await self.js.consumer_info(store.EVT_STREAM, CONSUMERS["ledger"].durable)
            self.ack_floor = max(self.ack_floor, info.ack_floor.stream_seq)
        except Exception:
            pass

    async def _floor_loop(self) -> None:
        """Track the consumer's ack floor; fold settled tails into their base now and then."""
        last_compact = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            await self._refresh_ack_floor()
            if time.monotonic() - last_compact > 5.0:
                last_compact = time.monotonic()
                stale = [k for k, s in self.slots.items() if s.tail and s.tail[0].seq <= self.ack_floor]
                try:
                    await self._persist_slots(stale)
                except Exception:
                    log.warning("compaction write failed; retrying later")

    # ---- dead letters ------------------------------------------------------------------------
    async def on_dead_letter(self, d: Delivery, reason: str, detail: str) -> None:
        parts = d.subject.split(".")
        if parts[:2] != ["exec", "evt"] or len(parts) != 3:
            return
        e = audit.ledger_alert(parts[2], "LEDGER_FACT_DEAD_LETTERED", f"fact at stream seq {d.stream_seq} dead-lettered ({reason}): {detail}"[:500], time.time(), stream_seq=d.stream_seq)
        e = audit.numbered([e], f"dlq:{d.stream_seq}")[0]
        m = audit_out(e)
        await self.publisher.publish_one(m.subject, m.data, m.msg_id)

    # ---- reconciliation and snapshots ----------------------------------------------------------
    async def _recon_loop(self) -> None:
        await asyncio.sleep(min(5.0, self.recon_interval_s))  # startup recon, once caught up a little
        while True:
            try:
                await Reconciler(self.nc, grace_s=self.recon_grace_s).run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciliation pass failed")
            await asyncio.sleep(self.recon_interval_s)

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(self.snapshot_interval_s)
            try:
                await self._refresh_marks()
                await take_snapshot(self.nc, store_it=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("snapshot failed")

    async def _refresh_marks(self) -> None:
        """Re-publish ``pos.*`` with the latest marks (unrealized PnL moves with the market)."""
        for key, pos in list(self.current.items()):
            mark = self.market.mark(pos.symbol)
            if mark is not None and pos.qty != 0:
                await self.kv.put(store.pos_key(*key), json.dumps(public_position(pos, mark, self.slots.get(key))).encode())

