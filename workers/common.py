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

from bus.runtime import Delivery, Poison
from bus.topology import KV_SAFETY, subject_template
from bus.venue_client import OpUnavailable, VenueClient, VenueOpError, VenueUnavailable, venues_from_env  # noqa: F401 - the one venue client
from core.symbols import SymbolSpec
from core.venue_protocol import route_refusal
from schemas.codec import decode, decode_command
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


def spec_from_info(info: SymbolInfo) -> SymbolSpec:
    return SymbolSpec(symbol=info.symbol, reference_price=info.reference_price, lot_size=info.lot_size, tick_size=info.tick_size)

