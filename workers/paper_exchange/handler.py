"""Paper exchange — a real simulated venue, seeded and deterministic (matching model: core.venue).

Serves (core NATS request/reply, the venue protocol):
  ``venue.api.new``     NewOrder    → OrderAck        ``venue.api.modify`` ModifyOrder → ModifyAck
  ``venue.api.cancel``  CancelOrder → CancelAck       ``venue.api.query``  QueryOrder  → OrderStatus
  ``venue.api.specs`` / ``symbols`` / ``quote`` / ``profile`` (reference and market data),
  ``venue.api.fills`` (fills of one order) / ``tape`` (market prints in a window) for
  reconciliation and TCA, ``venue.api.stats`` (duplicate attempts, orders seen), ``venue.api.orders``
  (every order held), ``venue.api.faults`` (fault injection).
Publishes: ``venue.report.<cid>`` ExecutionReport (JetStream, id = trade id) and quotes on
           ``venue.md.<symbol>`` (core NATS, every price step).
State:     KV ``PAPER_VENUE``: every order under ``o.<client_order_id>``, its fills under
           ``f.<client_order_id>`` (written before the ack
           leaves, so a restarted venue still refuses a client order id it has seen) and the price
           process under ``meta``. It survives its own restart.

A cancel for an order the venue has never seen leaves a CANCELLED tombstone, so a NewOrder that
arrives after its own cancel (a race with the escape lane) is refused instead of resting forever.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import time

import msgspec
from nats.js.errors import KeyNotFoundError

from bus import tracing
from bus.runtime import Out, WorkerApp, tracing_on
from bus.topology import KV_VENUE, report_subject, venue_api
from core import venue as model
from core.symbols import DEFAULT_SYMBOLS
from schemas.codec import DecodeError, decode, encode
from schemas.enums import ErrorClass, OrderState, ReasonCode
from schemas.venue import CancelAck, CancelOrder, ExecutionReport, ModifyOrder, NewOrder, OrderAck, QueryOrder
from workers.common import MD_SUBJECT
from workers.ledger.venue_ops import FillIndex, tape_reply

log = logging.getLogger("jetexec.paper")

# The trace context of the venue request being served (its ``traceparent``), so the reports an order
# produces later — fills from the price process included — continue the execution's trace.
_request_trace: contextvars.ContextVar[str] = contextvars.ContextVar("venue_request_trace", default="")
TRACE_CONTEXTS = 100_000  # per-order contexts kept (oldest dropped first; lost on restart)

TOMBSTONE = "cancelled before arrival"


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
        self.fill_index = FillIndex()  # every fill reported, by client order id (venue.api.fills)
        self.state = await self._restore()
        self.pending: list[ExecutionReport] = []
        self._requests: set[asyncio.Task] = set()
        self.trace_of: dict[str, str] = {}  # client order id → traceparent of its last new/modify/cancel
        self.refused_after_cancel = 0
        self.duplicate_ids: list[str] = []
        self.arriving: dict[str, asyncio.Future] = {}  # NewOrders received and not yet answered
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
            "orders": self._orders,
            "fills": self._fills,
            "tape": self._tape,
            "faults": self._faults,
        }
        # ONE subscription for the whole venue API, so requests are taken in the order they arrived:
        # a query never overtakes the NewOrder it asks about (two subscriptions' callbacks race).
        self.handlers = handlers
        await self.nc.subscribe(f"{venue_api('*')}", queue="paper-exchange", cb=self._dispatch, pending_msgs_limit=100_000)
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
            elif key.startswith("f."):
                self.fill_index.by_order[key[2:]] = json.loads((await self.kv.get(key)).value)
        state.open_ids.sort(key=lambda oid: state.orders[oid].priority)
        log.info("paper exchange restored %d orders at step %d", len(state.orders), state.step)
        return state

    async def _persist(self, changed_ids: set[str], reports: list[ExecutionReport] = ()) -> None:
        """Write the orders an operation touched (its own and those its reports name) and the fill
        history of those that filled (``venue.api.fills`` answers from it after a restart)."""
        self.fill_index.add(list(reports))
        orders = [self.state.orders[oid] for oid in changed_ids if oid in self.state.orders]
        filled = {r.client_order_id for r in reports if r.kind == "FILL"}
        await asyncio.gather(
            *(self.kv.put(f"o.{o.client_order_id}", encode(o)) for o in orders),
            *(self.kv.put(f"f.{coid}", json.dumps(self.fill_index.by_order[coid]).encode()) for coid in filled),
        )

    async def _save_meta(self) -> None:
        s = self.state
        meta = VenueMeta(origin=s.origin, step=s.step, fair=s.fair, mids=s.mids, order_seq=s.order_seq, priority_seq=s.priority_seq, trade_seq=s.trade_seq, duplicate_attempts=s.duplicate_attempts, rejected=s.rejected)
        await self.kv.put("meta", encode(meta))

    # ---- reports -----------------------------------------------------------------------------
    def _outs(self, reports: list[ExecutionReport]) -> list[Out]:
        return [Out(report_subject(r.cid), encode(r), f"rpt.{r.trade_id}" if r.kind == "FILL" else f"rpt.{r.client_order_id}.{r.kind}", self._trace_headers(r.client_order_id)) for r in reports]

    def _trace_headers(self, coid: str) -> dict[str, str] | None:
        """A report is published under the context of the request that last touched its order."""
        tp = self.trace_of.get(coid)
        return {"traceparent": tp} if tp else None

    def _remember_trace(self, coid: str) -> None:
        tp = _request_trace.get()
        if not tp:
            return
        self.trace_of.pop(coid, None)
        self.trace_of[coid] = tp
        if len(self.trace_of) > TRACE_CONTEXTS:
            for old in list(self.trace_of)[: TRACE_CONTEXTS // 10]:
                del self.trace_of[old]

    async def _emit(self, reports: list[ExecutionReport]) -> None:
        """Publish reports right after the state that produced them is persisted; if JetStream is
        unavailable they wait in ``pending`` (in order) for the flusher. The window in which a crash
        can lose a report is the few hundred microseconds between the two writes; reconciliation
        (the ledger worker's recon) back-fills a fill the venue holds and the pipeline missed."""
        if not reports:
            return
        if not self.pending:
            try:
                await self.publisher.publish(self._outs(reports))
                return
            except Exception:
                pass
        self.pending.extend(reports)
        self.flush_event.set()

    async def _flusher(self) -> None:
        """Publish reports in order; keep them until JetStream confirms (nothing is lost)."""
        publisher = self.publisher
        while True:
            await self.flush_event.wait()
            self.flush_event.clear()
            while self.pending:
                batch = self.pending[:200]
                outs = self._outs(batch)
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
                    await self._persist({r.client_order_id for r in reports}, reports)
                    await self._emit(reports)
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
    async def _dispatch(self, msg) -> None:
        """In arrival order: note a NewOrder as arriving, then serve each request in its own task so
        simulated latencies overlap as they would at a real venue (matching stays serial: the lock)."""
        op = msg.subject.rsplit(".", 1)[-1]
        fn = self.handlers.get(op)
        if fn is None:
            if msg.reply:
                await self.nc.publish(msg.reply, json.dumps({"error": "UNKNOWN_OP", "detail": op}).encode())
            return
        if op == "new":
            try:
                coid = decode(msg.data, NewOrder).client_order_id
                self.arriving.setdefault(coid, asyncio.get_running_loop().create_future())
            except DecodeError:
                pass  # the handler answers it with the reason
        task = asyncio.create_task(self._serve(fn, msg))
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def _serve(self, fn, msg) -> None:
        try:
            if msg.headers and msg.headers.get("traceparent"):
                reply = await self._traced(fn, msg)
            else:
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

    async def _traced(self, fn, msg) -> bytes | None:
        """A request that is part of a trace: a SERVER span (when tracing is on here) whose context the
        order keeps for its later reports; untraced here, the caller's context is kept as is."""
        if not tracing_on():
            _request_trace.set(msg.headers["traceparent"])
            return await fn(msg.data)
        with tracing.server_span(msg.subject, msg.headers, group="paper-exchange"):
            _request_trace.set(tracing.current_traceparent())
            return await fn(msg.data)

    async def _mutate(self, op: str, fn, req):
        order = self.state.orders.get(req.client_order_id)
        tracing.annotate(cid=getattr(req, "cid", None) or (order.cid if order else None), client_order_id=req.client_order_id)
        await asyncio.sleep(model.latency_s(self.config, op, req.client_order_id))
        async with self.lock:
            # In place: the venue never needs its previous state, and copying every order it has
            # ever seen on each request would make it slower the longer it runs.
            self._remember_trace(req.client_order_id)
            self.state, ack, reports = fn(self.state, self.config, req, time.time(), in_place=True)
            await self._persist({req.client_order_id} | {r.client_order_id for r in reports}, reports)
            await self._emit(reports)  # durable before the ack leaves: a crash cannot lose a fill
        return ack

    async def _new(self, data: bytes) -> bytes | None:
        req = decode(data, NewOrder)
        arrived = self.arriving.setdefault(req.client_order_id, asyncio.get_running_loop().create_future())
        try:
            return await self._new_order(req)
        finally:
            if not arrived.done():
                arrived.set_result(None)
            self.arriving.pop(req.client_order_id, None)

    async def _new_order(self, req: NewOrder) -> bytes | None:
        tomb = self.state.orders.get(req.client_order_id)
        if tomb is not None and tomb.reject_reason == TOMBSTONE:
            # Cancelled before it arrived (the escape lane won the race): refused, and not counted
            # as a duplicate — the venue never held this order.
            self.refused_after_cancel += 1
            return encode(OrderAck(accepted=False, client_order_id=req.client_order_id, reject_reason=TOMBSTONE, reason_code=ReasonCode.HALTED, error_class=ErrorClass.NON_RETRYABLE))
        ack = await self._mutate("new", model.on_new, req)
        if ack.reason_code is ReasonCode.DUPLICATE_CLIENT_ORDER_ID and len(self.duplicate_ids) < 100:
            self.duplicate_ids.append(req.client_order_id)  # for audits: which ids were sent again
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
                tomb = model.RestingOrder(client_order_id=req.client_order_id, cid="", symbol="", side="BUY", order_type="MARKET", qty=model.Decimal(0), state=OrderState.CANCELLED, reject_reason=TOMBSTONE, created_ts=time.time())
                self.state.orders[req.client_order_id] = tomb
                await self.kv.put(f"o.{req.client_order_id}", encode(tomb))
        return encode(ack) if model.should_reply(self.config, "cancel", ack) else None

    async def _query(self, data: bytes) -> bytes:
        req = decode(data, QueryOrder)
        arriving = self.arriving.get(req.client_order_id)
        if arriving is not None:
            # A query never overtakes a send of the same order already at the venue's door: the
            # sender asks "did my order arrive?" and must get the answer that includes it.
            await asyncio.shield(arriving)
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
        return json.dumps({"orders": len(s.orders), "open": len(s.open_ids), "duplicate_attempts": s.duplicate_attempts, "rejected": s.rejected, "trade_seq": s.trade_seq, "step": s.step, "dropped_acks": s.dropped_acks, "refused_after_cancel": self.refused_after_cancel, "duplicate_ids": self.duplicate_ids, "faults": sorted(self.config.faults)}).encode()

    async def _fills(self, data: bytes) -> bytes:
        coid = json.loads(data or b"{}").get("client_order_id", "")
        return self.fill_index.reply(self.state.orders.get(coid), coid)

    async def _tape(self, data: bytes) -> bytes:
        req = json.loads(data or b"{}")
        return tape_reply(self.state, req.get("symbol", ""), float(req.get("t0", 0)), float(req.get("t1", 0)))

    async def _orders(self, _data: bytes) -> bytes:
        """Every client order id the venue holds (tombstones excluded), with its state: for audits
        such as the chaos suite's "nothing at the venue that is not a child"."""
        return json.dumps({oid: o.state.value for oid, o in self.state.orders.items() if o.reject_reason != TOMBSTONE}).encode()

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
