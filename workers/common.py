"""Adapters shared by several workers: the venue client, market data cache, safety/halt watches."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

from nats.aio.client import Client
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
from nats.js import JetStreamContext

from opentelemetry.trace import Status, StatusCode

from bus import metrics, tracing
from bus.runtime import Delivery, Poison, tracing_on
from bus.topology import KV_SAFETY, subject_template, venue_api
from core.symbols import SymbolSpec
from schemas.codec import decode, decode_command, encode
from schemas.enums import ExecutionMode, ReasonCode, SafetyState
from schemas.venue import SymbolInfo

MD_SUBJECT = "venue.md"  # venue.md.<symbol>: quotes (core NATS, latest wins)


def command_of(d: Delivery, kind: type):
    """The stage command in ``d``. Another command type, or a command for another execution than its
    subject names, is poison (dead-lettered at once, never retried): its outputs would go to the wrong
    execution's subject — or to a subject no stream takes, which fails every retry the same way."""
    cmd = decode_command(d.data)
    if not isinstance(cmd, kind):
        raise Poison(ReasonCode.VALIDATION_INVALID_FIELD.value, f"{type(cmd).__name__} on {subject_template(d.subject)}, expected {kind.__name__}")
    if cmd.cid != d.cid:
        raise Poison(ReasonCode.VALIDATION_INVALID_FIELD.value, f"command cid {cmd.cid!r} does not match its subject")
    return cmd


class VenueUnavailable(Exception):
    """No answer from the venue: the outcome of the request is unknown."""


class VenueClient:
    """Request/reply client for the venue protocol (``venue.api.<op>``).

    ``call`` is one CLIENT span ``venue.api.<op>`` (when tracing is on) whose ``traceparent`` rides in
    the request headers — the venue's reports for that order continue the execution's trace — and
    one ``jetexec_venue_call_seconds{op, outcome}`` observation (accepted / rejected / ok / unavailable).
    """

    def __init__(self, nc: Client, timeout: float = 2.0) -> None:
        self.nc = nc
        self.timeout = timeout

    async def call(self, op: str, request: object, reply_type: type, timeout: float | None = None):
        subject = venue_api(op)
        if not tracing_on():
            return await self._call(op, subject, request, reply_type, timeout, None)
        headers: dict[str, str] = {}
        with tracing.client_span(subject, headers, cid=getattr(request, "cid", None), client_order_id=getattr(request, "client_order_id", None)) as span:
            try:
                reply = await self._call(op, subject, request, reply_type, timeout, headers)
            except VenueUnavailable as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise
            accepted = getattr(reply, "accepted", None)
            tracing.annotate(span, outcome=None if accepted is None else ("accepted" if accepted else "rejected"), reason_code=getattr(reply, "reason_code", None))
            return reply

    async def _call(self, op: str, subject: str, request: object, reply_type: type, timeout: float | None, headers: dict[str, str] | None):
        started = time.perf_counter()
        try:
            msg = await self.nc.request(subject, encode(request), timeout=timeout or self.timeout, headers=headers)
        except (NatsTimeout, asyncio.TimeoutError, NoRespondersError) as exc:
            metrics.VENUE_CALLS.labels(op, "unavailable").observe(time.perf_counter() - started)
            raise VenueUnavailable(f"venue {op}: {type(exc).__name__}") from None
        reply = decode(msg.data, reply_type)
        accepted = getattr(reply, "accepted", None)
        metrics.VENUE_CALLS.labels(op, "ok" if accepted is None else ("accepted" if accepted else "rejected")).observe(time.perf_counter() - started)
        return reply

    async def symbols(self) -> list[SymbolInfo]:
        msg = await self.nc.request(venue_api("symbols"), b"{}", timeout=self.timeout)
        return decode(msg.data, list[SymbolInfo])

    async def specs(self) -> dict[str, SymbolSpec]:
        msg = await self.nc.request(venue_api("specs"), b"{}", timeout=self.timeout)
        return {s.symbol: s for s in decode(msg.data, list[SymbolSpec])}


class MarketData:
    """Latest quote per symbol from ``venue.md.<symbol>``; ``connected`` is quote freshness."""

    def __init__(self, stale_after_s: float = 3.0) -> None:
        self.quotes: dict[str, SymbolInfo] = {}
        self.last_update = 0.0
        self.stale_after_s = stale_after_s

    async def start(self, nc: Client) -> None:
        async def on_quote(msg) -> None:
            try:
                q = decode(msg.data, SymbolInfo)
            except Exception:
                return
            self.record(q, time.time())

        await nc.subscribe(f"{MD_SUBJECT}.*", cb=on_quote)

    def record(self, q: SymbolInfo, now: float) -> None:
        """One quote arrived (subclasses keep more, e.g. the ledger's mid history)."""
        self.quotes[q.symbol] = q
        self.last_update = now

    @property
    def connected(self) -> bool:
        return time.time() - self.last_update < self.stale_after_s

    def mid(self, symbol: str) -> Decimal | None:
        q = self.quotes.get(symbol)
        return q.reference_price if q else None


class SafetyView:
    """Watches KV ``SAFETY``: the safety state, the execution mode and the HALT fences."""

    def __init__(self) -> None:
        self.state = SafetyState.NORMAL
        self.mode: ExecutionMode | None = None
        self.halted: set[str] = set()  # cids, or "ALL"
        self.risk_hook: dict | None = None  # operator override of the risk hook (key "risk_hook")
        self._kv = None
        self._task: asyncio.Task | None = None
        self.synced = asyncio.Event()

    async def start(self, js: JetStreamContext) -> None:
        self._kv = await js.key_value(KV_SAFETY)
        watcher = await self._kv.watchall()
        self._task = asyncio.create_task(self._run(watcher))
        try:
            await asyncio.wait_for(self.synced.wait(), 5)
        except asyncio.TimeoutError:
            pass

    async def _run(self, watcher) -> None:
        async for entry in watcher:
            if entry is None:  # initial values delivered
                self.synced.set()
                continue
            self.apply(entry.key, entry.value, entry.operation)

    def apply(self, key: str, value: bytes | None, operation: object = None) -> None:
        deleted = operation is not None and str(operation).upper().endswith(("DEL", "PURGE"))
        if key == "state" and value and not deleted:
            try:
                self.state = SafetyState(value.decode())
            except ValueError:
                pass
        elif key == "mode" and value and not deleted:
            try:
                self.mode = ExecutionMode(value.decode())
            except ValueError:
                pass
        elif key == "risk_hook":
            try:
                self.risk_hook = None if deleted or not value else json.loads(value)
            except ValueError:
                self.risk_hook = None
        elif key.startswith("halt."):
            target = key[5:]
            if deleted or not value:
                self.halted.discard(target)
            else:
                self.halted.add(target)

    def is_halted(self, cid: str) -> bool:
        return "ALL" in self.halted or cid in self.halted

    async def refresh_halt(self, cid: str) -> bool:
        """Read the fence straight from KV (the watch may lag a just-set fence by a few ms)."""
        assert self._kv is not None
        for key in (f"halt.{cid}", "halt.ALL"):
            try:
                e = await self._kv.get(key)
                if e.value:
                    return True
            except Exception:
                continue
        return False


def now() -> float:
    return time.time()


def spec_from_info(info: SymbolInfo) -> SymbolSpec:
    return SymbolSpec(symbol=info.symbol, reference_price=info.reference_price, lot_size=info.lot_size, tick_size=info.tick_size)

