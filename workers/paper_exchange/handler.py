"""Paper exchange — a real simulated venue, seeded and deterministic (matching model: core.venue).

Serves (core NATS request/reply, the venue protocol):
  ``venue.api.new``     NewOrder    → OrderAck        ``venue.api.modify`` ModifyOrder → ModifyAck
  ``venue.api.cancel``  CancelOrder → CancelAck       ``venue.api.query``  QueryOrder  → OrderStatus
  ``venue.api.specs`` / ``symbols`` / ``quote`` / ``profile`` (reference and market data),
  ``venue.api.stats`` (duplicate attempts, orders seen), ``venue.api.faults`` (fault injection).
Publishes: ``venue.report.<cid>`` ExecutionReport (JetStream, id = trade id) and quotes on
           ``venue.md.<symbol>`` (core NATS, every price step).
State:     KV ``PAPER_VENUE``: every order under ``o.<client_order_id>`` (written before the ack
           leaves, so a restarted venue still refuses a client order id it has seen) and the price
           process under ``meta``. It survives its own restart.

A cancel for an order the venue has never seen leaves a CANCELLED tombstone, so a NewOrder that
arrives after its own cancel (a race with the escape lane) is refused instead of resting forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

import msgspec
from nats.js.errors import KeyNotFoundError

from bus.runtime import Out, Publisher, WorkerApp
from bus.topology import KV_VENUE, report_subject, venue_api
from core import venue as model
from core.symbols import DEFAULT_SYMBOLS
from schemas.codec import DecodeError, decode, encode
from schemas.enums import OrderState
from schemas.venue import CancelAck, CancelOrder, ExecutionReport, ModifyAck, ModifyOrder, NewOrder, OrderAck, QueryOrder
from workers.common import MD_SUBJECT

log = logging.getLogger("jetexec.paper")


class VenueMeta(msgspec.Struct, kw_only=True):
    origin: float | None
    step: int
    fair: dict[str, float]
    mids: dict
    order_seq: int
    priority_seq: int
    trade_seq: int
    duplicate_attempts: int = 0
    rejected: int = 0


def venue_config_from_env() -> model.VenueConfig:
    raw = json.loads(os.environ.get("JETEXEC_VENUE_CONFIG", "{}"))
    if "JETEXEC_VENUE_SEED" in os.environ:
        raw["seed"] = int(os.environ["JETEXEC_VENUE_SEED"])
    if "faults" in raw:
        raw["faults"] = list(raw["faults"])
    return msgspec.convert(raw, model.VenueConfig) if raw else model.VenueConfig(symbols=DEFAULT_SYMBOLS)


class PaperExchangeWorker(WorkerApp):
    name = "paper-exchange"

    async def setup(self) -> None:
        self.config = venue_config_from_env()
        self.kv = await self.js.key_value(KV_VENUE)
        self.lock = asyncio.Lock()
        self.state = await self._restore()
        self.pending: list[ExecutionReport] = []
        self._requests: set[asyncio.Task] = set()
        self.flush_event = asyncio.Event()
        handlers = {
            "new": self._new,
            "modify": self._modify,
            "cancel": self._cancel,
            "query": self._query,
            "specs": self._specs,
            "symbols": self._symbols,
            "quote": self._quote,
            "profile": self._profile,
            "stats": self._stats,
            "faults": self._faults,
        }
        for op, fn in handlers.items():
            await self.nc.subscribe(venue_api(op), queue="paper-exchange", cb=self._wrap(fn), pending_msgs_limit=100_000)
        self.background.append(asyncio.create_task(self._ticker()))
        self.background.append(asyncio.create_task(self._flusher()))

    # ---- persistence -------------------------------------------------------------------------
    async def _restore(self) -> model.VenueState:
        state = model.new_venue(self.config)
        try:
            meta = decode((await self.kv.get("meta")).value, VenueMeta)
        except (KeyNotFoundError, Exception):
            return state
        state.origin, state.step, state.fair = meta.origin, meta.step, dict(meta.fair)
        state.mids = {k: msgspec.convert(v, model.Decimal) if not isinstance(v, model.Decimal) else v for k, v in meta.mids.items()}
        state.order_seq, state.priority_seq, state.trade_seq = meta.order_seq, meta.priority_seq, meta.trade_seq
        state.duplicate_attempts, state.rejected = meta.duplicate_attempts, meta.rejected
        try:
            keys = await self.kv.keys()
        except Exception:
            keys = []
        for key in keys:
            if key.startswith("o."):
                o = decode((await self.kv.get(key)).value, model.RestingOrder)
                state.orders[o.client_order_id] = o
                if o.live:
                    state.open_ids.append(o.client_order_id)
        state.open_ids.sort(key=lambda oid: state.orders[oid].priority)
        log.info("paper exchange restored %d orders at step %d", len(state.orders), state.step)
        return state

    async def _persist(self, changed_ids: set[str]) -> None:
        """Write the orders an operation touched (its own and those its reports name)."""
        orders = [self.state.orders[oid] for oid in changed_ids if oid in self.state.orders]
        await asyncio.gather(*(self.kv.put(f"o.{o.client_order_id}", encode(o)) for o in orders))

    async def _save_meta(self) -> None:
        s = self.state
        meta = VenueMeta(origin=s.origin, step=s.step, fair=s.fair, mids=s.mids, order_seq=s.order_seq, priority_seq=s.priority_seq, trade_seq=s.trade_seq, duplicate_attempts=s.duplicate_attempts, rejected=s.rejected)
        await self.kv.put("meta", encode(meta))

    # ---- reports -----------------------------------------------------------------------------
    def _emit(self, reports: list[ExecutionReport]) -> None:
        if reports:
            self.pending.extend(reports)
            self.flush_event.set()

    async def _flusher(self) -> None:
        """Publish reports in order; keep them until JetStream confirms (nothing is lost)."""
        publisher = Publisher(self.js)
        while True:
            await self.flush_event.wait()
            self.flush_event.clear()
            while self.pending:
                batch = self.pending[:200]
                outs = [Out(report_subject(r.cid), encode(r), f"rpt.{r.trade_id}" if r.kind == "FILL" else f"rpt.{r.client_order_id}.{r.kind}") for r in batch]
                try:
                    await publisher.publish(outs)
                except Exception:
                    await asyncio.sleep(0.5)
                    continue
                del self.pending[: len(batch)]

    async def _ticker(self) -> None:
        last_meta = 0.0
        while True:
            await asyncio.sleep(self.config.tick_interval_s)
            self.health.progress()
            now = time.time()
            async with self.lock:
                self.state, reports = model.advance(self.state, self.config, now, in_place=True)
                if reports:
                    await self._persist({r.client_order_id for r in reports})
            self._emit(reports)
            for spec in self.config.symbols:
                try:
                    await self.nc.publish(f"{MD_SUBJECT}.{spec.symbol}", encode(model.quote(self.state, self.config, spec.symbol)))
                except Exception:
                    pass
            if now - last_meta > 1.0:
                last_meta = now
                try:
                    await self._save_meta()
                except Exception:
                    pass

    # ---- request handlers --------------------------------------------------------------------
    def _wrap(self, fn):
        # One subscription's callbacks run one at a time in nats-py: each request gets its own task
        # so simulated latencies overlap as they would at a real venue (matching stays serial: lock).
        async def cb(msg) -> None:
            task = asyncio.create_task(serve(msg))
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)

        async def serve(msg) -> None:
            try:
                reply = await fn(msg.data)
            except DecodeError as exc:
                reply = json.dumps({"error": exc.reason_code.value, "detail": exc.detail}).encode()
            except model.VenueUnavailable:
                return  # a disconnected venue answers nothing: the caller sees a timeout
            except Exception as exc:
                log.exception("venue handler failed")
                reply = json.dumps({"error": "VENUE_INTERNAL", "detail": type(exc).__name__}).encode()
            if reply is not None and msg.reply:
                await self.nc.publish(msg.reply, reply)

        return cb

    async def _mutate(self, op: str, fn, req):
        await asyncio.sleep(model.latency_s(self.config, op, req.client_order_id))
        async with self.lock:
            # In place: the venue never needs its previous state, and copying every order it has
            # ever seen on each request would make it slower the longer it runs.
            self.state, ack, reports = fn(self.state, self.config, req, time.time(), in_place=True)
            await self._persist({req.client_order_id} | {r.client_order_id for r in reports})
        self._emit(reports)
        return ack

    async def _new(self, data: bytes) -> bytes | None:
        req = decode(data, NewOrder)
        ack = await self._mutate("new", model.on_new, req)
        return encode(ack) if model.should_reply(self.config, "new", ack) else None

    async def _modify(self, data: bytes) -> bytes | None:
        req = decode(data, ModifyOrder)
        ack = await self._mutate("modify", model.on_modify, req)
        return encode(ack) if model.should_reply(self.config, "modify", ack) else None

    async def _cancel(self, data: bytes) -> bytes | None:
        req = decode(data, CancelOrder)
        ack: CancelAck = await self._mutate("cancel", model.on_cancel, req)
        if not ack.accepted and req.client_order_id not in self.state.orders:
            async with self.lock:  # tombstone: the order may still be on its way
                tomb = model.RestingOrder(client_order_id=req.client_order_id, cid="", symbol="", side="BUY", order_type="MARKET", qty=model.Decimal(0), state=OrderState.CANCELLED, reject_reason="cancelled before arrival", created_ts=time.time())
                self.state.orders[req.client_order_id] = tomb
                await self.kv.put(f"o.{req.client_order_id}", encode(tomb))
        return encode(ack) if model.should_reply(self.config, "cancel", ack) else None

    async def _query(self, data: bytes) -> bytes:
        req = decode(data, QueryOrder)
        return encode(model.on_query(self.state, req))

    async def _specs(self, _data: bytes) -> bytes:
        return encode(list(self.config.symbols))

    async def _symbols(self, _data: bytes) -> bytes:
        return encode([model.quote(self.state, self.config, s.symbol) for s in self.config.symbols])

    async def _quote(self, data: bytes) -> bytes:
        symbol = json.loads(data or b"{}").get("symbol", "")
        return encode(model.quote(self.state, self.config, symbol))

    async def _profile(self, data: bytes) -> bytes:
        req = json.loads(data or b"{}")
        return encode(list(model.volume_profile(self.config, req.get("symbol", ""), int(req.get("buckets", 10)))))

    async def _stats(self, _data: bytes) -> bytes:
        s = self.state
        per_id: dict[str, int] = {}
        return json.dumps({"orders": len(s.orders), "open": len(s.open_ids), "duplicate_attempts": s.duplicate_attempts, "rejected": s.rejected, "trade_seq": s.trade_seq, "step": s.step, "dropped_acks": s.dropped_acks, "faults": sorted(self.config.faults), "_": per_id}).encode()

    async def _faults(self, data: bytes) -> bytes:
        """Fault injection for tests and drills: ``{"faults": ["disconnect", ...], "reject_rate": "1"}``
        replaces the fault set (and the reject rate when given)."""
        req = json.loads(data or b"{}")
        changes: dict = {"faults": frozenset(req.get("faults", []))}
        if "reject_rate" in req:
            changes["reject_rate"] = model.Decimal(str(req["reject_rate"]))
        self.config = msgspec.structs.replace(self.config, **changes)
        return json.dumps({"faults": sorted(self.config.faults), "reject_rate": str(self.config.reject_rate)}).encode()

    async def teardown(self) -> None:
        try:
            await self._save_meta()
        except Exception:
            pass
