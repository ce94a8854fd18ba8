"""FIX venue — a FIX 4.4 initiator behind the venue protocol (``jetexec worker venue-fix``).

Serves:    every configured venue of kind ``fix`` (``JETEXEC_VENUES``; ``JETEXEC_VENUE_ID`` picks one):
           ``venue.<id>.api.<op>`` (and ``venue.api.<op>`` when it is the default venue) —
           new / modify / cancel / query / specs / symbols / fills; other ops answer ``UNKNOWN_OP``
           and the caller takes the documented fallback (``core/venue_protocol.py``).
Speaks:    FIX 4.4 through QuickFIX (``quickfix`` on PyPI, the C++ engine): logon, heartbeats,
           test requests, sequence numbers in a FileStore that survives restarts, ResendRequest and
           gap fill, reconnect every ``reconnect_s``. The message mapping is ``core/fix_mapping.py``.
Publishes: ``venue.<id>.report.<cid>`` (``venue.report.<cid>`` as the default venue)
           ExecutionReport, id ``rpt.<venue>.<ExecID>`` for fills; notices (unknown or late venue
           messages, with the raw FIX) to ``exec.dlq.venue-<id>``.
State:     KV ``VENUE_ORDERS`` ``<venue>.<client order id>``: each order's record, written *before*
           any message about it is handed to the engine, and after every report (before the engine
           is told the inbound message was processed). The engine's store delivers what it was
           handed, so no NewOrderSingle is ever sent twice for one client order id.
Safety:    the two live switches (``JETEXEC_LIVE_CONFIG_FLAG=1`` and ``JETEXEC_LIVE_ENABLED=yes``) are
           read at start: without both the worker never opens a socket — it serves reference data
           and refuses orders with ``POLICY_LIVE_NOT_ENABLED`` — and a NewOrder whose execution is
           not LIVE is refused too.

Threads:   QuickFIX calls back on its own thread. ``fromApp`` hands the message to the event loop
           and waits until it is persisted and published, so the engine counts a message as
           received only once nothing can lose it. Outbound messages go through one sender thread,
           in order (a status request never overtakes the order it asks about).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import os
import sysconfig
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import msgspec
from nats.js.errors import KeyNotFoundError

from bus.runtime import Out, Publisher, WorkerApp
from bus.topology import KV_VENUE_ORDERS, dlq_subject, report_subject, venue_api
from core import fix_mapping as fm
from core.venue_config import VenueDef
from core.venue_protocol import UNKNOWN_OP, order_refusal
from schemas.codec import DecodeError, decode, encode
from schemas.enums import ErrorClass, ExecutionMode, OrderState, OrderType, ReasonCode
from schemas.venue import (
    CancelAck,
    CancelOrder,
    FillsReply,
    FillsRequest,
    ModifyAck,
    ModifyOrder,
    NewOrder,
    OrderAck,
    QueryOrder,
    SymbolInfo,
)
from workers.common import live_switches, venues_from_env

log = logging.getLogger("jetexec.venue_fix")

TOMBSTONE = "cancelled before arrival"
NOT_ARMED = "the FIX venue is not connected: live trading needs both live switches (JETEXEC_LIVE_CONFIG_FLAG=1 and JETEXEC_LIVE_ENABLED=yes)"


def data_dictionary() -> str:
    """QuickFIX's FIX 4.4 dictionary, installed with the ``quickfix`` package."""
    return str(Path(sysconfig.get_path("data")) / "share" / "quickfix" / "FIX44.xml")


def transact_time() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]


class FixVenue:
    """One FIX venue: its session, its orders, its subscriptions."""

    def __init__(self, worker: "FixVenueWorker", venue_id: str, venue: VenueDef, is_default: bool, armed: bool) -> None:
        assert venue.fix is not None
        self.w = worker
        self.id = venue_id
        self.cfg = venue
        self.fix = venue.fix
        self.is_default = is_default
        self.armed = armed
        self.orders: dict[str, fm.FixOrder] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.waiters: dict[tuple[str, str], asyncio.Future] = {}
        self.logged_on = False  # logged on AND in sequence: only then is anything application-level sent
        self.session_generation = 0
        self.peer_logon_seq = 0
        self.session_id = None
        self.initiator = None
        self.sender = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"fix-send-{venue_id}")
        self.loop = asyncio.get_running_loop()
        self.notices = 0
        self.store_dir = Path(self.fix.store_dir) / venue_id

    # ---- start / stop ------------------------------------------------------------------------
    async def start(self) -> None:
        await self._restore()
        for subject in [venue_api("*", self.id)] + ([venue_api("*")] if self.is_default else []):
            await self.w.nc.subscribe(subject, queue=f"venue-fix-{self.id}", cb=self._dispatch, pending_msgs_limit=100_000)
        if self.armed:
            await self.loop.run_in_executor(None, self._start_engine)
        else:
            log.warning("venue %s: %s", self.id, NOT_ARMED)

    def _start_engine(self) -> None:
        import quickfix as fix

        self.store_dir.mkdir(parents=True, exist_ok=True)
        path = self.store_dir / "session.cfg"
        path.write_text(fm.quickfix_settings(self.id, self.fix, str(self.store_dir), data_dictionary()))
        # Every object the engine holds is kept here: the C++ side does not own them, and one
        # collected by Python while the engine runs is a crash.
        self.settings = fix.SessionSettings(str(path))
        self.app = _Application(self)
        self.store_factory = fix.FileStoreFactory(self.settings)
        self.log_factory = fix.FileLogFactory(self.settings)
        self.initiator = (fix.SSLSocketInitiator if self.fix.tls else fix.SocketInitiator)(self.app, self.store_factory, self.settings, self.log_factory)
        self.initiator.start()
        log.info("venue %s: initiator started for %s:%s", self.id, self.fix.host, self.fix.port)

    async def stop(self) -> None:
        if self.initiator is not None:
            # In a thread: stopping waits for the engine's thread, which may be inside fromApp
            # waiting for this loop to persist a report.
            await self.loop.run_in_executor(None, self.initiator.stop)
            # Destroy the engine now: QuickFIX keeps one process-wide registry of sessions, and a
            # stopped initiator destroyed later would unregister a newer one with the same id.
            self.initiator = self.store_factory = self.log_factory = self.settings = None
            self.app = None
        self.sender.shutdown(wait=False)

    async def _restore(self) -> None:
        try:
            keys = await self.w.kv.keys()
        except Exception:
            keys = []
        prefix = f"{self.id}."
        for key in keys:
            if key.startswith(prefix):
                try:
                    o = decode((await self.w.kv.get(key)).value, fm.FixOrder)
                except (KeyNotFoundError, DecodeError):
                    continue
                self.orders[o.client_order_id] = o
        log.info("venue %s: restored %d orders (%d open)", self.id, len(self.orders), sum(1 for o in self.orders.values() if o.live))

    async def _persist(self, o: fm.FixOrder) -> None:
        self.orders[o.client_order_id] = o
        await self.w.kv.put(f"{self.id}.{o.client_order_id}", encode(o))

    # ---- the engine's callbacks (on the event loop) -----------------------------------------
    def on_logon_message(self, seq: int) -> None:
        self.peer_logon_seq = seq

    def on_logon(self, session_id) -> None:
        self.session_id = session_id
        self.session_generation += 1
        log.info("venue %s: logged on", self.id)
        task = asyncio.create_task(self._when_synced(self.session_generation))
        self.w.background.append(task)

    def on_logout(self) -> None:
        self.logged_on = False
        self.session_generation += 1
        log.info("venue %s: logged out", self.id)

    def _expected_target(self) -> int:
        import quickfix as fix

        session = fix.Session.lookupSession(self.session_id) if self.session_id is not None else None
        return session.getExpectedTargetNum() if session is not None else 0

    async def _when_synced(self, generation: int) -> None:
        """Open for orders once the engine has filled the gap its logon found (the messages we
        missed are replayed first, in order); then ask the venue about every order not known to be
        closed. Nothing application-level is sent while the resend runs."""
        deadline = time.monotonic() + 15
        while self.session_generation == generation and self._expected_target() <= self.peer_logon_seq and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.session_generation != generation:
            return
        self.logged_on = True
        log.info("venue %s: in sequence (next expected %d)", self.id, self._expected_target())
        for o in list(self.orders.values()):
            if o.live and not o.tombstone and self.logged_on:
                await self._send(fm.status_request(o))

    async def on_inbound(self, msg: dict[int, str], raw: str) -> None:
        """One application message from the venue. Returns once its consequences are durable."""
        cl = msg.get(fm.CL_ORD_ID, "")
        orig = msg.get(fm.ORIG_CL_ORD_ID, "")
        o = self.orders.get(fm.child_of(cl)) or (self.orders.get(fm.child_of(orig)) if orig else None)
        try:
            out = fm.on_message(self.id, o, msg, time.time())
        except Exception as exc:  # a message the mapping cannot take is kept, never dropped
            log.exception("venue %s: cannot map inbound message", self.id)
            await self._notice(f"unmappable message ({type(exc).__name__}: {exc})", msg, raw)
            return
        if out.changed and out.order is not None:
            await self._persist(out.order)
        if out.reports:
            await self._publish_reports(out.reports)
        for key_cl, answer in out.answers:
            fut = self.waiters.get((answer.kind, key_cl))
            if fut is not None and not fut.done():
                fut.set_result(answer)
        if out.notice:
            await self._notice(out.notice, msg, raw)

    async def _publish_reports(self, reports) -> None:
        subject_venue = None if self.is_default else self.id
        outs = [
            Out(report_subject(r.cid, subject_venue), encode(r), f"rpt.{self.id}.{r.trade_id}" if r.kind == "FILL" else f"rpt.{self.id}.{r.client_order_id}.{r.kind}")
            for r in reports
        ]
        while True:
            try:
                await self.w.publisher.publish(outs)
                return
            except Exception as exc:  # JetStream unavailable: keep the engine waiting, lose nothing
                log.warning("venue %s: report publish failed (%s); retrying", self.id, type(exc).__name__)
                await asyncio.sleep(0.5)

    async def _notice(self, why: str, msg: dict[int, str], raw: str) -> None:
        """An unknown or late venue message: logged, and kept in EXEC_DLQ with the raw FIX."""
        self.notices += 1
        log.warning("venue %s notice: %s | %s", self.id, why, raw)
        seq = msg.get(fm.MSG_SEQ_NUM, "")
        digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
        headers = {"Jetexec-Reason": "VENUE_NOTICE", "Jetexec-Detail": why[:512], "Jetexec-Venue": self.id, "Jetexec-Fix-MsgSeqNum": seq}
        try:
            await self.w.publisher.publish([Out(dlq_subject(f"venue-{self.id}"), raw.encode(), f"notice.{self.id}.{seq}.{digest}", headers)])
        except Exception as exc:
            log.error("venue %s: notice not stored (%s): %s", self.id, type(exc).__name__, why)

    # ---- outbound ----------------------------------------------------------------------------
    async def _send(self, out: fm.FixOut) -> bool:
        return await self.loop.run_in_executor(self.sender, self._send_sync, out)

    def _send_sync(self, out: fm.FixOut) -> bool:
        import quickfix as fix

        if self.session_id is None:
            return False
        m = fix.Message()
        m.getHeader().setField(fix.BeginString("FIX.4.4"))
        m.getHeader().setField(fix.MsgType(out.msg_type))
        for tag, value in out.fields:
            m.setField(fix.StringField(tag, value))
        try:
            return bool(fix.Session.sendToTarget(m, self.session_id))
        except fix.SessionNotFound:
            return False

    def _waiter(self, kind: str, cl: str) -> asyncio.Future:
        fut = self.loop.create_future()
        self.waiters[(kind, cl)] = fut
        return fut

    async def _await(self, kind: str, cl: str, fut: asyncio.Future):
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.fix.reply_timeout_s)
        except asyncio.TimeoutError:
            return None
        finally:
            if self.waiters.get((kind, cl)) is fut:
                del self.waiters[(kind, cl)]

    # ---- venue protocol ----------------------------------------------------------------------
    async def _dispatch(self, msg) -> None:
        op = msg.subject.rsplit(".", 1)[-1]
        task = asyncio.create_task(self._serve(op, msg))
        self.w.requests.add(task)
        task.add_done_callback(self.w.requests.discard)

    async def _serve(self, op: str, msg) -> None:
        fn = {"new": self._new, "modify": self._modify, "cancel": self._cancel, "query": self._query, "specs": self._specs, "symbols": self._symbols, "fills": self._fills}.get(op)
        try:
            reply = json.dumps({"error": UNKNOWN_OP, "detail": op}).encode() if fn is None else await fn(msg.data)
        except DecodeError as exc:
            reply = json.dumps({"error": exc.reason_code.value, "detail": exc.detail}).encode()
        except Exception as exc:
            log.exception("venue %s: %s failed", self.id, op)
            reply = json.dumps({"error": "VENUE_INTERNAL", "detail": type(exc).__name__}).encode()
        if reply is not None and msg.reply:
            await self.w.nc.publish(msg.reply, reply)

    def _lock(self, coid: str) -> asyncio.Lock:
        return self.locks.setdefault(coid, asyncio.Lock())

    async def _new(self, data: bytes) -> bytes | None:
        req = decode(data, NewOrder)
        coid = req.client_order_id

        def refuse(code: ReasonCode, why: str, venue_order_id: str = "") -> bytes:
            return encode(OrderAck(accepted=False, client_order_id=coid, venue_order_id=venue_order_id, reject_reason=why, reason_code=code, error_class=ErrorClass.NON_RETRYABLE))

        async with self._lock(coid):
            o = self.orders.get(coid)
            if o is not None:
                if o.tombstone:
                    return refuse(ReasonCode.HALTED, TOMBSTONE)
                return refuse(ReasonCode.DUPLICATE_CLIENT_ORDER_ID, "duplicate client_order_id", o.venue_order_id)
            if not self.armed:
                return refuse(ReasonCode.POLICY_LIVE_NOT_ENABLED, NOT_ARMED)
            if req.mode is not ExecutionMode.LIVE:
                return refuse(ReasonCode.POLICY_LIVE_NOT_ENABLED, f"venue {self.id} is live: a {req.mode.value if req.mode else 'mode-less'} order is refused")
            sym = self.cfg.symbol(req.symbol)
            if sym is None:
                return refuse(ReasonCode.VALIDATION_INVALID_SYMBOL, f"unknown symbol {req.symbol!r} at venue {self.id}")
            price = req.price if req.order_type is OrderType.LIMIT else None
            if req.order_type is OrderType.LIMIT and price is None:
                return refuse(ReasonCode.VALIDATION_INVALID_PRICE, "LIMIT needs a price")
            bad = order_refusal(sym.spec(), sym.limits(), req.qty, price)
            if bad is not None:
                return refuse(*bad)
            if not self.logged_on:
                return None  # not sent, nothing recorded: the caller's retry may send it
            now = time.time()
            o = fm.FixOrder(client_order_id=coid, cid=req.cid, symbol=req.symbol, wire_symbol=sym.wire_symbol, side=req.side, order_type=req.order_type, qty=req.qty, price=price, cl_ord_id=coid, chain=[coid], created_ts=now, updated_ts=now)
            await self._persist(o)  # before the engine has it: a record means "handed over"
            fut = self._waiter("new", coid)
            if not await self._send(fm.new_order_single(o, transact_time())):
                self.orders.pop(coid, None)  # the engine refused it: never sent, so forget it
                await self.w.kv.delete(f"{self.id}.{coid}")
                return None
            answer = await self._await("new", coid, fut)
            if answer is None:
                return None  # no answer yet: the caller queries before anything else
            o = self.orders[coid]
            if answer.accepted:
                return encode(OrderAck(accepted=True, client_order_id=coid, venue_order_id=o.venue_order_id))
            return refuse(answer.reason_code or ReasonCode.VENUE_REJECTED, answer.reason)

    async def _query(self, data: bytes) -> bytes:
        req = decode(data, QueryOrder)
        coid = req.client_order_id
        async with self._lock(coid):
            o = self.orders.get(coid)
            if o is not None and not o.tombstone and o.live and self.logged_on:
                fut = self._waiter("query", o.cl_ord_id)
                if await self._send(fm.status_request(o)):
                    await self._await("query", o.cl_ord_id, fut)
            return encode(fm.status_of(self.orders.get(coid), coid))

    async def _modify(self, data: bytes) -> bytes | None:
        req = decode(data, ModifyOrder)
        coid = req.client_order_id

        def refuse(code: ReasonCode | None, why: str, o: fm.FixOrder | None = None) -> bytes:
            return encode(ModifyAck(accepted=False, client_order_id=coid, venue_order_id=o.venue_order_id if o else "", reject_reason=why, reason_code=code, error_class=ErrorClass.NON_RETRYABLE))

        async with self._lock(coid):
            o = self.orders.get(coid)
            if o is None or o.tombstone:
                return refuse(ReasonCode.UNKNOWN_ORDER, "unknown order")
            if not o.live or o.order_type is not OrderType.LIMIT or o.price is None:
                return refuse(ReasonCode.UNKNOWN_ORDER, f"order not live ({o.state.value})", o)
            if req.new_price is None and req.new_qty is None:
                return refuse(ReasonCode.VALIDATION_MISSING_FIELD, "nothing to modify", o)
            if not self.armed:
                return refuse(ReasonCode.POLICY_LIVE_NOT_ENABLED, NOT_ARMED, o)
            price = req.new_price if req.new_price is not None else o.price
            qty = req.new_qty if req.new_qty is not None else o.qty
            sym = self.cfg.symbol(o.symbol)
            bad = order_refusal(sym.spec(), sym.limits(), qty, price) if sym is not None else None
            if bad is not None:
                return refuse(bad[0], bad[1], o)
            if qty <= o.cum_qty:
                return refuse(ReasonCode.VALIDATION_INVALID_QUANTITY, f"qty {qty} must be above filled {o.cum_qty}", o)
            if not self.logged_on:
                return None
            new_cl = fm.replace_id(o)
            o = msgspec.structs.replace(o, generation=o.generation + 1, chain=[*o.chain, new_cl], updated_ts=time.time())
            await self._persist(o)
            fut = self._waiter("modify", new_cl)
            if not await self._send(fm.cancel_replace(o, new_cl, price, qty, transact_time())):
                return None
            answer = await self._await("modify", new_cl, fut)
            if answer is None:
                return None
            o = self.orders[coid]
            if answer.accepted:
                return encode(ModifyAck(accepted=True, client_order_id=coid, venue_order_id=o.venue_order_id, new_price=o.price, new_qty=o.qty))
            return refuse(answer.reason_code, answer.reason, o)

    async def _cancel(self, data: bytes) -> bytes | None:
        req = decode(data, CancelOrder)
        coid = req.client_order_id
        async with self._lock(coid):
            o = self.orders.get(coid)
            if o is None or o.tombstone:
                if o is None:  # the order may still be on its way: a tombstone refuses it later
                    now = time.time()
                    await self._persist(fm.FixOrder(client_order_id=coid, cid="", symbol="", wire_symbol="", side="BUY", order_type=OrderType.MARKET, qty=Decimal(0), state=OrderState.CANCELLED, reject_reason=TOMBSTONE, tombstone=True, created_ts=now, updated_ts=now))
                return encode(CancelAck(accepted=False, client_order_id=coid, reject_reason="unknown order", reason_code=ReasonCode.UNKNOWN_ORDER, error_class=ErrorClass.NON_RETRYABLE))
            if o.state is OrderState.CANCELLED:
                return encode(CancelAck(accepted=True, client_order_id=coid, venue_order_id=o.venue_order_id, leaves_qty=o.qty - o.cum_qty))
            if not o.live:
                return encode(CancelAck(accepted=False, client_order_id=coid, venue_order_id=o.venue_order_id, reject_reason="already closed", error_class=ErrorClass.NON_RETRYABLE))
            if not self.logged_on:
                return None
            new_cl = fm.cancel_id(o)
            o = msgspec.structs.replace(o, cancels=o.cancels + 1, chain=[*o.chain, new_cl], updated_ts=time.time())
            await self._persist(o)
            fut = self._waiter("cancel", new_cl)
            if not await self._send(fm.cancel_request(o, new_cl, transact_time())):
                return None
            answer = await self._await("cancel", new_cl, fut)
            if answer is None:
                return None
            o = self.orders[coid]
            if answer.accepted:
                return encode(CancelAck(accepted=True, client_order_id=coid, venue_order_id=o.venue_order_id, leaves_qty=o.qty - o.cum_qty))
            return encode(CancelAck(accepted=False, client_order_id=coid, venue_order_id=o.venue_order_id, reject_reason=answer.reason, reason_code=answer.reason_code, error_class=ErrorClass.NON_RETRYABLE))

    async def _specs(self, _data: bytes) -> bytes:
        return encode([s.spec() for s in self.cfg.symbols])

    async def _symbols(self, _data: bytes) -> bytes:
        return encode([SymbolInfo(symbol=s.symbol, reference_price=s.reference_price, lot_size=s.lot_size, tick_size=s.tick_size) for s in self.cfg.symbols])

    async def _fills(self, data: bytes) -> bytes:
        coid = decode(data or b"{}", FillsRequest).client_order_id
        o = self.orders.get(coid)
        if o is None or o.tombstone:
            return encode(FillsReply(found=False, client_order_id=coid))
        return encode(FillsReply(found=True, client_order_id=coid, cid=o.cid, state=o.state, qty=o.qty, filled_qty=o.cum_qty, fill_count=len(o.fills), fills=o.fills))


class _Application:
    """The QuickFIX application: callbacks arrive on the engine's thread and go to the event loop."""

    def __new__(cls, venue: FixVenue):
        import quickfix as fix

        class Application(fix.Application):
            def onCreate(self, session_id):  # noqa: N802 - QuickFIX's names
                pass

            def onLogon(self, session_id):  # noqa: N802
                venue.loop.call_soon_threadsafe(venue.on_logon, session_id)

            def onLogout(self, session_id):  # noqa: N802
                venue.loop.call_soon_threadsafe(venue.on_logout)

            def toAdmin(self, message, session_id):  # noqa: N802
                pass

            def fromAdmin(self, message, session_id):  # noqa: N802
                msg_type = message.getHeader().getField(35)
                if msg_type == "A":  # the peer's logon: its sequence number tells whether a gap is to fill
                    venue.loop.call_soon_threadsafe(venue.on_logon_message, int(message.getHeader().getField(34)))
                elif msg_type == "3":  # a session-level Reject of something we sent
                    raw = message.toString().replace("\x01", "|")
                    asyncio.run_coroutine_threadsafe(venue._notice("session-level Reject", {fm.MSG_SEQ_NUM: message.getHeader().getField(34)}, raw), venue.loop)

            def toApp(self, message, session_id):  # noqa: N802
                pass

            def fromApp(self, message, session_id):  # noqa: N802
                fields = {tag: message.getField(tag) for tag in fm.INBOUND_TAGS if message.isSetField(tag)}
                header = message.getHeader()
                fields.update({tag: header.getField(tag) for tag in fm.HEADER_TAGS if header.isSetField(tag)})
                raw = message.toString().replace("\x01", "|")
                # Block the engine until the message's consequences are durable: only then may it
                # count the sequence number as received (a crash before that re-requests it).
                while True:
                    fut = asyncio.run_coroutine_threadsafe(venue.on_inbound(fields, raw), venue.loop)
                    try:
                        fut.result(timeout=60)
                        return
                    except concurrent.futures.TimeoutError:
                        log.error("venue %s: inbound message not yet durable after 60 s; still waiting", venue.id)
                        fut.cancel()
                    except RuntimeError:  # the loop is gone: the process is ending; do not ack
                        raise

        return Application()


class FixVenueWorker(WorkerApp):
    name = "venue-fix"

    async def setup(self) -> None:
        venues = venues_from_env()
        wanted = os.environ.get("JETEXEC_VENUE_ID")
        ids = [wanted] if wanted else venues.of_kind("fix")
        if not ids or any(venues.get(v) is None or venues.get(v).kind != "fix" for v in ids):
            raise SystemExit(f"venue-fix: no FIX venue {'named ' + wanted if wanted else 'configured'} (JETEXEC_VENUES)")
        self.kv = await self.js.key_value(KV_VENUE_ORDERS)
        self.publisher = Publisher(self.js)
        self.requests: set[asyncio.Task] = set()
        armed = all(live_switches())
        self.venues: list[FixVenue] = []
        for vid in ids:
            v = FixVenue(self, vid, venues.venues[vid], vid == venues.default, armed)
            await v.start()
            self.venues.append(v)

    async def teardown(self) -> None:
        for v in self.venues:
            await v.stop()
