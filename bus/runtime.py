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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from nats.aio.client import Client
from opentelemetry import trace as otel_trace
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from bus import metrics, tracing
from bus.settings import NatsSettings, connect
from bus.topology import CONSUMERS, ConsumerSpec, dlq_subject, ensure_topology, subject_template, verify_topology
from schemas.codec import DecodeError

log = logging.getLogger("jetexec.runtime")

STOP_BUDGET_S = 12.0  # in-flight handlers (10 s) + a bounded drain; Kubernetes grace is 45 s

_NO_SPAN = contextlib.nullcontext()  # reusable: the untraced path's span context manager


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


@dataclass(frozen=True)
class Out:
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


@dataclass
class Delivery:
    msg: Msg
    subject: str
    data: bytes
    headers: dict[str, str]
    stream_seq: int
    num_delivered: int

    @property
    def cid(self) -> str:
        return self.subject.rsplit(".", 1)[-1]

    async def in_progress(self) -> None:
        await self.msg.in_progress()


Handler = Callable[[Delivery], Awaitable[Sequence[Out]]]


class Publisher:
    """JetStream publishing with deterministic message ids and PRODUCER spans."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    async def publish(self, outs: Sequence[Out]) -> None:
        if not outs:
            return
        futures = []
        traced = tracing_on()
        for out in outs:
            headers = dict(out.headers or {})
            headers["Nats-Msg-Id"] = out.msg_id
            if traced:
                with tracing.producer_span(out.subject, headers, msg_id=out.msg_id, cid=tracing.cid_of(out.subject)):
                    futures.append(await self.js.publish_async(out.subject, out.data, headers=headers))
            else:
                futures.append(await self.js.publish_async(out.subject, out.data, headers=headers))
        await asyncio.gather(*futures)

    async def publish_one(self, subject: str, data: bytes, msg_id: str, headers: dict[str, str] | None = None) -> None:
        await self.publish([Out(subject, data, msg_id, headers)])


@dataclass
class ConsumerLoop:
    """Continuous pull for one durable consumer, feeding a handler."""

    nc: Client
    js: JetStreamContext
    spec: ConsumerSpec
    handler: Handler
    worker: str
    health: metrics.Health
    concurrency: int = 64
    ordered_by_key: bool = True
    ack_sync: bool = False
    expires_s: float = 5.0
    heartbeat_s: float = 1.0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _inflight: int = 0
    _outstanding: int = 0
    _queues: dict[str, collections.deque] = field(default_factory=dict)
    _tasks: set[asyncio.Task] = field(default_factory=set)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    _refill: asyncio.Event = field(default_factory=asyncio.Event)
    _metric_children: dict = field(default_factory=dict)
    _last_seen: float = 0.0

    @property
    def capacity(self) -> int:
        return max(2, self.concurrency * 2)

    async def run(self) -> None:
        inbox = self.nc.new_inbox()
        # Messages are dispatched straight from the subscription callback (no queue hop, no
        # per-message timeout task); this coroutine only keeps a pull request outstanding.
        sub = await self.nc.subscribe(inbox, cb=self._on_msg)
        api = f"$JS.API.CONSUMER.MSG.NEXT.{self.spec.stream}.{self.spec.durable}"
        self._last_seen = time.monotonic()
        try:
            while not self._stop.is_set():
                want = self.capacity - self._outstanding - self._inflight
                if want >= max(1, self.capacity // 2) and self.nc.is_connected:
                    req = {"batch": want, "expires": int(self.expires_s * 1e9), "idle_heartbeat": int(self.heartbeat_s * 1e9)}
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
                if status != "100":  # 100 = idle heartbeat / flow control
                    pending = msg.headers.get("Nats-Pending-Messages")
                    self._outstanding = max(0, self._outstanding - int(pending)) if pending is not None else 0
                    self._refill.set()
                return
        self._outstanding = max(0, self._outstanding - 1)
        self._dispatch(msg)

    def _dispatch(self, msg: Msg) -> None:
        key = msg.subject.rsplit(".", 1)[-1] if self.ordered_by_key else str(id(msg))
        q = self._queues.get(key)
        if q is not None:
            q.append(msg)  # same execution already running here: keep delivery order
            return
        self._queues[key] = collections.deque([msg])
        self._inflight += 1
        self._idle.clear()
        task = asyncio.create_task(self._drain_key(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain_key(self, key: str) -> None:
        q = self._queues[key]
        try:
            while q:
                msg = q[0]
                await self._handle(msg)
                q.popleft()
        finally:
            del self._queues[key]
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
            if self.capacity - self._outstanding - self._inflight >= self.capacity // 2:
                self._refill.set()

    async def _handle(self, msg: Msg) -> None:
        try:
            md = msg.metadata
            seq, delivered = md.sequence.stream, md.num_delivered
        except Exception:
            seq, delivered = 0, 1
        headers = dict(msg.headers or {})
        d = Delivery(msg=msg, subject=msg.subject, data=msg.data, headers=headers, stream_seq=seq, num_delivered=delivered)
        template = subject_template(msg.subject)
        if delivered > 1:
            metrics.REDELIVERIES.labels(self.worker, template).inc()
        started = time.perf_counter()
        outcome = "ok"
        # The span covers the outcome too: a dead letter (and its StageFailed fact) or a retry stays
        # in the execution's trace. Without a tracer provider, no span at all (see tracing_on).
        span_cm = tracing.consumer_span(msg.subject, headers, durable=self.spec.durable, msg_id=headers.get("Nats-Msg-Id"), cid=tracing.cid_of(msg.subject), delivery=delivered, stream_seq=seq) if tracing_on() else _NO_SPAN
        with span_cm as span:
            try:
                outs = await self.handler(d)
                await Publisher(self.js).publish(outs)
                if self.ack_sync:
                    await msg.ack_sync(timeout=5)
                else:
                    await msg.ack()
            except (DecodeError, Poison) as exc:
                outcome = "dead_lettered"
                code = exc.reason_code.value if isinstance(exc, DecodeError) else exc.reason_code
                await self._dead_letter(d, str(code), getattr(exc, "detail", str(exc)))
            except Retry as exc:
                outcome = "retried"
                await self._retry_or_dead_letter(d, exc.delay, str(exc))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or an unexpected outage: retry with backoff, never drop
                outcome = "error"
                log.exception("%s: handler failed on %s (delivery %d)", self.worker, template, delivered)
                await self._retry_or_dead_letter(d, min(0.2 * 2 ** delivered, 5.0), f"{type(exc).__name__}: {exc}")
            finally:
                counter, histogram = self._children(template, outcome)
                counter.inc()
                histogram.observe(time.perf_counter() - started)
                if span is not None:
                    tracing.set_outcome(span, outcome)

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
        metrics.DEAD_LETTERS.labels(self.worker, subject_template(d.subject), reason).inc()
        headers = {
            "Jetexec-Reason": reason,
            "Jetexec-Detail": detail[:500].replace("\r", " ").replace("\n", " "),
            "Jetexec-Subject": d.subject,
            "Jetexec-Stream-Seq": str(d.stream_seq),
            "Jetexec-Deliveries": str(d.num_delivered),
            "Jetexec-Worker": self.worker,
        }
        try:
            # The id names the consumer: two consumers of one stream (coordinator, ledger) dead-letter
            # the same sequence, and the DLQ stream's duplicate window must not drop the second.
            await Publisher(self.js).publish_one(dlq_subject(self.spec.durable), d.data, f"dlq.{self.spec.durable}.{d.stream_seq}", headers)
            await d.msg.term()
        except Exception:
            log.exception("%s: dead-letter publish failed; leaving message for redelivery", self.worker)
            return
        if self.on_dead_letter is not None:
            try:
                await self.on_dead_letter(d, reason, detail)
            except Exception:
                log.exception("%s: dead-letter hook failed", self.worker)

    on_dead_letter: Callable[[Delivery, str, str], Awaitable[None]] | None = None

    async def stop(self, grace_s: float = 10.0) -> None:
        self._stop.set()
        if self._inflight:
            try:
                await asyncio.wait_for(self._idle.wait(), grace_s)
            except asyncio.TimeoutError:
                pass


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

    async def on_dead_letter(self, d: Delivery, reason: str, detail: str) -> None:
        """A dead-lettered stage command becomes a StageFailed fact, so its execution never hangs."""
        from schemas.codec import encode, is_id

        parts = d.subject.split(".")
        if parts[:2] != ["exec", "cmd"] or len(parts) != 4 or not is_id(parts[3]):
            return  # not a stage command, or a subject no execution can have: nothing can hang
        from schemas.enums import ReasonCode
        from schemas.messages import StageFailed

        code = ReasonCode.MAX_DELIVERIES if reason == "MAX_DELIVERIES" else ReasonCode.POISON_MESSAGE
        fact = StageFailed(cid=parts[3], stage=parts[2], reason_code=code, detail=f"{reason}: {detail}"[:300], ts=time.time())
        await self.publisher.publish_one(f"exec.evt.{parts[3]}", encode(fact), f"{parts[3]}.dlq.{d.stream_seq}")

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
        self.publisher = Publisher(self.js)
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
            )
            loop.on_dead_letter = self.on_dead_letter
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
