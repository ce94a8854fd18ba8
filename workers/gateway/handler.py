"""Gateway — intent intake.

Consumes:  ``exec.intake`` (core NATS request/reply, queue group ``gateway``): one intent as JSON.
Publishes: ``exec.evt.<cid>`` ExecutionCreated (valid) or IntentRejected (invalid), then replies
           with an :class:`IntakeReceipt`.

An intent is *accepted* only once its fact is stored in JetStream (the publish ack); a client that
gets no receipt retries, and the retry is harmless: the fact is stored only as its execution's first
(``Nats-Expected-Last-Subject-Sequence: 0`` on ``exec.evt.<cid>``), so the same intent again is the
execution that exists. Contract validation happens here
(:func:`core.intake.parse_intent`); unknown symbols get FS091.

Tracing: every request is a CONSUMER span ``process exec.intake`` — the root of the execution's trace,
or the child of the client's span when the request carries a ``traceparent`` — and the fact's PRODUCER
span is its child. Metrics: ``jetexec_messages_total{subject="exec.intake", outcome=accepted|rejected|error}``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import msgspec

from bus import metrics, tracing
from bus.jspub import PublishError
from bus.runtime import tracing_on
from bus.topology import INTAKE_SUBJECT, LOAD_SUBJECT, evt_subject
from core.admission import REPORT_STALE_S, AdmissionConfig, LoadReport, refusal
from core.guardrails import alert
from core.ids import rejection_id
from core.intake import IntentError, intent_identity, parse_intent
from schemas.codec import decode, encode
from schemas.enums import AlertCode, ExecutionMode, ExecutionState, ReasonCode
from schemas.messages import ExecutionCreated, IntakeReceipt, IntentRejected  # IntakeReceipt: re-exported for old imports
from workers.common import StageWorker, config_from_env, now

log = logging.getLogger("jetexec.gateway")


class GatewayWorker(StageWorker):
    name = "gateway"

    needs = frozenset({"safety", "market", "venue"})

    async def prepare(self) -> None:
        self.known_symbols: set[str] | None = None
        self.venue_symbols: dict[str, set[str]] = {}  # named venue → what it trades (when known)
        self.background.append(asyncio.create_task(self._refresh_symbols()))
        for vid in self.venues.venues:
            if vid != self.venues.default:
                self.background.append(asyncio.create_task(self._refresh_venue_symbols(vid)))
        self.default_mode = ExecutionMode(os.environ.get("JETEXEC_MODE", "PAPER").upper())
        self.slots = asyncio.Semaphore(512)
        self.inflight: set[asyncio.Task] = set()
        self.admission = config_from_env("JETEXEC_ADMISSION_CONFIG", AdmissionConfig)
        self.loads: dict[str, LoadReport] = {}  # coordinator instance -> its latest load report
        await self.nc.subscribe(LOAD_SUBJECT, cb=self._on_load)
        self.sub = await self.nc.subscribe(INTAKE_SUBJECT, queue="gateway", cb=self._on_request, pending_msgs_limit=100_000)

    async def _on_load(self, msg) -> None:
        try:
            report = decode(msg.data, LoadReport)
        except Exception:
            return
        self.loads[report.instance] = report
        if len(self.loads) > 64:  # replicas come and go: forget the stale ones
            now = time.time()
            self.loads = {k: r for k, r in self.loads.items() if now - r.at <= REPORT_STALE_S}

    async def _refresh_symbols(self) -> None:
        """What the venue trades; until known, precheck is the symbol check (FS091 there)."""
        while True:
            try:
                self.known_symbols = set((await self.venue.specs()).keys())
                await asyncio.sleep(30)
            except Exception:
                await asyncio.sleep(0.5)

    async def _refresh_venue_symbols(self, venue: str) -> None:
        while True:
            try:
                self.venue_symbols[venue] = set((await self.venue.at(venue).specs()).keys())
                await asyncio.sleep(30)
            except Exception:
                await asyncio.sleep(0.5)

    def _symbols_at(self, venue: str) -> set[str] | None:
        return self.known_symbols if venue == self.venues.default else self.venue_symbols.get(venue)

    async def _on_request(self, msg) -> None:
        # nats-py runs one subscription's callbacks one at a time: hand each request to its own
        # task (bounded), or intake would be serialised behind each publish acknowledgement.
        await self.slots.acquire()
        task = asyncio.create_task(self._answer(msg))
        self.inflight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.inflight.discard(task)
        self.slots.release()

    async def _answer(self, msg) -> None:
        self.health.progress()
        started = time.perf_counter()
        outcome = "error"
        try:
            if tracing_on():
                # No ConsumerLoop here: the execution's first span is opened explicitly.
                with tracing.consumer_span(INTAKE_SUBJECT, msg.headers, durable="gateway", msg_id=None, cid=None):
                    receipt = await self.intake(msg.data)
            else:
                receipt = await self.intake(msg.data)
            outcome = "accepted" if receipt.accepted else ("refused" if receipt.reason_code is ReasonCode.OVERLOADED else "rejected")
        except Exception as exc:  # JetStream unavailable: no receipt means "not accepted, retry"
            log.warning("intake failed: %s", type(exc).__name__)
            return
        finally:
            counter, histogram = self._metric_children(outcome)
            counter.inc()
            histogram.observe(time.perf_counter() - started)
        if msg.reply:
            await self.nc.publish(msg.reply, encode(receipt))

    @staticmethod
    async def _store_first(publisher, cid: str, data: bytes, msg_id: str) -> None:
        """Store the fact only as the execution's first: the same intent again (after the duplicate
        window too) is the execution that exists, so the coordinator can trust that a first
        delivery of ExecutionCreated is a new execution without reading anything."""
        try:
            await publisher.publish_one(evt_subject(cid), data, msg_id, {"Nats-Expected-Last-Subject-Sequence": "0"})
        except PublishError as exc:
            if not exc.wrong_last_sequence:
                raise

    def _metric_children(self, outcome: str):
        """Metric children per outcome, looked up once (labels() is not free on the intake path)."""
        cache = self.__dict__.setdefault("_children", {})
        pair = cache.get(outcome)
        if pair is None:
            pair = cache[outcome] = (metrics.MESSAGES.labels(self.name, INTAKE_SUBJECT, outcome), metrics.HANDLER_SECONDS.labels(self.name, INTAKE_SUBJECT))
        return pair

    async def intake(self, raw: bytes) -> IntakeReceipt:
        publisher = self.publisher
        try:
            intent = parse_intent(raw, self.known_symbols, venues=self.venues.venues.keys(), symbols_at=self._symbols_at)
        except IntentError as err:
            key, cid = rejection_id(raw)
            alerts = (alert(AlertCode.FS091, "INTAKE", err.detail, now()),) if err.reason_code is ReasonCode.VALIDATION_INVALID_SYMBOL else ()
            fact = IntentRejected(cid=cid, idempotency_key=key, reason_code=err.reason_code, detail=err.detail, raw=raw[:512].decode("utf-8", "replace"), alerts=alerts, ts=now())
            tracing.annotate(cid=cid, state=ExecutionState.FAILED, reason_code=err.reason_code, alerts=[a.code for a in alerts])
            await self._store_first(publisher, cid, encode(fact), f"{cid}.rejected")
            return IntakeReceipt(accepted=False, correlation_id=cid, idempotency_key=key, state=ExecutionState.FAILED, reason_code=err.reason_code, detail=err.detail, alerts=[a.code for a in alerts], created_at=fact.ts)
        key, cid = intent_identity(intent)
        refused = refusal(self.loads.values(), time.time(), self.admission)
        if refused is not None:
            # Saturated: not accepted, nothing stored — the same intent later is a new first try.
            detail, retry_after_ms = refused
            metrics.REFUSALS.inc()
            tracing.annotate(cid=cid, state=ExecutionState.FAILED, reason_code=ReasonCode.OVERLOADED)
            return IntakeReceipt(accepted=False, correlation_id=cid, idempotency_key=key, state=ExecutionState.FAILED, reason_code=ReasonCode.OVERLOADED, detail=detail, retry_after_ms=retry_after_ms)
        intent = msgspec.structs.replace(intent, venue=self.venues.resolve(intent.venue))  # after the key: the default is no part of it
        mode = self.safety.mode or self.default_mode
        fact = ExecutionCreated(cid=cid, idempotency_key=key, intent=intent, mode=mode, arrival_price=self.market.mid(intent.symbol), ts=now())
        tracing.annotate(cid=cid, symbol=intent.symbol, side=intent.side, state=ExecutionState.INIT, strategy_id=intent.strategy_id, mode=mode)
        await self._store_first(publisher, cid, encode(fact), f"{cid}.created")
        return IntakeReceipt(
            accepted=True, correlation_id=cid, idempotency_key=key, state=ExecutionState.INIT, symbol=intent.symbol, side=intent.side, qty=intent.qty,
            strategy_id=intent.strategy_id, order_type=intent.order_type, price=intent.price, created_at=fact.ts,
        )
