"""OrderSplit — SINGLE / TWAP / VWAP / ICEBERG with GR060, lot and tick rounding.

Consumes:  ``exec.cmd.split.<cid>`` SplitCommand (durable consumer ``split``; scale it freely).
Publishes: ``exec.evt.<cid>`` SplitDone with the child orders and their schedule.
Reads:     symbol specs and the VWAP volume profile from the execution's venue (``specs`` /
           ``profile``, optional), cached per venue.
"""

from __future__ import annotations

import json
import os
import time
from decimal import Decimal

from bus.runtime import Delivery, Out, Retry
from core.split import SplitConfig, needs_profile, plan_split
from core.symbols import SymbolSpec
from schemas.enums import ReasonCode, SplitStrategy
from schemas.messages import SplitCommand, SplitDone
from workers.common import OpUnavailable, SpecsUnavailable, StageWorker, VenueClient, command_of, config_from_env

PROFILE_BUCKETS = 10


class SplitWorker(StageWorker):
    name = "split"
    needs = frozenset({"venue"})

    async def prepare(self) -> None:
        self.profiles: dict[tuple[str, str], tuple[Decimal, ...]] = {}
        self.config = config_from_env("JETEXEC_SPLIT_CONFIG", SplitConfig)
        self.profile_file = os.environ.get("JETEXEC_VOLUME_PROFILE_FILE")

    def consumers(self):
        return [("split", self.handle)]

    async def _profile(self, venue: VenueClient, symbol: str) -> tuple[Decimal, ...] | None:
        """A profile file (``{"SYMBOL": [w, ...]}``) wins; else the venue's (``profile`` is optional);
        else the U-shaped default."""
        if self.profile_file:
            with open(self.profile_file) as f:
                data = json.load(f)
            if symbol in data:
                return tuple(Decimal(str(w)) for w in data[symbol])
        key = (venue.venue, symbol)
        if key not in self.profiles:
            try:
                self.profiles[key] = tuple(await venue.profile(symbol, PROFILE_BUCKETS))
            except (OpUnavailable, Exception):
                return None
        return self.profiles[key]

    def handle(self, d: Delivery):
        """Pure once the venue's reference data is here (the runtime runs it batched); fetching it is
        the slow path."""
        cmd: SplitCommand = command_of(d, SplitCommand)
        venue = self.venue.at(cmd.intent.venue)
        fresh, spec = self.specs.peek(cmd.intent.venue, cmd.intent.symbol)
        profiled = needs_profile(cmd.intent.split)
        key = (venue.venue, cmd.intent.symbol)
        if not fresh or (profiled and (self.profile_file or key not in self.profiles)):
            return self._handle_slow(cmd, venue)
        return self._plan(cmd, spec, self.profiles.get(key) if profiled else None)

    async def _handle_slow(self, cmd: SplitCommand, venue: VenueClient) -> list[Out]:
        try:
            spec = await self.specs.get(cmd.intent.venue, cmd.intent.symbol)
        except SpecsUnavailable:
            raise Retry("venue reference data unavailable", delay=0.5) from None
        profile = await self._profile(venue, spec.symbol) if spec is not None and needs_profile(cmd.intent.split) else None
        return self._plan(cmd, spec, profile)

    def _plan(self, cmd: SplitCommand, spec: SymbolSpec | None, profile: tuple[Decimal, ...] | None) -> list[Out]:
        now = time.time()
        if spec is None:
            fact = SplitDone(cid=cmd.cid, step=cmd.step, strategy=SplitStrategy.SINGLE, children=(), reason_code=ReasonCode.VALIDATION_INVALID_SYMBOL, detail=f"unknown symbol {cmd.intent.symbol}", ts=now)
        else:
            plan = plan_split(cmd.intent, cmd.qty, cmd.idempotency_key, spec, self.config, cmd.issued_at or now, profile)
            detail = "" if plan.children else f"quantity {cmd.qty} is less than one lot ({spec.lot_size})"
            fact = SplitDone(cid=cmd.cid, step=cmd.step, strategy=plan.strategy, children=plan.children, alerts=plan.alerts, reason_code=None if plan.children else ReasonCode.SPLIT_EMPTY, detail=detail, release=plan.release, ts=now)
        return [self.fact(cmd.cid, fact, f"{cmd.cid}.split.{cmd.step}")]
