"""PreCheck — the six checks of seed 000, then the price collar and the risk hook.

Consumes:  ``exec.cmd.precheck.<cid>`` PrecheckCommand (durable consumer ``precheck``).
Publishes: ``exec.evt.<cid>`` PrecheckDone.
Reads:     KV ``SAFETY`` (safety state and the operator's ``risk_hook`` override, watched), KV ``COUNTERS`` (daily trades per strategy, CAS),
           KV ``LEDGER`` (positions, when the ledger worker runs), venue quotes and symbol specs.

A PAUSE from the risk hook is retried (nak with delay) until the PRECHECK deadline, then fails
with RISK_PAUSE_TIMEOUT. The daily limit check and the counter increment are one compare-and-set
(a conflict re-runs the checks), and a per-cid marker keeps a redelivery from counting twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from decimal import Decimal

import msgspec
from nats.js.errors import KeyNotFoundError

from bus.runtime import Delivery, Out, Retry, WorkerApp
from bus.topology import KV_COUNTERS, KV_LEDGER, evt_subject
from core.execution_fsm import STAGE_TIMEOUT_MS
from core.precheck import DailyCounter, PrecheckConfig, PrecheckContext, daily_bucket, minute_of_day_utc, run_precheck
from core.risk import evaluate_risk, load_risk_hook
from core.symbols import SymbolSpec
from schemas.codec import decode, encode
from schemas.enums import ExecutionState, ReasonCode
from schemas.messages import PrecheckCommand, PrecheckDone
from workers.common import MarketData, SafetyView, VenueClient, command_of
from workers.ledger.store import pos_key

PAUSE_RETRY_S = 0.25
PAUSE_MARGIN_S = 0.5  # answer before the coordinator's own PRECHECK deadline


def live_switches() -> tuple[bool, bool]:
    """LIVE needs both: the config flag (``JETEXEC_LIVE_CONFIG_FLAG``, set by ``up --mode live
    --i-understand-live``) and the operator's environment variable ``JETEXEC_LIVE_ENABLED=yes``."""
    return (os.environ.get("JETEXEC_LIVE_CONFIG_FLAG") == "1", os.environ.get("JETEXEC_LIVE_ENABLED") == "yes")


def live_venue_configured() -> bool:
    """``JETEXEC_LIVE_VENUES``: the live-capable venues among the configured ones (set by ``jetexec up``
    from jetexec.toml; empty when only the paper exchange is configured)."""
    return bool(os.environ.get("JETEXEC_LIVE_VENUES", "").strip())


class PrecheckWorker(WorkerApp):
    name = "precheck"

    async def setup(self) -> None:
        self.safety = SafetyView()
        await self.safety.start(self.js)
        self.market = MarketData()
        await self.market.start(self.nc)
        self.venue = VenueClient(self.nc)
        self.specs: dict[str, SymbolSpec] = {}
        self.specs_at = 0.0
        self.counters = await self.js.key_value(KV_COUNTERS)
        self.ledger = await self.js.key_value(KV_LEDGER)
        self.positions: dict[str, Decimal] = {}
        self.bucket_locks: dict[str, asyncio.Lock] = {}
        self.background.append(asyncio.create_task(self._watch_positions()))
        self.config = msgspec.convert(json.loads(os.environ.get("JETEXEC_PRECHECK_CONFIG", "{}")), PrecheckConfig, strict=False)
        self.risk_hook = load_risk_hook(json.loads(os.environ.get("JETEXEC_RISK_HOOK", "null")))

    def consumers(self):
        return [("precheck", self.handle)]

    async def _spec(self, symbol: str) -> SymbolSpec | None:
        if symbol not in self.specs or time.time() - self.specs_at > 30:
            try:
                self.specs = await self.venue.specs()
                self.specs_at = time.time()
            except Exception:
                pass  # venue down: VENUE_DISCONNECTED below if we know nothing
        return self.specs.get(symbol)

    def _hook(self):
        """The operator's live override (KV SAFETY ``risk_hook``) wins over the start-up config."""
        override = self.safety.risk_hook
        if override is not None:
            try:
                return load_risk_hook(override)
            except ValueError:
                return load_risk_hook({"kind": "blocking", "reason": "invalid risk_hook override in KV SAFETY"})
        return self.risk_hook

    async def _watch_positions(self) -> None:
        """Positions from the ledger worker (KV LEDGER ``pos.*``), kept current by a watch: a KV
        read per intent would be the slowest thing precheck does."""
        while True:
            try:
                watcher = await self.ledger.watch("pos.>")
                async for entry in watcher:
                    if entry is None:
                        continue
                    try:
                        self.positions[entry.key] = Decimal(json.loads(entry.value)["qty"]) if entry.value else Decimal(0)
                    except (ValueError, KeyError, TypeError):
                        continue
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(1.0)  # server restart: watch again

    async def _position(self, symbol: str, strategy_id: str) -> Decimal:
        return self.positions.get(pos_key(symbol, strategy_id), Decimal(0))

    async def handle(self, d: Delivery) -> list[Out]:
        cmd: PrecheckCommand = command_of(d, PrecheckCommand)
        now = time.time()
        intent = cmd.intent
        spec = await self._spec(intent.symbol)
        position = await self._position(intent.symbol, intent.strategy_id)
        reference = self.market.mid(intent.symbol) or cmd.reference_price
        bucket = daily_bucket(intent.strategy_id, now)
        marker = f"seen.{cmd.cid}"
        # One strategy's burst would otherwise be dozens of concurrent compare-and-sets on one key,
        # nearly all failing and retrying: take turns per counter inside this process.
        async with self.bucket_locks.setdefault(bucket, asyncio.Lock()):
            return await self._check_and_count(d, cmd, now, spec, position, reference, bucket, marker)

    async def _check_and_count(self, d, cmd, now, spec, position, reference, bucket, marker) -> list[Out]:
        intent = cmd.intent
        for _attempt in range(50):
            # Check and count atomically: the counter's revision is part of the decision, so two
            # concurrent intents cannot both take the last trade of the day.
            counter, revision = await self._counter(bucket)
            counted = d.num_delivered > 1 and await self._has(marker)  # only a redelivery can be counted
            if counted:  # a redelivery after this intent was already counted: judge it without itself
                counter = DailyCounter(count=max(0, counter.count - 1), notional=counter.notional)
            ctx = PrecheckContext(
                safety_state=self.safety.state,
                mode=cmd.mode,
                venue_connected=self.market.connected or bool(self.specs),
                spec=spec,
                minute_of_day=minute_of_day_utc(now),
                risk=evaluate_risk(self._hook(), intent, intent.qty),
                live_switches=live_switches(),
                live_venue=live_venue_configured(),
                position_qty=position,
                reference_price=reference,
                daily_count=counter.count,
                daily_notional=counter.notional,
                now=now,
            )
            outcome = run_precheck(intent, ctx, self.config)
            if outcome.pause:
                deadline = (cmd.issued_at or now) + STAGE_TIMEOUT_MS[ExecutionState.PRECHECK] / 1000 - PAUSE_MARGIN_S
                if now + PAUSE_RETRY_S < deadline:
                    raise Retry("risk hook says PAUSE", delay=PAUSE_RETRY_S)
                fact = PrecheckDone(cid=cmd.cid, step=cmd.step, passed=False, reason_code=ReasonCode.RISK_PAUSE_TIMEOUT, detail="risk hook kept PAUSE until the PRECHECK deadline", ts=now)
                return [Out(evt_subject(cmd.cid), encode(fact), f"{cmd.cid}.precheck.{cmd.step}")]
            if outcome.passed and not counted:
                price = intent.price or reference or Decimal(0)
                if not await self._count(bucket, counter, revision, outcome.qty * price):
                    continue  # someone else counted meanwhile: decide again on the new counter
                await self._mark(marker)
            fact = PrecheckDone(cid=cmd.cid, step=cmd.step, passed=outcome.passed, reason_code=outcome.reason_code, detail=outcome.detail, qty=outcome.qty, alerts=outcome.alerts, ts=now)
            return [Out(evt_subject(cmd.cid), encode(fact), f"{cmd.cid}.precheck.{cmd.step}")]
        raise Retry("daily counter contention")

    async def _counter(self, bucket: str) -> tuple[DailyCounter, int | None]:
        try:
            entry = await self.counters.get(bucket)
            return decode(entry.value, DailyCounter), entry.revision
        except KeyNotFoundError:
            return DailyCounter(), None

    async def _has(self, key: str) -> bool:
        try:
            await self.counters.get(key)
            return True
        except KeyNotFoundError:
            return False

    async def _mark(self, key: str) -> None:
        try:
            await self.counters.create(key, b"1")
        except Exception:
            pass  # already marked by an earlier delivery

    async def _count(self, bucket: str, counter: DailyCounter, revision: int | None, notional: Decimal) -> bool:
        new = counter.add(notional)
        try:
            if revision is None:
                await self.counters.create(bucket, encode(new))
            else:
                await self.counters.update(bucket, encode(new), last=revision)
            return True
        except Exception:  # wrong last sequence / key exists: a concurrent count
            return False

