"""The worker runtime: continuous pull → decode → handler → publish with deterministic ids → ack.

* **Continuous pull.** One pull request is kept outstanding per consumer and topped up as messages
  arrive (``$JS.API.CONSUMER.MSG.NEXT`` with ``expires`` and idle heartbeats), instead of nats-py's
  ``fetch`` loop, which is ~4× slower and stalls after idle with ``batch>1`` (research §9, nats.py#986).
  A watchdog re-issues the pull when neither messages nor heartbeats arrive (server restart).
* **Ordering.** Messages with the same key (the correlation id) run one after another, in delivery
  order; different keys run concurrently up to ``concurrency``.
* **Outcomes.** Success: publish every output (pipelined ``publish_async``, ``Nats-Msg-Id`` set, so
  a redelivery re-publishes identical ids that the server drops), then ack. :class:`Retry`: ``nak``
  with a delay. :class:`Poison` or a decode error: publish a dead letter to ``exec.dlq.<stage>`` with
  the reason in headers, then ``term``. Out of deliveries: dead-letter too. Nothing is dropped silently.
* **Shutdown.** SIGTERM stops pulling, lets in-flight handlers finish, acks, then drains.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import signal
import sys
import time
import inspect
from collections.abc import Awaitable, Callable, Sequence

import msgspec
from nats.aio.client import Client
from opentelemetry import trace as otel_trace
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from bus import metrics, tracing
from bus.jspub import JsPublisher, PublishError, PublishTimeout
from bus.settings import NatsSettings, connect
from bus.topology import CONSUMERS, ConsumerSpec, dlq_subject, ensure_topology, published_subject, subject_template, verify_topology
from bus.stamps import ns_to_ts
from schemas.codec import DecodeError

log = logging.getLogger("jetexec.runtime")

STOP_BUDGET_S = 12.0  # in-flight handlers (10 s) + a bounded drain; Kubernetes grace is 45 s

_NO_SPAN = contextlib.nullcontext()  # reusable: the untraced path's span context manager
HOUSEKEEPING = "Jetexec-Housekeeping"  # header of messages that belong to no execution: never traced


_tracing_checked = (0.0, False)


def tracing_on() -> bool:
    """False while no SDK tracer provider is installed: then spans are skipped, not just no-ops
    (the no-op path still costs ~5 % of a worker's CPU at saturation). Re-checked once a second,
    because looking the provider up reads the environment."""
    global _tracing_checked
    now = time.monotonic()
    if now - _tracing_checked[0] > 1.0:
        _tracing_checked = (now, not isinstance(otel_trace.get_tracer_provider(), otel_trace.ProxyTracerProvider))
    return _tracing_checked[1]


class Out(msgspec.Struct, frozen=True):
    """One message to publish. ``msg_id`` must be deterministic for the input that produced it."""

    subject: str
    data: bytes
    msg_id: str
    headers: dict[str, str] | None = None


class Retry(Exception):
    """Transient failure: redeliver after ``delay`` seconds."""

    def __init__(self, detail: str, delay: float = 0.5) -> None:
        super().__init__(detail)
        self.delay = delay


class Poison(Exception):
    """This message can never succeed: dead-letter it with a reason code."""

    def __init__(self, reason_code: str, detail: str) -> None:
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code
        self.detail = detail


class Delivery:
    """One delivered JetStream message, with what its reply subject says about it.

    The ack subject is ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>``
    (v1, 9 tokens) or the same after ``<domain>.<account hash>`` (v2); it is parsed once, here."""

    __slots__ = ("msg", "subject", "data", "headers", "stream_seq", "num_delivered", "ts_ns", "cid")

    def __init__(self, msg: Msg) -> None:
        self.msg = msg
        self.subject = subject = msg.subject
        self.data = msg.data
        self.headers: dict[str, str] = msg.headers or {}
        self.cid = subject[subject.rfind(".") + 1 :]
        tokens = msg.reply.split(".") if msg.reply else ()
        k = 0 if len(tokens) == 9 else 2 if len(tokens) >= 11 else -1
        if k >= 0:
            self.num_delivered, self.stream_seq, self.ts_ns = int(tokens[4 + k]), int(tokens[5 + k]), int(tokens[7 + k])
        else:
            self.num_delivered, self.stream_seq, self.ts_ns = 1, 0, 0

    @property
    def ts(self) -> float:
        """The stream timestamp (epoch seconds, microsecond resolution; 0.0 when unknown)."""
        return ns_to_ts(self.ts_ns)

    async def in_progress(self) -> None:
        await self.msg.in_progress()


Handler = Callable[[Delivery], Awaitable[Sequence[Out]]] | Callable[[Delivery], Sequence[Out]]


class Publisher:
    """JetStream publishing with deterministic message ids and PRODUCER spans, pipelined."""

    def __init__(self, pub: "JsPublisher | Client | JetStreamContext") -> None:
        # A bare connection (or JetStream context, as one-off callers hold) gets its own publisher,
        # whose inbox subscription starts with the first message.
        if isinstance(pub, JetStreamContext):
            pub = pub._nc  # noqa: SLF001 - nats-py keeps the connection there
        self.pub = pub if isinstance(pub, JsPublisher) else JsPublisher(pub)

    async def send(self, out: Out) -> asyncio.Future:
        """Send one message; the returned future resolves when JetStream stored it."""
        headers = dict(out.headers) if out.headers else {}
        headers["Nats-Msg-Id"] = out.msg_id
        if tracing_on():
            with tracing.producer_span(out.subject, headers, msg_id=out.msg_id, cid=tracing.cid_of(out.subject)):
                return await self.pub.publish(out.subject, out.data, headers)
        return await self.pub.publish(out.subject, out.data, headers)

    async def publish(self, outs: Sequence[Out]) -> None:
        """Send every message, then wait until JetStream stored all of them."""
        if not outs:
            return
        futures = [await self.send(out) for out in outs]
        if len(futures) == 1:
            await futures[0]
        else:
            await asyncio.gather(*futures)

    async def publish_one(self, subject: str, data: bytes, msg_id: str, headers: dict[str, str] | None = None) -> None:
        await self.publish([Out(subject, data, msg_id, headers)])


class ConsumerLoop:
    """Continuous pull for one durable consumer, feeding a handler.

    Two shapes of handler:

    * ``async def`` (it waits on I/O: a venue, a KV read): each correlation id gets a task, its
      messages run one after another, different ids run concurrently.
    * plain ``def`` (pure, in memory: the coordinator, split, monitor, the ledger): every message that
      arrived since the last turn of the event loop is handled in one batch, in delivery order, in one
      task; the batch's outputs are pipelined and each input is acked once its own outputs are stored.
      Delivery order per id is kept because handling is sequential.
    """

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        spec: ConsumerSpec,
        handler: Handler,
        worker: str,
        health: metrics.Health,
        concurrency: int = 64,
        ordered_by_key: bool = True,
        ack_sync: bool = False,
        expires_s: float = 5.0,
        heartbeat_s: float = 1.0,
        publisher: Publisher | None = None,
    ) -> None:
        self.nc, self.js, self.spec, self.handler = nc, js, spec, handler
        self.worker, self.health = worker, health
        self.concurrency, self.ordered_by_key, self.ack_sync = concurrency, ordered_by_key, ack_sync
        self.expires_s, self.heartbeat_s = expires_s, heartbeat_s
        self.publisher = publisher
        self.batched = not inspect.iscoroutinefunction(handler)
        # Priority group (pinned client): the server delivers to one puller at a time; the pin id it
        # hands out must ride on every later pull, and a 423 says another client has the pin now.
        self.group = spec.priority_group
        self.pin: str | None = None
        self.on_pin_lost: Callable[[], None] | None = None
        if self.group:
            self.expires_s = min(self.expires_s, max(0.5, spec.priority_timeout_s / 4))
        self.heartbeat_s = min(self.heartbeat_s, self.expires_s / 2.5)  # the server wants it under half of expires
        self._refused_until = 0.0
        self.template = subject_template(published_subject(spec.filter_subject.replace("*", "x").replace(">", "x.x")))
        self.on_dead_letter: Callable[[Delivery, str, str], Awaitable[None]] | None = None
        # Awaited before inputs are acked, once per batch: a worker that keeps state in memory
        # stores it here, so nothing acked can be lost (the ledger).
        self.before_ack: Callable[[], Awaitable[None]] | None = None
        self._stop = asyncio.Event()
        self._inflight = 0
        self._outstanding = 0
        self._queues: dict[str, collections.deque] = {}
        self._tasks: set[asyncio.Task] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._refill = asyncio.Event()
        self._metric_children: dict = {}
        self._last_seen = 0.0
        self._batch: list[Msg] = []
        self._batch_task_pending = False
        self._handling = asyncio.Lock()

    @property
    def capacity(self) -> int:
        return max(2, self.concurrency * 2)

    async def run(self) -> None:
        if self.publisher is None:
            self.publisher = Publisher(await JsPublisher(self.nc).start())
        inbox = self.nc.new_inbox()
        # Messages are dispatched straight from the subscription callback (no queue hop, no
        # per-message timeout task); this coroutine only keeps a pull request outstanding.
        sub = await self.nc.subscribe(inbox, cb=self._on_msg)
        api = f"$JS.API.CONSUMER.MSG.NEXT.{self.spec.stream}.{self.spec.durable}"
        self._last_seen = time.monotonic()
        try:
            while not self._stop.is_set():
                want = self.capacity - self._outstanding - self._inflight
                if want >= max(1, self.capacity // 2) and self.nc.is_connected and time.monotonic() >= self._refused_until:
                    req = {"batch": want, "expires": int(self.expires_s * 1e9), "idle_heartbeat": int(self.heartbeat_s * 1e9)}
                    if self.group:
                        req["group"] = self.group
                        if self.pin:
                            req["id"] = self.pin
                    try:
                        await self.nc.publish(api, json.dumps(req).encode(), reply=inbox)
                        self._outstanding += want
                    except Exception:  # disconnected mid-publish: the watchdog below retries
                        pass
                self._refill.clear()
                try:
                    await asyncio.wait_for(self._refill.wait(), timeout=self.heartbeat_s)
                except asyncio.TimeoutError:
                    pass
                if self._outstanding == 0 or time.monotonic() - self._last_seen < 3 * self.heartbeat_s:
                    self.health.progress()
                else:
                    # No message and no heartbeat: the pull request is gone (server restart,
                    # reconnect). Forget it and ask again.
                    self._outstanding = 0
                    self._last_seen = time.monotonic()
        finally:
            await sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        self._last_seen = time.monotonic()
        if msg.headers and not msg.reply:
            status = msg.headers.get("Status")
            if status is not None:
                if status == "423" and self.group:
                    # Another client holds the pin: whatever we thought we owned is not ours now.
                    self._outstanding = 0
                    self.pin = None
                    if self.on_pin_lost is not None:
                        self.on_pin_lost()
                    self._refill.set()
                    return
                if status.startswith("4") and status not in ("404", "408", "409"):
                    # The server refused the pull request itself (bad request, no such consumer):
                    # asking again at once would only spin. Say why and wait a little.
                    log.error("%s: pull on %s refused: %s %s", self.worker, self.spec.durable, status, msg.headers.get("Description", ""))
                    self._refused_until = time.monotonic() + 1.0
                if status != "100":  # 100 = idle heartbeat / flow control
                    pending = msg.headers.get("Nats-Pending-Messages")
                    self._outstanding = max(0, self._outstanding - int(pending)) if pending is not None else 0
                    self._refill.set()
                return
        self._outstanding = max(0, self._outstanding - 1)
        if self.group and msg.headers:
            pin = msg.headers.get("Nats-Pin-Id")
            if pin and pin != self.pin:
                self.pin = pin
        if self.batched:
            self._batch.append(msg)
            self._inflight += 1
            if not self._batch_task_pending:
                # Messages already queued in the subscription arrive before this task runs: one
                # task takes all of them.
                self._batch_task_pending = True
                self._idle.clear()
                self._spawn(self._run_batch())
            return
        self._dispatch(msg)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _dispatch(self, msg: Msg) -> None:
        key = msg.subject[msg.subject.rfind(".") + 1 :] if self.ordered_by_key else str(id(msg))
        q = self._queues.get(key)
        if q is not None:
            q.append(msg)  # same execution already running here: keep delivery order
            return
        self._queues[key] = collections.deque([msg])
        self._inflight += 1
        self._idle.clear()
        self._spawn(self._drain_key(key))

    def _settled(self, n: int) -> None:
        self._inflight -= n
        if self._inflight == 0:
            self._idle.set()
        if self.capacity - self._outstanding - self._inflight >= self.capacity // 2:
            self._refill.set()

    async def _drain_key(self, key: str) -> None:
        q = self._queues[key]
        try:
            while q:
                await self._handle(Delivery(q[0]))
                q.popleft()
        finally:
            del self._queues[key]
            self._settled(1)

    # ---- batched (plain-function) handlers ------------------------------------------------------
    async def _run_batch(self) -> None:
        batch, self._batch = self._batch, []
        self._batch_task_pending = False
        sent: list[tuple[Delivery, list[asyncio.Future]]] = []
        started = time.perf_counter()
        try:
            # Handling is sequential across batches too: a handler that waits (its slow path) must
            # not let a later batch handle a later message of the same execution first. Only the
            # handling is serialised; storing outputs and acking overlap with the next batch.
            async with self._handling:
                handled_here = await self._handle_batch(batch, sent)
            stored: list[Delivery] = []
            for d, futures in sent:
                try:
                    for fut in futures:
                        await fut
                    stored.append(d)
                except Exception as exc:
                    self._count(await self._outcome_of_failure(d, exc), 1)
            if stored and self.before_ack is not None:
                try:
                    await self.before_ack()
                except Exception as exc:
                    for d in stored:
                        self._count(await self._outcome_of_failure(d, exc), 1)
                    stored = []
            for d in stored:
                try:
                    if self.ack_sync:
                        await d.msg.ack_sync(timeout=5)
                    else:
                        await d.msg.ack()
                    outcome = "ok"
                except Exception as exc:
                    outcome = await self._outcome_of_failure(d, exc)
                self._count(outcome, 1)
            if handled_here:
                # One observation per message, as in the one-at-a-time path, so the histogram's
                # count is the number of messages handled; each is charged the batch's mean time.
                histogram = self._children(self.template, "ok")[1]
                per_message = (time.perf_counter() - started) / handled_here
                for _ in range(handled_here):
                    histogram.observe(per_message)
        finally:
            self._settled(len(batch))

    async def _handle_batch(self, batch: list[Msg], sent: list) -> int:
        """Handle ``batch`` in order; returns how many were handled here (the rest went through
        ``_handle``, which times them itself)."""
        here = 0
        for msg in batch:
            d = Delivery(msg)
            if d.num_delivered > 1:
                metrics.REDELIVERIES.labels(self.worker, self.template).inc()
            if tracing_on() and HOUSEKEEPING not in d.headers:
                # Traced: one span per message around its whole outcome, as for async handlers.
                await self._handle(d)
                continue
            here += 1
            try:
                outs = self.handler(d)
                if inspect.isawaitable(outs):  # the handler's slow path (a KV read, a takeover)
                    outs = await outs
                futures = [await self.publisher.send(out) for out in outs]
            except Exception as exc:
                self._count(await self._outcome_of_failure(d, exc), 1)
                continue
            sent.append((d, futures))
        return here

    # ---- one message, with its span ------------------------------------------------------------
    async def _handle(self, d: Delivery) -> None:
        headers = d.headers
        template = self.template
        delivered = d.num_delivered
        if delivered > 1 and not self.batched:
            metrics.REDELIVERIES.labels(self.worker, template).inc()
        started = time.perf_counter()
        outcome = "ok"
        # The span covers the outcome too: a dead letter (and its StageFailed fact) or a retry stays
        # in the execution's trace. Without a tracer provider, no span at all (see tracing_on).
        span_cm = tracing.consumer_span(published_subject(d.subject), headers, durable=self.spec.durable, msg_id=headers.get("Nats-Msg-Id"), cid=tracing.cid_of(d.subject), delivery=delivered, stream_seq=d.stream_seq) if tracing_on() and HOUSEKEEPING not in headers else _NO_SPAN
        with span_cm as span:
            try:
                outs = self.handler(d)
                if inspect.isawaitable(outs):
                    outs = await outs
                await self.publisher.publish(outs)
                if self.before_ack is not None:
                    await self.before_ack()
                if self.ack_sync:
                    await d.msg.ack_sync(timeout=5)
                else:
                    await d.msg.ack()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outcome = await self._outcome_of_failure(d, exc)
            finally:
                counter, histogram = self._children(template, outcome)
                counter.inc()
                histogram.observe(time.perf_counter() - started)
                if span is not None:
                    tracing.set_outcome(span, outcome)

    async def _outcome_of_failure(self, d: Delivery, exc: Exception) -> str:
        """Dead-letter, retry or redeliver ``d`` after ``exc``; returns the outcome label."""
        if isinstance(exc, (DecodeError, Poison)):
            code = exc.reason_code.value if isinstance(exc, DecodeError) else exc.reason_code
            await self._dead_letter(d, str(code), getattr(exc, "detail", str(exc)))
            return "dead_lettered"
        if isinstance(exc, Retry):
            await self._retry_or_dead_letter(d, exc.delay, str(exc))
            return "retried"
        # A bug or an unexpected outage (a publish not stored): retry with backoff, never drop.
        log.error("%s: handler failed on %s (delivery %d): %s", self.worker, self.template, d.num_delivered, exc, exc_info=not isinstance(exc, (PublishTimeout, PublishError)))
        await self._retry_or_dead_letter(d, min(0.2 * 2 ** d.num_delivered, 5.0), f"{type(exc).__name__}: {exc}")
        return "error"

    def _count(self, outcome: str, n: int) -> None:
        self._children(self.template, outcome)[0].inc(n)

    def _children(self, template: str, outcome: str):
        """Metric children per (subject template, outcome), looked up once (labels() is not free)."""
        key = (template, outcome)
        pair = self._metric_children.get(key)
        if pair is None:
            pair = self._metric_children[key] = (metrics.MESSAGES.labels(self.worker, template, outcome), metrics.HANDLER_SECONDS.labels(self.worker, template))
        return pair

    async def _retry_or_dead_letter(self, d: Delivery, delay: float, detail: str) -> None:
        if d.num_delivered >= self.spec.max_deliver:
            await self._dead_letter(d, "MAX_DELIVERIES", detail)
            return
        try:
            await d.msg.nak(delay=delay)
        except Exception:
            pass  # the ack-wait timer redelivers it anyway

    async def _dead_letter(self, d: Delivery, reason: str, detail: str) -> None:
        metrics.DEAD_LETTERS.labels(self.worker, self.template, reason).inc()
        headers = {
            "Jetexec-Reason": reason,
            "Jetexec-Detail": detail[:500].replace("\r", " ").replace("\n", " "),
            "Jetexec-Subject": published_subject(d.subject),
            "Jetexec-Stream-Seq": str(d.stream_seq),
            "Jetexec-Deliveries": str(d.num_delivered),
            "Jetexec-Worker": self.worker,
        }
        try:
            # The id names the consumer: two consumers of one stream (coordinator, ledger) dead-letter
            # the same sequence, and the DLQ stream's duplicate window must not drop the second.
            # The subject names the stage (``exec.dlq.coordinator`` for every partition consumer).
            await self.publisher.publish_one(dlq_subject(self.spec.priority_group or self.spec.durable), d.data, f"dlq.{self.spec.durable}.{d.stream_seq}", headers)
            await d.msg.term()
        except Exception:
            log.exception("%s: dead-letter publish failed; leaving message for redelivery", self.worker)
            return
        if self.on_dead_letter is not None:
            try:
                await self.on_dead_letter(d, reason, detail)
            except Exception:
                log.exception("%s: dead-letter hook failed", self.worker)

    async def stop(self, grace_s: float = 10.0) -> None:
        self._stop.set()
        if self._inflight:
            try:
                await asyncio.wait_for(self._idle.wait(), grace_s)
            except asyncio.TimeoutError:
                pass

    async def release(self) -> None:
        """Hand the pin over now instead of after ``priority_timeout``: a standby takes over at once."""
        if self.group and self.pin:
            try:
                await self.nc.request(f"$JS.API.CONSUMER.UNPIN.{self.spec.stream}.{self.spec.durable}", json.dumps({"group": self.group}).encode(), timeout=2)
            except Exception:
                pass
            self.pin = None


class WorkerApp:
    """Base class of every worker: override ``setup`` (wire adapters) and ``consumers``.

    Subclasses define ``name`` and may start extra background tasks in ``setup``.
    """

    name = "worker"
    concurrency = 64
    ack_sync = False

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self.nc: Client
        self.js: JetStreamContext
        self.publisher: Publisher
        self.health = metrics.Health(self.name)
        self.loops: list[ConsumerLoop] = []
        self.background: list[asyncio.Task] = []
        self.stopping = asyncio.Event()

    async def setup(self) -> None:
        """Wire adapters (KV handles, watches, venue clients) after connecting."""

    def consumers(self) -> list[tuple[str, Handler]]:
        """(consumer name from bus.topology.CONSUMERS, handler) pairs."""
        return []

    def configure_loop(self, consumer: str, loop: ConsumerLoop) -> None:
        """Hook: adjust a consumer loop before it starts (e.g. react to a lost pin)."""

    async def on_dead_letter(self, d: Delivery, reason: str, detail: str) -> None:
        """Hook: a message was dead-lettered (the stage workers turn it into a fact)."""

    async def teardown(self) -> None:
        pass

    async def on_reconnected(self) -> None:
        """Hook: the connection came back after an outage."""

    async def start(self) -> None:
        tracing.setup_tracing(self.name)
        self.nc = await connect(self.settings, f"jetexec-{self.name}")
        self.health.connected = True

        async def _disc() -> None:
            self.health.connected = False

        async def _rec() -> None:
            self.health.connected = True
            await self.on_reconnected()

        self.nc._disconnected_cb = _disc  # noqa: SLF001 - nats-py has no setter after connect
        self.nc._reconnected_cb = _rec  # noqa: SLF001
        self.js = self.nc.jetstream(timeout=5)
        self.jspub = await JsPublisher(self.nc).start()
        self.publisher = Publisher(self.jspub)
        if os.environ.get("JETEXEC_SKIP_PROVISION") == "1":
            if not await self._await_topology():
                return  # stopped while waiting
        else:
            self.health.detail = "provisioning topology"
            await ensure_topology(self.js)
        await self.setup()
        for consumer_name, handler in self.consumers():
            loop = ConsumerLoop(
                self.nc,
                self.js,
                CONSUMERS[consumer_name],
                handler,
                self.name,
                self.health,
                concurrency=self.concurrency,
                ack_sync=self.ack_sync,
                publisher=self.publisher,
            )
            loop.on_dead_letter = self.on_dead_letter
            loop.before_ack = getattr(self, "before_ack", None)
            self.configure_loop(consumer_name, loop)
            self.loops.append(loop)
            self.background.append(asyncio.create_task(loop.run()))
        if not self.loops:
            # No pull loop (gateway, paper exchange): liveness is the event loop turning.
            self.background.append(asyncio.create_task(self._heartbeat()))
        self.health.ready = True

    async def _await_topology(self) -> bool:
        """Provisioning is another identity's job (the provision Job / compose service): until every
        stream, consumer and bucket exists, stay alive (/healthz 200) but not ready (/readyz 503 with
        what is missing), and check again. False if asked to stop meanwhile."""
        delay, logged = 0.25, ""
        while not self.stopping.is_set():
            try:
                missing = await verify_topology(self.js)
            except Exception as exc:  # NATS unavailable for now: same answer, not ready
                missing = [f"(cannot verify: {type(exc).__name__})"]
            if not missing:
                return True
            detail = f"topology not provisioned: {', '.join(missing)}"
            self.health.not_ready(detail)
            self.health.progress()
            if detail != logged:
                log.warning("%s: %s; waiting", self.name, detail)
                logged = detail
            try:
                await asyncio.wait_for(self.stopping.wait(), delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, 2.0)
        return False

    async def _heartbeat(self) -> None:
        while True:
            self.health.progress()
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        self.health.not_ready("draining")
        await asyncio.gather(*(loop.stop() for loop in self.loops))
        for t in self.background:
            t.cancel()
        # Bounded: a task stuck in a library call (a KV watch on a lost server) must not hold the
        # shutdown hostage.
        if self.background:
            await asyncio.wait(self.background, timeout=3)
        try:
            await asyncio.wait_for(self.teardown(), 3)
        except Exception:
            log.warning("%s: teardown did not finish", self.name)
        await asyncio.gather(*(loop.release() for loop in self.loops))
        try:
            # Bounded: nats-py's drain waits up to 30 s for watch subscriptions to empty.
            await asyncio.wait_for(self.nc.drain(), 5)
        except Exception:
            try:
                await self.nc.close()
            except Exception:
                pass
        tracing.shutdown_tracing()

    async def serve(self, metrics_port: int | None = None) -> None:
        """Run until SIGTERM/SIGINT, then drain."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        server = None
        if metrics_port:
            server = await metrics.serve_http(self.health, os.environ.get("JETEXEC_METRICS_HOST", "0.0.0.0"), metrics_port)
        # SIGTERM during start-up (connecting, provisioning, a worker's catch-up) must not wait for
        # start-up to finish: Kubernetes gives a pod its grace period, not more.
        starting = asyncio.create_task(self.start())
        stop_requested = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({starting, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            for t in self.background:
                t.cancel()
            await asyncio.gather(*self.background, return_exceptions=True)
            nc = getattr(self, "nc", None)
            if nc is not None:
                await nc.close()
            if server is not None:
                server.close()
            return
        starting.result()  # a start-up failure is the worker's exit reason
        if self.health.ready:
            print(f"worker {self.name} consuming", flush=True)
        await stop_requested
        try:
            await asyncio.wait_for(self.stop(), STOP_BUDGET_S)
        except asyncio.TimeoutError:
            log.warning("%s: graceful stop exceeded %.0fs; exiting", self.name, STOP_BUDGET_S)
        if server is not None:
            server.close()
        # A worker must end on SIGTERM, whatever a library task does with cancellation: an orphan
        # would rejoin whichever server later takes its port (and its durable consumer).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
