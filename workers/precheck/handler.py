"""PreCheck — the six checks of seed 000, then the price collar and the risk hook.

Consumes:  ``exec.cmd.precheck.<cid>`` PrecheckCommand (durable consumer ``precheck``).
Publishes: ``exec.evt.<cid>`` PrecheckDone; ``exec.count.{trades,notional}.<strategy>.<day>``
           increments (stream ``EXEC_COUNTERS``, a counter stream: the new total comes back in the
           publish ack).
Reads:     KV ``SAFETY`` (safety state and the operator's ``risk_hook`` override, watched), KV
           ``LEDGER`` positions (watched, when the ledger worker runs), venue quotes and symbol specs.

A PAUSE from the risk hook is retried (nak with delay) until the PRECHECK deadline, then fails
with RISK_PAUSE_TIMEOUT.

The daily limits (GR062) without a read or a lock: the checks run first against the last totals
this worker saw (totals only grow within a day, so "over the limit" there is over the limit);
an intent that passes is counted (one increment per counter, pipelined), and the checks run again
against the totals the server says were there just before it. Over the limit after all: the
increments are taken back and the intent fails. Each increment carries a message id of the
command, so a redelivery does not count twice; when the server reports it as a duplicate (this
intent was counted by a delivery that died), it is counted again — one trade too many, never one
too few.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from decimal import Decimal


from bus.runtime import Delivery, Out, Retry
from bus.topology import KV_LEDGER, count_subject
from core.execution_fsm import STAGE_TIMEOUT_MS
from core.keys import pos_key
from core.precheck import PrecheckConfig, PrecheckContext, daily_bucket, minute_of_day_utc, notional_units, run_precheck, trade_cost, units_notional
from core.risk import evaluate_risk, load_risk_hook
from core.symbols import SymbolSpec
from schemas.enums import ExecutionState, ReasonCode
from schemas.messages import PrecheckCommand, PrecheckDone
from workers.common import SpecsUnavailable, StageWorker, command_of, config_from_env, route_refusal_for

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


class PrecheckWorker(StageWorker):
    name = "precheck"
    needs = frozenset({"safety", "market", "venue"})

    async def prepare(self) -> None:
        self.ledger = await self.js.key_value(KV_LEDGER)
        self.positions: dict[str, Decimal] = {}
        self.totals: dict[str, tuple[int, int]] = {}  # daily bucket -> (trades, notional units) last seen
        self.background.append(asyncio.create_task(self._watch_positions()))
        self.config = config_from_env("JETEXEC_PRECHECK_CONFIG", PrecheckConfig)
        self.risk_hook = load_risk_hook(json.loads(os.environ.get("JETEXEC_RISK_HOOK", "null")))

    def consumers(self):
        return [("precheck", self.handle)]

    async def _spec(self, symbol: str, venue: str | None = None) -> SymbolSpec | None:
        try:
            return await self.specs.get(venue, symbol)
        except SpecsUnavailable:
            return None  # venue down: VENUE_DISCONNECTED below if we know nothing

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

    async def handle(self, d: Delivery) -> list[Out]:
        cmd: PrecheckCommand = command_of(d, PrecheckCommand)
        now = time.time()
        intent = cmd.intent
        refusal = route_refusal_for(self.venues, cmd.mode, intent.venue)
        if refusal is not None:  # mode × venue × the live switches (core.venue_protocol.route_refusal)
            fact = PrecheckDone(cid=cmd.cid, step=cmd.step, passed=False, reason_code=ReasonCode.POLICY_LIVE_NOT_ENABLED, detail=refusal, ts=now)
            return [self.fact(cmd.cid, fact, f"{cmd.cid}.precheck.{cmd.step}")]
        spec = await self._spec(intent.symbol, intent.venue)
        bucket = daily_bucket(intent.strategy_id, now)
        trades, units = self.totals.get(bucket, (0, 0))

        def judge(trades: int, units: int):
            ctx = PrecheckContext(
                safety_state=self.safety.state,
                mode=cmd.mode,
                venue_connected=self.market.connected or self.specs.known,
                spec=spec,
                minute_of_day=minute_of_day_utc(now),
                risk=evaluate_risk(self._hook(), intent, intent.qty),
                live_switches=live_switches(),
                live_venue=live_venue_configured() or self.venues.has_live(),
                position_qty=self.positions.get(pos_key(intent.symbol, intent.strategy_id), Decimal(0)),
                reference_price=self.market.mid(intent.symbol) or cmd.reference_price,
                daily_count=trades,
                daily_notional=units_notional(units),
                now=now,
            )
            return ctx, run_precheck(intent, ctx, self.config)

        ctx, outcome = judge(trades, units)
        if outcome.pause:
            deadline = (cmd.issued_at or now) + STAGE_TIMEOUT_MS[ExecutionState.PRECHECK] / 1000 - PAUSE_MARGIN_S
            if now + PAUSE_RETRY_S < deadline:
                raise Retry("risk hook says PAUSE", delay=PAUSE_RETRY_S)
            fact = PrecheckDone(cid=cmd.cid, step=cmd.step, passed=False, reason_code=ReasonCode.RISK_PAUSE_TIMEOUT, detail="risk hook kept PAUSE until the PRECHECK deadline", ts=now)
            return [self.fact(cmd.cid, fact, f"{cmd.cid}.precheck.{cmd.step}")]
        if outcome.passed:
            cost = notional_units(trade_cost(intent, outcome.qty, ctx))
            trades, units = await self._count(bucket, f"{cmd.cid}.{cmd.step}", d.num_delivered, 1, cost)
            _, outcome = judge(trades - 1, units - cost)  # the totals just before this intent
            if not outcome.passed:
                await self._count(bucket, f"{cmd.cid}.{cmd.step}.undo", d.num_delivered, -1, -cost)
        fact = PrecheckDone(cid=cmd.cid, step=cmd.step, passed=outcome.passed, reason_code=outcome.reason_code, detail=outcome.detail, qty=outcome.qty, alerts=outcome.alerts, ts=now)
        return [self.fact(cmd.cid, fact, f"{cmd.cid}.precheck.{cmd.step}")]

    async def _count(self, bucket: str, msg_id: str, delivery: int, trades: int, units: int) -> tuple[int, int]:
        """Add to the bucket's two counters; returns their new totals (this addition included)."""
        acks = await asyncio.gather(*(self._incr(count_subject(kind, bucket), f"{msg_id}.{kind}", delivery, by) for kind, by in (("trades", trades), ("notional", units))))
        totals = (int(acks[0]), int(acks[1]))
        self.totals[bucket] = totals
        return totals

    async def _incr(self, subject: str, msg_id: str, delivery: int, by: int) -> str:
        ack = await self.jspub.request(subject, b"", {"Nats-Incr": str(by), "Nats-Msg-Id": msg_id})
        if ack.duplicate or ack.val is None:
            # A delivery that died already counted this: count again, under this delivery's id
            # (over-counting by one is the safe side of a limit).
            ack = await self.jspub.request(subject, b"", {"Nats-Incr": str(by), "Nats-Msg-Id": f"{msg_id}.d{delivery}"})
        if ack.val is None:
            raise Retry(f"counter {subject} gave no total")
        return ack.val
