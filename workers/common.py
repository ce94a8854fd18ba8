"""Adapters shared by several workers: the venue client (``bus/venue_client.py``, re-exported), the
venues configuration, market data cache, safety/halt watches."""

from __future__ import annotations

import asyncio
import json
import os
import time
from decimal import Decimal

from nats.aio.client import Client
from nats.js import JetStreamContext

import msgspec

from bus.runtime import Delivery, Out, Poison, WorkerApp
from bus.topology import KV_SAFETY, evt_subject, subject_template
from bus.venue_client import OpUnavailable, VenueClient, VenueOpError, VenueUnavailable, venues_from_env  # noqa: F401 - the one venue client
from core.symbols import SymbolSpec
from core.venue_protocol import route_refusal
from schemas.codec import decode, decode_command, encode, is_id
from schemas.messages import StageFailed
from schemas.enums import ExecutionMode, ReasonCode, SafetyState
from schemas.venue import SymbolInfo

MD_SUBJECT = "venue.md"  # venue.md.<symbol>: quotes (core NATS, latest wins)
SPECS_MAX_AGE_S = 30.0  # a venue's symbol specs are asked again after this long


class SpecsUnavailable(Exception):
    """The venue's symbol specs could not be fetched, and none are known."""


class SpecCache:
    """Symbol specs per venue, one policy for every worker: fetched when a symbol is missing or the
    venue's specs are older than ``SPECS_MAX_AGE_S``; a failed fetch keeps what was known. ``peek``
    answers from memory (the batched, I/O-free path)."""

    def __init__(self, venue: VenueClient) -> None:
        self.venue = venue
        self.by_venue: dict[str, tuple[float, dict[str, SymbolSpec]]] = {}

    def peek(self, venue: str | None, symbol: str) -> tuple[bool, SymbolSpec | None]:
        """(fresh, spec): ``fresh`` is False when a fetch is due (unknown symbol or old specs)."""
        at, specs = self.by_venue.get(self.venue.at(venue).venue, (0.0, {}))
        spec = specs.get(symbol)
        return (spec is not None and time.time() - at <= SPECS_MAX_AGE_S), spec

    async def get(self, venue: str | None, symbol: str) -> SymbolSpec | None:
        """The symbol's spec (None: the venue does not trade it). Raises :class:`SpecsUnavailable`
        when the venue cannot be asked and nothing is known of it."""
        fresh, spec = self.peek(venue, symbol)
        if fresh:
            return spec
        client = self.venue.at(venue)
        try:
            self.by_venue[client.venue] = (time.time(), await client.specs())
        except Exception:
            if client.venue not in self.by_venue:
                raise SpecsUnavailable(f"venue {client.venue}: no symbol specs") from None
        return self.by_venue[client.venue][1].get(symbol)

    @property
    def known(self) -> bool:
        return bool(self.by_venue)


def config_from_env(var: str, kind: type, default: str = "{}"):
    """A worker's JSON configuration from ``var``, converted to ``kind`` (msgspec: a wrong value
    fails with the key it is under)."""
    return msgspec.convert(json.loads(os.environ.get(var, default) or default), kind, strict=False)


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


def live_switches() -> tuple[bool, bool]:
    """LIVE needs both: the config flag (``JETEXEC_LIVE_CONFIG_FLAG=1``, set by ``up --mode live``)
    and the operator's environment variable ``JETEXEC_LIVE_ENABLED=yes``."""
    return (os.environ.get("JETEXEC_LIVE_CONFIG_FLAG") == "1", os.environ.get("JETEXEC_LIVE_ENABLED") == "yes")


def route_refusal_for(venues, mode, venue: str | None) -> str | None:
    """:func:`core.venue_protocol.route_refusal` with this process's venues config and switches."""
    vid = venues.resolve(venue or None)
    return route_refusal(mode, vid, venues.is_live(vid), live_switches(), venues.is_live(venues.default))


class StageWorker(WorkerApp):
    """A stage worker's shape: it declares the adapters it reads, gets them wired here, and
    answers with facts on its execution's subject.

    ``needs`` names what :meth:`setup` wires: ``safety`` (:class:`SafetyView`), ``market``
    (:class:`MarketData`), ``venue`` (:class:`VenueClient` for the configured venues and one
    :class:`SpecCache`). ``prepare`` is the worker's own set-up after that."""

    needs: frozenset[str] = frozenset()
    venue_timeout = 2.0

    async def setup(self) -> None:
        self.venues = venues_from_env()
        if "safety" in self.needs:
            self.safety = SafetyView()
            await self.safety.start(self.js)
        if "market" in self.needs:
            self.market = MarketData()
            await self.market.start(self.nc)
        if "venue" in self.needs:
            self.venue = VenueClient(self.nc, timeout=self.venue_timeout, default_venue=self.venues.default)
            self.specs = SpecCache(self.venue)
        await self.prepare()

    async def prepare(self) -> None:
        """The worker's own set-up, after its adapters are wired."""

    def halted(self, cid: str) -> bool:
        """Is this execution (or everything) behind an escape fence?"""
        return self.safety.is_halted(cid)

    async def on_dead_letter(self, d: Delivery, reason: str, detail: str) -> None:
        """A dead-lettered stage command becomes a StageFailed fact, so its execution never hangs."""
        parts = d.subject.split(".")
        if parts[:2] != ["exec", "cmd"] or len(parts) != 4 or not is_id(parts[3]):
            return  # not a stage command, or a subject no execution can have: nothing can hang
        code = ReasonCode.MAX_DELIVERIES if reason == "MAX_DELIVERIES" else ReasonCode.POISON_MESSAGE
        failed = StageFailed(cid=parts[3], stage=parts[2], reason_code=code, detail=f"{reason}: {detail}"[:300], ts=time.time())
        await self.publisher.publish([self.fact(parts[3], failed, f"{parts[3]}.dlq.{d.stream_seq}")])

    @staticmethod
    def fact(cid: str, fact: object, msg_id: str) -> Out:
        """A fact about ``cid`` on its subject, under a deterministic message id."""
        return Out(evt_subject(cid), encode(fact), msg_id)
